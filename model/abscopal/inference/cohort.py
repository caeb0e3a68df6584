"""Smooth fractions of a cohort: the cured fraction and the abscopal response probability of an arm
as smooth functions of the parameters, by the critical mouse instead of a handful of virtual mice.

The mice of an arm differ in one parameter (``model/population``: the T cells' ability to
infiltrate, ``k_in``, log-normal with Kosinsky 2018's fitted SD ``omega``); a mouse is the arm's
typical mouse with ``k_in * exp(omega * zeta)``, ``zeta ~ N(0, 1)``. An end point of a mouse is
read through a *margin* ``m(zeta)`` that is negative exactly when it holds:

* cured (``outcomes``' one definition): ``max(log viable(day) - log 1 cell, max_{t<=day} log
  burden(t) - log 1000 mm^3)``: extinct at the day and never past the end point;
* abscopal response: ``log V_abs(day) - log V_abs,ref(day) - log 0.7`` (the same mouse, ``zeta``,
  in the reference arm: common random numbers).

The fraction is the normal mass of ``{zeta: m(zeta) < 0}``. The margin is solved (forward only) on a
fixed grid of ``zeta`` nodes (``Problem.zeta``); within an interval where its sign changes, the
crossing ``zeta_c`` is located by false position (``N_REFINE`` forward solves), then one Newton
step with the solve of that mouse, and differentiated by the implicit function theorem, ``d zeta_c / d theta = -(dm/dtheta) /
(dm/dzeta)``: one solve with a gradient per fraction (per arm and reference for an abscopal one)
instead of one per virtual mouse, and a fraction that moves smoothly through partial cures where a
mean over virtual mice jumps at each mouse's cure boundary (issue 33's cliffs). The crossing of
largest normal density carries the gradient; any other crossing counts by its interpolated value.
Beyond the grid the margin keeps the sign of its end node.

The cohort's median survival (time to the burden end point) is the time of its median mouse,
``zeta = 0``, i.e. the typical mouse, where survival is monotone in ``zeta`` (more infiltration, a
later end point). ``benchmarks/population_error.py`` measures all of this against 256 virtual mice.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr

from ..simulation.outcomes import CURE_VOLUME_MM3, DEFAULT_ENDPOINT_MM3, interp_on_grid
from .problem import OBS, Q_CURE, Problem

#: the abscopal tumour "responds" when it is below this fraction of its volume in the reference arm
ABSCOPAL_RATIO = 0.7


def mouse_rows(prob: Problem, P, arm_rows, zeta):
    """Parameter rows (N, n_params) of the mice ``zeta`` (N,) of the population arms ``arm_rows``
    (N,) (indices into ``prob.pop_arms``)."""
    rows = P[jnp.asarray(prob.pop_arms)[arm_rows]]
    return rows.at[:, prob.var_index].multiply(jnp.exp(jnp.asarray(zeta)[:, None] * jnp.asarray(prob.var_sd)[None, :]))


def margins(prob: Problem, obs_arm, obs_ref):
    """Margins (F, ..., 2) of the fraction quantities ``prob.frac`` for mice whose observables are
    ``obs_arm`` (F, ..., n_out, n_obs) in the quantity's arm and ``obs_ref`` in its reference arm:
    the two conditions of each end point (cured: extinct, and never past the end point; abscopal:
    the response, and a condition that always holds), each negative where it holds; the end point
    holds where their maximum is negative."""
    f = prob.frac
    step = prob.days[1] - prob.days[0]
    extra = obs_arm.ndim - 3  # leading axes after F (grid nodes)
    shape = (-1,) + (1,) * extra
    day = jnp.asarray(f.day).reshape(shape)
    o = jnp.asarray(f.obs).reshape(shape + (1, 1))
    series = jnp.take_along_axis(obs_arm, jnp.broadcast_to(o, obs_arm.shape[:-1] + (1,)), -1)[..., 0]
    at_day = interp_on_grid(series, day, step)
    # cured: extinct at the day and the burden never at the end point up to it
    burden = obs_arm[..., OBS.index("log_burden")]
    upto = jnp.asarray(prob.days)[None, :] <= jnp.asarray(f.day)[:, None] + 1e-9  # (F, n_out)
    upto = upto.reshape((upto.shape[0],) + (1,) * extra + (upto.shape[1],))
    peak = jnp.max(jnp.where(upto, burden, -jnp.inf), axis=-1)
    ref_series = jnp.take_along_axis(obs_ref, jnp.broadcast_to(o, obs_ref.shape[:-1] + (1,)), -1)[..., 0]
    absc = at_day - interp_on_grid(ref_series, day, step) - math.log(ABSCOPAL_RATIO)
    cure = jnp.asarray(f.kind).reshape(shape) == Q_CURE
    first = jnp.where(cure, at_day - math.log(CURE_VOLUME_MM3), absc)
    second = jnp.where(cure, peak - math.log(DEFAULT_ENDPOINT_MM3), -1.0)
    return jnp.stack([first, second], axis=-1)


def crossings(prob: Problem, m_grid):
    """From the margins on the grid (F, G): for each fraction the interval of its primary crossing
    (the sign change of largest normal density; -1 where there is none), the interpolated crossing
    of every interval (F, G-1) and each interval's secant slope."""
    zeta = jnp.asarray(prob.zeta)
    m0, m1 = m_grid[:, :-1], m_grid[:, 1:]
    change = (m0 < 0) != (m1 < 0)
    dz = zeta[1:] - zeta[:-1]
    slope = (m1 - m0) / dz
    safe = jnp.where(change, slope, 1.0)
    zc = jnp.where(change, zeta[:-1] - m0 / safe, 0.5 * (zeta[:-1] + zeta[1:]))
    weight = jnp.where(change, jnp.exp(-0.5 * zc**2), -1.0)
    primary = jnp.where(jnp.any(change, axis=1), jnp.argmax(weight, axis=1), -1)
    return primary, zc, safe


#: forward-only refinements of each primary crossing (Illinois false position within its bracket)
#: before the solve with a gradient
N_REFINE = 10
#: step in zeta of the central difference for the margin's local slope at a crossing
SLOPE_STEP = 1e-4


def fractions(prob: Problem, m_grid, primary, zc, crit, slope, m_crit):
    """Normal mass of ``{m < 0}`` (F,): the grid's margins (F, G) give the signs and the secondary
    crossings ``zc`` (F, G-1); the primary crossing is ``crit - m_crit / slope`` (``crit`` the
    refined crossing, ``m_crit`` the margin solved there, ``slope`` the local slope: one Newton step
    whose derivative is the implicit function theorem's), kept within its grid interval."""
    zeta = jnp.asarray(prob.zeta)
    neg = m_grid < 0
    lo, hi = zeta[:-1], zeta[1:]
    has = primary >= 0
    j = jnp.maximum(primary, 0)
    newton = jnp.clip(jax.lax.stop_gradient(crit) - m_crit / jax.lax.stop_gradient(slope), lo[j], hi[j])
    is_p = (jnp.arange(zc.shape[1])[None, :] == j[:, None]) & has[:, None]
    c = jnp.where(is_p, newton[:, None], jax.lax.stop_gradient(zc))
    a, b = neg[:, :-1], neg[:, 1:]
    inside = jnp.where(a & b, ndtr(hi) - ndtr(lo), 0.0)
    inside += jnp.where(a & ~b, ndtr(c) - ndtr(lo), 0.0)
    inside += jnp.where(~a & b, ndtr(hi) - ndtr(c), 0.0)
    tails = jnp.where(neg[:, 0], ndtr(zeta[0]), 0.0) + jnp.where(neg[:, -1], ndtr(-zeta[-1]), 0.0)
    return jnp.sum(inside, axis=1) + tails


def cohort_fractions(prob: Problem, P, solve_rows, n_refine: int = N_REFINE):
    """The fractions of ``prob.frac`` (F,) and the success flag. ``solve_rows(rows, arms, active)``:
    the observables (N, n_out, n_obs) and success (N,) of parameter rows (N, n_params) on the arms
    ``arms`` (N,) (indices into the problem's arms; the caller's solve path); rows whose ``active``
    (N,) is False may be skipped (their observables are never read)."""
    f = prob.frac
    n_f = len(f.kind)
    if not n_f:
        return jnp.zeros((0,)), jnp.bool_(True)
    B, G = len(prob.pop_arms), len(prob.zeta)
    pop_arms = np.asarray(prob.pop_arms)
    zeta = jnp.asarray(prob.zeta)
    ref = np.where(f.ref >= 0, f.ref, f.arm)
    b_crit = np.concatenate([f.arm, ref])
    Psg = jax.lax.stop_gradient(P)

    # 1. the grid, forward only: every population arm at every node
    b_grid = np.repeat(np.arange(B), G)
    obs_g, ok_g = solve_rows(mouse_rows(prob, Psg, b_grid, jnp.tile(zeta, B)), pop_arms[b_grid])
    obs_g = jax.lax.stop_gradient(obs_g.reshape((B, G) + obs_g.shape[1:]))
    parts = margins(prob, obs_g[f.arm], obs_g[ref])  # (F, G, 2)
    m_grid = jnp.max(parts, axis=-1)
    primary, zc, _ = crossings(prob, m_grid)
    # the condition that fails across the primary crossing: the larger one at its failing end
    j = jnp.maximum(primary, 0)
    rows = jnp.arange(n_f)
    has = primary >= 0
    fail_end = jnp.where(m_grid[rows, j] >= 0, j, j + 1)
    which = jnp.argmax(parts[rows, fail_end], axis=-1)  # (F,)

    def margin_at(z, P):  # the crossing condition's margin (F,) at each fraction's mouse z (F,), and success
        # a fraction without a crossing (all or none of the cohort) solves nothing more
        active = jnp.concatenate([has, has & jnp.asarray(f.ref >= 0)])
        obs, ok = solve_rows(mouse_rows(prob, P, b_crit, jnp.concatenate([z, z])), pop_arms[b_crit], active)
        m = margins(prob, obs[:n_f, None], obs[n_f:, None])[:, 0]
        return m[rows, which], jnp.all(ok)

    # 2. the primary crossing refined by false position (Illinois) within its interval, forward only
    a, b = zeta[j], zeta[j + 1]
    ma, mb = parts[rows, j, which], parts[rows, j + 1, which]
    ma = jnp.where(has, ma, -1.0)  # no crossing: a dummy bracket, never read
    mb = jnp.where(has, mb, 1.0)

    def refine(carry, _):
        a, b, ma, mb, wa, wb, ok = carry  # wa, wb: Illinois weights of the ends
        c = (a * mb * wb - b * ma * wa) / (mb * wb - ma * wa)
        mc, okc = margin_at(c, Psg)
        left = (mc < 0) == (ma < 0)  # c replaces a
        a2, ma2 = jnp.where(left, c, a), jnp.where(left, mc, ma)
        b2, mb2 = jnp.where(left, b, c), jnp.where(left, mb, mc)
        wa2 = jnp.where(left, 1.0, wa * 0.5)  # the end kept twice running is halved
        wb2 = jnp.where(left, wb * 0.5, 1.0)
        return (a2, b2, ma2, mb2, wa2, wb2, ok & okc), None

    one = jnp.ones(n_f)
    (a, b, ma, mb, _, _, ok_r), _ = jax.lax.scan(refine, (a, b, ma, mb, one, one, jnp.bool_(True)), None, length=n_refine)
    secant = jnp.where(has, (mb - ma) / (b - a), 1.0)
    crit = jnp.where(has, a - ma / secant, 0.0)
    # the local slope at the crossing (central difference, forward only): the bracket's secant is
    # not it where the margin turns steeply (a tumour falling below one cell stops growing at once)
    up, ok_u = margin_at(crit + SLOPE_STEP, Psg)
    down, ok_d = margin_at(crit - SLOPE_STEP, Psg)
    slope = jnp.where(has & (up != down), (up - down) / (2 * SLOPE_STEP), secant)
    ok_r = ok_r & ok_u & ok_d
    # 3. the margin at the refined crossing, solved with its gradient (the arm, then the reference)
    m_crit, ok_c = margin_at(jax.lax.stop_gradient(crit), P)
    return fractions(prob, m_grid, primary, zc, crit, slope, m_crit), jnp.all(ok_g) & ok_r & ok_c


def monte_carlo_fractions(prob: Problem, P, solve_rows, n_mice: int, seed: int | None = 0):
    """The same fractions over ``n_mice`` virtual mice with hard indicators (the reference that
    ``benchmarks/population_error.py`` measures ``cohort_fractions`` against): random draws with
    ``seed``, or with ``seed=None`` the mice at the normal quantiles ``(i + 1/2) / n_mice`` (a
    fraction then is exact to 1 / n_mice, without sampling error)."""
    from scipy.special import ndtri

    f = prob.frac
    B = len(prob.pop_arms)
    if seed is None:
        z = ndtri((np.arange(n_mice) + 0.5) / n_mice)
    else:
        z = np.random.default_rng(seed).standard_normal(n_mice)
    b = np.repeat(np.arange(B), n_mice)
    obs, ok = solve_rows(mouse_rows(prob, P, b, np.tile(z, B)), np.asarray(prob.pop_arms)[b])
    obs = obs.reshape((B, n_mice) + obs.shape[1:])
    ref = np.where(f.ref >= 0, f.ref, f.arm)
    m = jnp.max(margins(prob, obs[f.arm], obs[ref]), axis=-1)
    return jnp.mean(m < 0, axis=1), jnp.all(ok)
