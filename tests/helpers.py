"""Shared test helpers."""

import numpy as np

import abscopal as ab

# immunity switched off: no priming, no baseline infiltrate, no memory recall -> pure tumour growth + RT
NO_IMMUNITY = {"k_prime": 0.0, "e0": 0.0}


def logistic(t, v0, r, vmax):
    return vmax / (1 + (vmax / v0 - 1) * np.exp(-r * t))


def canonical_schedules():
    rt = ab.fractionated(5, 2.0, 7.0)
    return {
        "untreated": ab.Schedule(horizon_days=30, tumour_line="CT26", name="untreated"),
        "rt_pdl1_concurrent": ab.concurrent(
            rt, "anti-PD-L1", 10, "mg/kg", n_doses=6, every=2.33, horizon_days=30, tumour_line="CT26"
        ),
        "sbrt_multi": ab.Schedule(
            ab.fractionated(3, 8.0, 8.0, target="irradiated") + (ab.RTFraction(9.5, 4.0, "both"),),
            ab.drug_course("anti-CTLA-4", 200, "ug", 8, 3, 3)
            + ab.drug_course("Flt3L", 10, "ug", 9, 5, 1)
            + ab.drug_course("T-cells", 1e6, "cells", 12, 1, 1)
            + ab.drug_course("STING-agonist", 10, "ug", 10, 2, 2)
            + ab.drug_course("CSF-1R-inhibitor", 30, "mg/kg", 8, 4, 2),
            horizon_days=30,
            tumour_line="B16-F10",
            name="sbrt_multi",
        ),
    }
