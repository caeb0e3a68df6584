"""The handlers of the ``abscopal`` subcommands (``cli`` parses the arguments and calls one): each
takes the parsed arguments and returns the exit status."""

from __future__ import annotations

import json
from pathlib import Path


def cmd_equations(args) -> int:
    from .model.equations import STATE_DOC, build_model, equations_text

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


def cmd_agents(args) -> int:
    from .model.agents import catalogue

    rows = [(a.name, a.agent_class, a.review_section, "/".join(a.units), ", ".join(a.mechanisms), a.route) for a in catalogue()]
    header = ("agent", "class", "review", "units", "acts on", "route")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    return 0


def cmd_lines(args) -> int:
    from .model.parameters import tumour_line_table, tumour_lines

    for line in tumour_lines():
        print(line)
        for name, (value, source) in tumour_line_table(line).items():
            print(f"  {name} = {value:g}   ({source})")
    return 0


def cmd_simulate(args) -> int:
    from .io import atomic_write_text
    from .model.parameters import default_params
    from .schedules import load_schedule
    from .simulation.simulate import SolverOptions, simulate

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

    from .decide.compare import FIT_OPTIONS, trajectory_quantiles
    from .inference.fitresult import load_fit
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


def cmd_sweep(args, fit) -> int:
    """``abscopal compare --sweep-gap / --sweep-fractionation / --scenario dovedi2014``."""
    from .decide.sweeps import GAP_AGENTS, RT_ALONE, format_sweep, plot_sweep, sweep_fractionation, sweep_gap
    from .io import NONFINITE_NOTE, atomic_write_text, strict_json

    if args.schedules:
        raise ValueError("schedules: a sweep or --scenario builds its own schedules; give no schedule files with it")
    common = dict(
        n_draws=args.draws, seed=args.seed, fit=fit, threshold_mm3=args.endpoint_mm3, horizon_days=args.horizon, progress=True
    )
    if args.scenario == "dovedi2014":
        from .decide.compare import dovedi2014, format_dovedi, plot

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


def _optional_fit(args):
    """The fit named by ``--fit``, or None without one."""
    if args.fit is None:
        return None
    from .inference.fitresult import load_fit

    return load_fit(args.fit)


def cmd_compare(args) -> int:
    from .decide.compare import compare, default_scenario, format_table, plot
    from .io import NONFINITE_NOTE, atomic_write_text, strict_json
    from .schedules import load_schedule

    fit = _optional_fit(args)
    if args.sweep_gap or args.sweep_fractionation or args.scenario == "dovedi2014":
        return cmd_sweep(args, fit)
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


def cmd_export(args) -> int:
    from .export.formats import export

    fit = _optional_fit(args)
    schedule = None
    if args.schedule is not None:
        from .schedules import load_schedule

        schedule = load_schedule(args.schedule)
    out = export(args.format, args.out, fit=fit, schedule=schedule, tumour_line=args.tumour_line)
    what = f"fit {fit.name}" if fit is not None else "the default parameter table (no --fit: no intervals)"
    print(f"wrote {args.format} export of {what} to {out}")
    return 0


def cmd_optimize(args) -> int:
    from .decide.optimize import format_result, optimize
    from .io import atomic_write_text

    fit = _optional_fit(args)
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
        compare_draws=args.compare_draws,
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


def cmd_fit(args) -> int:
    from .decide.scenarios import credibility_checks, format_checks
    from .inference.fitting import run_fit
    from .inference.settings import FitSettings

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
        from .inference.fitresult import FitError, resolve_fit_path

        try:
            resolve_fit_path(settings.precondition.removesuffix("@map"))  # the suffix load_fit reads
        except FitError as e:
            raise ValueError(f"--precondition: {e}") from None
    if args.laplace and args.map:
        raise ValueError("--laplace and --map: choose one")
    method = "laplace" if args.laplace else "map" if args.map else "nuts"
    run_fit(args.out, settings, progress=not args.no_progress, method=method, checks=(credibility_checks, format_checks))
    return 0
