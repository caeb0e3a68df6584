"""Closed-form drug PK (``abscopal.model.pk``) against the ODE form of the same sympy model."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import abscopal as ab
from abscopal.model.agents import catalogue
from abscopal.model.codegen import core_functions
from abscopal.model.pk import pk_schedule, pk_states, pk_structure


def _ode_reference(ka, b, ke, doses, ts):
    """Depot and concentration of one agent from solve_ivp, doses added to the depot in Python."""
    y = np.zeros(2)
    out = np.zeros((len(ts), 2))
    times = sorted({0.0, *[d for d, _ in doses]}) + [ts[-1]]
    f = lambda t, x: [-ka * x[0], b * x[0] - ke * x[1]]
    for t0, t1 in zip(times[:-1], times[1:]):
        y = y + np.array([sum(u for d, u in doses if d == t0), 0.0])
        mask = (ts >= t0) & ((ts < t1) | (t1 == ts[-1]))
        if t1 > t0:
            sol = solve_ivp(f, (t0, t1), y, method="DOP853", rtol=1e-12, atol=1e-14, t_eval=np.unique(np.append(ts[mask], t1)))
            out[mask] = sol.y[:, : mask.sum()].T
            y = sol.y[:, -1]
    return out


@pytest.mark.parametrize("agent", ["pdl1", "pd1", "il2", "advtk"])
def test_closed_form_matches_the_ode(agent):
    pk = pk_structure()
    j = pk.agents.index(agent)
    p = ab.default_params("CT26")
    ka, b, ke = (np.asarray(r)[j] for r in core_functions("numpy")[4](p.values))
    doses = [(3.0, 200.0), (5.5, 100.0), (8.0, 200.0)]
    ts = np.linspace(0.0, 20.0, 81)
    ref = _ode_reference(ka, b, ke, doses, ts)
    # a pad (amount 0) after the doses, as the solver's padded arrays have
    agent, amount = np.array([j, j, j, 0]), np.array([u for _, u in doses] + [0.0])
    d = dict(time=jnp.array([t for t, _ in doses] + [20.0]), agent=jnp.asarray(agent), amount=jnp.asarray(amount))
    # two slots, the second unused (as a schedule with fewer agents than slots has)
    d.update(slot=jnp.zeros(4, int), slot_agent=jnp.array([j, 0]), slot_used=jnp.array([True, False]))
    c = pk_schedule(tuple(jnp.asarray(r) for r in core_functions("jax")[4](jnp.asarray(p.values))), d)
    depot, conc = (np.asarray(x)[:, j] for x in pk_states(jnp.asarray(ts), c))
    np.testing.assert_allclose(depot, ref[:, 0], rtol=1e-10, atol=1e-10 * ref[:, 0].max())
    np.testing.assert_allclose(conc, ref[:, 1], rtol=1e-10, atol=1e-10 * ref[:, 1].max())
    # the other agents stay at zero
    others = np.delete(np.asarray(pk_states(jnp.asarray(ts), c)[1]), j, axis=1)
    assert np.all(others == 0.0)


def test_equal_rates_limit_is_finite_and_continuous():
    """ka = ke (the 0/0 of the textbook formula) gives u b s exp(-k s), and nearby rates agree."""
    s = jnp.linspace(0.0, 10.0, 11)
    for gap in (0.0, 1e-9, 1e-5, 1e-4, 0.5):
        rates = (jnp.array([1.0 + gap]), jnp.array([1.0]), jnp.array([1.0]))  # ka, b, ke
        d = dict(time=jnp.zeros(1), agent=jnp.zeros(1, int), amount=jnp.ones(1))
        d.update(slot=jnp.zeros(1, int), slot_agent=jnp.zeros(1, int), slot_used=jnp.ones(1, bool))
        conc = np.asarray(pk_states(s, pk_schedule(rates, d))[1])[:, 0]
        ka, sn = 1.0 + gap, np.asarray(s)
        exact = sn * np.exp(-sn) if gap == 0 else (np.exp(-sn) - np.exp(-ka * sn)) / (ka - 1.0)
        # (numpy's difference quotient itself loses ~7 digits at gap 1e-9)
        np.testing.assert_allclose(conc, exact, rtol=1e-6 if gap == 1e-9 else 1e-10)


def test_structure_is_read_off_the_model():
    pk = pk_structure()
    m = ab.build_model()
    assert len(pk.agents) == sum(a.has_pk for a in catalogue())
    assert len(pk.core_states) + 2 * len(pk.agents) == len(m.state_names)
    assert not any(n.startswith(("A_", "C_")) for n in pk.core_states)
