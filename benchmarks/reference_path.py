"""The likelihood's solve path as shipped before the closed-form PK (2026-11-28): every arm's 64
states (22 tumour/immune + 42 drug PK) integrated by one ``vmap`` over arms, one ``diffeqsolve`` per
output day and per padded event slot (the population's mice then were lanes of one system per arm;
the cohort's mice now are rows of the same vmap). Kept here, outside the package, only as the reference that
``bench_likelihood.py`` times the package's path against; nothing in ``abscopal`` imports it.
"""

from __future__ import annotations

import diffrax as dfx
import jax
import jax.numpy as jnp

from abscopal.inference import likelihood
from abscopal.model.codegen import functions
from abscopal.schedules import EVENT_DRUG, EVENT_RT


def _max_norm(x):
    return jnp.max(jnp.abs(x))


def _vector_field(t, y, p):
    return functions("jax")[0](y, p)


def solve_core_shipped(p, events, horizon, *, rtol, atol, max_steps, n_out):
    """The shipped core: a scan over the merged, sorted event and output days, one solve each."""
    _, initial, rt_event, bolus_matrix = functions("jax")
    y0 = initial(p)
    B = bolus_matrix(p)
    ts = jnp.linspace(0.0, horizon, n_out)
    n_ev = events["time"].shape[0]
    times = jnp.concatenate([events["time"], ts])
    order = jnp.argsort(times, stable=True)
    point = dict(
        t=times[order],
        kind=jnp.concatenate([events["kind"], jnp.zeros(n_out, events["kind"].dtype)])[order],
        value=jnp.concatenate([events["value"], jnp.zeros(n_out)])[order],
        on_irr=jnp.concatenate([events["on_irr"], jnp.zeros(n_out)])[order],
        on_abs=jnp.concatenate([events["on_abs"], jnp.zeros(n_out)])[order],
        agent=jnp.concatenate([events["agent"], jnp.zeros(n_out, events["agent"].dtype)])[order],
    )
    term = dfx.ODETerm(_vector_field)
    controller = dfx.PIDController(rtol=rtol, atol=atol, norm=_max_norm)

    def step(carry, pt):
        t_prev, y, ok = carry
        sol = dfx.diffeqsolve(
            term, dfx.Tsit5(), t_prev, pt["t"], None, y, args=p, saveat=dfx.SaveAt(t1=True),
            stepsize_controller=controller, max_steps=max_steps, throw=False,
            adjoint=dfx.RecursiveCheckpointAdjoint(),
        )  # fmt: skip
        y_new = sol.ys[-1]
        seg_ok = (sol.result == dfx.RESULTS.successful) & jnp.all(jnp.isfinite(y_new))
        y_new = jnp.where(seg_ok, y_new, y)
        y_new = jnp.where(pt["kind"] == EVENT_RT, rt_event(y_new, p, pt["value"], pt["on_irr"], pt["on_abs"]), y_new)
        y_new = jnp.where(pt["kind"] == EVENT_DRUG, y_new + pt["value"] * B[pt["agent"]], y_new)
        return (pt["t"], y_new, ok & seg_ok), y_new

    (_, _, ok), ys = jax.lax.scan(step, (jnp.zeros(()), y0, jnp.bool_(True)), point)
    position = jnp.argsort(order)[n_ev:]
    return ts, ys[position], ok


def solve_arms_shipped(prob, P, rtol=1e-5, atol=1e-8, max_steps=256):
    """All arms in one vmap; the cohort's mice (``inference/cohort``: grid, refinements, critical
    mice) each through one vmap of the same path (the shipped path's mice were lanes of one system
    per arm; the cohort needs its mice per arm and node, so they are vmapped rows here)."""
    import numpy as np

    from abscopal.inference import cohort

    kw = dict(rtol=rtol, atol=atol, max_steps=max_steps, n_out=prob.n_out)
    ev = {k: jnp.asarray(v) for k, v in prob.events.items()}
    horizon = jnp.asarray(prob.horizon)

    def solve_rows(rows, arms, active=None):  # every row solved (the shipped path skipped nothing)
        arms = np.asarray(arms)
        _, ys, ok = jax.vmap(lambda p, e, h: solve_core_shipped(p, e, h, **kw))(
            rows, {k: v[arms] for k, v in ev.items()}, horizon[arms]
        )
        return likelihood._observables(ys, rows[:, None, :]), ok

    obs, ok = solve_rows(P, np.arange(prob.n_arms))
    frac, ok_f = cohort.cohort_fractions(prob, P, solve_rows)
    return obs, frac, jnp.all(ok) & ok_f


SHIPPED_SOLVER = dict(rtol=1e-5, atol=1e-8, max_steps=256)
