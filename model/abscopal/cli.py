"""The ``abscopal`` command line: equations, agents, lines, simulate, compare."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__


def _cmd_equations(args) -> int:
    from .equations import STATE_DOC, build_model, equations_text

    print(equations_text(latex=args.latex))
    if not args.latex:
        print("\nStates:")
        for name in build_model().state_names:
            base = name.split("_")[0]
            desc, unit = STATE_DOC.get(
                base, ("drug amount in depot (ug)" if base == "A" else "drug concentration", "ug/mL" if base == "C" else "ug")
            )
            print(f"  {name:10s} {desc} [{unit}]")
    return 0


def _cmd_agents(args) -> int:
    from .agents import catalogue

    rows = [(a.name, a.agent_class, a.review_section, "/".join(a.units), ", ".join(a.mechanisms), a.route) for a in catalogue()]
    header = ("agent", "class", "review", "units", "acts on", "route")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    return 0


def _cmd_lines(args) -> int:
    from .parameters import tumour_line_table, tumour_lines

    for line in tumour_lines():
        print(line)
        for name, (value, source) in tumour_line_table(line).items():
            print(f"  {name} = {value:g}   ({source})")
    return 0


def _cmd_simulate(args) -> int:
    from .io import atomic_write_text
    from .parameters import default_params
    from .schedules import load_schedule
    from .simulate import SolverOptions, simulate

    schedule = load_schedule(args.schedule)
    out = Path(args.out)
    if args.fit is not None:
        return _simulate_fit(args, schedule, out)
    params = default_params(schedule.tumour_line)
    traj = simulate(schedule, params, SolverOptions(n_out=args.points))
    df = traj.to_frame()
    if out.suffix == ".json":
        text = json.dumps(
            {
                "schedule": schedule.name,
                "tumour_line": schedule.tumour_line,
                "parameters": "defaults (no fit loaded)",
                "rows": df.to_dict(orient="records"),
            },
            indent=1,
        )
    elif out.suffix == ".csv":
        text = df.to_csv(index=False)
    else:
        raise ValueError(f"--out: file extension must be .csv or .json, got {out.suffix!r}")
    atomic_write_text(out, text)
    print(f"wrote {len(df)} rows to {out} (parameters: {schedule.tumour_line} defaults; no fit loaded)")
    return 0


def _simulate_fit(args, schedule, out) -> int:
    """``simulate --fit``: quantiles over posterior draws instead of one trajectory."""
    from dataclasses import replace

    from .compare import FIT_OPTIONS, trajectory_quantiles
    from .fitresult import load_fit
    from .io import NONFINITE_NOTE, atomic_write_text, strict_json

    if out.suffix not in (".csv", ".json"):
        raise ValueError(f"--out: file extension must be .csv or .json, got {out.suffix!r}")
    fit = load_fit(args.fit)
    draws = fit.draws(args.draws, seed=args.seed, tumour_line=schedule.tumour_line)
    df = trajectory_quantiles(schedule, draws, replace(FIT_OPTIONS, n_out=args.points))
    if out.suffix == ".json":
        meta = {"schedule": schedule.name, "tumour_line": schedule.tumour_line, "parameters": fit.describe()}
        meta["n_dropped"] = int(df.attrs.get("n_dropped", 0))
        atomic_write_text(out, strict_json({**meta, "note": NONFINITE_NOTE, "rows": df.to_dict(orient="records")}, indent=1))
    else:
        atomic_write_text(out, df.to_csv(index=False))
    dropped = df.attrs.get("n_dropped", 0)
    note = f" ({dropped} draws left out: their solve hit the step limit)" if dropped else ""
    print(
        f"wrote {len(df)} rows (5/50/95 % quantiles over {args.draws - dropped} draws{note}) to {out}; parameters: {fit.describe()}"
    )
    return 0


def _parse_gaps(text: str | None):
    """``--gaps``: 'a,b,c' or 'START:STOP:STEP' (days; default -7 to 26 every 3)."""
    import numpy as np

    if text is None:
        return tuple(range(-7, 29, 3))
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0:
                raise ValueError
            return tuple(np.arange(start, stop, step))
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ValueError(f"--gaps: days as 'a,b,c' or 'START:STOP:STEP' with STEP > 0, got {text!r}") from None


def _cmd_sweep(args, fit) -> int:
    """``abscopal compare --sweep-gap / --sweep-fractionation / --scenario dovedi2014``."""
    from .io import NONFINITE_NOTE, atomic_write_text, strict_json
    from .sweeps import GAP_AGENTS, RT_ALONE, format_sweep, plot_sweep, sweep_fractionation, sweep_gap

    if args.schedules:
        raise ValueError("schedules: a sweep or --scenario builds its own schedules; give no schedule files with it")
    common = dict(
        n_draws=args.draws, seed=args.seed, fit=fit, threshold_mm3=args.endpoint_mm3, horizon_days=args.horizon, progress=True
    )
    if args.scenario == "dovedi2014":
        from .compare import dovedi2014, format_dovedi, plot

        r = dovedi2014(args.draws, args.seed, fit=fit, horizon_days=args.horizon, progress=True)
        print(format_dovedi(r))
        if args.json:
            data = {
                "source": r.comparison.source,
                "p_concurrent_better": r.p_concurrent_better,
                "p_tie": r.p_tie,
                "p_sequential_better": r.p_sequential_better,
                "n_draws": r.comparison.n_draws,
                "n_dropped": r.comparison.n_dropped,
                "survival": r.survival.to_dict(orient="records"),
                "summary": r.comparison.summary.to_dict(orient="records"),
            }
            atomic_write_text(args.json, strict_json({**data, "note": NONFINITE_NOTE}, indent=1))
        if args.csv:
            atomic_write_text(args.csv, r.comparison.summary.to_csv(index=False))
        path = args.plot or "abscopal_dovedi2014.png"
        plot(r.comparison, path)
        print(f"\nfigure: {path}")
        return 0
    if args.sweep_gap and args.sweep_fractionation:
        raise ValueError("--sweep-gap / --sweep-fractionation: give one sweep at a time")
    if args.sweep_gap:
        df = sweep_gap(agents=args.agent or GAP_AGENTS, gaps=_parse_gaps(args.gaps), **common)
        default_plot = "abscopal_sweep_gap.png"
    else:
        try:
            fractions = [int(x) for x in args.fractions.split(",")]
        except ValueError:
            raise ValueError(f"--fractions: comma-separated positive integers, got {args.fractions!r}") from None
        agents = args.agent or (RT_ALONE, "anti-PD-1")
        df = sweep_fractionation(fractions, bed_gy=args.bed, ab_ratio=args.ab_ratio, agents=agents, **common)
        default_plot = "abscopal_sweep_fractionation.png"
    print(format_sweep(df))
    if args.csv:
        atomic_write_text(args.csv, df.to_csv(index=False))
    if args.json:
        atomic_write_text(
            args.json, strict_json({**df.attrs, "note": NONFINITE_NOTE, "rows": df.to_dict(orient="records")}, indent=1)
        )
    path = args.plot or default_plot
    plot_sweep(df, path)
    print(f"\nfigure: {path}")
    return 0


def _cmd_compare(args) -> int:
    from .compare import compare, default_scenario, format_table, plot
    from .io import NONFINITE_NOTE, atomic_write_text, strict_json
    from .schedules import load_schedule

    fit = None
    if args.fit is not None:
        from .fitresult import load_fit

        fit = load_fit(args.fit)
    if args.sweep_gap or args.sweep_fractionation or args.scenario == "dovedi2014":
        return _cmd_sweep(args, fit)
    schedules = [load_schedule(p) for p in args.schedules] if args.schedules else default_scenario()
    c = compare(
        schedules,
        n_draws=args.draws,
        seed=args.seed,
        fit=fit,
        threshold_mm3=args.endpoint_mm3,
        progress=True,
        single_tumour=args.single_tumour,
    )
    print(format_table(c))
    if args.json:
        atomic_write_text(
            args.json,
            strict_json(
                {
                    "source": c.source,
                    "n_draws": c.n_draws,
                    "n_dropped": c.n_dropped,
                    "note": NONFINITE_NOTE,
                    "summary": c.summary.to_dict(orient="records"),
                    "pairwise": c.pairwise.to_dict(orient="records"),
                    "bed_gy": c.bed,
                },
                indent=1,
            ),
        )
    if args.csv:
        atomic_write_text(args.csv, c.summary.to_csv(index=False))
    plot_path = args.plot or ("abscopal_compare.png" if not args.schedules else None)
    if plot_path:
        plot(c, plot_path)
        print(f"\nfigure: {plot_path}")
    return 0


def _cmd_export(args) -> int:
    from .export import export

    fit = None
    if args.fit is not None:
        from .fitresult import load_fit

        fit = load_fit(args.fit)
    schedule = None
    if args.schedule is not None:
        from .schedules import load_schedule

        schedule = load_schedule(args.schedule)
    out = export(args.format, args.out, fit=fit, schedule=schedule, tumour_line=args.tumour_line)
    what = f"fit {fit.name}" if fit is not None else "the default parameter table (no --fit: no intervals)"
    print(f"wrote {args.format} export of {what} to {out}")
    return 0


def _cmd_optimize(args) -> int:
    from .io import atomic_write_text
    from .optimize import format_result, optimize

    fit = None
    if args.fit is not None:
        from .fitresult import load_fit

        fit = load_fit(args.fit)
    try:
        fractions = [int(x) for x in args.fractions.split(",")]
    except ValueError:
        raise ValueError(f"--fractions: comma-separated positive integers, got {args.fractions!r}") from None
    r = optimize(
        args.objective,
        max_bed_gy=None if args.max_dose is not None else (args.max_bed if args.max_bed is not None else 60.0),
        max_dose_gy=args.max_dose,
        ab_ratio=args.ab_ratio,
        fractions=fractions,
        agent=args.agent,
        dose=args.drug_dose,
        unit=args.unit,
        n_doses=args.n_doses,
        every=args.every,
        optimise_every=args.optimise_every,
        quantile=args.quantile,
        horizon_days=args.horizon,
        n_draws=args.draws,
        seed=args.seed,
        fit=fit,
        n_starts=args.starts,
        steps=args.steps,
        progress=True,
    )
    print(format_result(r))
    atomic_write_text(args.out, r.toml())
    print(f"\noptimal schedule: {args.out}")
    if args.csv:
        atomic_write_text(args.csv, r.candidates.to_csv(index=False))
    return 0


def _cmd_fit(args) -> int:
    from .fitting import run_fit
    from .inference import FitSettings

    if args.quick:
        from dataclasses import replace

        settings = replace(
            FitSettings.quick_settings(seed=args.seed),
            refine_steps=args.refine_steps,
            hessian_batch=args.hessian_batch,
            processes=args.processes,
            importance_draws=args.importance_draws,
            laplace_rescale=args.laplace_rescale,
            laplace_split=args.laplace_split,
            precondition=args.precondition,
        )
    else:
        settings = FitSettings(
            seed=args.seed,
            chains=args.chains,
            warmup=args.warmup,
            samples=args.samples,
            map_starts=args.map_starts,
            map_steps=args.map_steps,
            max_tree_depth=args.max_tree_depth,
            segment=args.segment,
            map_lr=args.map_lr,
            lbfgs_steps=args.lbfgs_steps,
            refine_steps=args.refine_steps,
            hessian_batch=args.hessian_batch,
            processes=args.processes,
            importance_draws=args.importance_draws,
            laplace_rescale=args.laplace_rescale,
            laplace_split=args.laplace_split,
            precondition=args.precondition,
        )
    for field in ("chains", "warmup", "samples", "map_starts", "map_steps", "max_tree_depth", "segment", "processes"):
        if getattr(settings, field) < 1:
            raise ValueError(f"--{field.replace('_', '-')}: must be a positive integer, got {getattr(settings, field)}")
    if settings.importance_draws < 0:
        raise ValueError(f"--importance-draws: must be 0 or a positive integer, got {settings.importance_draws}")
    if settings.laplace_rescale < 0:
        raise ValueError(f"--laplace-rescale: must be 0 or a positive integer, got {settings.laplace_rescale}")
    if settings.laplace_split < 0:
        raise ValueError(f"--laplace-split: must be 0 or a positive integer, got {settings.laplace_split}")
    if settings.hessian_batch < 1:
        raise ValueError(f"--hessian-batch: must be a positive integer, got {settings.hessian_batch}")
    if settings.refine_steps < 0:
        raise ValueError(f"--refine-steps: must be 0 or a positive integer, got {settings.refine_steps}")
    if settings.precondition:
        from .fitresult import FitError, resolve_fit_path

        try:
            resolve_fit_path(settings.precondition.removesuffix("@map"))  # the suffix load_fit reads
        except FitError as e:
            raise ValueError(f"--precondition: {e}") from None
    if args.laplace and args.map:
        raise ValueError("--laplace and --map: choose one")
    method = "laplace" if args.laplace else "map" if args.map else "nuts"
    run_fit(args.out, settings, progress=not args.no_progress, method=method)
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="abscopal", description="Radiotherapy + immunotherapy in two tumours (irradiated and abscopal)."
    )
    ap.add_argument("--version", action="version", version=__version__)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("equations", help="print the model's equations (from sympy)")
    p.add_argument("--latex", action="store_true")
    p.set_defaults(func=_cmd_equations)
    p = sub.add_parser("agents", help="list the agent catalogue")
    p.set_defaults(func=_cmd_agents)
    p = sub.add_parser("lines", help="list the tumour-line parameter sets with sources")
    p.set_defaults(func=_cmd_lines)
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
    p.set_defaults(func=_cmd_simulate)
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
    p.set_defaults(func=_cmd_compare)
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
    p.add_argument("--draws", type=int, default=16)
    p.add_argument("--starts", type=int, default=3)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="abscopal_optimal.toml", help="the optimal schedule (TOML, loadable by simulate/compare)")
    p.add_argument("--csv", help="all candidates as CSV")
    p.set_defaults(func=_cmd_optimize)
    p = sub.add_parser("export", help="export parameters (json, csv, netcdf) or the model (sbml, petab)")
    p.add_argument("--fit", default=None, help="fit name or folder (default: the default parameter table)")
    p.add_argument("--format", required=True, choices=["json", "csv", "netcdf", "sbml", "petab"])
    p.add_argument("--out", required=True, help="output file (petab: a folder)")
    p.add_argument("--schedule", default=None, help="sbml: a schedule TOML file whose RT fractions and doses become events")
    p.add_argument("--tumour-line", default=None, help="sbml: parameter values of this line (default: the schedule's)")
    p.set_defaults(func=_cmd_export)
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
    p.set_defaults(func=_cmd_fit)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .simulate import SimulationError, enable_x64

    enable_x64()
    try:
        return args.func(args)
    except (ValueError, SimulationError) as e:  # ScheduleError is a ValueError
        print(f"abscopal: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
