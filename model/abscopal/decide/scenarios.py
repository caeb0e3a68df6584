"""Credibility checks of a fit: what a tumour immunologist expects of the model (issue 20).

Each check simulates a scenario with the fit and compares one number with a target taken from the
literature or from the biology; ``credibility_checks`` returns one row per check, and the fit
report prints them. The scenarios:

- untreated CT26 (one typical mouse with one tumour at the fit's parameters): 50-250 mm^3 on day 7 and below
  1,000 mm^3 until day 14 (the Kosinsky 2018 control of Dovedi's mice: 149 mm^3 on day 7, 1,048 mm^3
  on day 20, BIOMD0000000863);
- Dovedi 2014's six CT26 arms (``dovedi_arms``: control, anti-PD-L1 alone, 5 x 2 Gy on days 7-11
  alone, and with anti-PD-L1 10 mg/kg on R29's days from day 7, 12 or 19; one tumour per mouse,
  ``compare(single_tumour=True)``), against Kosinsky 2018's fitted model of these mice
  (BIOMD0000000863 read as a dose-rate pulse with ``U / tau`` repair, ``scripts/kosinsky_anchor.py``
  and ``fits/data/series/kosinsky2018_dovedi_*``): median days to 1000 mm^3 later than control by
  0-7 (anti-PD-L1; Kosinsky 3), 7-17 (RT alone; Kosinsky 12) and 9-21 (day-19 start; Kosinsky 16);
  median irradiated volume on day 40 at most 100 mm^3 concurrent and 300 mm^3 for the day-12 start
  (Kosinsky 3.3 and 7.1); concurrent cures at least 30 % of mice, RT alone at most 20 %; at least
  90 % of untreated mice pass 1000 mm^3 by day 30; no mouse that passes 1000 mm^3 untreated or on
  anti-PD-L1 alone falls back below 500 mm^3 (tumours that outgrow the immune response escape);
- the default scenario (``compare.default_scenario``: 3 x 8 Gy + anti-PD-1): under the concurrent
  combination some virtual mice clear the abscopal tumour entirely.
"""

from __future__ import annotations

import numpy as np

from ..schedules import Schedule, fractionated
from ..simulation.outcomes import endpoints
from ..simulation.outcomes import volumes as site_volumes
from ..simulation.simulate import SolverOptions, simulate
from .compare import DOVEDI_SURVIVAL_MM3, R29_PDL1_OFFSETS, compare, default_scenario, r29_pdl1  # noqa: F401

#: Kosinsky 2018's typical CT26 mouse (BIOMD0000000863, ``scripts/kosinsky_anchor.py``, a fraction
#: as a dose-rate pulse with ``U / tau`` repair): day it reaches 1000 mm^3 under RT alone (5 x 2 Gy,
#: days 7-11) and untreated. Until 2026-12-07 the script delivered 2 % of each fraction and gave 21.1.
KOSINSKY_RT_ALONE_DAY_1000 = 31.1
KOSINSKY_CONTROL_DAY_1000 = 19.6
#: Kosinsky 2018's 200 virtual mice (``fits/data/series/kosinsky2018_dovedi_summary.csv``): median
#: day to 1000 mm^3 later than control, per arm (the day-12 and concurrent arms do not reach it)
KOSINSKY_DELAY_DAYS = {"anti-PD-L1": 3.0, "RT": 12.0, "RT + anti-PD-L1 from day 19": 16.0}


def dovedi_arms(horizon_days: float = 60.0) -> list[Schedule]:
    """Dovedi 2014's six CT26 arms as Kosinsky 2018 lists them (R29; one tumour per mouse)."""
    rt = fractionated(5, 2.0, start=7.0)
    return [
        Schedule((), (), horizon_days, "CT26", "control"),
        Schedule((), r29_pdl1(7), horizon_days, "CT26", "anti-PD-L1"),
        Schedule(rt, (), horizon_days, "CT26", "RT"),
        Schedule(rt, r29_pdl1(7), horizon_days, "CT26", "RT + anti-PD-L1 from day 7"),
        Schedule(rt, r29_pdl1(12), horizon_days, "CT26", "RT + anti-PD-L1 from day 12"),
        Schedule(rt, r29_pdl1(19), horizon_days, "CT26", "RT + anti-PD-L1 from day 19"),
    ]


def dovedi_cohort(fit=None, n_draws: int = 64, seed: int = 0, params=None, tumour_line: str = "CT26"):
    """``dovedi_arms`` for ``n_draws`` virtual mice with one tumour (the fit's draws, or ``params``
    with inter-animal variability): ts, arm -> raw irradiated volumes (mice, days) read to the
    horizon (past the end point too, to see whether a tumour falls back), arm -> end points."""
    from ..model.parameters import default_params
    from .compare import draw_parameters, simulate_cohort

    arms = dovedi_arms()
    draws, _ = draw_parameters(tumour_line, n_draws, seed, params, fit)
    draws = np.array(draws, dtype=float)
    draws[:, default_params().index("v0_abs")] = 0.0
    bw = params.body_weight_g if params is not None else 20.0
    ts, ys, _ = simulate_cohort(arms, draws, None, bw, False, per_draw=fit is not None)
    vols = {s.name: site_volumes(ys[j], "irr") for j, s in enumerate(arms)}
    ends = {s.name: endpoints(ts, ys[j], ys[0], DOVEDI_SURVIVAL_MM3) for j, s in enumerate(arms)}
    return ts, vols, ends


def dovedi_metrics(ts, vols, ends) -> dict[str, dict[str, float]]:
    """Per arm of ``dovedi_cohort``: median day to 1000 mm^3 (inf: not reached), median irradiated
    volume on day 40 (read to the end point), cure fraction (the end-point definition), fraction past
    1000 mm^3 by day 30, and the fraction that passes 1000 mm^3 and later falls below 500 mm^3."""
    i40 = int(np.argmin(np.abs(ts - 40.0)))
    out = {}
    for name, v in vols.items():
        t = ends[name]["time_to_endpoint"]
        passed = np.isfinite(t)
        later = np.where(ts[None, :] >= np.where(passed, t, np.inf)[:, None], v, np.inf)
        v40 = np.where(ts[i40] > t, ends[name]["volume_irradiated"], v[:, i40])  # removed mice: their last volume
        out[name] = dict(
            median_day_1000=float(np.median(t)),
            median_volume_day40=float(np.median(v40)),
            cured=float(np.mean(ends[name]["cure_irradiated"])),
            past_1000_by_day30=float(np.mean(t <= 30.0)),
            fell_below_500=float(np.mean(passed & (np.min(later, axis=1) < 500.0))),
        )
    return out


def dovedi_checks(fit, n_draws: int = 64, seed: int = 0) -> list[dict]:
    """The Dovedi rows of the credibility checks (module doc)."""
    m = dovedi_metrics(*dovedi_cohort(fit, n_draws, seed))
    ctl = m["control"]["median_day_1000"]
    rows = []
    for arm, (lo, hi) in {"anti-PD-L1": (0, 7), "RT": (7, 17), "RT + anti-PD-L1 from day 19": (9, 21)}.items():
        delay = m[arm]["median_day_1000"] - ctl
        target = f"{lo}-{hi} (Kosinsky 2018, 200 virtual mice: {KOSINSKY_DELAY_DAYS[arm]:g})"
        rows.append(_row(f"Dovedi: {arm}, median days to 1000 mm^3 after control", delay, target, lo <= delay <= hi, "days"))
    for arm, cap, k in (("RT + anti-PD-L1 from day 7", 100, 3.3), ("RT + anti-PD-L1 from day 12", 300, 7.1)):
        v = m[arm]["median_volume_day40"]
        rows.append(_row(f"Dovedi: {arm}, median volume on day 40", v, f"<= {cap} (Kosinsky 2018: {k:g})", v <= cap, "mm^3"))
    cc, cr = m["RT + anti-PD-L1 from day 7"]["cured"], m["RT"]["cured"]
    rows.append(_row("Dovedi: concurrent, mice cured", cc, ">= 0.3 (R29: 'a majority' of complete rejections)", cc >= 0.3))
    rows.append(_row("Dovedi: RT alone, mice cured", cr, "<= 0.2 (RT alone only delays CT26)", cr <= 0.2))
    p30 = m["control"]["past_1000_by_day30"]
    rows.append(
        _row(
            "untreated CT26 mice past 1000 mm^3 by day 30",
            p30,
            ">= 0.9 (Kosinsky 2018: 10th percentile 1,725 mm^3 on day 40)",
            p30 >= 0.9,
        )
    )
    fell = max(m["control"]["fell_below_500"], m["anti-PD-L1"]["fell_below_500"])
    rows.append(
        _row(
            "untreated or anti-PD-L1 CT26 mice that pass 1000 mm^3 and fall below 500",
            fell,
            "0 (escaped tumours stay escaped)",
            fell == 0,
        )
    )
    return rows


def _row(name, value, target, holds, unit=""):
    return dict(check=name, value=float(value), unit=unit, target=target, holds=bool(holds))


def credibility_checks(fit, n_draws: int = 64, seed: int = 0) -> list[dict]:
    """The checks above for ``fit`` (a ``Fit``; its posterior draws, or its one MAP draw, with
    inter-animal variability for the cohorts)."""
    rows = []
    p = fit.params("CT26").replace(v0_abs=0.0)  # Kosinsky's control mice carried one tumour
    tr = simulate(Schedule((), (), 20.0, "CT26", "untreated"), p, SolverOptions(n_out=21))
    v = tr.volume("irradiated")
    rows.append(_row("untreated CT26, day 7", v[7], "50-250 (Kosinsky 2018 control: 149)", 50 <= v[7] <= 250, "mm^3"))
    rows.append(
        _row("untreated CT26, day 14", v[14], "< 1000 (Kosinsky 2018 control: 1,048 on day 20)", np.all(v[:15] < 1000), "mm^3")
    )

    rows.extend(dovedi_checks(fit, n_draws, seed))
    d = compare(default_scenario(), n_draws=n_draws, seed=seed, fit=fit)
    s = d.summary.set_index(["schedule", "endpoint"])["median"]
    clear = s[("RT + anti-PD-1 concurrent", "cure_abscopal")]
    rows.append(_row("default: 3 x 8 Gy + anti-PD-1 concurrent, abscopal tumours cleared", clear, "> 0 (some mice)", clear > 0))
    return rows


def format_checks(rows: list[dict]) -> str:
    """The checks as a markdown table."""
    out = ["| check | value | target | holds |", "| --- | --- | --- | --- |"]
    for r in rows:
        value = f"{r['value']:.3g} {r['unit']}" if np.isfinite(r["value"]) else "not reached within the horizon"
        out.append(f"| {r['check']} | {value} | {r['target']} | {'yes' if r['holds'] else 'NO'} |")
    return "\n".join(out)
