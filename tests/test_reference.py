"""The full model against scipy.integrate.solve_ivp at tight tolerance, on canonical schedules."""

import numpy as np
import pytest

import abscopal as ab
from abscopal.simulation.reference import solve_reference
from helpers import canonical_schedules


@pytest.mark.parametrize("name", list(canonical_schedules()))
def test_matches_solve_ivp(name):
    s = canonical_schedules()[name]
    p = ab.default_params(s.tumour_line)
    tr = ab.simulate(s, p, ab.SolverOptions(rtol=1e-10, atol=1e-12, max_steps=100_000, n_out=61))
    ref = solve_reference(s, p, tr.days, method="DOP853", rtol=1e-10, atol=1e-12)
    scale = np.maximum(np.abs(ref).max(axis=0), 1e-12)  # per-state scale for states that stay near zero
    # relative error with a floor of 1e-5 of each state's peak: a drug depot that has decayed ~60
    # e-folds (true value ~1e-24) carries DOP853's own absolute error (~3e-9 of a 200 ug dose)
    err = np.abs(tr.states - ref) / (np.abs(ref) + 1e-5 * scale)
    assert np.all(np.isfinite(tr.states))
    assert err.max() < 1e-5, f"worst state {ab.build_model().state_names[err.max(axis=0).argmax()]}: {err.max():.2e}"
    # the tumour volumes themselves, plain relative error
    names = ab.build_model().state_names
    for site, key in (("irradiated", "irr"), ("abscopal", "abs")):
        ref_v = ref[:, names.index(f"V_{key}")] + ref[:, names.index(f"D_{key}")]
        np.testing.assert_allclose(tr.volume(site), ref_v, rtol=1e-5)
