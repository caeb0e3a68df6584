"""Compare schedules over a virtual population (the main job, ``abscopal compare``).

For every schedule: posterior-predictive median and 90 % interval of each end point
(``outcomes.ENDPOINTS``, the one end-point definition: a mouse is removed on its end-point day),
cure probabilities, and for each pair of schedules and each end point the probabilities that the
first is better, that the second is better and that they tie (paired by parameter draw; the tie
rule is ``pairwise.TIE_RULE``), each with its 90 % Monte Carlo interval. Without a fit the draws
are the default parameters with inter-animal variability only; the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..model.parameters import Params, default_params
from ..model.population import virtual_population
from ..schedules import DrugDose, Schedule, concurrent, fractionated, sequential
from ..simulation.outcomes import ABSCOPAL_ENDPOINTS, ENDPOINTS, endpoint_day, endpoints, read_until
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
from . import display
from .pairwise import TIE_RULE, pair_row, proportion

CHUNK = 100  # at most this many draws per compiled batch (fixed, so every chunk reuses one compilation)
BLOCK = 4  # schedules per compiled batch
#: the one default horizon (days simulated) of every command: compare, sweeps, scenarios, optimize
DEFAULT_HORIZON_DAYS = 60.0
#: solver options for posterior draws: each draw its own step control, at most this many steps per
#: output interval (a draw that needs more is stiff far outside the data: dropped and counted)
FIT_OPTIONS = SolverOptions(max_steps=1024)


@dataclass(frozen=True)
class Comparison:
    summary: pd.DataFrame  # one row per schedule and end point
    pairwise: pd.DataFrame  # per pair and end point: P(a better), P(b better), P(tie), each with its 90 % MC interval
    ts: np.ndarray
    #: schedule -> (draws, n_out, 2) irradiated/abscopal volumes; after a mouse's end-point day its
    #: volumes stay at their end-point values (it is removed then: no later shrinkage is shown)
    volumes: dict[str, np.ndarray]
    source: str  # where the parameter draws came from
    bed: dict[str, float]
    ab_ratio: float
    n_dropped: int = 0  # parameter draws left out because a solve of theirs failed (per-draw mode)
    n_draws: int = 0  # parameter draws asked for
    schedules: tuple = ()  # the schedules compared (their RT fractions and drug doses are shown)
    single_tumour: bool = False  # mice with the irradiated tumour only
    spread_only: bool = True  # intervals hold between-mouse spread only (no fit, or a MAP-only fit)
    cured: dict = None  # schedule -> {"irradiated": fraction cured, "abscopal": ...}
    threshold_mm3: float = 1000.0  # the volume end point (total tumour burden)

    @property
    def horizon_days(self) -> float:
        return float(self.ts[-1])


def default_scenario(tumour_line: str = "CT26", horizon_days: float = DEFAULT_HORIZON_DAYS) -> list[Schedule]:
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
        return fit.draws(int(n_draws), seed=seed, tumour_line=tumour_line), display.describe_fit(fit)
    params = params if params is not None else default_params(tumour_line)
    return virtual_population(params, int(n_draws), seed), display.describe_fit(None)


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
        est, lo, hi = proportion(float(np.sum(x)), x.size)
        return dict(median=est, lo=lo, hi=hi)
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
    pair_rows = [
        pair_row(a.name, b.name, key, results[a.name], results[b.name], better)
        for i, a in enumerate(schedules)
        for b in schedules[i + 1 :]
        for key, (_d, _unit, better) in kept.items()
    ]
    pairwise = pd.DataFrame(pair_rows)
    pairwise.attrs["tie_rule"] = TIE_RULE
    labelled = {"untreated": ys[0], **{s.name: ys[j + 1] for j, s in enumerate(schedules)}}
    volumes = {name: removed_at_endpoint(ts, y, threshold_mm3) for name, y in labelled.items()}
    beds = {s.name: s.bed_gy(ab) for s in schedules}
    cured = {
        s.name: {
            "irradiated": float(np.mean(results[s.name]["cure_irradiated"])),
            "abscopal": float(np.mean(results[s.name]["cure_abscopal"])),
        }
        for s in schedules
    }
    return Comparison(
        summary,
        pairwise,
        ts,
        volumes,
        source,
        beds,
        ab,
        n_asked - draws.shape[0],
        n_asked,
        schedules=tuple(schedules),
        single_tumour=single_tumour,
        spread_only=display.spread_only(fit) if hasattr(fit, "meta") or fit is None else False,
        cured=cured,
        threshold_mm3=float(threshold_mm3),
    )


def removed_at_endpoint(ts: np.ndarray, ys: np.ndarray, threshold_mm3: float) -> np.ndarray:
    """Irradiated and abscopal volumes (draws, n_out, 2) as the end-point definition reads them:
    after a mouse's end-point day they stay at their values on that day (it is removed then)."""
    t_end = endpoint_day(ts, ys, threshold_mm3)
    out = []
    for site in ("irr", "abs"):
        v = site_volumes(ys, site)
        at_end = read_until(ts, v, t_end)
        out.append(np.where(ts[None, :] > t_end[:, None], at_end[:, None], v))
    return np.stack(out, axis=-1)


def _cell(c: Comparison, name: str, r) -> str:
    """One summary row as text: probabilities in %, volumes with the detection floor and the cured
    fraction beside, days with the horizon, everything with "(90% interval a to b)"."""
    med, lo, hi = r["median"], r["lo"], r["hi"]
    if r.unit == "probability":
        return f"{display.percent(med)}  {display.interval(display.percent(lo), display.percent(hi))}"
    if r.unit == "days":
        h = c.horizon_days
        if not np.isfinite(med):
            return f"{display.days(med, h)} (censored)  {display.interval(display.days(lo, h), display.days(hi, h))}"
        return f"{display.days(med, h)}  {display.interval(display.days(lo, h), display.days(hi, h))}"
    if r.unit == "mm^3":
        site = "irradiated" if r.endpoint == "volume_irradiated" else "abscopal"
        v = f"{display.volume(med, 'mm3')}  {display.interval(display.volume(lo), display.volume(hi))}"
        return v + (f"; cured {display.percent(c.cured[name][site])}" if c.cured else "")
    return f"{display.number(med, r.unit)}  {display.interval(display.number(lo, r.unit), display.number(hi, r.unit))}"


def describe_pairwise(c: Comparison, a: str, b: str) -> list[str]:
    """The rows of one pair: per end point P(A better), P(B better), P(tie), with MC intervals."""
    df = c.pairwise[(c.pairwise.a == a) & (c.pairwise.b == b)]
    n = int(df.n_pairs.iloc[0]) if len(df) else 0
    lines = [f"  A = {a}\n  B = {b}   ({n} paired mice)"]
    fmt = lambda r, k: f"{display.percent(r[f'p_{k}'])} ({display.percent(r[f'p_{k}_lo'])} to {display.percent(r[f'p_{k}_hi'])})"
    lines.append(f"    {'end point':<20s} {'A better':<24s} {'B better':<24s} {'tie':<24s}")
    for _, r in df.iterrows():
        lines.append(f"    {r.endpoint:<20s} {fmt(r, 'a_better'):<24s} {fmt(r, 'b_better'):<24s} {fmt(r, 'tie'):<24s}")
    return lines


def format_table(c: Comparison) -> str:
    """A plain-text report a radiation oncologist can read."""
    lines = [
        f"Parameter draws: {c.source}",
        f"Horizon: day {c.horizon_days:g}. End point: total tumour burden >= {display.number(c.threshold_mm3)} mm3 (the mouse "
        "is removed that day and never counts as cured). BED uses alpha/beta = "
        f"{c.ab_ratio:g} Gy (tumour). Volumes below the detection floor ({display.volume(0.0, 'mm3')[2:]}) read '{display.volume(0.0, 'mm3')}'.",
    ]
    if c.single_tumour:
        lines.append("Mice carry one tumour (the irradiated one): no abscopal end points.")
    if c.n_dropped:
        lines.append(
            f"{c.n_dropped} of {c.n_draws} draws were left out: their solve hit the step limit (stiff parameter sets far "
            "from the data); the table summarises the other draws."
        )
    lines.append("")
    by_name = {s.name: s for s in c.schedules}
    for name, df in c.summary.groupby("schedule", sort=False):
        lines.append(f"== {name}  (BED {c.bed[name]:.1f} Gy)")
        if name in by_name:
            lines.append(f"   {display.describe_schedule(by_name[name])}")
        for _, r in df.iterrows():
            lines.append(f"  {r.description:<75s} {_cell(c, name, r)}   [{r.better} is better]")
        lines.append("")
    if len(c.pairwise):
        lines.append(
            "Paired comparison (the same virtual mouse under both schedules): P(A better), P(B better), P(tie), "
            "each with its 90% Monte Carlo interval; the three sum to 100%."
        )
        lines.append(f"  Rule: {TIE_RULE}.")
        for (a, b), _df in c.pairwise.groupby(["a", "b"], sort=False):
            lines += describe_pairwise(c, a, b)
    return "\n".join(lines)


def plot(c: Comparison, path) -> None:
    """Volumes over time per schedule (median and 90 % band, floored at the detection floor, cured
    fractions in the legend), the schedules' RT and drug days on the time axis, and the pairwise
    table in the caption; written atomically (``figures.plot_comparison``)."""
    from .figures import plot_comparison

    plot_comparison(c, path)


# ----------------------------------------------------------------------------- Dovedi 2014
DOVEDI_SURVIVAL_MM3 = 1000.0


@dataclass(frozen=True)
class DovediResult:
    comparison: Comparison
    survival: pd.DataFrame  # per schedule: median and 90 % interval of days to 1000 mm^3 (the one tumour)
    p_concurrent_better: float  # P(concurrent survives longer than sequential), paired draws
    p_tie: float  # tied by the rule of ``pairwise.TIE_RULE`` (same day within 0.5 d, or both censored)
    p_sequential_better: float = float("nan")  # the reverse: sequential survives longer
    reproduction: str = ""  # whether the fit used reproduces record R29, in words
    pair: dict = None  # the pairwise row (probabilities with their 90 % MC intervals)


#: anti-PD-L1 days of R29 after its start day (Dovedi 2014: 3x/week for 3 weeks, a Monday-Wednesday-
#: Friday pattern assumed, as the record encodes it): the one definition of Dovedi's antibody course
R29_PDL1_OFFSETS = (0, 2, 4, 7, 9, 11, 14, 16, 18)


def r29_pdl1(start: float) -> tuple[DrugDose, ...]:
    """R29's anti-PD-L1 course (10 mg/kg i.p., 9 doses) starting on day ``start``."""
    return tuple(DrugDose(float(start + d), "anti-PD-L1", 10.0, "mg/kg") for d in R29_PDL1_OFFSETS)


def dovedi2014_scenario(tumour_line: str = "CT26", horizon_days: float = DEFAULT_HORIZON_DAYS) -> list[Schedule]:
    """Dovedi et al. 2014 (Cancer Res 74:5458; record R29): CT26, 5 x 2 Gy on days 7-11 with anti-PD-L1
    10 mg/kg on R29's course (``r29_pdl1``: 3x/week for 3 weeks, 9 doses), starting with RT (day 7,
    concurrent) or 8 days after the last fraction (day 19, sequential); RT alone for reference."""
    rt = fractionated(5, 2.0, start=7.0)
    return [
        Schedule(rt, (), horizon_days, tumour_line, "RT alone (5 x 2 Gy)"),
        Schedule(rt, r29_pdl1(7), horizon_days, tumour_line, "concurrent: anti-PD-L1 from day 7"),
        Schedule(rt, r29_pdl1(19), horizon_days, tumour_line, "sequential: anti-PD-L1 from day 19"),
    ]


def dovedi2014(
    n_draws: int = 200,
    seed: int = 0,
    params: Params | None = None,
    fit=None,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    options: SolverOptions | None = None,
    progress: bool = False,
) -> DovediResult:
    """The Dovedi 2014 question: does anti-PD-L1 started with 5 x 2 Gy (day 7) beat starting it on
    day 19? Dovedi's mice carried one tumour, so the cohort is simulated with the irradiated tumour
    only (``compare(single_tumour=True)``, as the fit treats R29); survival is the time to the
    1000 mm^3 end point. Returns the probabilities, over paired draws, that concurrent survives
    longer than sequential, the reverse and a tie, and whether the fit reproduces record R29."""
    schedules = dovedi2014_scenario(horizon_days=horizon_days)
    c = compare(schedules, n_draws, seed, params, fit, DOVEDI_SURVIVAL_MM3, options, progress, single_tumour=True)
    t = c.summary[c.summary.endpoint == "time_to_endpoint"]
    survival = t[["schedule", "unit", "median", "lo", "hi"]].reset_index(drop=True)
    pw = c.pairwise
    row = pw[(pw.a == schedules[1].name) & (pw.b == schedules[2].name) & (pw.endpoint == "time_to_endpoint")].iloc[0]
    repro = display.record_reproduction(fit, "R29") if fit is None or hasattr(fit, "meta") else ""
    return DovediResult(c, survival, float(row.p_a_better), float(row.p_tie), float(row.p_b_better), repro, row.to_dict())


def format_dovedi(r: DovediResult) -> str:
    c = r.comparison
    lines = [
        format_table(c),
        "",
        "Dovedi 2014 (record R29; CT26, one tumour per mouse): survival = days until the tumour reaches "
        f"{DOVEDI_SURVIVAL_MM3:g} mm3, horizon day {c.horizon_days:g}",
    ]
    for _, row in r.survival.iterrows():
        fmt = lambda v: display.days(v, c.horizon_days)
        lines.append(f"  {row.schedule:<40s} median {fmt(row['median'])}  {display.interval(fmt(row.lo), fmt(row.hi))}")
    pc = lambda k: (
        f"{display.percent(r.pair[f'p_{k}'])} ({display.percent(r.pair[f'p_{k}_lo'])} to {display.percent(r.pair[f'p_{k}_hi'])})"
    )
    lines.append(
        f"Concurrent survives longer than sequential: {pc('a_better')}; sequential longer: {pc('b_better')}; "
        f"tie (same day within 0.5 d, or both alive at the horizon): {pc('tie')}; {r.pair['n_pairs']} paired mice, "
        "90% Monte Carlo intervals."
    )
    if r.reproduction:
        lines += ["", r.reproduction]
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
