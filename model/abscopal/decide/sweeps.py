"""Sweeps for the review's open questions (Section 4): when to start the drug relative to RT, and
which dose per fraction at equal BED.

Every point of a sweep is a schedule; all of them are simulated for the SAME parameter draws (one
compilation: schedules are padded event arrays, see ``compare.simulate_schedules``), and each end
point is summarised by its median and 90 % interval over the draws (probabilities: the estimate
and its 90 % Jeffreys interval). Without a fit the draws are the default parameters with
inter-animal variability only, and the frame's ``attrs["source"]`` says so.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..model.parameters import Params, default_params
from ..schedules import MAX_DOSE_PER_FRACTION_GY, Schedule, ScheduleError, combined, fractionated
from ..simulation.outcomes import DETECTION_FLOOR_MM3, ENDPOINTS, dose_at_equal_bed, endpoints
from ..simulation.simulate import SolverOptions
from . import display
from .compare import DEFAULT_HORIZON_DAYS, draw_parameters, simulate_cohort, summarise

#: the agents of the timing question (checkpoint inhibitors studied with RT in the review, 3.4.1)
GAP_AGENTS = ("anti-PD-1", "anti-PD-L1", "anti-CTLA-4")
RT_ALONE = "RT alone"
#: end points drawn in the sweep figures (all are in the tables)
PLOTTED = tuple(ENDPOINTS)


def _check_agents(agents) -> tuple[str, ...]:
    from ..model.agents import agent_names

    agents = tuple(agents)
    if not agents:
        raise ValueError("agents: give at least one agent")
    allowed = (RT_ALONE, *agent_names())
    for a in agents:
        if a not in allowed:
            raise ValueError(f"agents: unknown agent {a!r}; allowed {list(allowed)}")
    if len(set(agents)) != len(agents):
        raise ValueError(f"agents: listed twice in {list(agents)}")
    return agents


def _rows(schedules, keys, draws, source, threshold_mm3, options, body_weight_g, progress, per_draw=False) -> pd.DataFrame:
    """Simulate ``schedules`` (first: untreated) and make one row per schedule and end point,
    prefixed by the matching dict of ``keys``. ``per_draw`` (posterior draws): each draw solved on
    its own, failed draws left out and counted in ``attrs["n_dropped"]``."""
    n_asked = int(draws.shape[0])
    ts, ys, draws = simulate_cohort(schedules, draws, options, body_weight_g, progress, per_draw)
    rows = []
    for j, key in enumerate(keys):
        res = endpoints(ts, ys[j + 1], ys[0], threshold_mm3)
        for name, (desc, unit, better) in ENDPOINTS.items():
            rows.append(
                {**key, "endpoint": name, "unit": unit, "better": better, **summarise(res[name], unit), "description": desc}
            )
    df = pd.DataFrame(rows)
    df.attrs.update(
        source=source, n_draws=int(draws.shape[0]), n_dropped=n_asked - int(draws.shape[0]), horizon_days=float(ts[-1])
    )
    return df


def sweep_gap(
    agents=GAP_AGENTS,
    gaps=tuple(range(-7, 29, 3)),
    rt=None,
    dose: float = 10.0,
    unit: str = "mg/kg",
    n_doses: int = 3,
    every: float = 3.0,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    tumour_line: str = "CT26",
    n_draws: int = 100,
    seed: int = 0,
    params: Params | None = None,
    fit=None,
    threshold_mm3: float = 1000.0,
    options: SolverOptions | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """End points against the drug's start relative to the first RT fraction (``gap_days``; negative:
    drug first), per agent. ``rt`` defaults to 3 x 8 Gy on days 7-9 to the irradiated tumour.

    Returns one row per (agent, gap, end point) with columns agent, gap_days, drug_start_day,
    endpoint, unit, better, median, lo, hi, description; plus "RT alone" reference rows (gap NaN)."""
    agents = [a for a in _check_agents(agents) if a != RT_ALONE]
    if not agents:
        raise ValueError(f"agents: the gap sweep needs a drug; {RT_ALONE!r} is always included as the reference")
    gaps = [float(g) for g in np.atleast_1d(np.asarray(gaps, dtype=float))]
    if not gaps or not all(math.isfinite(g) for g in gaps):
        raise ValueError(f"gaps: must be finite days, got {gaps}")
    rt = tuple(rt) if rt is not None else fractionated(3, 8.0, start=7.0)
    first = min(f.day for f in rt)
    for g in gaps:
        start, last = first + g, first + g + (n_doses - 1) * every
        if start < 0 or last >= horizon_days:
            raise ValueError(
                f"gaps: gap {g:+g} d puts the drug on days {start:g}-{last:g}; allowed gaps keep every dose in "
                f"[0, {horizon_days:g}) days, i.e. from {-first:g} to {horizon_days - first - (n_doses - 1) * every:g} (exclusive)"
            )
    draws, source = draw_parameters(tumour_line, n_draws, seed, params, fit)
    kw = dict(n_doses=n_doses, every=every, horizon_days=horizon_days, tumour_line=tumour_line)
    schedules = [Schedule((), (), horizon_days, tumour_line, "untreated"), Schedule(rt, (), horizon_days, tumour_line, RT_ALONE)]
    keys = [dict(agent=RT_ALONE, gap_days=np.nan, drug_start_day=np.nan)]
    for a in agents:
        for g in gaps:
            schedules.append(combined(rt, a, dose, unit, g, name=f"{a} {g:+g}", **kw))
            keys.append(dict(agent=a, gap_days=g, drug_start_day=first + g))
    bw = params.body_weight_g if params is not None else 20.0
    df = _rows(schedules, keys, draws, source, threshold_mm3, options, bw, progress, per_draw=fit is not None)
    df.attrs.update(
        sweep="gap",
        rt=", ".join(f"{f.dose_gy:g} Gy d{f.day:g}" for f in rt),
        drug=f"{dose:g} {unit} x {n_doses} every {every:g} d",
    )
    return df


def sweep_fractionation(
    fractions=(1, 2, 3, 5, 8, 10),
    bed_gy: float | None = None,
    ab_ratio: float | None = None,
    agents=(RT_ALONE, "anti-PD-1"),
    gap_days: float = 0.0,
    rt_start: float = 7.0,
    interval: float = 1.0,
    dose: float = 10.0,
    unit: str = "mg/kg",
    n_doses: int = 3,
    every: float = 3.0,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    tumour_line: str = "CT26",
    n_draws: int = 100,
    seed: int = 0,
    params: Params | None = None,
    fit=None,
    threshold_mm3: float = 1000.0,
    options: SolverOptions | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """End points against the number of fractions (daily from ``rt_start``) at EQUAL BED to the
    irradiated tumour. ``bed_gy`` defaults to that of 3 x 8 Gy; ``ab_ratio`` (alpha/beta, Gy) to the
    tumour line's default. The drug (each of ``agents``; "RT alone" for none) starts ``gap_days``
    after the first fraction.

    Returns one row per (agent, n_fractions, end point) with columns agent, n_fractions,
    dose_per_fraction_gy, total_dose_gy, bed_gy, ab_ratio, endpoint, unit, better, median, lo, hi."""
    agents = _check_agents(agents)
    ab = float(ab_ratio) if ab_ratio is not None else float(default_params(tumour_line)["ab_ratio"])
    bed = float(bed_gy) if bed_gy is not None else 3 * 8.0 * (1 + 8.0 / ab)
    ns = list(np.atleast_1d(fractions))
    if not ns or any(int(n) != n or n < 1 for n in ns) or len(set(ns)) != len(ns):
        raise ValueError(f"fractions: must be distinct positive integers, got {ns}")
    ns = [int(n) for n in ns]
    plan = []
    for n in ns:
        d = dose_at_equal_bed(n, bed, ab)
        if d > MAX_DOSE_PER_FRACTION_GY:
            raise ValueError(
                f"fractions: {n} fraction(s) at BED {bed:g} Gy (alpha/beta {ab:g} Gy) need {d:.1f} Gy per fraction; "
                f"allowed at most {MAX_DOSE_PER_FRACTION_GY:g} Gy: use more fractions or a lower BED"
            )
        plan.append((n, d))
    draws, source = draw_parameters(tumour_line, n_draws, seed, params, fit)
    schedules, keys = [Schedule((), (), horizon_days, tumour_line, "untreated")], []
    for a in agents:
        for n, d in plan:
            rt = fractionated(n, d, start=rt_start, interval=interval)
            try:
                if a == RT_ALONE:
                    s = Schedule(rt, (), horizon_days, tumour_line, f"{n} x {d:.2f} Gy")
                else:
                    s = combined(
                        rt, a, dose, unit, gap_days, n_doses, every, horizon_days, tumour_line, f"{n} x {d:.2f} Gy + {a}"
                    )
            except ScheduleError as e:
                raise ValueError(f"fractions: {n} fractions from day {rt_start:g}: {e}") from None
            schedules.append(s)
            keys.append(
                dict(agent=a, n_fractions=n, dose_per_fraction_gy=d, total_dose_gy=n * d, bed_gy=s.bed_gy(ab), ab_ratio=ab)
            )
    bw = params.body_weight_g if params is not None else 20.0
    df = _rows(schedules, keys, draws, source, threshold_mm3, options, bw, progress, per_draw=fit is not None)
    df.attrs.update(
        sweep="fractionation", bed_gy=bed, ab_ratio=ab, drug=f"{dose:g} {unit} x {n_doses} every {every:g} d from {gap_days:+g} d"
    )
    return df


def format_sweep(df: pd.DataFrame) -> str:
    """The sweep as a plain-text table: one line per sweep point, one column per end point
    (median [90 % interval]; probabilities in %)."""
    x = "gap_days" if df.attrs.get("sweep") == "gap" else "n_fractions"
    lines = [f"Parameter draws ({df.attrs.get('n_draws')}): {df.attrs.get('source')}"]
    if x == "n_fractions":
        lines.append(
            f"Equal BED {df.attrs['bed_gy']:.1f} Gy to the irradiated tumour at alpha/beta = {df.attrs['ab_ratio']:g} Gy."
        )
    else:
        lines.append(f"RT: {df.attrs.get('rt')}; drug: {df.attrs.get('drug')}; gap = drug start - first fraction (days).")
    h = df.attrs.get("horizon_days")
    lines.append(
        f"Cells: median (90% interval, a to b) over draws; probabilities: estimate (90% interval). Horizon: day {h:g}; "
        f"'> {h:g}': the end point is not reached by the horizon; volumes below the detection floor read "
        f"'< {DETECTION_FLOOR_MM3:g}'. A mouse is removed when its tumour burden reaches the end point (never cured after it)."
    )
    keys = ["agent", x] + (["dose_per_fraction_gy"] if x == "n_fractions" else [])

    def cell(r):
        if r.unit == "probability":
            return f"{display.percent(r['median'])} ({display.percent(r.lo)} to {display.percent(r.hi)})"
        if r.unit == "mm^3":
            fmt = display.volume
        else:
            fmt = lambda v: f"> {h:g}" if not np.isfinite(v) else display.number(v)
        return f"{fmt(r['median'])} ({fmt(r.lo)} to {fmt(r.hi)})"

    records = []
    for key, g in df.groupby(keys, sort=False, dropna=False):
        rec = dict(zip(keys, key))
        if "dose_per_fraction_gy" in rec:  # 16.377558 Gy reads 16.4 Gy
            rec["dose_per_fraction_gy"] = display.number(rec["dose_per_fraction_gy"])
        rec.update({f"{r.endpoint} ({'%' if r.unit == 'probability' else r.unit})": cell(r) for _, r in g.iterrows()})
        records.append(rec)
    table = pd.DataFrame(records)
    lines.append(table.to_string(index=False))
    return "\n".join(lines)


def plot_sweep(df: pd.DataFrame, path, endpoints_shown=PLOTTED) -> None:
    """One panel per end point against the swept variable, one line and 90 % band per agent;
    written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..io import atomic_write_figure

    gap = df.attrs.get("sweep") == "gap"
    x = "gap_days" if gap else "n_fractions"
    horizon = float(df.attrs.get("horizon_days", np.inf))
    n_cols = min(3, len(endpoints_shown))
    n_rows = -(-len(endpoints_shown) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(5.5 * n_cols, 4.0 * n_rows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(endpoints_shown) :]:
        ax.set_visible(False)
    for ax, e in zip(axes, endpoints_shown):
        desc, unit, better = ENDPOINTS[e]
        scale = 100.0 if unit == "probability" else 1.0
        sub = df[df.endpoint == e]
        for agent, g in sub.groupby("agent", sort=False):
            if gap and agent == RT_ALONE:
                ref = min(g["median"].iloc[0], horizon if unit == "days" else np.inf)
                ref = max(ref, DETECTION_FLOOR_MM3) if unit == "mm^3" else ref
                ax.axhline(scale * ref, color="grey", ls="--", label=RT_ALONE)
                continue
            g = g.sort_values(x)
            cap = horizon if unit == "days" else np.inf  # not reached within the horizon: drawn at the horizon
            floor = DETECTION_FLOOR_MM3 if unit == "mm^3" else -np.inf  # below the detection floor: drawn at it
            med, lo, hi = (np.clip(g[c].to_numpy(float), floor, cap) for c in ("median", "lo", "hi"))
            (line,) = ax.plot(g[x], scale * med, marker="o", ms=3, label=agent)
            ax.fill_between(g[x], scale * lo, scale * hi, alpha=0.15, color=line.get_color())
        if unit == "mm^3":
            ax.set_yscale("log")
            ax.set_ylim(bottom=DETECTION_FLOOR_MM3 / 2)
            ax.axhline(DETECTION_FLOOR_MM3, color="k", lw=0.6, ls=":")
        ax.set_xlabel("drug start - first RT fraction (days)" if gap else "number of fractions (equal BED)")
        ylabel = f"{e.replace('_', ' ')} ({'%' if unit == 'probability' else unit})"
        ax.set_ylabel(
            ylabel
            + (
                " (horizon = not reached)"
                if unit == "days"
                else f" (< {DETECTION_FLOOR_MM3:g}: at {DETECTION_FLOOR_MM3:g})"
                if unit == "mm^3"
                else ""
            )
        )
        ax.set_title(f"{desc}\n({better} is better)", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    what = (
        "drug start relative to RT"
        if gap
        else f"fractionation at equal BED {df.attrs['bed_gy']:.0f} Gy (alpha/beta {df.attrs['ab_ratio']:g} Gy)"
    )
    src = df.attrs.get("source", "")
    who = "fit" if src.startswith("fit") else "default parameters, no fit"
    spread = (
        "between-mouse spread only, no parameter uncertainty"
        if display.SPREAD_ONLY in src
        else "posterior and between-mouse spread"
    )
    fig.suptitle(
        f"End points vs {what}: median and 90% interval over {df.attrs.get('n_draws')} draws ({who}; {spread}); "
        f"horizon day {horizon:g}",
        fontsize=10,
    )
    fig.tight_layout()
    atomic_write_figure(fig, path)
    plt.close(fig)
