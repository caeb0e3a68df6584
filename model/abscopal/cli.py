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
    params = default_params(schedule.tumour_line)
    traj = simulate(schedule, params, SolverOptions(n_out=args.points))
    df = traj.to_frame()
    out = Path(args.out)
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


def _cmd_compare(args) -> int:
    from .compare import compare, default_scenario, format_table, plot
    from .io import atomic_write_text
    from .schedules import load_schedule

    schedules = [load_schedule(p) for p in args.schedules] if args.schedules else default_scenario()
    if args.fit is not None:
        raise ValueError(
            f"--fit {args.fit!r}: no fit is shipped yet (the fit issue adds them); run without --fit to use the defaults"
        )
    c = compare(schedules, n_draws=args.draws, seed=args.seed, threshold_mm3=args.endpoint_mm3, progress=True)
    print(format_table(c))
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps(
                {
                    "source": c.source,
                    "summary": c.summary.to_dict(orient="records"),
                    "pairwise": c.pairwise.to_dict(orient="records"),
                    "bed_gy": c.bed,
                },
                indent=1,
                default=str,
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
    p.set_defaults(func=_cmd_simulate)
    p = sub.add_parser("compare", help="compare schedules over a virtual population (default: concurrent vs sequential)")
    p.add_argument("schedules", nargs="*")
    p.add_argument("--fit", default=None)
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--endpoint-mm3", type=float, default=1000.0, help="volume end point for the survival proxy")
    p.add_argument("--json")
    p.add_argument("--csv")
    p.add_argument("--plot")
    p.set_defaults(func=_cmd_compare)
    p = sub.add_parser("export", help="export parameters (json, csv, netcdf) or the model (sbml, petab)")
    p.add_argument("--fit", default=None, help="fit name or folder (default: the default parameter table)")
    p.add_argument("--format", required=True, choices=["json", "csv", "netcdf", "sbml", "petab"])
    p.add_argument("--out", required=True, help="output file (petab: a folder)")
    p.add_argument("--schedule", default=None, help="sbml: a schedule TOML file whose RT fractions and doses become events")
    p.add_argument("--tumour-line", default=None, help="sbml: parameter values of this line (default: the schedule's)")
    p.set_defaults(func=_cmd_export)
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
