"""Schedules of different lengths reuse one compilation (padded events, one lax.scan)."""

import abscopal as ab
from abscopal.simulation.simulate import TRACE_COUNT


def test_schedules_of_different_lengths_share_one_trace():
    p = ab.default_params("generic")
    opts = ab.SolverOptions(n_out=17)  # static arguments unique to this test
    ab.simulate(ab.Schedule(horizon_days=20), p, opts)
    after_first = TRACE_COUNT["core"]
    schedules = [
        ab.Schedule(ab.fractionated(1, 8.0, 5.0), horizon_days=20),
        ab.Schedule(ab.fractionated(10, 2.0, 3.0), ab.drug_course("anti-PD-1", 10, "mg/kg", 3, 5, 2), horizon_days=25),
        ab.concurrent(ab.fractionated(3, 8.0, 4.0), "IL-2", 5, "ug", n_doses=30, every=0.5, horizon_days=40),
    ]
    for s in schedules:
        ab.simulate(s, p, opts)
    assert TRACE_COUNT["core"] == after_first
    # a different tumour line is only different numbers: no new trace either
    ab.simulate(schedules[0].with_(tumour_line="B16-F10"), ab.default_params("B16-F10"), opts)
    assert TRACE_COUNT["core"] == after_first
