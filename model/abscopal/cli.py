"""The ``abscopal`` command line: equations, agents, lines, simulate, compare."""

from __future__ import annotations

import argparse
import sys

from . import __version__, commands


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="abscopal", description="Radiotherapy + immunotherapy in two tumours (irradiated and abscopal)."
    )
    ap.add_argument("--version", action="version", version=__version__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("equations", help="print the model's equations (from sympy)")
    p.add_argument("--latex", action="store_true")
    p.set_defaults(func=commands.cmd_equations)
    p = sub.add_parser("agents", help="list the agent catalogue")
    p.set_defaults(func=commands.cmd_agents)
    p = sub.add_parser("lines", help="list the tumour-line parameter sets with sources")
    p.set_defaults(func=commands.cmd_lines)
    p = sub.add_parser("simulate", help="simulate a schedule TOML file")
    p.add_argument("schedule")
    p.add_argument("--out", required=True, help="output file (.csv or .json)")
    p.add_argument("--points", type=int, default=121, help="number of output days (default 121)")
    p.add_argument(
        "--fit",
        default=None,
        help="fit name or folder: write 5/50/95 %% quantiles over posterior draws (<name>@map: at its MAP point)",
    )
    p.add_argument("--draws", type=int, default=100, help="posterior draws with --fit (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=commands.cmd_simulate)
    p = sub.add_parser("compare", help="compare schedules over a virtual population (default: concurrent vs sequential)")
    p.add_argument("schedules", nargs="*")
    p.add_argument(
        "--fit", default=None, help="fit name or folder (e.g. review); <name>@map for its MAP point (between-mouse spread only)"
    )
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--endpoint-mm3", type=float, default=1000.0, help="volume end point for the survival proxy")
    p.add_argument(
        "--single-tumour",
        action="store_true",
        help="mice carry the irradiated tumour only (no abscopal tumour, no abscopal end points)",
    )
    p.add_argument("--json")
    p.add_argument("--csv")
    p.add_argument("--plot")
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
    p.add_argument("--gaps", help="gap sweep: days, comma-separated or START:STOP:STEP (default -7:29:3)")
    p.add_argument("--fractions", default="1,2,3,5,8,10", help="fractionation sweep: numbers of fractions (default 1,2,3,5,8,10)")
    p.add_argument("--bed", type=float, help="fractionation sweep: BED in Gy (default: that of 3 x 8 Gy)")
    p.add_argument("--ab-ratio", type=float, help="alpha/beta in Gy for the BED (default: the tumour line's)")
    p.add_argument("--horizon", type=float, default=60.0, help="sweeps and scenarios: days simulated (default 60)")
    p.set_defaults(func=commands.cmd_compare)
    p = sub.add_parser("optimize", help="choose drug start, dose per fraction and fractions under a BED or dose cap")
    p.add_argument(
        "--objective", default="volume_abscopal", help="volume_abscopal, volume_irradiated, cure_abscopal or cure_irradiated"
    )
    cap = p.add_mutually_exclusive_group()
    cap.add_argument("--max-bed", type=float, help="cap on total BED to the irradiated tumour, Gy (default 60)")
    cap.add_argument("--max-dose", type=float, help="cap on total physical dose, Gy")
    p.add_argument("--ab-ratio", type=float, help="alpha/beta in Gy for the BED (default: the tumour line's)")
    p.add_argument("--fractions", default="1,2,3,5", help="numbers of fractions tried (default 1,2,3,5)")
    p.add_argument("--agent", default="anti-PD-1")
    p.add_argument("--drug-dose", type=float, default=10.0, help="dose per administration (default 10)")
    p.add_argument("--unit", default="mg/kg")
    p.add_argument("--n-doses", type=int, default=3)
    p.add_argument("--every", type=float, default=3.0, help="days between drug doses (the start value with --optimise-every)")
    p.add_argument("--optimise-every", action="store_true", help="also choose the days between drug doses (1-7)")
    p.add_argument("--quantile", type=float, help="risk-averse: minimise this upper quantile of the volume (e.g. 0.9)")
    p.add_argument("--horizon", type=float, default=40.0)
    p.add_argument("--fit", default=None)
    p.add_argument("--draws", type=int, default=16, help="parameter draws the objective averages over (default 16)")
    p.add_argument(
        "--compare-draws", type=int, help="fresh draws for the final comparison with the standards (default: max(draws, 50))"
    )
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="abscopal_optimal.toml", help="the optimal schedule (TOML, loadable by simulate/compare)")
    p.add_argument("--csv", help="all candidates as CSV")
    p.set_defaults(func=commands.cmd_optimize)
    p = sub.add_parser("export", help="export parameters (json, csv, netcdf) or the model (sbml, petab)")
    p.add_argument("--fit", default=None, help="fit name or folder (default: the default parameter table)")
    p.add_argument("--format", required=True, choices=["json", "csv", "netcdf", "sbml", "petab"])
    p.add_argument("--out", required=True, help="output file (petab: a folder)")
    p.add_argument("--schedule", default=None, help="sbml: a schedule TOML file whose RT fractions and doses become events")
    p.add_argument("--tumour-line", default=None, help="sbml: parameter values of this line (default: the schedule's)")
    p.set_defaults(func=commands.cmd_export)
    p = sub.add_parser("fit", help="fit the model to the committed records (MAP, then NUTS); resumable")
    p.add_argument("--out", default="fits/review", help="fit folder (default fits/review); an unfinished run there resumes")
    p.add_argument("--quick", action="store_true", help="CI smoke run: 3 records, a few steps and draws (not a fit)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--map-starts", type=int, default=4)
    p.add_argument("--map-steps", type=int, default=300)
    p.add_argument("--max-tree-depth", type=int, default=6)
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
        metavar="FIT",
        help="precondition the MAP refinement by the covariance of this fit's posterior draws (a name under fits/ or a "
        "folder; coordinates matched by name): L-BFGS then runs in whitened coordinates",
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
    p.add_argument("--no-progress", action="store_true")
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
    from .simulation.simulate import SimulationError, enable_x64

    enable_x64()
    try:
        return args.func(args)
    except (ValueError, SimulationError) as e:  # ScheduleError is a ValueError
        print(f"abscopal: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
