"""Drug pharmacokinetics in closed form.

Every PK agent of the model (``equations.build_model``) has a linear two-compartment chain: a depot
``A`` (dose in ug, absorbed at rate ``ka``) feeding a central concentration ``C`` (ug/mL) that is
eliminated at rate ``ke``::

    dA/dt = -ka A,        dC/dt = b A - ke C        (b = ka / vd)

A dose ``u`` given at ``t_d`` into the depot contributes, for ``s = t - t_d >= 0``,

    A(t) = u exp(-ka s),
    C(t) = u b (exp(-ke s) - exp(-ka s)) / (ka - ke)

(the Bateman function; at ``ka = ke`` its limit ``u b s exp(-ke s)``, which ``_bateman`` reaches
through a Taylor series near the limit). Doses add (superposition). So the ODE integrates only the
tumour/immune states and reads each agent's concentration as a function of time.

The rates are not restated here: ``pk_structure`` reads ``ka``, ``b`` and ``ke`` off the sympy
right-hand sides of the PK states (and checks that they are linear and depend on nothing else), so
the equations stay the single source. ``tests/test_pk.py`` checks the closed form against
``scipy.integrate.solve_ivp`` of the ODE form (rtol 1e-10).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np
import sympy as sp

from .agents import catalogue
from .equations import build_model


@dataclass(frozen=True)
class PKStructure:
    """Where the PK agents sit in the model and their rate expressions (from the sympy model)."""

    agents: tuple[str, ...]  # keys of the PK agents, model order
    depot_states: tuple[str, ...]  # A_<key>
    conc_states: tuple[str, ...]  # C_<key>
    ka: tuple[sp.Expr, ...]
    b: tuple[sp.Expr, ...]  # ka / vd: concentration gained per unit depot amount per day
    ke: tuple[sp.Expr, ...]
    pk_index: np.ndarray  # (n_agents,) catalogue index -> PK index, -1 for agents without PK
    core_states: tuple[str, ...]  # the states the ODE integrates (model order, PK states left out)


@cache
def pk_structure() -> PKStructure:
    """Read the linear PK chain of every PK agent off the model's right-hand sides."""
    m = build_model()
    rhs = dict(zip(m.state_names, m.rhs))
    sym = {s.name: s for s in m.states}
    keys, ka, b, ke = [], [], [], []
    pk_index = np.full(len(catalogue()), -1, dtype=np.int32)
    for i, a in enumerate(catalogue()):
        if not a.has_pk:
            continue
        pk_index[i] = len(keys)
        A, C = sym[f"A_{a.key}"], sym[f"C_{a.key}"]
        ra, rc = sp.expand(rhs[A.name]), sp.expand(rhs[C.name])
        k_a = -sp.diff(ra, A)
        b_a = sp.diff(rc, A)
        k_e = -sp.diff(rc, C)
        if sp.simplify(ra + k_a * A) != 0 or sp.simplify(rc - b_a * A + k_e * C) != 0:
            raise ValueError(f"agent {a.key}: the PK equations are not the linear depot -> central chain")
        if (k_a.free_symbols | b_a.free_symbols | k_e.free_symbols) & set(m.states):
            raise ValueError(f"agent {a.key}: PK rates depend on a state")
        keys.append(a.key)
        ka.append(k_a)
        b.append(b_a)
        ke.append(k_e)
    pk_names = {f"A_{k}" for k in keys} | {f"C_{k}" for k in keys}
    # every other state's right-hand side may read the concentrations, never the depots
    for name, expr in rhs.items():
        if name not in pk_names and expr.free_symbols & {sym[f"A_{k}"] for k in keys}:
            raise ValueError(f"state {name}: its right-hand side reads a drug depot")
    return PKStructure(
        agents=tuple(keys),
        depot_states=tuple(f"A_{k}" for k in keys),
        conc_states=tuple(f"C_{k}" for k in keys),
        ka=tuple(ka),
        b=tuple(b),
        ke=tuple(ke),
        pk_index=pk_index,
        core_states=tuple(n for n in m.state_names if n not in pk_names),
    )


def pk_schedule(rates, doses):
    """The closed form's constants for one schedule, computed once per solve (not in the right-hand
    side): the depot amount and concentration of each of the schedule's agents just after each dose.

    ``rates``: ``(ka, b, ke)``, each (n_pk[, N]) (a trailing lane axis for mice solved as one
    system). ``doses``: dict of ``time`` (D,) in increasing order, ``agent`` (D,) PK index,
    ``amount`` (D,) in the agent's internal unit (0: a pad; pads last, any time), ``slot`` (D,) the
    dose's slot among the schedule's distinct agents, ``slot_agent`` and ``slot_used`` (n_slots,)
    which agent a slot holds (``solver.split_events``).

    Between knots the chain is propagated exactly from the last knot's state ``(A_i, C_i)``:
    ``A = A_i exp(-ka s)``, ``C = C_i exp(-ke s) + b A_i (exp(-ke s) - exp(-ka s)) / (ka - ke)``:
    two exponentials per agent in use, whatever the number of doses."""
    ka, b, ke = rates
    slot_agent = doses["slot_agent"]  # (n_slots,) PK index of each slot (any value when unused)
    n_slots = slot_agent.shape[0]
    lane = ka.shape[1:]
    take = lambda x: x[jnp.clip(slot_agent, 0, ka.shape[0] - 1)]  # (n_slots[, N])
    r = dict(ka=take(ka), b=take(b), ke=take(ke))
    r["gap"] = jnp.abs(r["ka"] - r["ke"])
    given = doses["amount"] != 0
    t = jnp.where(given, doses["time"], jnp.inf)
    into = (doses["slot"][:, None] == jnp.arange(n_slots)[None, :]) & given[:, None]  # (D, n_slots)
    into = into.reshape(into.shape + (1,) * len(lane))
    u = doses["amount"].reshape((-1,) + (1,) * (len(lane) + 1)) * into  # (D, n_slots[, N])

    def propagate(state, x):
        tau, A, C = state
        t_d, u_d = x
        s = jnp.where(jnp.isfinite(t_d), t_d - tau, 0.0)
        A1, C1 = _advance(r, A, C, s)
        A1 = A1 + u_d
        tau1 = jnp.where(jnp.isfinite(t_d), t_d, tau)
        return (tau1, A1, C1), (tau1, A1, C1)

    zero = jnp.zeros((n_slots,) + lane)
    _, (tau, A, C) = jax.lax.scan(propagate, (jnp.zeros(()), zero, zero), (t, u))
    knots = dict(
        t=jnp.concatenate([jnp.zeros(1), tau]),
        A=jnp.concatenate([zero[None], A]),
        C=jnp.concatenate([zero[None], C]),
    )
    onehot = (slot_agent[:, None] == jnp.arange(ka.shape[0])[None, :]) & doses["slot_used"][:, None]
    return dict(rates=r, knots=knots, dose_t=t, onehot=onehot.astype(ka.dtype))


def _advance(r, A, C, s):
    """Exact propagation of the depot -> central chain over ``s`` days (no dose in between)."""
    e_a = jnp.exp(-r["ka"] * s)
    e_e = jnp.exp(-r["ke"] * s)
    return A * e_a, C * e_e + r["b"] * A * _bateman(r, s, e_a, e_e)


def _bateman(r, s, e_a, e_e):
    """``(exp(-ke s) - exp(-ka s)) / (ka - ke)`` from the two exponentials already computed: the
    difference quotient where ``|ka - ke| s > 1e-3`` (it loses at most 3 of 16 digits), its Taylor
    series below (truncation < 1e-10 relative)."""
    x = r["gap"] * s
    e_lo = jnp.where(r["ka"] < r["ke"], e_a, e_e)
    far = x > 1e-3
    quotient = jnp.abs(e_e - e_a) / jnp.where(far, r["gap"], 1.0)
    return jnp.where(far, quotient, s * e_lo * (1.0 - x / 2.0 + x * x / 6.0))


def _state_at(t, c):
    """(A, C) of the slots at time ``t`` (scalar): from the last knot at or before ``t``."""
    i = jnp.sum(c["dose_t"] <= t)  # doses given by t (the knots' index: 0 is before any dose)
    s = t - c["knots"]["t"][i]
    return _advance(c["rates"], c["knots"]["A"][i], c["knots"]["C"][i], s)


def concentrations(t, c):
    """Every PK agent's central concentration at time ``t`` (scalar): (n_pk[, N])."""

    def given(_):
        _, C = _state_at(t, c)
        onehot = c["onehot"].reshape(c["onehot"].shape + (1,) * (C.ndim - 1))
        return jnp.sum(onehot * C[:, None], axis=0)  # (elementwise: fuses with the rest, unlike a dot)

    shape = (c["onehot"].shape[1],) + c["knots"]["C"].shape[2:]
    # a schedule without doses (or before its first) skips the closed form (under vmap: both run)
    return jax.lax.cond(t >= c["dose_t"][0], given, lambda _: jnp.zeros(shape, c["knots"]["C"].dtype), None)


def pk_states(ts, c):
    """Depot amounts and concentrations at days ``ts`` (T,): two arrays (T, n_pk[, N]). A dose on an
    output day counts as given (the post-event state, as for every event)."""
    A, C = jax.vmap(lambda t: _state_at(t, c))(ts)  # (T, n_slots[, N])
    mix = lambda x: jnp.moveaxis(jnp.tensordot(c["onehot"], x, axes=([0], [1])), 0, 1)
    return mix(A), mix(C)
