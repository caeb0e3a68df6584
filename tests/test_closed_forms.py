"""Sub-models with closed forms: untreated growth (logistic) and LQ survival of one fraction."""

import numpy as np
import pytest

import abscopal as ab
from helpers import NO_IMMUNITY, logistic


def test_untreated_growth_is_logistic():
    p = ab.default_params("CT26", NO_IMMUNITY)
    s = ab.Schedule(horizon_days=30, tumour_line="CT26")
    tr = ab.simulate(s, p, ab.SolverOptions(rtol=1e-10, atol=1e-12, n_out=31))
    expected = logistic(tr.days, p["v0_irr"], p["r"], p["vmax"])
    np.testing.assert_allclose(tr.state("V_irr"), expected, rtol=1e-7)
    np.testing.assert_allclose(tr.state("V_abs"), logistic(tr.days, p["v0_abs"], p["r"], p["vmax"]), rtol=1e-7)


@pytest.mark.parametrize("target", ["irradiated", "abscopal", "both"])
@pytest.mark.parametrize("dose", [2.0, 8.0, 20.0])
def test_lq_survival_after_one_fraction(target, dose):
    p = ab.default_params("generic", NO_IMMUNITY)
    day = 5.0
    s = ab.Schedule((ab.RTFraction(day, dose, target),), horizon_days=10)
    tr = ab.simulate(s, p, ab.SolverOptions(rtol=1e-10, atol=1e-12, n_out=11))  # day 5 is an output day
    i = int(np.where(tr.days == day)[0][0])
    sf = np.exp(-p["alpha"] * dose - p["alpha"] / p["ab_ratio"] * dose**2)
    for site, key in (("irradiated", "irr"), ("abscopal", "abs")):
        before = logistic(day, p[f"v0_{key}"], p["r"], p["vmax"])
        hit = target in (site, "both")
        np.testing.assert_allclose(tr.state(f"V_{key}")[i] / before, sf if hit else 1.0, rtol=1e-8)
        # the killed cells enter the doomed compartment; the measured volume is unchanged at that instant
        np.testing.assert_allclose(tr.state(f"D_{key}")[i], before * (1 - sf) if hit else 0.0, rtol=1e-8, atol=1e-12)


def test_bed_closed_form():
    assert ab.bed([8.0, 8.0, 8.0], 10.0) == pytest.approx(3 * 8 * (1 + 0.8))
    s = ab.Schedule(ab.fractionated(5, 2.0, 7.0), horizon_days=30)
    assert s.bed_gy(10.0) == pytest.approx(12.0)
    with pytest.raises(ValueError, match="ab_ratio"):
        ab.bed([2.0], 0.0)
