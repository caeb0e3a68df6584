"""The Laplace approximation at the MAP and its checks: a finite-difference Hessian of the log
posterior (checkpointed row by row), Pareto-smoothed importance sampling (PSIS) of its draws, a
Student-t proposal, secant rescaling of the covariance along its eigen-directions and a
split-normal with one SD per side. A labelled fallback for when NUTS cannot finish
(``abscopal fit --laplace``); ``importance`` holds the PSIS check, ``posterior`` the log density.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..io import atomic_write_npz
from ..simulation.simulate import pad_rows
from . import likelihood
from .importance import (
    checkpoint_fingerprint,
    evaluate_log_density,
    same_point,
)
from .posterior import neg_log_density_and_grad

#: central-difference step (unconstrained units) of the Laplace Hessian: the largest one, taken
#: on every row first
HESSIAN_STEP = 1e-3
#: then each row whose curvature is stiff is recomputed with a step of at most this fraction of its
#: curvature scale ``1 / sqrt(H_ii)``: at the review fit's MAP the stiffest coordinate has an SD
#: of about 0.003, and the 1e-3 step overestimated its curvature 1.8-fold (and made the Hessian
#: 17 % asymmetric, with a spurious eigenvalue of -6.8e3); at 1e-4 and 3e-5 it agreed to 0.4 %
HESSIAN_STEP_SD = 0.05
#: the smallest step (below it the ODE solver's tolerances would dominate the differences)
HESSIAN_STEP_MIN = 1e-5
#: smallest precision allowed per eigen-direction of the Laplace covariance (SD <= 1 log unit):
#: directions the data leave flat or curved the wrong way are set to this, and counted
MIN_PRECISION = 1.0


def hessian_steps(diag: np.ndarray) -> np.ndarray:
    """The central-difference step per row from the curvature ``diag`` (the Hessian's diagonal at
    the first step): ``HESSIAN_STEP_SD / sqrt(diag)``, within [HESSIAN_STEP_MIN, HESSIAN_STEP]."""
    with np.errstate(divide="ignore", invalid="ignore"):
        h = HESSIAN_STEP_SD / np.sqrt(np.where(np.asarray(diag) > 0, diag, 0.0))
    return np.clip(np.nan_to_num(h, nan=HESSIAN_STEP, posinf=HESSIAN_STEP), HESSIAN_STEP_MIN, HESSIAN_STEP)


def laplace_hessian(
    prob: likelihood.Problem,
    z,
    f=None,
    checkpoint: Path | None = None,
    progress: bool = True,
    batch: int = 1,
    adapt: bool = True,
    with_info: bool = False,
):
    """Hessian of ``-log p`` at ``z`` by central differences of the JAX gradient (forward-over-reverse
    mode does not pass through diffrax's checkpointed adjoint).

    Every row is first differenced with ``HESSIAN_STEP``; with ``adapt``, the rows whose curvature
    is stiff are then recomputed with the step ``hessian_steps`` gives (a fraction of the row's own
    curvature scale), as a fixed step too wide for a stiff direction overestimates its curvature.
    Each pair (i, j) takes the entry of the row with the smaller step (the average where the steps
    are equal). Rows and their steps are checkpointed in ``checkpoint`` (npz, plain arrays, with
    the point and the problem's fingerprint) so an interrupted run resumes. ``batch`` > 1
    evaluates that many gradients per vmapped call (rows in pairs of +-; worth it on a GPU).

    Returns the symmetric Hessian; with ``with_info``, also a record of the steps and of the
    relative asymmetry ``max |H_ij - H_ji| / max |H|`` of the rows before symmetrising (a check of
    the differences: a quadratic gives 0)."""
    if batch < 1:
        raise ValueError(f"batch: must be a positive integer, got {batch!r}")
    f = f or neg_log_density_and_grad(prob)
    z = np.asarray(z, dtype=np.float64)
    n = z.size
    fp = checkpoint_fingerprint(prob)
    H = np.full((n, n), np.nan)
    step = np.full(n, np.nan)  # the step each row was differenced with
    if checkpoint is not None and checkpoint.is_file():
        with np.load(checkpoint, allow_pickle=False) as d:
            if same_point(d, fp, z):
                H = d["H"].copy()
                # checkpoints from before the adaptive step: every finished row used HESSIAN_STEP
                step = d["step"].copy() if "step" in d else np.where(np.all(np.isfinite(H), axis=1), HESSIAN_STEP, np.nan)
    rows_per_call = max(1, batch // 2)
    grad = jax.jit(jax.vmap(lambda x: f(x)[1])) if batch > 1 else (lambda X: jnp.stack([f(x)[1] for x in X]))

    def run(todo: list[int], h: np.ndarray, desc: str):
        chunks = [todo[k : k + rows_per_call] for k in range(0, len(todo), rows_per_call)]
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(todo), desc=desc, leave=False)
        for rows in chunks:
            E = np.zeros((len(rows), n))
            E[np.arange(len(rows)), rows] = h[rows]
            if batch > 1 and len(rows) < rows_per_call:  # pad: one compiled shape
                E = pad_rows(E, rows_per_call)
            G = np.asarray(grad(jnp.asarray(np.concatenate([z + E, z - E]))))
            gp, gm = G[: len(E)][: len(rows)], G[len(E) :][: len(rows)]
            if not (np.all(np.isfinite(gp)) and np.all(np.isfinite(gm))):
                bad = [i for i, a, b in zip(rows, gp, gm, strict=True) if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b)))]
                raise FloatingPointError(f"Laplace Hessian: a solve failed at coordinate {bad[0]} +- {h[bad[0]]:g}")
            H[rows] = (gp - gm) / (2 * h[rows][:, None])
            step[rows] = h[rows]
            if checkpoint is not None:
                atomic_write_npz(checkpoint, dict(z=z, H=H, step=step, data_sha256=fp))
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()

    first = [i for i in range(n) if not (np.all(np.isfinite(H[i])) and np.isfinite(step[i]))]
    run(first, np.full(n, HESSIAN_STEP), "Laplace Hessian")
    if adapt:  # one pass: the stiff rows again, each with its own step from its first-pass curvature
        # (a refined row is never refined again: its diagonal now reads the smaller step, and a
        # resume that recomputed the step from it would refine again wherever the curvature grows
        # at smaller steps; an unrefined row's diagonal is still its first-pass value)
        target = hessian_steps(np.diag(H))
        todo = [i for i in range(n) if step[i] >= HESSIAN_STEP and target[i] < step[i] * (1 - 1e-12)]
        run(todo, target, "Laplace Hessian, stiff rows")
    # each pair from the row with the smaller step; equal steps: the average
    smaller = step[:, None] < step[None, :]
    equal = step[:, None] == step[None, :]
    Hs = np.where(smaller, H, np.where(equal, 0.5 * (H + H.T), H.T))
    if not with_info:
        return Hs
    scale = float(np.max(np.abs(H))) or 1.0
    info = dict(
        step_min=float(step.min()),
        step_max=float(step.max()),
        n_refined=int(np.sum(step < HESSIAN_STEP)),
        asymmetry=float(np.max(np.abs(H - H.T)) / scale),
    )
    return Hs, info


def laplace_covariance(H: np.ndarray, min_precision: float = MIN_PRECISION) -> tuple[np.ndarray, dict]:
    """Covariance of the Laplace approximation from the Hessian of ``-log p``: eigenvalues below
    ``min_precision`` (flat, or negative where the point is not a strict mode) are raised to it.
    Returns (covariance, record of the eigenvalues and how many were raised)."""
    w, V = np.linalg.eigh(H)
    raised = w < min_precision
    w2 = np.where(raised, min_precision, w)
    cov = (V / w2) @ V.T
    rec = dict(
        eigen_min=float(w.min()),
        eigen_max=float(w.max()),
        n_negative=int(np.sum(w < 0)),
        n_raised=int(np.sum(raised)),
        min_precision=float(min_precision),
    )
    return 0.5 * (cov + cov.T), rec


#: the directional check of the Laplace covariance evaluates the log density this many SDs out
RESCALE_SDS = 2.0
#: bounds of one round's factor on an eigen-direction's SD (a failed solve or a rising density
#: on both sides gives the bound, not an unbounded step)
RESCALE_BOUNDS = (0.1, 3.0)


def _secant_checkpoint(checkpoint: Path | None, fp: np.ndarray, mean: np.ndarray, cov: np.ndarray, rounds: int) -> dict | None:
    """The arrays of a rescaling checkpoint made for this problem, point and input covariance
    with at most ``rounds`` rounds (else None: start afresh)."""
    if checkpoint is None or not checkpoint.is_file():
        return None
    with np.load(checkpoint, allow_pickle=False) as d:
        if same_point(d, fp, mean) and np.allclose(d["cov_in"], cov, rtol=1e-8, atol=1e-12 * np.abs(cov).max()):
            if int(d["rounds"]) <= rounds:
                return {k: d[k].copy() for k in d.files}
    return None


def _log_density_at_mean(log_density, mean: np.ndarray, who: str) -> float:
    lp0 = float(jax.jit(log_density)(jnp.asarray(mean)))
    if not np.isfinite(lp0):
        raise ValueError(f"{who}: the log density at the mean is not finite (the solve failed there)")
    return lp0


def _secant_factor(drop: np.ndarray, k: float) -> np.ndarray:
    """The factor on an SD whose point ``k`` SDs out lies ``drop`` below the mean (a Gaussian of
    the right width drops by ``k^2 / 2``), within ``RESCALE_BOUNDS``; no drop: the upper bound."""
    lo, hi = RESCALE_BOUNDS
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.clip(np.where(drop > 0, np.sqrt(k**2 / (2.0 * drop)), hi), lo, hi)


def rescale_covariance(
    log_density,
    mean: np.ndarray,
    cov: np.ndarray,
    rounds: int,
    k: float = RESCALE_SDS,
    prob: likelihood.Problem | None = None,
    checkpoint: Path | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, dict]:
    """Secant rescaling of a Laplace covariance along its eigen-directions.

    The Hessian sees the log density's curvature at the mode only; importance sampling needs the
    proposal right where its draws land, about ``sqrt(dim)`` SDs out. For each eigen-direction
    ``u_i`` (SD ``s_i``) the exact log density is evaluated at ``mean +- k s_i u_i``. A Gaussian
    of the right width drops by ``k^2 / 2`` there; the SD is scaled by ``sqrt(k^2 / (2 d_i))``,
    with ``d_i`` the smaller of the two drops (the wider side: a proposal must cover the target's
    tails) and the factor kept within ``RESCALE_BOUNDS``. ``rounds`` repeats this at the new
    points (2 n + 1 evaluations each). Exact for a Gaussian target whose axes are the
    eigen-directions; otherwise a better proposal, not the posterior: PSIS still decides.
    Directions stay the Hessian's, so correlations are not corrected. ``checkpoint`` (npz) keeps
    each finished round's SDs with the point, input covariance and the problem's fingerprint.

    Returns (covariance, record: rounds, factor range per round, directions shrunk / widened,
    failed evaluations)."""
    if rounds < 0:
        raise ValueError(f"rounds: must be 0 or a positive integer, got {rounds!r}")
    mean = np.asarray(mean, dtype=np.float64)
    w, U = np.linalg.eigh(0.5 * (cov + cov.T))
    sd0 = np.sqrt(np.maximum(w, 0.0))
    sd = sd0.copy()
    fp = checkpoint_fingerprint(prob)
    history: list[dict] = []
    saved = _secant_checkpoint(checkpoint, fp, mean, cov, rounds)
    if saved is not None:
        sd, history = saved["sd"], json.loads(str(saved["history"]))
    lp0 = _log_density_at_mean(log_density, mean, "rescale_covariance")
    lo, hi = RESCALE_BOUNDS
    for r in range(len(history), rounds):
        steps = (k * sd)[:, None] * U.T  # (n, dim): row i is k s_i u_i
        pts = np.concatenate([mean + steps, mean - steps])
        lp = evaluate_log_density(log_density, pts, progress, desc=f"Laplace rescaling, round {r + 1}/{rounds}")
        drop = lp0 - np.where(np.isfinite(lp), lp, -np.inf)  # failed: an infinite drop
        factor = _secant_factor(np.minimum(drop[: sd.size], drop[sd.size :]), k)
        sd = sd * factor
        history.append(
            dict(
                round=r + 1,
                factor_min=float(factor.min()),
                factor_max=float(factor.max()),
                n_shrunk=int(np.sum(factor < 0.9)),
                n_widened=int(np.sum(factor > 1.1)),
                n_at_bound=int(np.sum((factor <= lo) | (factor >= hi))),
                n_failed=int(np.sum(~np.isfinite(lp))),
            )
        )
        if checkpoint is not None:
            atomic_write_npz(
                checkpoint, dict(z=mean, cov_in=cov, sd=sd, rounds=len(history), history=json.dumps(history), data_sha256=fp)
            )
    out = (U * sd**2) @ U.T
    rec = dict(rounds=len(history), k_sds=float(k), history=history, sd_ratio_min=float(np.min(sd / np.maximum(sd0, 1e-300))))
    rec["sd_ratio_max"] = float(np.max(sd / np.maximum(sd0, 1e-300)))
    return 0.5 * (out + out.T), rec


def split_rescale(
    log_density,
    mean: np.ndarray,
    cov: np.ndarray,
    rounds: int,
    k: float = RESCALE_SDS,
    prob: likelihood.Problem | None = None,
    checkpoint: Path | None = None,
    progress: bool = True,
) -> dict:
    """One SD per side along the eigen-directions of ``cov``: the scales of a split-normal
    proposal (Geweke 1989, Bayesian inference in econometric models using Monte Carlo
    integration, Econometrica 57).

    Where the posterior is lopsided (a cliff on one side of the mode, a long slope on the other:
    at the review fit's MAP one side of the stiffest direction drops by hundreds of nats where the
    other drops by tens), one SD per direction must take the wider side and so overshoots the
    cliff. Here each side is rescaled on its own: starting from the SDs of ``cov``, each round
    evaluates the exact log density at ``mean + k s+_i u_i`` and ``mean - k s-_i u_i`` and scales
    each side's SD by ``sqrt(k^2 / (2 d))`` for its own drop ``d``, within ``RESCALE_BOUNDS``
    (a failed solve: an infinite drop). On a cliff that secant swings between the bounds (2 SDs
    land before the cliff: widen 3x; beyond it: shrink 10x), so each side also keeps a bracket (the
    widest SD found too narrow, the narrowest found too wide) and a step that would leave it
    bisects it in log scale instead. ``checkpoint`` (npz) keeps each finished round.

    Returns a record: ``U`` (directions, columns), ``sd_plus``, ``sd_minus``, ``rounds`` and the
    per-round history (for ``split_normal_draws`` / ``split_normal_logpdf``)."""
    if rounds < 1:
        raise ValueError(f"rounds: must be a positive integer, got {rounds!r}")
    mean = np.asarray(mean, dtype=np.float64)
    w, U = np.linalg.eigh(0.5 * (cov + cov.T))
    sp = np.sqrt(np.maximum(w, 0.0))
    sm = sp.copy()
    fp = checkpoint_fingerprint(prob)
    history: list[dict] = []
    b_lo, b_hi = np.zeros(2 * sp.size), np.full(2 * sp.size, np.inf)  # per side (+ then -): the bracket of its SD
    saved = _secant_checkpoint(checkpoint, fp, mean, cov, rounds)
    if saved is not None:
        sp, sm, history = saved["sd_plus"], saved["sd_minus"], json.loads(str(saved["history"]))
        if "bracket_lo" in saved:
            b_lo, b_hi = saved["bracket_lo"], saved["bracket_hi"]
    lp0 = _log_density_at_mean(log_density, mean, "split_rescale")
    lo, hi = RESCALE_BOUNDS
    n = sp.size
    for r in range(len(history), rounds):
        pts = np.concatenate([mean + (k * sp)[:, None] * U.T, mean - (k * sm)[:, None] * U.T])
        lp = evaluate_log_density(log_density, pts, progress, desc=f"split-normal scales, round {r + 1}/{rounds}")
        drop = lp0 - np.where(np.isfinite(lp), lp, -np.inf)
        factor = _secant_factor(drop, k)
        s_now = np.concatenate([sp, sm])
        too_wide = drop > k**2 / 2.0
        b_hi = np.where(too_wide, np.minimum(b_hi, s_now), b_hi)
        b_lo = np.where(too_wide, b_lo, np.maximum(b_lo, s_now))
        s_new = s_now * factor
        bisect = ((s_new < b_lo) | (s_new > b_hi)) & (b_lo > 0) & np.isfinite(b_hi)
        s_new = np.where(bisect, np.sqrt(b_lo * b_hi), s_new)
        factor = s_new / s_now
        sp, sm = s_new[:n], s_new[n:]
        history.append(
            dict(
                round=r + 1,
                factor_min=float(factor.min()),
                factor_max=float(factor.max()),
                n_at_bound=int(np.sum((factor <= lo) | (factor >= hi))),
                n_failed=int(np.sum(~np.isfinite(lp))),
                max_drop=float(np.max(drop[np.isfinite(drop)], initial=0.0)),
                n_bisected=int(np.sum(bisect)),
            )
        )
        if checkpoint is not None:
            atomic_write_npz(
                checkpoint,
                dict(
                    z=mean,
                    cov_in=cov,
                    sd_plus=sp,
                    sd_minus=sm,
                    bracket_lo=b_lo,
                    bracket_hi=b_hi,
                    rounds=len(history),
                    history=json.dumps(history),
                    data_sha256=fp,
                ),
            )
    ratio = sp / np.maximum(sm, 1e-300)
    return dict(
        U=U,
        sd_plus=sp,
        sd_minus=sm,
        rounds=len(history),
        k_sds=float(k),
        history=history,
        side_ratio_min=float(ratio.min()),
        side_ratio_max=float(ratio.max()),
    )


def split_normal_draws(mean: np.ndarray, split: dict, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` draws of the split-normal with centre ``mean`` and the scales of ``split_rescale``, and
    their log densities. Along each direction the side is + with probability s+ / (s+ + s-) and
    the distance is |N(0, 1)| times that side's SD: the density is continuous at the centre."""
    U, sp, sm = split["U"], split["sd_plus"], split["sd_minus"]
    rng = np.random.default_rng(seed)
    y = np.abs(rng.standard_normal((n, sp.size)))
    plus = rng.uniform(size=y.shape) < sp / (sp + sm)
    x = np.where(plus, y * sp, -y * sm)
    draws = np.asarray(mean) + x @ U.T
    return draws, split_normal_logpdf(draws, mean, split)


def split_normal_logpdf(x: np.ndarray, mean: np.ndarray, split: dict) -> np.ndarray:
    """Log density of the split-normal of ``split_normal_draws`` at the rows of ``x``:
    ``sum_i log(2 / (s+_i + s-_i)) + log phi(y_i)``, with ``y_i`` the coordinate along ``u_i`` over
    its side's SD."""
    U, sp, sm = split["U"], split["sd_plus"], split["sd_minus"]
    c = (np.atleast_2d(x) - np.asarray(mean)) @ U
    y = np.where(c >= 0, c / sp, c / sm)
    return np.sum(np.log(2.0 / (sp + sm))) - 0.5 * np.sum(y**2, axis=1) - 0.5 * sp.size * math.log(2 * math.pi)


# ------------------------------------------------------------------ NUTS with checkpoints
