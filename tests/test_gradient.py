"""Reverse-mode gradient through the solver against central finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import abscopal as ab
from abscopal.simulation.simulate import solve
from helpers import canonical_schedules

NAMES = ["r", "alpha", "k_kill", "k_prime", "ec50_pdl1", "K_sup"]


def test_gradient_of_end_point_matches_finite_differences():
    s = canonical_schedules()["rt_pdl1_concurrent"]
    p0 = ab.default_params(s.tumour_line)
    events = {k: v for k, v in s.to_arrays(p0.body_weight_g).items() if k != "horizon"}
    horizon = s.horizon_days
    names = ab.build_model().state_names
    i_v, i_d = names.index("V_abs"), names.index("D_abs")
    idx = jnp.array([p0.index(n) for n in NAMES])
    opts = dict(rtol=1e-10, atol=1e-12, max_steps=100_000, n_out=31)

    def endpoint(logp):  # log abscopal volume at the horizon, as a function of log parameters
        p = jnp.asarray(p0.values).at[idx].set(jnp.exp(logp))
        _, ys, _ = solve(p, events, horizon, **opts)
        return jnp.log(ys[-1, i_v] + ys[-1, i_d])

    x0 = jnp.log(jnp.array([p0[n] for n in NAMES]))
    grad = np.asarray(jax.grad(endpoint)(x0))
    h = 1e-5
    fd = np.array([(endpoint(x0.at[k].add(h)) - endpoint(x0.at[k].add(-h))) / (2 * h) for k in range(len(NAMES))])
    assert np.all(np.abs(grad) > 1e-6), "every chosen parameter should influence the end point"
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-7)


@pytest.mark.slow  # an opt-in path no caller in the package uses (47 s of the quick suite)
def test_backsolve_adjoint_matches_the_checkpointed_gradient():
    """The continuous adjoint (opt-in, cheaper) against the exact gradient of the discrete solve."""
    s = canonical_schedules()["rt_pdl1_concurrent"]
    p0 = ab.default_params(s.tumour_line)
    events = {k: v for k, v in s.to_arrays(p0.body_weight_g).items() if k != "horizon"}
    names = ab.build_model().state_names
    i_v, i_d = names.index("V_abs"), names.index("D_abs")

    def endpoint(p, adjoint):
        _, ys, _ = solve(p, events, s.horizon_days, rtol=1e-8, atol=1e-11, max_steps=4096, n_out=31, adjoint=adjoint)
        return jnp.log(ys[-1, i_v] + ys[-1, i_d])

    p = jnp.asarray(p0.values)
    exact = np.asarray(jax.grad(endpoint)(p, "checkpoint"))
    back = np.asarray(jax.grad(endpoint)(p, "backsolve"))
    scale = np.abs(exact).max()
    np.testing.assert_allclose(back, exact, rtol=1e-3, atol=1e-6 * scale)


def test_unknown_adjoint_is_a_clear_error():
    import pytest

    s = canonical_schedules()["rt_pdl1_concurrent"]
    p0 = ab.default_params(s.tumour_line)
    events = {k: v for k, v in s.to_arrays(p0.body_weight_g).items() if k != "horizon"}
    with pytest.raises(ValueError, match="adjoint"):
        solve(jnp.asarray(p0.values), events, s.horizon_days, adjoint="reverse-ish")
