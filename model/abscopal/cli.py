"""The ``abscopal`` command line: equations, agents, lines, simulate, compare, optimize, export, fit.

The parser checks every option's type and range itself, and the handlers validate their inputs
before importing JAX, so ``--help`` and a wrong call answer at once (``benchmarks/bench_cli_startup.py``).
"""

from __future__ import annotations

import argparse
import math
import sys

from . import __version__, commands

DEFAULT_HORIZON_DAYS = 60.0  # the one default horizon (decide.compare.DEFAULT_HORIZON_DAYS; a test checks they agree)


def _int_at_least(text: str, low: int, allowed: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}") from None
    if n < low:
        raise argparse.ArgumentTypeError(f"must be {allowed}, got {text!r}")
    return n


def positive_int(text: str) -> int:
    return _int_at_least(text, 1, "a positive integer")


def count(text: str) -> int:
    return _int_at_least(text, 0, "0 or a positive integer")


def positive_float(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return x


def horizon(text: str) -> float:
    x = positive_float(text)
    if x > 365:
        raise argparse.ArgumentTypeError(f"must be in (0, 365] days, got {text!r}")
    return x


def n_points(text: str) -> int:
    n = positive_int(text)
    if n < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 output days, got {text!r}")
    return n


SEED_HELP = "random seed of the virtual mice (default 0)"
OUT_DIR_HELP = "folder for the figure (and other default outputs); default: a new folder abscopal-output/<command>-<time>"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="abscopal", description="Radiotherapy + immunotherapy in two tumours (irradiated and abscopal)."
    )
    ap.add_argument("--version", action="version", version=__version__, help="print the version and exit")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("equations", help="print the model's equations (from sympy)")
    p.add_argument("--latex", action="store_true", help="print LaTeX instead of plain text")
    p.set_defaults(func=commands.cmd_equations)
    p = sub.add_parser("agents", help="list the agent catalogue")
    p.set_defaults(func=commands.cmd_agents)
    p = sub.add_parser("lines", help="list the tumour-line parameter sets with sources")
    p.set_defaults(func=commands.cmd_lines)
    p = sub.add_parser("simulate", help="simulate a schedule TOML file")
    p.add_argument("schedule", help="schedule TOML file (see README: Schedules)")
    p.add_argument("--out", required=True, help="output file (.csv or .json)")
    p.add_argument("--points", type=n_points, default=121, help="number of output days (default 121)")
    p.add_argument(
        "--fit",
        default=None,
        help="fit name or folder: write 5/50/95 %% quantiles over posterior draws (<name>@map: at its MAP point)",
    )
    p.add_argument("--draws", type=positive_int, default=100, help="posterior draws with --fit (default 100)")
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.set_defaults(func=commands.cmd_simulate)
    p = sub.add_parser("compare", help="compare schedules over a virtual population (default: concurrent vs sequential)")
    p.add_argument("schedules", nargs="*", help="schedule TOML files (default: RT alone, concurrent and sequential anti-PD-1)")
    p.add_argument(
        "--fit", default=None, help="fit name or folder (e.g. review); <name>@map for its MAP point (between-mouse spread only)"
    )
    p.add_argument("--draws", type=positive_int, default=200, help="virtual mice (parameter draws) per schedule (default 200)")
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.add_argument(
        "--endpoint-mm3",
        type=positive_float,
        default=1000.0,
        help="volume end point: a mouse is removed when its total tumour burden reaches it (default 1000)",
    )
    p.add_argument(
        "--single-tumour",
        action="store_true",
        help="mice carry the irradiated tumour only (no abscopal tumour, no abscopal end points)",
    )
    p.add_argument("--json", help="also write the summary and the pairwise table as JSON to this file")
    p.add_argument("--csv", help="also write the summary table as CSV to this file")
    p.add_argument("--plot", help="write the figure to this file (default: compare.png in the output folder)")
    p.add_argument("--out-dir", help=OUT_DIR_HELP)
    p.add_argument(
        "--scenario",
        choices=["default", "dovedi2014"],
        default="default",
        help="dovedi2014: 5 x 2 Gy + anti-PD-L1, day 7 vs day 19",
    )
    p.add_argument("--sweep-gap", action="store_true", help="end points against the drug start relative to the first fraction")
    p.add_argument("--sweep-fractionation", action="store_true", help="end points against the number of fractions at equal BED")
    p.add_argument(
        "--agent", action="append", help="agent(s) of a sweep (repeat; gap default: anti-PD-1, anti-PD-L1, anti-CTLA-4)"
    )
    p.add_argument("--gaps", help="gap sweep: days, comma-separated or START:STOP:STEP (default -7:29:3; negative: drug first)")
    p.add_argument("--fractions", default="1,2,3,5,8,10", help="fractionation sweep: numbers of fractions (default 1,2,3,5,8,10)")
    p.add_argument("--bed", type=positive_float, help="fractionation sweep: BED in Gy (default: that of 3 x 8 Gy)")
    p.add_argument("--ab-ratio", type=positive_float, help="alpha/beta in Gy for the BED (default: the tumour line's)")
    p.add_argument(
        "--horizon",
        type=horizon,
        default=DEFAULT_HORIZON_DAYS,
        help="days simulated by the default schedules, sweeps and scenarios (default 60; schedule files carry their own)",
    )
    p.set_defaults(func=commands.cmd_compare)
    p = sub.add_parser("optimize", help="choose drug start, dose per fraction and fractions under a BED or dose cap")
    p.add_argument(
        "--objective", default="volume_abscopal", help="volume_abscopal, volume_irradiated, cure_abscopal or cure_irradiated"
    )
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--max-bed", type=positive_float, help="cap on total BED to the irradiated tumour, Gy (default 60)")
    cap.add_argument("--max-dose", type=positive_float, help="cap on total physical dose, Gy")
    p.add_argument("--ab-ratio", type=positive_float, help="alpha/beta in Gy for the BED (default: the tumour line's)")
    p.add_argument("--fractions", default="1,2,3,5", help="numbers of fractions tried (default 1,2,3,5)")
    p.add_argument("--agent", default="anti-PD-1", help="the drug given with RT (default anti-PD-1; list: abscopal agents)")
    p.add_argument("--drug-dose", type=positive_float, default=10.0, help="dose per administration (default 10)")
    p.add_argument("--unit", default="mg/kg", help="unit of --drug-dose (default mg/kg; each agent's units: abscopal agents)")
    p.add_argument("--n-doses", type=positive_int, default=3, help="number of drug administrations (default 3)")
    p.add_argument(
        "--every", type=positive_float, default=3.0, help="days between drug doses (the start value with --optimise-every)"
    )
    p.add_argument("--optimise-every", action="store_true", help="also choose the days between drug doses (1-7)")
    p.add_argument("--quantile", type=float, help="risk-averse: minimise this upper quantile of the volume (e.g. 0.9)")
    p.add_argument("--horizon", type=horizon, default=DEFAULT_HORIZON_DAYS, help="days simulated (default 60)")
    p.add_argument("--fit", default=None, help="fit name or folder (e.g. review); default: the default parameter table")
    p.add_argument("--draws", type=positive_int, default=16, help="parameter draws the objective averages over (default 16)")
    p.add_argument(
        "--compare-draws",
        type=positive_int,
        help="fresh draws for the final comparison with the standards (default: max(draws, 50))",
    )
    p.add_argument("--starts", type=positive_int, default=3, help="random starts per number of fractions (default 3)")
    p.add_argument("--steps", type=count, default=40, help="Adam steps per start (default 40)")
    p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
    p.add_argument(
        "--out", help="the optimal schedule (TOML, loadable by simulate/compare); default: optimal.toml in the output folder"
    )
    p.add_argument("--out-dir", help=OUT_DIR_HELP)
    p.add_argument("--csv", help="all candidates as CSV")
    p.set_defaults(func=commands.cmd_optimize)
    p = sub.add_parser("export", help="export parameters (json, csv, netcdf) or the model (sbml, petab)")
    p.add_argument("--fit", default=None, help="fit name or folder (default: the default parameter table)")
    p.add_argument(
        "--format",
        required=True,
        choices=["json", "csv", "netcdf", "sbml", "petab"],
        help="json/csv: parameter records; netcdf: the fit's draws; sbml/petab: the model",
    )
    p.add_argument("--out", required=True, help="output file (petab: a folder)")
    p.add_argument("--schedule", default=None, help="sbml: a schedule TOML file whose RT fractions and doses become events")
    p.add_argument("--tumour-line", default=None, help="sbml: parameter values of this line (default: the schedule's)")
    p.set_defaults(func=commands.cmd_export)
    p = sub.add_parser("fit", help="fit the model to the committed records (MAP, then NUTS); resumable")
    p.add_argument("--out", default="fits/review", help="fit folder (default fits/review); an unfinished run there resumes")
    p.add_argument("--quick", action="store_true", help="CI smoke run: 3 records, a few steps and draws (not a fit)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the fit (default 0)")
    p.add_argument("--chains", type=int, default=2, help="NUTS chains (default 2)")
    p.add_argument("--warmup", type=int, default=200, help="NUTS warm-up iterations per chain (default 200)")
    p.add_argument("--samples", type=int, default=200, help="NUTS draws kept per chain (default 200)")
    p.add_argument("--map-starts", type=int, default=4, help="random starts of the MAP search (default 4)")
    p.add_argument("--map-steps", type=int, default=300, help="Adam steps per MAP start (default 300)")
    p.add_argument("--max-tree-depth", type=int, default=6, help="NUTS maximum tree depth (default 6)")
    p.add_argument("--segment", type=int, default=50, help="NUTS iterations per chain between checkpoints")
    p.add_argument("--processes", type=int, default=1, help="NUTS chains split over this many processes (same draws)")
    p.add_argument("--lbfgs-steps", type=int, default=60, help="L-BFGS iterations after Adam, per MAP start")
    p.add_argument("--map-lr", type=float, default=0.05, help="Adam learning rate of the MAP runs (log-parameter units)")
    p.add_argument(
        "--refine-steps",
        type=int,
        default=0,
        help="further L-BFGS iterations from the best MAP start (a rerun with a larger number continues)",
    )
    p.add_argument(
        "--precondition",
        default="",
        metavar="FIT|hessian",
        help="precondition the MAP refinement by the covariance of this fit's posterior draws (a name under fits/ or a "
        "folder; coordinates matched by name), or by the inverse Hessian at the start of each 50-iteration chunk "
        "('hessian': about 2 x coordinates gradients each): L-BFGS then runs in whitened coordinates",
    )
    p.add_argument(
        "--hessian-batch",
        type=int,
        default=1,
        help="gradients per vmapped call in the Laplace Hessian (e.g. 64 on a GPU; 1 on a CPU)",
    )
    p.add_argument(
        "--importance-draws",
        type=int,
        default=0,
        help="with --laplace: this many Student-t proposal draws around the MAP, resampled by Pareto-smoothed importance "
        "weights when PSIS is reliable (k-hat < 0.7); 0 keeps plain Gaussian draws",
    )
    p.add_argument(
        "--laplace-rescale",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="with --laplace: rescale the Laplace covariance along its eigen-directions so that the exact log posterior "
        "drops as a Gaussian's would 2 SDs out (ROUNDS x 2 x dim evaluations; the Hessian's directions are kept)",
    )
    p.add_argument(
        "--laplace-split",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="with --laplace: then rescale each side of each eigen-direction on its own and draw from that split-normal "
        "(for a lopsided posterior; ROUNDS x 2 x dim evaluations)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--laplace",
        action="store_true",
        help="fallback: draws from the Laplace approximation at the MAP (finite-difference Hessian, PSIS-checked) "
        "instead of NUTS (labelled NOT CONVERGED)",
    )
    p.add_argument(
        "--map",
        action="store_true",
        help="stop at the MAP: the fit stores the posterior mode as its one draw (no parameter uncertainty)",
    )
    p.set_defaults(func=commands.cmd_fit)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.persistent_cache = argv is None  # a real command line: keep compiled programs between calls
    try:
        return args.func(args)
    except ValueError as e:  # ScheduleError, FitError, ExportError, OptimizeError are ValueErrors
        print(f"abscopal: error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        sim = sys.modules.get("abscopal.simulation.simulate")
        if sim is None or not isinstance(e, sim.SimulationError):
            raise
        print(f"abscopal: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
