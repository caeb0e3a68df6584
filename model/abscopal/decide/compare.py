"""Compare schedules over a virtual population (the main job, ``abscopal compare``).

For every schedule: posterior-predictive median and 90 % interval of each end point
(``outcomes.ENDPOINTS``), cure probabilities, and for each pair of schedules the probability that
one beats the other on each end point (paired by parameter draw). Until a fit ships, the draws are
the default parameters with inter-animal variability only; the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.parameters import Params, default_params
from ..model.population import virtual_population
from ..schedules import Schedule, concurrent, fractionated, sequential
from ..simulation.outcomes import ABSCOPAL_ENDPOINTS, ENDPOINTS, endpoints, time_to_volume
from ..simulation.outcomes import volumes as site_volumes
from ..simulation.simulate import (
    SimulationError,
    SolverOptions,
    pad_rows,
    require_x64,
    solve_grid,
    solve_grid_each,
    stack_schedules,
)

CHUNK = 100  # at most this many draws per compiled batch (fixed, so every chunk reuses one compilation)
BLOCK = 4  # schedules per compiled batch
#: solver options for posterior draws: each draw its own step control, at most this many steps per
#: output interval (a draw that needs more is stiff far outside the data: dropped and counted)
FIT_OPTIONS = SolverOptions(max_steps=1024)


@dataclass(frozen=True)
class Comparison:
    summary: pd.DataFrame  # one row per schedule and end point
    pairwise: pd.DataFrame  # P(a beats b) per end point
    ts: np.ndarray
    volumes: dict[str, np.ndarray]  # schedule -> (draws, n_out, 2) irradiated/abscopal volumes
    source: str  # where the parameter draws came from
    bed: dict[str, float]
    ab_ratio: float
    n_dropped: int = 0  # parameter draws left out because a solve of theirs failed (per-draw mode)
    n_draws: int = 0  # parameter draws asked for


def default_scenario(tumour_line: str = "CT26", horizon_days: float = 40.0) -> list[Schedule]:
    """Hypofractionated RT (3 x 8 Gy, days 7-9, to the irradiated tumour; Dewan 2009-style) with
    anti-PD-1 (10 mg/kg i.p. x 3, every 3 days): RT alone, concurrent (from day 7), sequential
    (from 7 days after the last fraction, day 16)."""
    rt = fractionated(3, 8.0, start=7.0)
    kw = dict(n_doses=3, every=3.0, horizon_days=horizon_days, tumour_line=tumour_line)
    return [
        Schedule(rt, (), horizon_days, tumour_line, "RT alone"),
        concurrent(rt, "anti-PD-1", 10.0, "mg/kg", name="RT + anti-PD-1 concurrent", **kw),
        sequential(rt, "anti-PD-1", 10.0, "mg/kg", gap_days=7.0, name="RT + anti-PD-1 sequential", **kw),
    ]


def draw_parameters(tumour_line: str, n_draws: int, seed: int = 0, params: Params | None = None, fit=None):
    """Parameter rows for ``n_draws`` virtual mice and a sentence saying where they came from: the
    fit's posterior (with inter-animal variability) when ``fit`` is given, else the defaults of
    ``tumour_line`` (or ``params``) with inter-animal variability only."""
    if int(n_draws) != n_draws or n_draws < 1:
        raise ValueError(f"n_draws: must be a positive integer, got {n_draws!r}")
    if fit is not None:
        return fit.draws(int(n_draws), seed=seed, tumour_line=tumour_line), fit.describe()
    params = params if params is not None else default_params(tumour_line)
    return (
        virtual_population(params, int(n_draws), seed),
        "default parameters (no fit loaded) with inter-animal variability only: intervals show between-mouse spread, not parameter uncertainty",
    )


def check_same_setting(schedules: list[Schedule]) -> None:
    """Schedules simulated together share horizon and tumour line, and have unique names."""
    if not schedules:
        raise ValueError("schedules: give at least one schedule")
    names = [s.name for s in schedules]
    if len(set(names)) != len(names):
        raise ValueError(f"schedules: names must be unique, got {names}")
    horizons = {s.horizon_days for s in schedules}
    lines = {s.tumour_line for s in schedules}
    if len(horizons) > 1 or len(lines) > 1:
        raise ValueError(f"schedules compared must share horizon_days and tumor_line; got {sorted(horizons)} and {sorted(lines)}")


def simulate_schedules(
    schedules: list[Schedule],
    draws: np.ndarray,
    options: SolverOptions = SolverOptions(),
    body_weight_g: float = 20.0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Every schedule for every parameter row: ``ts`` (n_out,) and ``ys`` (S, N, n_out, n_states).

    Draws go in chunks of ``min(N, CHUNK)`` rows and schedules in blocks of ``BLOCK`` (the last
    block padded with repeats), so any number of schedules reuses one compilation of ``solve_grid``.
    Raises ``SimulationError`` if any solve fails."""
    ts, ys, ok = _solve_schedules(schedules, draws, options, body_weight_g, progress, per_draw=False)
    if not bool(np.all(ok)):
        bad = int((~np.asarray(ok)).sum())
        raise SimulationError(f"{bad} solves failed (step limit or non-finite state); no table was produced")
    return ts, ys


def simulate_draws(
    schedules: list[Schedule],
    draws: np.ndarray,
    options: SolverOptions = FIT_OPTIONS,
    body_weight_g: float = 20.0,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like ``simulate_schedules`` for heterogeneous rows (posterior draws): each row has its own
    step control (``solve_grid_each``), and a row whose solve fails under any schedule (step
    limit, non-finite state) is not an error but reported. Returns ``ts``, ``ys`` (S, N, ...) and
    ``keep`` (N,): rows solved under every schedule."""
    ts, ys, ok = _solve_schedules(schedules, draws, options, body_weight_g, progress, per_draw=True)
    keep = np.all(ok, axis=0)
    if not keep.any():
        raise SimulationError(
            f"every one of {len(keep)} parameter draws failed to solve (step limit {options.max_steps} per segment between state jumps); "
            "no table was produced"
        )
    return ts, ys, keep


def simulate_cohort(
    schedules: list[Schedule],
    draws: np.ndarray,
    options: SolverOptions | None,
    body_weight_g: float,
    progress: bool,
    per_draw: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one switch between the two paths: ``per_draw`` (posterior draws) solves each row on its
    own and leaves failed rows out (``simulate_draws``, default options ``FIT_OPTIONS``); otherwise
    the cohort is one system per schedule and any failure raises (``simulate_schedules``, default
    ``SolverOptions()``). Returns ``ts``, ``ys`` (S, kept rows, ...) and the kept rows of ``draws``."""
    if per_draw:
        ts, ys, keep = simulate_draws(schedules, draws, options or FIT_OPTIONS, body_weight_g, progress)
        return ts, ys[:, keep], draws[keep]
    ts, ys = simulate_schedules(schedules, draws, options or SolverOptions(), body_weight_g, progress)
    return ts, ys, draws


def _solve_schedules(schedules, draws, options, body_weight_g, progress, per_draw):
    """Shared loop of ``simulate_schedules`` and ``simulate_draws``: ts, ys (S, N, ...), ok (S, N)."""
    require_x64()
    n, n_s = draws.shape[0], len(schedules)
    chunk = min(n, CHUNK)
    padded = pad_rows(draws, chunk)
    padded_schedules = list(schedules) + [schedules[-1]] * ((-n_s) % BLOCK)
    blocks = [stack_schedules(padded_schedules[j : j + BLOCK], body_weight_g) for j in range(0, len(padded_schedules), BLOCK)]
    jobs = [(i, b) for i in range(0, padded.shape[0], chunk) for b in range(len(blocks))]
    if progress and len(jobs) > 1:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="simulating", unit="batch")
    rows: dict[int, list] = {}
    oks: dict[int, list] = {}
    ts = None
    solver = solve_grid_each if per_draw else solve_grid
    for i, b in jobs:
        events, horizon = blocks[b]
        ts, ys, ok = solver(padded[i : i + chunk], events, horizon, **options.kwargs())
        if not per_draw and not bool(np.all(ok)):  # a cohort solved as one system: stop at once
            return np.asarray(ts)[0], None, np.asarray(ok)
        rows.setdefault(i, []).append(np.asarray(ys))
        oks.setdefault(i, []).append(np.asarray(ok))
    ys = np.concatenate([np.concatenate(rows[i], axis=0) for i in sorted(rows)], axis=1)
    ok = np.concatenate([np.concatenate(oks[i], axis=0) for i in sorted(oks)], axis=1)
    return np.asarray(ts)[0], ys[:n_s, :n], ok[:n_s, :n]


def summarise(x: np.ndarray, unit: str) -> dict[str, float]:
    """Median and 90 % interval of an end point over draws; for a probability end point the
    estimate (mean of the 0/1 outcomes) and its 90 % Jeffreys interval (Monte Carlo uncertainty of
    the estimate from the number of draws). ``inf`` (not reached within the horizon) is kept."""
    x = np.asarray(x, dtype=float)
    if unit == "probability":
        from scipy.stats import beta

        k, n = float(np.sum(x)), x.size
        lo, hi = beta.ppf([0.05, 0.95], k + 0.5, n - k + 0.5)
        return dict(median=float(np.mean(x)), lo=float(lo) if k > 0 else 0.0, hi=float(hi) if k < n else 1.0)
    q = np.quantile(np.where(np.isfinite(x), x, np.inf), [0.5, 0.05, 0.95], method="inverted_cdf")
    return dict(median=float(q[0]), lo=float(q[1]), hi=float(q[2]))


def compare(
    schedules: list[Schedule],
    n_draws: int = 200,
    seed: int = 0,
    params: Params | None = None,
    fit=None,
    threshold_mm3: float = 1000.0,
    options: SolverOptions | None = None,
    progress: bool = False,
    single_tumour: bool = False,
) -> Comparison:
    """Simulate each schedule for the same parameter draws and summarise the end points.

    ``single_tumour``: the mice carry the irradiated tumour only (as in most single-flank studies,
    e.g. Dovedi 2014): every draw's abscopal tumour is set to none (``v0_abs`` = 0, as the fit does
    for a single-tumour record) and the abscopal end points are left out of the summary. Otherwise
    a second, unirradiated tumour competes for the same effectors and adds antigen.

    With a ``fit``, each posterior draw is solved on its own (``FIT_OPTIONS`` by default: at most
    1024 steps per segment between state jumps); a draw whose solve fails is left out of every schedule, and
    ``n_dropped`` and the printed table say how many. Without a fit the cohort is solved as one
    system per schedule (``SolverOptions()``), and any failure is an error."""
    require_x64()
    check_same_setting(schedules)
    if not np.isfinite(threshold_mm3) or threshold_mm3 <= 0:
        raise ValueError(f"threshold_mm3: must be a positive volume in mm^3, got {threshold_mm3}")
    draws, source = draw_parameters(schedules[0].tumour_line, n_draws, seed, params, fit)
    if single_tumour:
        draws = np.array(draws, copy=True)
        draws[:, default_params().index("v0_abs")] = 0.0
        source = f"{source}; one tumour per mouse (no abscopal tumour)"
    kept = {k: v for k, v in ENDPOINTS.items() if not (single_tumour and k in ABSCOPAL_ENDPOINTS)}
    untreated = schedules[0].with_(rt=(), drugs=(), name="untreated")
    bw = params.body_weight_g if params is not None else 20.0
    n_asked = draws.shape[0]
    ts, ys, draws = simulate_cohort([untreated, *schedules], draws, options, bw, progress, per_draw=fit is not None)

    ab = float(np.median(draws[:, default_params().index("ab_ratio")]))
    results = {s.name: endpoints(ts, ys[j + 1], ys[0], threshold_mm3) for j, s in enumerate(schedules)}
    rows = []
    for s in schedules:
        for key, (desc, unit, better) in kept.items():
            row = {"schedule": s.name, "endpoint": key, "unit": unit, "better": better, "description": desc}
            row.update(summarise(results[s.name][key], unit))
            rows.append(row)
    summary = pd.DataFrame(rows)
    pair_rows = []
    for i, a in enumerate(schedules):
        for b in schedules[i + 1 :]:
            for key, (_d, _unit, better) in kept.items():
                xa, xb = results[a.name][key], results[b.name][key]
                wins = xa < xb if better == "lower" else xa > xb
                ties = xa == xb
                pair_rows.append(
                    {"a": a.name, "b": b.name, "endpoint": key, "p_a_better": float(np.mean(wins)), "p_tie": float(np.mean(ties))}
                )
    pairwise = pd.DataFrame(pair_rows)
    labelled = {"untreated": ys[0], **{s.name: ys[j + 1] for j, s in enumerate(schedules)}}
    volumes = {name: np.stack([site_volumes(y, "irr"), site_volumes(y, "abs")], axis=-1) for name, y in labelled.items()}
    beds = {s.name: s.bed_gy(ab) for s in schedules}
    return Comparison(summary, pairwise, ts, volumes, source, beds, ab, n_asked - draws.shape[0], n_asked)


def format_table(c: Comparison) -> str:
    """A plain-text report a radiation oncologist can read."""
    lines = [f"Parameter draws: {c.source}", f"BED uses alpha/beta = {c.ab_ratio:g} Gy (tumour)."]
    if c.n_dropped:
        lines.append(
            f"{c.n_dropped} of {c.n_draws} draws were left out: their solve hit the step limit (stiff parameter sets far "
            "from the data); the table summarises the other draws."
        )
    lines.append("")
    for name, df in c.summary.groupby("schedule", sort=False):
        lines.append(f"== {name}  (BED {c.bed[name]:.1f} Gy)")
        for _, r in df.iterrows():
            med, lo, hi = r["median"], r["lo"], r["hi"]
            if r.unit == "probability":
                val = f"{100 * med:5.1f} %  (90% interval {100 * lo:.0f} to {100 * hi:.0f} %)"
            elif not np.isfinite(med):
                val = f"not reached by day {c.ts[-1]:g} (censored)"
            else:
                hi_s = f"> {c.ts[-1]:g} (censored)" if not np.isfinite(hi) else f"{hi:.1f}"
                val = f"{med:.1f} {r.unit}  (90% interval {lo:.1f} to {hi_s})"
            lines.append(f"  {r.description:<75s} {val}   [{r.better} is better]")
        lines.append("")
    if len(c.pairwise):
        lines.append("Probability that the first schedule beats the second (paired draws; ties not counted):")
        for (a, b), df in c.pairwise.groupby(["a", "b"], sort=False):
            parts = ", ".join(f"{r.endpoint} {100 * r.p_a_better:.0f}%" for _, r in df.iterrows())
            lines.append(f"  {a}  vs  {b}: {parts}")
    return "\n".join(lines)


def plot(c: Comparison, path) -> None:
    """Both tumours' volumes over time, median and 90 % band per schedule; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_figure

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, j, title in ((axes[0], 0, "Irradiated tumour"), (axes[1], 1, "Abscopal (distant, not irradiated) tumour")):
        for name, v in c.volumes.items():
            med = np.median(v[..., j], axis=0)
            lo, hi = np.quantile(v[..., j], [0.05, 0.95], axis=0)
            style = dict(color="grey", ls="--") if name == "untreated" else {}
            (line,) = ax.plot(c.ts, med, label=name, **style)
            ax.fill_between(c.ts, lo, hi, alpha=0.15, color=line.get_color())
        ax.set_yscale("log")
        ax.set_xlabel("day after tumour inoculation")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("tumour volume (mm$^3$), median and 90% band")
    axes[1].legend(fontsize=8)
    fig.suptitle("Schedules compared over a virtual population", fontsize=11)
    fig.tight_layout()
    atomic_write_figure(fig, path)
    plt.close(fig)


# ----------------------------------------------------------------------------- Dovedi 2014
DOVEDI_SURVIVAL_MM3 = 1000.0


@dataclass(frozen=True)
class DovediResult:
    comparison: Comparison
    survival: pd.DataFrame  # per schedule: median and 90 % interval of days to 1000 mm^3 (irradiated tumour)
    p_concurrent_better: float  # P(concurrent survives longer than sequential), paired draws, ties excluded
    p_tie: float  # both censored (or equal): neither reached the end point differently within the horizon
    p_sequential_better: float = float("nan")  # the reverse: sequential survives longer


def dovedi2014_scenario(tumour_line: str = "CT26", horizon_days: float = 60.0) -> list[Schedule]:
    """Dovedi et al. 2014 (Cancer Res 74:5458; record R29): CT26, 5 x 2 Gy on days 7-11 with anti-PD-L1
    10 mg/kg three times a week (every 2.33 d), 6 doses, starting with RT (day 7, concurrent) or
    one week after it (day 19, sequential); RT alone for reference."""
    rt = fractionated(5, 2.0, start=7.0)
    kw = dict(n_doses=6, every=7.0 / 3.0, horizon_days=horizon_days, tumour_line=tumour_line)
    return [
        Schedule(rt, (), horizon_days, tumour_line, "RT alone (5 x 2 Gy)"),
        concurrent(rt, "anti-PD-L1", 10.0, "mg/kg", name="concurrent: anti-PD-L1 from day 7", **kw),
        sequential(rt, "anti-PD-L1", 10.0, "mg/kg", gap_days=8.0, name="sequential: anti-PD-L1 from day 19", **kw),
    ]


def dovedi2014(
    n_draws: int = 200,
    seed: int = 0,
    params: Params | None = None,
    fit=None,
    horizon_days: float = 60.0,
    options: SolverOptions | None = None,
    progress: bool = False,
) -> DovediResult:
    """The Dovedi 2014 question: does anti-PD-L1 started with 5 x 2 Gy (day 7) beat starting it on
    day 19? Dovedi's mice carried one tumour, so the cohort is simulated with the irradiated tumour
    only (``compare(single_tumour=True)``, as the fit treats R29); survival is that tumour's time to
    1000 mm^3. Returns the probability, over paired draws, that concurrent survives longer than
    sequential."""
    schedules = dovedi2014_scenario(horizon_days=horizon_days)
    c = compare(schedules, n_draws, seed, params, fit, DOVEDI_SURVIVAL_MM3, options, progress, single_tumour=True)
    surv = {s.name: time_to_volume(c.ts, c.volumes[s.name][..., 0], DOVEDI_SURVIVAL_MM3) for s in schedules}
    rows = [{"schedule": k, "unit": "days", **summarise(v, "days")} for k, v in surv.items()]
    t_con, t_seq = surv[schedules[1].name], surv[schedules[2].name]
    p = float(np.mean(t_con > t_seq))
    tie = float(np.mean(t_con == t_seq))
    return DovediResult(c, pd.DataFrame(rows), p, tie, float(np.mean(t_seq > t_con)))


def format_dovedi(r: DovediResult) -> str:
    lines = [format_table(r.comparison), "", "Dovedi 2014 (R29): survival = days until the irradiated tumour reaches 1000 mm^3"]
    for _, row in r.survival.iterrows():
        fmt = lambda v: f"> {r.comparison.ts[-1]:g} d (censored)" if not np.isfinite(v) else f"{v:.1f} d"
        lines.append(f"  {row.schedule:<40s} median {fmt(row['median'])}  (90% interval {fmt(row.lo)} to {fmt(row.hi)})")
    lines.append(
        f"P(concurrent survives longer than sequential) = {r.p_concurrent_better:.2f}, the reverse {r.p_sequential_better:.2f}  "
        f"(ties, e.g. both censored: {r.p_tie:.2f}; {r.comparison.volumes[r.survival.schedule[0]].shape[0]} paired draws)"
    )
    return "\n".join(lines)


def trajectory_quantiles(
    schedule: Schedule, draws: np.ndarray, options: SolverOptions = SolverOptions(), quantiles=(0.05, 0.5, 0.95)
) -> pd.DataFrame:
    """Quantiles over parameter draws of each site's volume and immune read-outs, per output day:
    columns day, site, quantity, and one column per quantile (q05, q50, q95). Each draw is solved on
    its own; draws whose solve fails are left out, and ``attrs["n_dropped"]`` counts them."""
    from ..model.equations import SITE_NAMES, SITES, build_model

    ts, ys, keep = simulate_draws([schedule], draws, options)
    ys = ys[:, keep]
    names = build_model().state_names
    frames = []
    for k in SITES:
        quantities = {
            "volume_mm3": site_volumes(ys[0], k),
            "cd8_effector_1e6_cells": ys[0][..., names.index(f"E_{k}")],
            "treg_1e6_cells": ys[0][..., names.index(f"R_{k}")],
            "pdl1_level": ys[0][..., names.index(f"P_{k}")],
        }
        for q_name, x in quantities.items():
            qs = np.quantile(x, quantiles, axis=0)
            cols = {"day": ts, "site": SITE_NAMES[k], "quantity": q_name}
            cols.update({f"q{round(100 * q):02d}": v for q, v in zip(quantiles, qs)})
            frames.append(pd.DataFrame(cols))
    out = pd.concat(frames, ignore_index=True)
    out.attrs["n_dropped"] = int((~keep).sum())
    return out
