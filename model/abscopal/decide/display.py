"""What a user reads: numbers with sensible digits, volumes below the detection floor, intervals as
"a to b", the schedules compared, where the parameter draws came from (and what their intervals
mean), and whether a fit reproduces the record a scenario is named after.

Pure formatting: no simulation here, and nothing heavy imported (the export uses it without JAX).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

#: the sentence every output carries when its intervals hold no parameter uncertainty
SPREAD_ONLY = "between-mouse spread only, no parameter uncertainty"
NO_FIT_SOURCE = (
    "default parameters (no fit loaded: no --fit given; --fit review draws from the shipped fit) with inter-animal "
    "variability ({between}): intervals show " + SPREAD_ONLY
)


def number(v: float, unit: str = "") -> str:
    """``v`` to three significant digits, without an exponent for everyday magnitudes and without
    trailing zeros (16.377558 -> 16.4, 8.0 -> 8, 0.05612 -> 0.0561, 1234.5 -> 1230)."""
    if v is None or not math.isfinite(v):
        return str(v)
    if v != 0 and abs(v) < 1e-3:
        text = f"{v:.2e}"
    else:
        text = np.format_float_positional(float(f"{v:.3g}"), trim="-")
    return f"{text} {unit}".rstrip() if unit else text


def volume(v: float, unit: str = "") -> str:
    """A tumour volume: below ``DETECTION_FLOOR_MM3`` it reads "< 1 mm3" (differences below the
    floor, about a thousand cells, are not shown)."""
    from ..simulation.outcomes import DETECTION_FLOOR_MM3

    if v is not None and math.isfinite(v) and v < DETECTION_FLOOR_MM3:
        return f"< {DETECTION_FLOOR_MM3:g} {unit}".rstrip()
    return number(v, unit)


def days(v: float, horizon: float) -> str:
    """Days to an end point; ``inf`` (not reached) reads "not reached by day <horizon>"."""
    return f"not reached by day {horizon:g}" if not math.isfinite(v) else f"{v:.1f} d"


def interval(lo: str, hi: str) -> str:
    """A 90 % interval as words: "(90% interval a to b)"."""
    return f"(90% interval {lo} to {hi})"


def percent(p: float) -> str:
    """A probability as a percentage: whole percent, one decimal under 1 % (never "0 %" for a small positive)."""
    x = 100.0 * p
    if 0 < x < 1:
        return f"{x:.1f} %"
    return f"{x:.0f} %"


def days_list(ds) -> str:
    return ", ".join(f"{round(float(d), 2):g}" for d in ds)


def describe_schedule(s) -> str:
    """The schedule's RT fractions and drug doses in one line, e.g. "RT 3 x 8 Gy (irradiated) on days
    7, 8, 9; anti-PD-1 10 mg/kg on days 7, 10, 13"."""
    parts = []
    groups: dict = {}
    for f in s.rt:
        groups.setdefault((f.dose_gy, f.target), []).append(f.day)
    for (dose, target), ds in groups.items():
        where = {"irradiated": "irradiated tumour", "abscopal": "abscopal tumour", "both": "both tumours"}[target]
        parts.append(f"RT {len(ds)} x {number(dose)} Gy to the {where} on day{'s' if len(ds) > 1 else ''} {days_list(ds)}")
    drugs: dict = {}
    for d in s.drugs:
        drugs.setdefault((d.agent, d.dose, d.unit), []).append(d.day)
    for (agent, dose, unit), ds in drugs.items():
        parts.append(f"{agent} {number(dose)} {unit} on day{'s' if len(ds) > 1 else ''} {days_list(ds)}")
    return "; ".join(parts) if parts else "no treatment"


# ----------------------------------------------------------------------------- the fit's status
def spread_only(fit) -> bool:
    """True where the draws hold no parameter uncertainty: no fit, or a fit with a single draw (a
    MAP point, ``--fit NAME@map``, or a fit made with ``abscopal fit --map``)."""
    if fit is None:
        return True
    meta = getattr(fit, "meta", None) or {}
    if meta.get("point") == "map" or meta.get("method") == "map":
        return True
    try:
        return int(fit.n_samples) <= 1
    except (AttributeError, TypeError, KeyError):
        return False


def describe_fit(fit) -> str:
    """Where the parameter draws come from and what their intervals mean, said once and right."""
    from ..model.population import between_mice

    if fit is None:
        return NO_FIT_SOURCE.format(between=between_mice())
    if not hasattr(fit, "meta"):  # a stand-in object with its own description
        return fit.describe()
    if spread_only(fit):
        return (
            f"fit '{fit.name}' at its MAP point (the posterior mode: one parameter set) with inter-animal variability "
            f"({between_mice()}): "
            f"intervals show {SPREAD_ONLY}"
        )
    return fit.describe()


def record_reproduction(fit, record: str) -> str:
    """Whether ``fit`` reproduces ``record`` (from the fit folder's reproduction.json), in words."""
    if fit is None:
        return f"No fit loaded: the default parameters were not fitted to {record}; the numbers are not a reproduction of it."
    path = getattr(fit, "path", None)
    fitted = record in (getattr(fit, "meta", None) or {}).get("records", [])
    repro = Path(path) / "reproduction.json" if path is not None else None
    if repro is None or not repro.is_file():
        return f"Fit '{fit.name}': no reproduction.json in its folder; whether it reproduces {record} is unknown."
    try:
        rows = json.loads(repro.read_text())
    except (json.JSONDecodeError, OSError) as e:
        return f"Fit '{fit.name}': reproduction.json cannot be read ({e}); whether it reproduces {record} is unknown."
    row = next((r for r in rows if isinstance(r, dict) and r.get("record") == record), None)
    if row is None:
        return f"Fit '{fit.name}' was not checked against {record}: whether it reproduces it is unknown."
    p = float(row.get("probability", float("nan")))
    holds = p >= 0.8
    how = "fitted to" if fitted else "not fitted to (a check)"
    head = (
        f"Fit '{fit.name}' ({how} {record}) {'REPRODUCES' if holds else 'does NOT reproduce'} {record}: "
        f"P(reproduced) = {p:.2f} over {row.get('n_draws', '?')} draw(s)"
    )
    failed = [f"  - {obs}" for obs, v in zip(row.get("observations", []), row.get("verdicts", [])) if v != "holds"]
    lines = [head + ("." if not failed else "; observations it misses:"), *failed]
    if not holds:
        lines.append(f"  Read its numbers as the model's, not as {record}'s result (the fit's report.md has every record).")
    return "\n".join(lines)
