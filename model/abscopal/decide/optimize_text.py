"""The optimiser's result as text: the objective, the best candidate per number of fractions (volumes
at the detection floor read as such), the optimum's RT fractions and drug doses, and its comparison
with the standard schedules."""

from __future__ import annotations

from ..simulation.outcomes import DETECTION_FLOOR_MM3
from . import display
from .compare import format_table
from .optimize import FLOOR_TAU, OBJECTIVES


def _value(objective: float, unit: str) -> str:
    if unit != "mm^3":
        return f"{display.percent(objective)} (smooth surrogate)"
    if objective < DETECTION_FLOOR_MM3 * (1 + FLOOR_TAU):  # the smooth floor: at most 1.07 mm3 for any sub-floor mean
        return f"at the detection floor (< {DETECTION_FLOOR_MM3 * (1 + FLOOR_TAU):.3g} mm3)"
    return display.number(objective, "mm3")


def format_result(r) -> str:
    p, c = r.problem, r.candidates
    desc, unit, _, kind = OBJECTIVES[p.objective]
    cap = f"total BED <= {p.cap:g} Gy at alpha/beta {p.ab_ratio:g} Gy" if p.constraint == "bed" else f"total dose <= {p.cap:g} Gy"
    goal = (
        ("minimise " if kind == "volume" else "maximise ")
        + desc
        + (f" (upper {100 * p.quantile:g} % quantile)" if p.quantile else "")
    )
    lines = [
        f"Parameter draws: {r.source}",
        f"Objective: {goal}; constraint: {cap}; horizon: day {p.horizon_days:g}.",
        f"(Volumes pass a smooth floor at {DETECTION_FLOOR_MM3:g} mm3; a mouse whose tumour burden reaches the end point "
        "is never counted cured.)",
        "",
        "Best candidate per number of fractions:",
    ]
    per_n = c.groupby("n_fractions", sort=False).head(1).sort_values("n_fractions")
    for _, row in per_n.iterrows():
        lines.append(
            f"  {int(row.n_fractions):2d} x {display.number(row.dose_per_fraction_gy)} Gy (BED {display.number(row.bed_gy)} Gy, "
            f"total {display.number(row.total_dose_gy)} Gy), drug start {row.gap_days:+.1f} d (day {row.drug_start_day:.1f}), "
            f"every {row.every_days:.1f} d: {_value(row.objective, unit)}"
        )
    lines += ["", f"Optimum: {r.schedule.name}", f"  {display.describe_schedule(r.schedule)}", ""]
    if r.comparison is not None:
        lines.append(format_table(r.comparison))
    return "\n".join(lines)
