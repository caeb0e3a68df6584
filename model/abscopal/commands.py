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


# ----------------------------------------------------------------------------- shared helpers
def _numerics(args=None) -> None:
    """Import the solver and switch JAX to 64-bit floats: called once the inputs are valid. On a
    real command line (``args.persistent_cache``, set by ``cli.main`` when it parses ``sys.argv``)
    compiled programs are also kept on disk between calls (``_persistent_cache``)."""
    from .simulation.simulate import enable_x64

    enable_x64()
    if getattr(args, "persistent_cache", False):
        _persistent_cache()


def _persistent_cache() -> None:
    """JAX's persistent compilation cache in ``$ABSCOPAL_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/abscopal/jax`` (``~/.cache/abscopal/jax``): a second call of the same command
    skips most of its compilation (the main job: 10 s -> about 6 s; benchmarks/results_cli_startup.md).
    ``ABSCOPAL_CACHE_DIR=off`` turns it off; a folder that cannot be made leaves it off."""
    import os

    import jax

    where = os.environ.get("ABSCOPAL_CACHE_DIR")
    if where == "off":
        return
    if not where:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        where = os.path.join(base, "abscopal", "jax")
    try:
        os.makedirs(where, exist_ok=True)
    except OSError:
        return
    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _check_fit_name(name: str | None, option: str = "--fit") -> None:
    """Refuse a fit that does not exist before anything heavy is imported (the full check, of
    the files inside, is ``load_fit``'s)."""
    if name is None:
        return
    import os

    from .io import shipped_fits

    base = name.removesuffix("@map")
    root = Path(os.environ["ABSCOPAL_FITS"]) if os.environ.get("ABSCOPAL_FITS") else shipped_fits()
    if not (Path(base).is_dir() or (root / base).is_dir()):
        raise ValueError(
            f"{option}: fit {name!r}: no such folder (looked at {Path(base)} and {root / base}); "
            "give a fit folder or a name under fits/ (shipped: 'review')"
        )


def _optional_fit(args):
    """The fit named by ``--fit``, or None without one."""
    if args.fit is None:
        return None
    from .inference.fitresult import load_fit

    return load_fit(args.fit)


def _out_dir(args, command: str) -> Path:
    """Where default outputs go: ``--out-dir``, else a new folder ``abscopal-output/<command>-<time>``
    (never a tracked file of the repository; ``abscopal-output/`` is git-ignored)."""
    if getattr(args, "out_dir", None):
        return Path(args.out_dir)
    if getattr(args, "_out_dir", None) is None:
        import time

        stem = Path("abscopal-output") / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}"
        path, k = stem, 1
        while path.exists():
            k += 1
            path = stem.with_name(f"{stem.name}-{k}")
        args._out_dir = path
    return args._out_dir


def _check_agents(agents) -> None:
    if not agents:
        return
    from .model.agents import agent_names

    allowed = ("RT alone", *agent_names())
    for a in agents:
        if a not in allowed:
            raise ValueError(f"--agent: unknown agent {a!r}; allowed {list(allowed)}")


def _parse_fractions(text: str) -> list[int]:
    try:
        fractions = [int(x) for x in text.split(",")]
    except ValueError:
        raise ValueError(f"--fractions: comma-separated positive integers, got {text!r}") from None
    if any(n < 1 for n in fractions):
        raise ValueError(f"--fractions: comma-separated positive integers, got {text!r}")
    return fractions


# ----------------------------------------------------------------------------- simulate
def cmd_simulate(args) -> int:
    from .io import atomic_write_text
    from .schedules import load_schedule

    schedule = load_schedule(args.schedule)
    out = Path(args.out)
    if out.suffix not in (".csv", ".json"):
        raise ValueError(f"--out: file extension must be .csv or .json, got {out.suffix!r}")
    _check_fit_name(args.fit)
    _numerics(args)
    if args.fit is not None:
        return _simulate_fit(args, schedule, out)
    from .model.parameters import default_params
    from .simulation.simulate import SolverOptions, simulate

    params = default_params(schedule.tumour_line)
    traj = simulate(schedule, params, SolverOptions(n_out=args.points))
    df = traj.to_frame()
    if out.suffix == ".json":
        text = json.dumps(
            {
                "schedule": schedule.name,
                "tumour_line": schedule.tumour_line,
                "horizon_days": schedule.horizon_days,
                "parameters": f"{schedule.tumour_line} defaults (no fit loaded: no --fit given): one typical mouse",
                "rows": df.to_dict(orient="records"),
            },
            indent=1,
        )
    else:
        text = df.to_csv(index=False)
    atomic_write_text(out, text)
    print(
        f"wrote {len(df)} rows to {out} (parameters: {schedule.tumour_line} defaults, no fit loaded: one typical mouse; "
        f"--fit review gives quantiles over the shipped fit's mice; horizon day {schedule.horizon_days:g})"
    )
    return 0


def _simulate_fit(args, schedule, out) -> int:
    """``simulate --fit``: quantiles over posterior draws instead of one trajectory."""
    from dataclasses import replace

    from .decide.compare import FIT_OPTIONS, trajectory_quantiles
    from .decide.display import describe_fit
    from .inference.fitresult import load_fit
    from .io import NONFINITE_NOTE, atomic_write_text, strict_json

    fit = load_fit(args.fit)
    draws = fit.draws(args.draws, seed=args.seed, tumour_line=schedule.tumour_line)
    df = trajectory_quantiles(schedule, draws, replace(FIT_OPTIONS, n_out=args.points))
    if out.suffix == ".json":
        meta = {"schedule": schedule.name, "tumour_line": schedule.tumour_line, "parameters": describe_fit(fit)}
        meta["horizon_days"] = schedule.horizon_days
        meta["n_dropped"] = int(df.attrs.get("n_dropped", 0))
        atomic_write_text(out, strict_json({**meta, "note": NONFINITE_NOTE, "rows": df.to_dict(orient="records")}, indent=1))
    else:
        atomic_write_text(out, df.to_csv(index=False))
    dropped = df.attrs.get("n_dropped", 0)
    note = f" ({dropped} draws left out: their solve hit the step limit)" if dropped else ""
    print(
        f"wrote {len(df)} rows (5/50/95 % quantiles over {args.draws - dropped} draws{note}) to {out}; "
        f"parameters: {describe_fit(fit)}"
    )
    return 0


# ----------------------------------------------------------------------------- compare, sweeps, scenarios
def _parse_gaps(text: str | None):
    """``--gaps``: 'a,b,c' or 'START:STOP:STEP' (days; default -7 to 26 every 3)."""
    import math

    if text is None:
        return tuple(range(-7, 29, 3))
    try:
        if ":" in text:
            start, stop, step = (float(x) for x in text.split(":"))
            if step <= 0 or not all(math.isfinite(v) for v in (start, stop, step)):
                raise ValueError
            n = max(0, math.ceil((stop - start) / step))
            gaps = tuple(start + k * step for k in range(n))
        else:
            gaps = tuple(float(x) for x in text.split(","))
        if not gaps or not all(math.isfinite(g) for g in gaps):
            raise ValueError
        return gaps
    except ValueError:
        raise ValueError(f"--gaps: days as 'a,b,c' or 'START:STOP:STEP' with STEP > 0, got {text!r}") from None


def _figure(args, command: str, default_name: str) -> Path:
    return Path(args.plot) if args.plot else _out_dir(args, command) / default_name


def _comparison_json(c) -> dict:
    from .decide.display import describe_schedule

    return {
        "source": c.source,
        "intervals": "between-mouse spread only, no parameter uncertainty"
        if c.spread_only
        else "parameter uncertainty and between-mouse spread",
        "horizon_days": c.horizon_days,
        "endpoint_mm3": c.threshold_mm3,
        "n_draws": c.n_draws,
        "n_dropped": c.n_dropped,
        "schedules": [
            {"name": s.name, "description": describe_schedule(s), "bed_gy": c.bed[s.name], "schedule_toml": s.to_toml()}
            for s in c.schedules
        ],
        "summary": c.summary.to_dict(orient="records"),
        "pairwise_rule": (
            "per paired mouse (the same parameter draw under both schedules): A better, B better or tie; "
            "p_* are the fractions of pairs, p_*_lo/p_*_hi their 90 % Monte Carlo (Jeffreys) intervals; "
            + c.pairwise.attrs.get("tie_rule", "")
        ),
        "pairwise": c.pairwise.to_dict(orient="records"),
        "bed_gy": c.bed,
    }


def cmd_sweep(args, fit) -> int:
    """``abscopal compare --sweep-gap / --sweep-fractionation / --scenario dovedi2014``."""
    from .decide.sweeps import GAP_AGENTS, RT_ALONE, format_sweep, plot_sweep, sweep_fractionation, sweep_gap
    from .io import NONFINITE_NOTE, atomic_write_text, strict_json

    common = dict(
        n_draws=args.draws, seed=args.seed, fit=fit, threshold_mm3=args.endpoint_mm3, horizon_days=args.horizon, progress=True
    )
    if args.scenario == "dovedi2014":
        from .decide.compare import dovedi2014, format_dovedi, plot

        r = dovedi2014(args.draws, args.seed, fit=fit, horizon_days=args.horizon, progress=True)
        print(format_dovedi(r))
        if args.json:
            data = {
                **_comparison_json(r.comparison),
                "record": "R29",
                "reproduction": r.reproduction,
                "p_concurrent_better": r.p_concurrent_better,
                "p_tie": r.p_tie,
                "p_sequential_better": r.p_sequential_better,
                "survival": r.survival.to_dict(orient="records"),
            }
            atomic_write_text(args.json, strict_json({**data, "note": NONFINITE_NOTE}, indent=1))
        if args.csv:
            atomic_write_text(args.csv, r.comparison.summary.to_csv(index=False))
        path = _figure(args, "dovedi2014", "dovedi2014.png")
        plot(r.comparison, path)
        print(f"\nfigure: {path}")
        return 0
    if args.sweep_gap:
        df = sweep_gap(agents=args.agent or GAP_AGENTS, gaps=_parse_gaps(args.gaps), **common)
        name = "sweep_gap"
    else:
        agents = args.agent or (RT_ALONE, "anti-PD-1")
        df = sweep_fractionation(
            _parse_fractions(args.fractions), bed_gy=args.bed, ab_ratio=args.ab_ratio, agents=agents, **common
        )
        name = "sweep_fractionation"
    print(format_sweep(df))
    if args.csv:
        atomic_write_text(args.csv, df.to_csv(index=False))
    if args.json:
        atomic_write_text(
            args.json, strict_json({**df.attrs, "note": NONFINITE_NOTE, "rows": df.to_dict(orient="records")}, indent=1)
        )
    path = _figure(args, name, f"{name}.png")
    plot_sweep(df, path)
    print(f"\nfigure: {path}")
    return 0


def cmd_compare(args) -> int:
    # every input is checked before JAX is imported
    sweep = args.sweep_gap or args.sweep_fractionation or args.scenario == "dovedi2014"
    if sweep and args.schedules:
        raise ValueError("schedules: a sweep or --scenario builds its own schedules; give no schedule files with it")
    if args.sweep_gap and args.sweep_fractionation:
        raise ValueError("--sweep-gap / --sweep-fractionation: give one sweep at a time")
    if args.sweep_gap:
        _parse_gaps(args.gaps)
    if args.sweep_fractionation:
        _parse_fractions(args.fractions)
    _check_agents(args.agent)
    schedules = []
    if args.schedules:
        from .schedules import load_schedule

        schedules = [load_schedule(p) for p in args.schedules]
    _check_fit_name(args.fit)
    _numerics(args)
    fit = _optional_fit(args)
    if sweep:
        return cmd_sweep(args, fit)
    from .decide.compare import compare, default_scenario, format_table, plot
    from .io import NONFINITE_NOTE, atomic_write_text, strict_json

    c = compare(
        schedules or default_scenario(horizon_days=args.horizon),
        n_draws=args.draws,
        seed=args.seed,
        fit=fit,
        threshold_mm3=args.endpoint_mm3,
        progress=True,
        single_tumour=args.single_tumour,
    )
    print(format_table(c))
    if args.json:
        atomic_write_text(args.json, strict_json({**_comparison_json(c), "note": NONFINITE_NOTE}, indent=1))
    if args.csv:
        atomic_write_text(args.csv, c.summary.to_csv(index=False))
    path = _figure(args, "compare", "compare.png")
    plot(c, path)
    print(f"\nfigure: {path}")
    return 0


# ----------------------------------------------------------------------------- export, optimize
def cmd_export(args) -> int:
    if args.schedule is not None:
        from .schedules import load_schedule

        schedule = load_schedule(args.schedule)
    else:
        schedule = None
    _check_fit_name(args.fit)
    from .export.formats import export, point_only

    fit = _optional_fit(args)
    out = export(args.format, args.out, fit=fit, schedule=schedule, tumour_line=args.tumour_line)
    if fit is None:
        what = "the default parameter table (no --fit: no intervals)"
    elif point_only(fit):
        what = f"fit {fit.name}: its MAP point, no intervals (between-mouse spread only, no parameter uncertainty)"
    else:
        what = f"fit {fit.name} (posterior medians and 90 % intervals)"
    print(f"wrote {args.format} export of {what} to {out}")
    return 0


def cmd_optimize(args) -> int:
    fractions = _parse_fractions(args.fractions)
    _check_agents([args.agent])
    _check_fit_name(args.fit)
    _numerics(args)
    from .decide.optimize import format_result, optimize
    from .io import atomic_write_text

    fit = _optional_fit(args)
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
    out = Path(args.out) if args.out else _out_dir(args, "optimize") / "optimal.toml"
    atomic_write_text(out, r.toml())
    print(f"\noptimal schedule: {out}")
    if args.csv:
        atomic_write_text(args.csv, r.candidates.to_csv(index=False))
    return 0


def cmd_fit(args) -> int:
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
    from .inference.mapfit import PRECONDITION_HESSIAN

    if settings.precondition and settings.precondition != PRECONDITION_HESSIAN:
        from .inference.fitresult import FitError, resolve_fit_path

        try:
            resolve_fit_path(settings.precondition.removesuffix("@map"))  # the suffix load_fit reads
        except FitError as e:
            raise ValueError(f"--precondition: {e}") from None
    if args.laplace and args.map:
        raise ValueError("--laplace and --map: choose one")
    method = "laplace" if args.laplace else "map" if args.map else "nuts"
    _numerics()  # the fit keeps its own compilation habits (no persistent cache)
    from .decide.scenarios import credibility_checks, format_checks
    from .inference.fitting import run_fit

    run_fit(args.out, settings, progress=not args.no_progress, method=method, checks=(credibility_checks, format_checks))
    return 0
