"""The likelihood of the curated records (``fits/data/records``) given the model.

Every arm of every fitted record becomes one schedule, split once into its state jumps (RT
fractions, cell/antigen boluses) and its PK doses (closed form; ``solver``, ``pk``). Each arm's
"typical mouse" is a solve of its own; the arms that a fraction end point needs (cure fractions,
counts, abscopal responses) are solved on a grid of mice and at each fraction's critical mouse
(``cohort``: smooth fractions with exact gradients, no virtual-mouse cliffs); all solves run one
after another in one compiled loop (``solve_arms``). Observation kinds:

* **time course** (mean +- SEM): log-normal, ``log y ~ N(log v_model(day), sqrt((sem/mean)^2 +
  sigma_model^2))``; with ``lognormal_estimated_sigma`` the SD is ``sqrt(sigma_series^2 +
  sigma_model^2)`` with the fitted ``sigma_series`` (no error bars); with
  ``lognormal_sem_plus_estimated`` it is ``sqrt((sem/mean)^2 + sigma_series^2 + sigma_model^2)``:
  the error bars plus a fitted model discrepancy (for group means whose SEMs are far smaller
  than any mechanistic model's structural error); ``sigma_series`` is one parameter per
  ``discrepancy_group`` of the records (one per source: ``Problem.series_groups``);
  zero means (``below_detection``) are censored: ``P(v_model < DETECTION_MM3)``; the records
  of an ``inoculum_group`` start from that group's fitted day-0 volume ``v0_inoculum[g]``
  (``Problem.inoculum_groups``) instead of the table's ``v0_irr`` (a two-tumour mouse's abscopal
  tumour from the same inoculum, then shrunk by its later inoculation as always);
* **count** (k of n cured): binomial on the virtual population's (smoothed) cure fraction;
* **qualitative** comparison ``lhs op rhs`` with a written margin ``m``: with ``d = f(lhs) -
  f(rhs)`` on the end point's scale (log for volumes and immune read-outs, days for times,
  fractions for fractions), the probit penalties (Mitra et al. 2018; Schmiester et al. 2020)

  - ``>``: ``Phi((d - m) / tau)``,   ``<``: ``Phi((-d - m) / tau)``,
  - ``~``: ``Phi((m - d) / tau) - Phi((-m - d) / tau)`` (d within +-m),

  with the softness ``tau`` of the scale (``TAU``). A tumour volume in a comparison is read as
  measured, ``log(v + DETECTION_MM3)``: below the detection limit two tumours compare as equal.

Smooth end points: the time for a volume to reach a threshold is the integral over the output
grid of ``sigmoid((log thr - max_{t'<=t} log v(t')) / s)`` (the first crossing, censored at the
horizon); "cured" follows ``outcomes``' one definition (extinct, and never past the end point),
as the normal mass of the cured mice (``cohort``). Survival (``survival_proxy``, the time for the
total burden to reach its threshold) is the cohort's median, its median mouse's (the typical
mouse's); growth delay (``time_to_volume``) is the typical mouse's.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from jax.scipy.stats import norm

from ..model.equations import build_model
from ..simulation.outcomes import interp_on_grid, soft_cummax
from ..simulation.solver import map_rows, solve_segments
from . import cohort
from .observations import OP_ABOVE, OP_BELOW, OP_SIMILAR, Comparisons, Counts, Quantities, TimeCourses  # noqa: F401

# the problem's vocabulary, re-exported: callers read these as likelihood.<name>
from .problem import (  # noqa: F401
    DETECTION_MM3,
    INOCULUM_SIGMA,
    LIKELIHOOD_VERSION,
    LOG_FLOOR,
    OBS,
    PER_LINE,
    Q_ABSCOPAL,
    Q_CURE,
    Q_LOG,
    Q_POPULATION,
    Q_SURVIVAL,
    Q_TIME,
    SERIES_SIGMA_SCALE,
    SHARED,
    SIGMA_MODEL,
    SMOOTH_LOG,
    TAU,
    ArmSpec,
    Problem,
    build_problem,
    compact_events,
    problem_fingerprint,
)


# ---------------------------------------------------------------- parameters -> arm values
def arm_values(prob: Problem, shared_vals, line_vals, inoculum=None):
    """Full parameter rows (A, P) from the shared values (S,), per-line values (L, Q) and the
    day-0 volumes (mm3) of the inoculum groups (H,) (required where the problem has any)."""
    names = build_model().param_names
    P = jnp.asarray(prob.base)
    if len(prob.shared):
        P = P.at[:, np.array([names.index(n) for n in prob.shared])].set(
            jnp.broadcast_to(shared_vals, (P.shape[0], len(prob.shared)))
        )
    if len(prob.per_line):
        P = P.at[:, np.array([names.index(n) for n in prob.per_line])].set(jnp.asarray(line_vals)[prob.line_of_arm])
    if prob.inoculum_groups:
        if inoculum is None:
            raise ValueError(f"inoculum: the problem has inoculum groups {list(prob.inoculum_groups)}; give their day-0 volumes")
        g = np.asarray(prob.inoculum_of_arm)
        v0 = jnp.atleast_1d(jnp.asarray(inoculum))[np.maximum(g, 0)]
        has = jnp.asarray(g >= 0)
        i0, i1 = names.index("v0_irr"), names.index("v0_abs")
        P = P.at[:, i0].set(jnp.where(has, v0, P[:, i0]))
        # the abscopal tumour of a two-tumour mouse (v0_abs > 0) grows from the same inoculum
        P = P.at[:, i1].set(jnp.where(has & (P[:, i1] > 0), v0, P[:, i1]))
    # a later inoculation of the abscopal tumour, as a smaller tumour on day 0 (same growth)
    ir, iv = names.index("r"), names.index("v0_abs")
    P = P.at[:, iv].multiply(jnp.exp(-P[:, ir] * prob.abs_delay))
    return P


# ---------------------------------------------------------------- observables
def _observables(ys, p):
    """(..., n_out, n_states) states -> (..., n_out, len(OBS)) log observables."""
    names = build_model().state_names
    pn = build_model().param_names

    def s(n):
        return ys[..., names.index(n)]

    eps = p[..., pn.index("v_eps")]
    fl = lambda x: jnp.log(jnp.maximum(x, LOG_FLOOR))
    vol = {k: s(f"V_{k}") + s(f"D_{k}") for k in ("irr", "abs")}
    cols = [
        fl(vol["irr"]),
        fl(vol["abs"]),
        fl(s("V_irr")),
        fl(s("V_abs")),
        fl(s("E_irr") / (vol["irr"] + eps)),
        fl(s("E_abs") / (vol["abs"] + eps)),
        fl(s("R_irr") / (vol["irr"] + eps)),
        fl(s("R_abs") / (vol["abs"] + eps)),
        fl(s("M_irr") / (vol["irr"] + eps)),
        fl(s("M_abs") / (vol["abs"] + eps)),
        fl(s("DC")),
        fl(s("Tm")),
        fl(vol["irr"] + vol["abs"]),
    ]
    return jnp.stack(cols, axis=-1)


def _smooth_time(logv, logthr, days, s=SMOOTH_LOG):
    """Smooth first-crossing time of log volume series (..., n_out) over log threshold (...,):
    the integral of ``sigmoid((log thr - running max of log v) / s)`` over the grid (trapezoid),
    i.e. the time "alive", censored at the horizon; independent of the grid's resolution."""
    peak = soft_cummax(logv)
    alive = jax.nn.sigmoid((logthr[..., None] - peak) / s)
    dt = jnp.diff(days)
    return jnp.sum(0.5 * (alive[..., 1:] + alive[..., :-1]) * dt, axis=-1)


@partial(jax.jit, static_argnames=("rtol", "atol", "max_steps", "adjoint"))
def _solve_one(p, jumps, doses, horizon, days, *, rtol, atol, max_steps, adjoint):
    return solve_segments(p, jumps, doses, horizon, days, rtol=rtol, atol=atol, max_steps=max_steps, adjoint=adjoint)


def rows_solver(prob: Problem, rtol=1e-5, atol=1e-8, max_steps=4096, adjoint="checkpoint", mode="auto"):
    """``solve_rows(rows, arms, active=None)``: the observables (N, n_out, n_obs) and success (N,) of
    the mice with parameter rows (N, n_params) on the schedules of ``arms`` (N,) (indices into the
    problem's arms), each a solve of its own (``solver.solve_segments``: jumps only, closed-form PK,
    output days saved inside), run one after another (``mode``: ``solver.SOLVE_MODES``); a row whose
    ``active`` is False is not solved (zeros, success)."""
    days = jnp.asarray(prob.days)
    kw = dict(rtol=rtol, atol=atol, max_steps=max_steps, adjoint=adjoint)
    n_states = len(build_model().state_names)

    def one(x):  # one mouse; jitted, so that every batch of mice reuses one trace of the solver
        p, j, d, h = x
        return _solve_one(p, j, d, h, days, **kw)

    def one_if(x):  # one mouse if it is active
        *x, active = x
        skip = lambda: (jnp.zeros((days.shape[0], n_states), x[0].dtype), jnp.bool_(True))  # noqa: E731
        return jax.lax.cond(active, lambda: one(x), skip)

    def solve_rows(rows, arms, active=None):
        arms = np.asarray(arms)
        inputs = (
            {k: jnp.asarray(v[arms]) for k, v in prob.jumps.items()},
            {k: jnp.asarray(v[arms]) for k, v in prob.doses.items()},
            jnp.asarray(prob.horizon)[arms],
        )
        if active is None:
            ys, ok = map_rows(one, (rows, *inputs), mode)
        else:
            ys, ok = map_rows(one_if, (rows, *inputs, active), mode)
        return _observables(ys, rows[:, None, :]), ok

    return solve_rows


def solve_arms(prob: Problem, P, rtol=1e-5, atol=1e-8, max_steps=4096, adjoint="checkpoint", mode="auto"):
    """Typical mice of all arms, and the cohort fractions of the population arms (``cohort``: a
    forward-only grid of mice, then one solve with its gradient at each fraction's critical mouse),
    every mouse a solve of its own (``rows_solver``). Returns (obs (A, n_out, n_obs), fractions (F,)
    of ``prob.frac``, ok)."""
    solve_rows = rows_solver(prob, rtol, atol, max_steps, adjoint, mode)
    obs, ok = solve_rows(P, np.arange(prob.n_arms))
    frac, ok_f = cohort.cohort_fractions(prob, P, solve_rows)
    return obs, frac, jnp.all(ok) & ok_f


#: the observables (indices into ``OBS``) that are tumour volumes, read as measured in comparisons
VOLUME_OBS = np.array([OBS.index("log_volume_irr"), OBS.index("log_volume_abs")])


def quantities(prob: Problem, obs, frac):
    """Values of every comparison/count quantity (Q,), on the end point's scale: log read-outs and
    times of the typical mice ``obs``, the cohort fractions ``frac`` (``solve_arms``), and the
    cohort's median survival as its median mouse's (the typical mouse's) time to the threshold."""
    q = prob.q
    if not len(q):
        return jnp.zeros((0,))
    step = prob.days[1] - prob.days[0]
    kind, day = q.kind, jnp.asarray(q.day)
    ser = obs[np.where(np.isin(kind, Q_POPULATION), 0, q.arm), :, q.obs]  # (Q, n_out) typical mice
    log_val = interp_on_grid(ser, day, step)
    # a tumour volume is read as measured: a caliper does not tell 1e-6 mm^3 from zero, so the
    # volume of a comparison is v + DETECTION_MM3 (without it, a tumour heading for extinction
    # drives its log volume towards the 1e-12 floor and a comparison of log volumes into a wall)
    measured = (kind == Q_LOG) & np.isin(q.obs, VOLUME_OBS)
    log_val = jnp.where(measured, jnp.logaddexp(log_val, math.log(DETECTION_MM3)), log_val)
    time_val = _smooth_time(ser, jnp.asarray(q.thr), jnp.asarray(prob.days))
    fr = jnp.asarray(frac)[np.maximum(prob.frac_of_q, 0)] if len(prob.frac) else jnp.zeros_like(log_val)
    return jnp.select(
        [kind == Q_LOG, kind == Q_TIME, np.isin(kind, Q_POPULATION)],
        [log_val, time_val, fr],
        time_val,  # Q_SURVIVAL: the median mouse's time
    )


def comparison_logp(d, op, margin, tau):
    """Log-probability that the difference ``d`` satisfies ``op`` with ``margin`` (see module doc)."""
    gt = log_ndtr((d - margin) / tau)
    lt = log_ndtr((-d - margin) / tau)
    hi = norm.cdf((margin - d) / tau)
    lo = norm.cdf((-margin - d) / tau)
    approx = jnp.log(jnp.maximum(hi - lo, 1e-300))
    return jnp.where(op == OP_ABOVE, gt, jnp.where(op == OP_BELOW, lt, approx))


def comparison_holds(d, op, margin):
    """Whether a comparison holds exactly (no softness): for reproduction probabilities."""
    return jnp.where(op == OP_ABOVE, d > margin, jnp.where(op == OP_BELOW, -d > margin, jnp.abs(d) <= margin))


def comparison_differences(prob: Problem, qv):
    c = prob.cmp
    lhs = qv[c.lhs]
    rhs = jnp.where(c.rhs >= 0, qv[jnp.clip(c.rhs, 0, None)], jnp.asarray(c.const))
    return lhs - rhs


def time_course_terms(prob: Problem, obs, sigma_series):
    """Per-point log-likelihood of the time courses, and the model's log values and SDs at the
    points. ``sigma_series``: the fitted SD of each discrepancy group, (len(prob.series_groups),)."""
    t = prob.tc
    step = prob.days[1] - prob.days[0]
    ser = obs[t.arm, :, t.obs]  # (N, n_out)
    model = interp_on_grid(ser, jnp.asarray(t.day), step)
    rel = t.ref_day >= 0
    ref = interp_on_grid(ser, jnp.asarray(np.where(rel, t.ref_day, 0.0)), step)
    model = jnp.where(rel, model - ref, model)
    mean = np.where(t.censored, 1.0, t.mean)
    sem_log = np.where(t.use_sem & np.isfinite(t.sem) & (mean > 0), t.sem / mean, 0.0)
    est = jnp.asarray(t.estimated)
    if prob.series_groups:
        sig = jnp.atleast_1d(jnp.asarray(sigma_series))[jnp.asarray(np.maximum(t.group, 0))]
        est_var = jnp.where(est, sig**2, 0.0)
    else:
        est_var = jnp.zeros(est.shape)
    sd = jnp.sqrt(jnp.asarray(sem_log) ** 2 + est_var + SIGMA_MODEL**2)
    obs_log = jnp.log(jnp.asarray(mean))
    lp_point = norm.logpdf(obs_log, model, sd)
    lp_cens = log_ndtr((math.log(DETECTION_MM3) - model) / sd)
    return jnp.where(jnp.asarray(t.censored), lp_cens, lp_point), model, sd


def count_logp(prob: Problem, qv):
    c = prob.cnt
    p = jnp.clip(qv[c.q], 1e-6, 1 - 1e-6)
    k, n = jnp.asarray(c.k), jnp.asarray(c.n)
    logc = jax.scipy.special.gammaln(n + 1) - jax.scipy.special.gammaln(k + 1) - jax.scipy.special.gammaln(n - k + 1)
    return logc + k * jnp.log(p) + (n - k) * jnp.log1p(-p)


def log_likelihood_terms(prob: Problem, shared_vals, line_vals, sigma_series, solver=None, inoculum=None, solve_fn=None):
    """All log-likelihood terms: dict with 'tc', 'cmp', 'cnt' arrays, and 'ok' (solver success).
    ``solve_fn(prob, P, **solver)``: the solve path (default ``solve_arms``; the benchmarks pass
    the reference path they time it against)."""
    P = arm_values(prob, shared_vals, line_vals, inoculum)
    obs, frac, ok = (solve_fn or solve_arms)(prob, P, **(solver or {}))
    qv = quantities(prob, obs, frac)
    out = {"ok": ok}
    out["tc"] = time_course_terms(prob, obs, sigma_series)[0] if prob.tc else jnp.zeros((0,))
    if prob.cmp:
        d = comparison_differences(prob, qv)
        out["cmp"] = comparison_logp(d, jnp.asarray(prob.cmp.op), jnp.asarray(prob.cmp.margin), jnp.asarray(prob.cmp.tau))
    else:
        out["cmp"] = jnp.zeros((0,))
    out["cnt"] = count_logp(prob, qv) if prob.cnt else jnp.zeros((0,))
    return out


def log_likelihood(prob: Problem, shared_vals, line_vals, sigma_series, solver=None, inoculum=None, solve_fn=None):
    """Total log-likelihood; ``-inf`` when any solve fails (step limit, non-finite state).
    ``inoculum``: the day-0 volumes of ``prob.inoculum_groups`` (mm3)."""
    return total_log_likelihood(log_likelihood_terms(prob, shared_vals, line_vals, sigma_series, solver, inoculum, solve_fn))


def total_log_likelihood(terms: dict):
    """The sum of ``log_likelihood_terms``; ``-inf`` when a solve failed or the sum is not finite."""
    total = jnp.sum(terms["tc"]) + jnp.sum(terms["cmp"]) + jnp.sum(terms["cnt"])
    return jnp.where(terms["ok"] & jnp.isfinite(total), total, -jnp.inf)
