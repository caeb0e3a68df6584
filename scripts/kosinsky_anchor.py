"""Numbers the credibility checks quote from the Kosinsky 2018 model (BioModels BIOMD0000000863),
computed with libroadrunner from its SBML: the typical CT26 mouse's total volume (TV + TVd, uL =
mm^3) untreated and under RT alone (5 x 2 Gy on days 7-11, Dovedi 2014's schedule), and the day it
reaches 1000 mm^3.

The SBML sets ``radiation_Dose`` to 0 by an assignment rule and never irradiates. Read as the paper
means it (``shared/anchors/README.md``, "Doubts" and "Recipe"): ``radiation_Dose`` is a dose *rate*
(Gy/day), so a fraction of D Gy is a pulse of D/dt for dt = 0.002 day (0.8 Gy/min delivery, about
2.5 min per 2 Gy), and the DSB repair is ``U / tau`` (tau = 0.02 day is the repair *time*; the
file's ``tau * U`` gives DSBs a 35-day half-life and eradicates every irradiated tumour; with
``U / tau`` the quadratic term is LQ with alpha/beta = 10 Gy). Until 2026-12-07 this script held
``radiation_Dose`` at D for ``tau`` days, which delivers 2 % of each fraction (RT alone then reached
1000 mm^3 on day 21.1, almost the control's 19.6). Not used at run time or in the tests (the SBML is reference material
outside the package); ``abscopal.decide.scenarios`` carries the printed numbers with this provenance.

Run: python scripts/kosinsky_anchor.py [path/to/Kosinsky2018.xml]
"""

from __future__ import annotations

import sys

import numpy as np

#: delivery time of one fraction (days): 0.8 Gy/min, the rate of the underlying experiments
PULSE_DAYS = 0.002


def course(sbml: str, rt_days=(), dose_gy: float = 2.0, end: float = 60.0):
    import roadrunner

    r = roadrunner.RoadRunner(sbml)
    r.removeRules("radiation_Dose")
    r.setKineticLaw("DSB_Repair", "compartment * U / tau", True)  # the repair time, read as such
    rate = dose_gy / PULSE_DAYS
    events = sorted([(d, rate) for d in rt_days] + [(d + PULSE_DAYS, 0.0) for d in rt_days]) + [(end, None)]
    t, parts = 0.0, []
    for te, value in events:
        if te > t:
            parts.append(np.asarray(r.simulate(t, te, max(2, int(round((te - t) * 20)) + 1))))
            t = te
        if value is not None:
            r["radiation_Dose"] = value
    a = np.vstack(parts)
    cols = r.timeCourseSelections
    return a[:, 0], a[:, cols.index("[TV]")] + a[:, cols.index("[TVd]")]


def main() -> None:
    sbml = sys.argv[1] if len(sys.argv) > 1 else "../shared/anchors/Kosinsky2018.xml"
    for label, days in (("untreated", ()), ("RT 5 x 2 Gy, days 7-11", (7, 8, 9, 10, 11))):
        t, v = course(sbml, days)
        at = ", ".join(f"day {d}: {np.interp(d, t, v):.0f}" for d in (7, 11, 15, 20, 25, 30))
        cross = float(t[np.argmax(v > 1000)]) if (v > 1000).any() else float("inf")
        print(f"{label}: {at} mm^3; 1000 mm^3 on day {cross:.1f}")


if __name__ == "__main__":
    main()
