"""Experiment (2026-11-30, not used by the package): a whole schedule in one adaptive Runge-Kutta
loop with its own discrete adjoint, tried as a replacement for diffrax in the fit's solve, and
measured slower by ``bench_solver_floor.py`` (results in ``results_solver_floor.md``).

The idea: a reverse-mode gradient through ``diffrax.diffeqsolve`` (recursive checkpointing) costs
about 11-14 us per accepted step of the 22-state core on one CPU core, while one right-hand side
and its vjp cost about 0.2 and 0.4 us. The fit only needs the gradient with respect to the
parameters at fixed event times, which has a simple exact form on the accepted mesh:

* **forward**: Tsitouras' 5(4) pair (Tsit5: Tsitouras 2011, Comput. Math. Appl. 62:770, the method
  of diffrax's ``Tsit5``), an integral step-size controller on the max norm of the scaled error,
  steps clipped to land on every stop (output days, state jumps, dose times), state jumps applied
  in the same loop; each accepted step, jump and output is one record (start state, time, step);
* **reverse** (``jax.custom_vjp``): the records replayed backwards, each one's vjp taken at fixed
  step size (the exact gradient of the computed solution with the mesh held fixed).

Measured: it agrees with diffrax (same accuracy against a tight solve) but is slower, because the
vjp of one whole Tsit5 step compiles to about 5 us on XLA's CPU backend (13x one right-hand side's
vjp), so a hand-written adjoint cannot remove the floor; its compile is also 2-3x longer (the
stages are unrolled, where diffrax scans over them). Kept as the measured record of the attempt.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

# ---------------------------------------------------------------- Tsit5 tableau (Tsitouras 2011)
_C = np.array([0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0])
_A = (
    np.array([0.161]),
    np.array([-0.008480655492356989, 0.335480655492357]),
    np.array([2.897153057105493, -6.359448489975075, 4.3622954328695815]),
    np.array([5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525]),
    np.array([5.86145544294642, -12.92096931784711, 8.159367898576159, -0.071584973281401, -0.028269050394068383]),
)
_B = np.array([0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081, 2.324710524099774])
#: b - b_hat (the 4th-order weights), last entry for the FSAL stage
_E = np.array(
    [
        0.0017800110522257774,
        0.0008164344596567469,
        -0.007880878010261995,
        0.1447110071732629,
        -0.5823571654525552,
        0.45808210592918697,
        -1.0 / 66.0,
    ]
)
ORDER = 5  # of the solution; the error estimate is of order 4: step factor err^(-1/5)
SAFETY, FACTOR_MIN, FACTOR_MAX = 0.9, 0.2, 10.0

# record kinds
_STEP, _JUMP, _OUT = 0, 1, 2


def _stages(f, t, y, h, k1, args):
    """Stages k1..k6 of one step (k1 given) and the step's new state."""
    ks = [k1]
    for i, a in enumerate(_A):
        yi = y + h * sum(float(c) * k for c, k in zip(a, ks))
        ks.append(f(t + _C[i] * h, yi, args))
    y1 = y + h * sum(float(b) * k for b, k in zip(_B, ks))
    return ks, y1


def _step_map(f, t, y, h, args):
    """The accepted step as a function of (y, args) at a fixed mesh: what the reverse pass
    differentiates."""
    return _stages(f, t, y, h, f(t, y, args), args)[1]


def _scaled_max(x, y0, y1, rtol, atol):
    return jnp.max(jnp.abs(x) / (atol + rtol * jnp.maximum(jnp.abs(y0), jnp.abs(y1))))


def _initial_step(f, t0, y0, f0, args, rtol, atol):
    """Hairer, Norsett & Wanner (1993) II.4's starting step (one extra evaluation)."""
    scale = atol + rtol * jnp.abs(y0)
    d0 = jnp.max(jnp.abs(y0) / scale)
    d1 = jnp.max(jnp.abs(f0) / scale)
    h0 = jnp.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / jnp.maximum(d1, 1e-300))
    f1 = f(t0 + h0, y0 + h0 * f0, args)
    d2 = jnp.max(jnp.abs(f1 - f0) / scale) / h0
    h1 = jnp.where(jnp.maximum(d1, d2) <= 1e-15, jnp.maximum(1e-6, h0 * 1e-3), (0.01 / jnp.maximum(d1, d2)) ** (1.0 / ORDER))
    return jnp.minimum(100 * h0, h1)


def solve_schedule(f, jump, y0, args, jump_t, jump_data, stops, days, horizon, *, rtol, atol, max_records):
    """States at ``days`` (n_out,) of ``dy/dt = f(t, y, args)`` from ``y0`` at 0 to ``horizon``.

    ``jump(y, args, data_i) -> y``: the state map of jump ``i`` at ``jump_t[i]`` (sorted; a jump at
    or after ``horizon`` is not applied); ``jump_data``: a pytree of per-jump arrays (leading axis
    = number of jumps). ``stops``: further times steps must land on (e.g. dose times; any order, any
    value). An output on a jump's day shows the state after it; days after the horizon show the
    state at the horizon. Returns ``(ys, ok)``: (n_out, *y.shape) and False where the solve failed
    (more than ``max_records`` records, or a step size that vanished or a non-finite state; the
    states then hold the last good state). Differentiable in ``y0`` and ``args`` (see the module
    docstring), not in times or ``jump_data``."""
    fixed = jax.tree.map(jax.lax.stop_gradient, (rtol, atol, jump_t, jump_data, stops, days, horizon))
    return _solve(f, jump, max_records, y0, args, *fixed)


def _forward(f, jump, max_records, y0, args, rtol, atol, jump_t, jump_data, stops, days, horizon):
    dtype = y0.dtype
    n_out, n_jump = days.shape[0], jump_t.shape[0]
    horizon = jnp.asarray(horizon, dtype)
    zero = jnp.zeros((), dtype)
    f0 = f(zero, y0, args)
    max_iter = 4 * max_records  # rejected attempts included
    # the loop's small state; the record buffers are written outside the branches (in place)
    small = dict(
        t=zero, y=y0, f=f0, h=_initial_step(f, zero, y0, f0, args, rtol, atol), j=jnp.int32(0), k=jnp.int32(0), ok=jnp.bool_(True)
    )
    bufs = dict(
        Y=jnp.zeros((max_records,) + y0.shape, dtype),
        T=jnp.zeros((max_records,), dtype),
        H=jnp.zeros((max_records,), dtype),
        kind=jnp.full((max_records,), -1, jnp.int32),
        aux=jnp.zeros((max_records,), jnp.int32),
    )
    out_rec = jnp.full((n_out,), -1, jnp.int32)  # the record whose start state each output shows

    def pending_jump(s):
        return (s["j"] < n_jump) & (jump_t[jnp.minimum(s["j"], n_jump - 1)] <= s["t"]) & (s["t"] < horizon)

    def pending_out(s):
        day_k = days[jnp.minimum(s["k"], n_out - 1)]
        return (s["k"] < n_out) & ((day_k <= s["t"]) | (s["t"] >= horizon))

    def do_jump(s, data):
        y = jump(s["y"], args, data)
        s2 = dict(s, y=y, f=f(s["t"], y, args), j=s["j"] + 1)
        return s2, jnp.int32(_JUMP), zero, jnp.bool_(True)

    def do_out(s, data):
        hi = jnp.where(s["t"] >= horizon, n_out, jnp.sum(days <= s["t"])).astype(jnp.int32)
        return dict(s, k=hi), jnp.int32(_OUT), zero, jnp.bool_(True)

    def do_step(s, data):
        t, y, h_prop = s["t"], s["y"], s["h"]
        nxt_day = jnp.min(jnp.where(days > t, days, jnp.inf))
        nxt_jump = jnp.min(jnp.where(jump_t > t, jump_t, jnp.inf))
        nxt_stop = jnp.min(jnp.where(stops > t, stops, jnp.inf))
        target = jnp.minimum(jnp.minimum(nxt_day, nxt_jump), jnp.minimum(nxt_stop, horizon))
        clipped = t + h_prop >= target
        h = jnp.where(clipped, target - t, h_prop)
        ks, y1 = _stages(f, t, y, h, s["f"], args)
        t1 = jnp.where(clipped, target, t + h)
        k7 = f(t1, y1, args)
        err_vec = h * sum(float(e) * k for e, k in zip(_E, ks + [k7]))
        err = _scaled_max(err_vec, y, y1, rtol, atol)
        finite = jnp.all(jnp.isfinite(y1)) & jnp.isfinite(err)
        accept = finite & (err <= 1.0)
        err_safe = jnp.where(finite, jnp.maximum(err, 1e-10), jnp.inf)
        factor = jnp.clip(SAFETY * err_safe ** (-1.0 / ORDER), FACTOR_MIN, jnp.where(accept, FACTOR_MAX, 1.0))
        h_next = jnp.where(accept & clipped, jnp.maximum(h_prop, factor * h), factor * h)
        s2 = dict(
            s,
            t=jnp.where(accept, t1, t),
            y=jnp.where(accept, y1, y),
            f=jnp.where(accept, k7, s["f"]),
            h=h_next,
            ok=s["ok"] & (h_next > 1e-12 * jnp.maximum(1.0, jnp.abs(t))),
        )
        return s2, jnp.int32(_STEP), h, accept

    def cond(c):
        s, b, o, n, it = c
        work = pending_jump(s) | pending_out(s) | (s["t"] < horizon)
        return work & s["ok"] & (n < max_records) & (it < max_iter)

    def body(c):
        s, b, o, n, it = c
        is_jump, is_out = pending_jump(s), pending_out(s)
        branch = jnp.where(is_jump, 0, jnp.where(is_out, 1, 2))
        data = jax.tree.map(lambda x: x[jnp.minimum(s["j"], n_jump - 1)], jump_data)
        s2, kind, h, advance = jax.lax.switch(branch, (do_jump, do_out, do_step), s, data)
        # the record: the state before the action (slot n is free: a rejected step rewrites it)
        b = dict(
            Y=b["Y"].at[n].set(s["y"]),
            T=b["T"].at[n].set(s["t"]),
            H=b["H"].at[n].set(h),
            kind=b["kind"].at[n].set(kind),
            aux=b["aux"].at[n].set(s["j"]),
        )
        idx = jnp.arange(n_out)
        o = jnp.where(is_out & ~is_jump & (idx >= s["k"]) & (idx < s2["k"]), n, o)
        return s2, b, o, n + advance.astype(jnp.int32), it + 1

    s, b, out_rec, n, _ = jax.lax.while_loop(cond, body, (small, bufs, out_rec, jnp.int32(0), jnp.int32(0)))
    done = (s["k"] >= n_out) & s["ok"]
    reached = out_rec >= 0
    out = jnp.where(reached.reshape((-1,) + (1,) * y0.ndim), b["Y"][jnp.maximum(out_rec, 0)], s["y"][None])
    return (out, done), (b, out_rec, n)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _solve(f, jump, max_records, y0, args, *fixed):
    return _forward(f, jump, max_records, y0, args, *fixed)[0]


def _solve_fwd(f, jump, max_records, y0, args, *fixed):
    result, (b, out_rec, n) = _forward(f, jump, max_records, y0, args, *fixed)
    return result, (b, out_rec, n, y0, args, fixed)


def _zero_cotangent(x):
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return np.zeros(x.shape, dtype=jax.dtypes.float0)


def _solve_bwd(f, jump, max_records, res, ct):
    b, out_rec, n, y0, args, fixed = res
    rtol, atol, jump_t, jump_data, stops, days, horizon = fixed
    out_ct = ct[0]
    n_jump = jump_t.shape[0]
    zero_args = jax.tree.map(jnp.zeros_like, args)

    def vjp_step(lam, y, t, h, i, data):
        _, pull = jax.vjp(lambda y, a: _step_map(f, t, y, h, a), y, args)
        return pull(lam)

    def vjp_jump(lam, y, t, h, i, data):
        _, pull = jax.vjp(lambda y, a: jump(y, a, data), y, args)
        return pull(lam)

    def add_out(lam, y, t, h, i, data):
        mine = (out_rec == i).reshape((-1,) + (1,) * lam.ndim)
        return lam + jnp.sum(jnp.where(mine, out_ct, 0.0), axis=0), zero_args

    def body(c):
        i, lam, g = c
        i = i - 1
        data = jax.tree.map(lambda x: x[jnp.clip(b["aux"][i], 0, n_jump - 1)], jump_data)
        lam, dg = jax.lax.switch(b["kind"][i], (vjp_step, vjp_jump, add_out), lam, b["Y"][i], b["T"][i], b["H"][i], i, data)
        return i, lam, jax.tree.map(jnp.add, g, dg)

    _, lam, g = jax.lax.while_loop(lambda c: c[0] > 0, body, (n, jnp.zeros_like(y0), zero_args))
    return (lam, g) + tuple(jax.tree.map(_zero_cotangent, fixed))


_solve.defvjp(_solve_fwd, _solve_bwd)
