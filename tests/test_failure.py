"""A failed solve is an error (or a flag in the non-throwing mode), never a silent NaN."""

import jax.numpy as jnp
import numpy as np
import pytest

import abscopal as ab
from abscopal.simulation.simulate import solve_batch


def test_step_limit_raises():
    s = ab.Schedule(ab.fractionated(3, 8.0, 5.0), horizon_days=30)
    with pytest.raises(ab.SimulationError, match="ODE solve failed"):
        ab.simulate(s, options=ab.SolverOptions(max_steps=3))


def test_non_throwing_mode_flags_failure():
    s = ab.Schedule(ab.fractionated(3, 8.0, 5.0), horizon_days=30)
    tr = ab.simulate(s, options=ab.SolverOptions(max_steps=3), throw=False)
    assert tr.ok is False


def test_batch_flags_only_the_bad_member():
    p = ab.default_params()
    bad = p.replace(r=1e6)  # explosive growth: the step limit is hit
    s = ab.Schedule(horizon_days=20)
    ev = {k: v for k, v in s.to_arrays().items() if k != "horizon"}
    _, ys, ok = solve_batch(jnp.stack([jnp.asarray(p.values), jnp.asarray(bad.values)]), ev, 20.0, max_steps=500, n_out=11)
    ok = np.asarray(ok)
    assert ok[0] and not ok[1]
    assert np.all(np.isfinite(np.asarray(ys)[0]))


def test_params_reject_non_finite():
    with pytest.raises(ValueError, match="parameter r: value must be finite"):
        ab.default_params().replace(r=float("nan"))
    with pytest.raises(ValueError, match="unknown tumour_line"):
        ab.default_params("XYZ")
