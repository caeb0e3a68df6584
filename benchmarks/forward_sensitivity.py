"""Experiment (2026-12-07, not used by the package): the parameter derivatives of one schedule's
solve by forward sensitivities, tried against diffrax's checkpointed reverse mode for the fit's
gradient; measured 2.9x slower by ``bench_gradient_modes.py`` (``results_gradient_modes.md``).

The ODE is augmented with the sensitivity matrix S = dz/dtheta of the 22 core states (in their log
form) to the K estimated parameters: dS/dt = (df/dz) S + df/dtheta, each column a ``jax.jvp`` of
the right-hand side (vmapped over the K columns; the primal is computed once). The step-size
controller reads only the states' error (partial error control). State jumps carry S through the
jvp of the jump map; the closed-form PK coefficients and the initial state carry their own
derivatives. Returns the full states and their derivatives (K, n_out, n_states), the Jacobian the
fit's chain rule needs. Agrees with reverse mode to 1e-12 (relative) on the review's arms.
"""

import diffrax as dfx
import jax
import jax.numpy as jnp

from abscopal.model.codegen import core_functions
from abscopal.model.pk import pk_schedule, pk_states
from abscopal.simulation import solver as S


def solve_segments_sens(p, jumps, doses, horizon, days, cols, *, rtol, atol, max_steps):
    _, initial, _, bolus_matrix, pk_rates = core_functions("jax")
    K = len(cols)
    E = jnp.zeros((K, p.shape[0]), p.dtype).at[jnp.arange(K), jnp.asarray(cols)].set(1.0)
    coef_of = lambda q: pk_schedule(pk_rates(q), doses)
    coef = coef_of(p)
    dcoef = jax.vmap(lambda e: jax.jvp(coef_of, (p,), (e,))[1])(E)
    init = lambda q: S.to_log(initial(q))
    y0 = init(p)
    S0 = jax.vmap(lambda e: jax.jvp(init, (p,), (e,))[1])(E)
    B = bolus_matrix(p)
    dB = jax.vmap(lambda e: jax.jvp(bolus_matrix, (p,), (e,))[1])(E)
    seg = S.segment_table(jumps, horizon)

    n = y0.shape[0]
    pack = lambda z, Sm: jnp.concatenate([z, Sm.ravel()])
    unpack = lambda y: (y[..., :n], y[..., n:].reshape(y.shape[:-1] + (K, n)))

    def vf(t, y, args):
        z, Sm = unpack(y)
        g = lambda z_, p_, c_: S._vector_field(t, z_, (p_, c_))
        f = g(z, p, coef)
        dS = jax.vmap(lambda s, e, dc: jax.jvp(g, (z, p, coef), (s, e, dc))[1])(Sm, E, dcoef)
        return pack(f, dS)

    term = dfx.ODETerm(vf)
    dose_ts = jnp.where(doses["amount"] != 0, doses["time"], horizon + 1.0)
    tol = S._tolerances(y0, rtol, atol)
    controller = dfx.ClipStepSizeController(
        dfx.PIDController(rtol=rtol, atol=pack(tol, jnp.ones_like(S0)), norm=lambda e: jnp.max(jnp.abs(e[:n]))), step_ts=dose_ts
    )

    def integrate(y, s):
        sol = dfx.diffeqsolve(
            term,
            dfx.Tsit5(),
            s["t0"],
            s["t1"],
            None,
            y,
            saveat=dfx.SaveAt(ts=jnp.clip(days, s["t0"], s["t1"])),
            stepsize_controller=controller,
            max_steps=max_steps,
            throw=False,
            adjoint=dfx.ForwardMode(),
        )
        good = (sol.result == dfx.RESULTS.successful) & jnp.all(jnp.isfinite(sol.ys))
        return jnp.where(good, sol.ys, y[None]), good

    def hold(y, s):
        return jnp.broadcast_to(y[None], (days.shape[0],) + y.shape), jnp.bool_(True)

    def step(carry, s):
        y, ok, out = carry
        ys, good = jax.lax.cond(s["t1"] > s["t0"], integrate, hold, y, s)
        inside = (days >= s["t0"]) & ((days < s["t1"]) | s["last"])
        out = jnp.where(inside[:, None], ys, out)
        z, Sm = unpack(ys[-1])
        zn = S.apply_jump(z, s, p, B)
        Sn = jax.vmap(lambda sv, e, db: jax.jvp(lambda z_, q_, B_: S.apply_jump(z_, s, q_, B_), (z, p, B), (sv, e, db))[1])(
            Sm, E, dB
        )
        return (pack(zn, Sn), ok & good, out), None

    ya = pack(y0, S0)
    out0 = jnp.zeros((days.shape[0],) + ya.shape)
    (_, ok, outs), _ = jax.lax.scan(step, (ya, jnp.bool_(True), out0), seg)
    core, dcore = unpack(outs)

    # to full states (n_out, n_states) and their sensitivities (K, n_out, n_states)
    def full_of(core_, coef_):
        depot, conc = pk_states(days, coef_)
        c = jax.vmap(S.from_log)(core_)
        return jnp.concatenate([c, depot, conc], axis=1)[:, S._state_layout()]

    full = full_of(core, coef)
    dfull = jax.vmap(lambda dc, dco: jax.jvp(full_of, (core, coef), (dc, dco))[1])(jnp.moveaxis(dcore, 1, 0), dcoef)
    return full, ok, dfull
