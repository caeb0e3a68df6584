"""Pareto-smoothed importance sampling (PSIS) of draws from an approximation of the posterior:
the PSIS weights and k-hat, the exact log density at proposal draws (resumable), a Student-t
proposal around a Gaussian and resampling by the weights. ``laplace`` uses it to check (and,
where k-hat allows, correct) its draws."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ..io import atomic_write_npz
from ..simulation.simulate import pad_rows
from . import likelihood


def checkpoint_fingerprint(prob) -> np.ndarray:
    """The problem's fingerprint as a 0-d array, the form the npz checkpoints store it in."""
    return np.array(likelihood.problem_fingerprint(prob) if prob is not None else "no problem given")


def same_point(saved, fp: np.ndarray, z: np.ndarray) -> bool:
    """Whether a checkpoint (an opened npz) was made for this problem and exactly this point."""
    return (
        "data_sha256" in saved
        and str(saved["data_sha256"]) == str(fp)
        and saved["z"].shape == z.shape
        and np.array_equal(saved["z"], z)
    )


#: PSIS is reliable below this k-hat (Vehtari et al. 2024)
KHAT_RELIABLE = 0.7


#: PSIS fits its Pareto tail to min(n/5, 3 sqrt(n)) draws and needs at least 5 of them
PSIS_MIN_DRAWS = 25


def psis_weights(logp: np.ndarray, logq: np.ndarray) -> dict:
    """Pareto-smoothed importance weights of draws with target log density ``logp`` (``-inf`` or
    NaN where the solve failed: weight 0) and proposal log density ``logq``. Returns the
    normalised weights, ``khat`` (> 0.7: not reliable; Vehtari et al. 2024, Pareto smoothed
    importance sampling, JMLR) and the effective sample size of the smoothed weights."""
    from arviz_stats.base import array_stats

    logp, logq = np.asarray(logp, dtype=np.float64), np.asarray(logq, dtype=np.float64)
    ok = np.isfinite(logp)
    w_all = np.zeros(logp.size)
    if ok.sum() < PSIS_MIN_DRAWS:  # too few to fit a Pareto tail: never reported as reliable
        return dict(khat=float("inf"), ess=0.0, n=int(logp.size), n_failed=int((~ok).sum()), weights=w_all)
    r = (logp - logq)[ok]
    if np.ptp(r) <= 1e-9 * max(1.0, np.abs(r).max()):  # the target equals the proposal: equal weights
        lw, khat = np.full(r.size, -math.log(r.size)), 0.0
    else:
        lw, khat = array_stats.psislw(-r)  # arviz-stats takes the LOO convention: minus the log ratios
        khat = float(khat) if np.isfinite(khat) else math.inf  # a tail too short to fit: not trusted
    w = np.exp(lw - np.max(lw))
    w_all[ok] = w / w.sum()
    return dict(khat=float(khat), ess=float(1.0 / np.sum(w_all**2)), n=int(logp.size), n_failed=int((~ok).sum()), weights=w_all)


def gaussian_logpdf(x: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    Lc = np.linalg.cholesky(cov)
    dev = np.linalg.solve(Lc, (np.atleast_2d(x) - mean).T).T
    return -0.5 * np.sum(dev**2, axis=1) - np.sum(np.log(np.diag(Lc))) - 0.5 * mean.size * math.log(2 * math.pi)


def evaluate_log_density(log_density, draws: np.ndarray, progress: bool = True, desc: str = "importance check") -> np.ndarray:
    """The exact log density at each row of ``draws`` (one compiled solve, row by row)."""
    from tqdm.auto import tqdm

    logp_f = jax.jit(log_density)
    return np.array([float(logp_f(jnp.asarray(x))) for x in tqdm(draws, desc=desc, disable=not progress, leave=False)])


def importance_check(
    log_density, draws: np.ndarray, mean: np.ndarray, cov: np.ndarray | None, progress: bool = True, logq=None
) -> dict:
    """How well the Gaussian ``N(mean, cov)`` (or another proposal, whose log density at the draws
    is ``logq``) stands for the posterior: PSIS of the exact log density at its draws (see
    ``psis_weights``): ``khat`` > 0.7 means the approximation is not reliable; the effective
    sample size says how many draws it is worth."""
    flat = draws.reshape(-1, draws.shape[-1])
    logp = evaluate_log_density(log_density, flat, progress)
    out = psis_weights(logp, gaussian_logpdf(flat, mean, cov) if logq is None else np.asarray(logq).reshape(-1))
    out.pop("weights")
    return dict(out, logp=logp)


#: degrees of freedom of the Student-t importance proposal around the Laplace fit: heavier tails
#: than the Gaussian, as importance sampling needs a proposal that covers the target's tails
PROPOSAL_DF = 5.0


#: the proposal's seed is the fit's seed plus this (``run_fit`` and ``scripts/device_hessian.py``)
PROPOSAL_SEED_OFFSET = 5


def t_proposal(mean: np.ndarray, cov: np.ndarray, n: int, seed: int, df: float = PROPOSAL_DF) -> tuple[np.ndarray, np.ndarray]:
    """``n`` draws of the multivariate Student-t (location ``mean``, scale ``cov``, ``df``) and
    their log densities."""
    from scipy.special import gammaln

    d = mean.size
    rng = np.random.default_rng(seed)
    Lc = np.linalg.cholesky(cov)
    u = rng.chisquare(df, size=n)
    x = mean + (rng.standard_normal((n, d)) @ Lc.T) / np.sqrt(u / df)[:, None]
    dev = np.linalg.solve(Lc, (x - mean).T).T
    m = np.sum(dev**2, axis=1)
    logq = (
        gammaln((df + d) / 2)
        - gammaln(df / 2)
        - 0.5 * d * math.log(df * math.pi)
        - np.sum(np.log(np.diag(Lc)))
        - 0.5 * (df + d) * np.log1p(m / df)
    )
    return x, logq


def importance_resample(weights: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of ``n`` draws resampled by the normalised ``weights`` (systematic resampling: the
    count of each draw is within 1 of n x its weight)."""
    w = np.asarray(weights, dtype=np.float64)
    if not (np.all(w >= 0) and abs(w.sum() - 1.0) < 1e-8):
        raise ValueError("weights: must be non-negative and sum to 1")
    u = (np.random.default_rng(seed).random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(np.cumsum(w), u, side="right"), w.size - 1)


def importance_draws(
    log_density,
    prob: likelihood.Problem | None,
    mean: np.ndarray,
    cov: np.ndarray,
    n: int,
    seed: int,
    checkpoint: Path | None = None,
    progress: bool = True,
    batch: int = 1,
) -> dict:
    """``n`` Student-t proposal draws around the Laplace fit with the exact log density at each
    (resumable: ``checkpoint`` keeps the draws, their proposal and target log densities, the point
    and the problem's fingerprint; a file made elsewhere, e.g. on a GPU, is reused when all agree).
    ``batch`` > 1 evaluates that many draws per vmapped call. Returns the arrays and PSIS."""
    fp = checkpoint_fingerprint(prob)
    saved = None
    if checkpoint is not None and checkpoint.is_file():
        with np.load(checkpoint, allow_pickle=False) as d:
            same = same_point(d, fp, mean) and d["draws"].shape[0] == n
            # the covariance may come from another machine's LAPACK: equal to rounding
            if same and np.allclose(d["cov"], cov, rtol=1e-8, atol=1e-12 * np.abs(cov).max()):
                saved = {k: d[k].copy() for k in ("draws", "logq", "logp")}
    if saved is None:
        x, logq = t_proposal(mean, cov, n, seed)
        saved = dict(draws=x, logq=logq, logp=np.full(n, np.nan))
    todo = np.flatnonzero(np.isnan(saved["logp"]))
    f = jax.jit(jax.vmap(log_density)) if batch > 1 else jax.jit(log_density)
    bar = None
    if progress and todo.size:
        from tqdm.auto import tqdm

        bar = tqdm(total=todo.size, desc="importance draws", leave=False)
    step = batch if batch > 1 else 10
    for k in range(0, todo.size, step):
        rows = todo[k : k + step]
        if batch > 1:
            X = saved["draws"][rows]
            if len(rows) < batch:  # pad: one compiled shape
                X = pad_rows(X, batch)
            vals = np.asarray(f(jnp.asarray(X)))[: len(rows)]
        else:
            vals = np.array([float(f(jnp.asarray(x))) for x in saved["draws"][rows]])
        saved["logp"][rows] = np.where(np.isnan(vals), -np.inf, vals)
        if checkpoint is not None:
            atomic_write_npz(checkpoint, dict(saved, z=mean, cov=cov, data_sha256=fp, df=PROPOSAL_DF))
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    return dict(saved, **psis_weights(saved["logp"], saved["logq"]))
