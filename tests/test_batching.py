"""vmap over parameter sets and schedules, and the cohort-as-one-system path, agree with single solves."""

import jax.numpy as jnp
import numpy as np

import abscopal as ab
from abscopal.model.population import virtual_population
from abscopal.simulation.simulate import simulate_population, solve, solve_batch, stack_schedules
from helpers import canonical_schedules

KW = dict(rtol=1e-9, atol=1e-12, max_steps=100_000, n_out=31)


def _events(s):
    return {k: v for k, v in s.to_arrays().items() if k != "horizon"}


def test_cohort_as_one_system_matches_single_solves():
    s = canonical_schedules()["rt_pdl1_concurrent"]
    p = ab.default_params(s.tumour_line)
    pop = virtual_population(p, 5, seed=1)
    _, ys, ok = simulate_population(s, pop, ab.SolverOptions(**KW), chunk=4)  # 2 chunks, the second padded
    assert ys.shape[0] == 5 and ok.all()
    for i in range(5):
        _, y1, ok1 = solve(jnp.asarray(pop[i]), _events(s), s.horizon_days, **KW)
        assert bool(ok1)
        np.testing.assert_allclose(ys[i], np.asarray(y1), rtol=1e-6, atol=1e-9)


def test_vmap_over_schedules_matches_single_solves():
    schedules = [
        canonical_schedules()[k].with_(tumour_line="CT26", horizon_days=30)
        for k in ("untreated", "rt_pdl1_concurrent", "sbrt_multi")
    ]
    p = ab.default_params("CT26")
    events, horizons = stack_schedules(schedules)
    _, ys, ok = solve_batch(jnp.asarray(p.values), events, jnp.asarray(horizons), batch_params=False, batch_events=True, **KW)
    assert np.asarray(ok).all()
    for j, s in enumerate(schedules):
        _, y1, _ = solve(jnp.asarray(p.values), _events(s), s.horizon_days, **KW)
        np.testing.assert_allclose(np.asarray(ys[j]), np.asarray(y1), rtol=1e-6, atol=1e-9)


def test_virtual_population_is_reproducible_and_validated():
    p = ab.default_params()
    a, b = virtual_population(p, 10, seed=3), virtual_population(p, 10, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, virtual_population(p, 10, seed=4))
    i = p.index("r")
    assert np.all(a[:, i] > 0) and np.std(np.log(a[:, i])) > 0
    import pytest

    with pytest.raises(ValueError, match="n: number of virtual mice"):
        virtual_population(p, 0)
