"""The Laplace fallback as a stage of a fit (``abscopal fit --laplace``): the Hessian at the MAP, the
optional secant and split-normal rescalings of its covariance, then draws (Gaussian, split-normal,
or Student-t proposals resampled by PSIS when k-hat allows) and their importance check. A labelled
approximation for when NUTS cannot finish; the statuses and the report say so."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .importance import (
    KHAT_RELIABLE,
    PROPOSAL_DF,
    PROPOSAL_SEED_OFFSET,
    importance_check,
    importance_draws,
    importance_resample,
)
from .laplace import laplace_covariance, laplace_hessian, rescale_covariance, split_normal_draws, split_rescale
from .posterior import log_density_of
from .settings import FitSettings


def _covariance(prob, init: np.ndarray, settings: FitSettings, work: Path, f, log_density, progress: bool, log):
    """The Hessian's covariance at the MAP, with the rescalings the settings ask for.
    Returns (cov, eigen summary, rescale record or None, split record or None)."""
    H, hinfo = laplace_hessian(
        prob, init, f=f, checkpoint=work / "hessian.npz", progress=progress, batch=settings.hessian_batch, with_info=True
    )
    cov, eig = laplace_covariance(H)
    eig["differences"] = hinfo
    log(
        f"Laplace Hessian: eigenvalues {eig['eigen_min']:.3g} .. {eig['eigen_max']:.3g}; {eig['n_negative']} negative, "
        f"{eig['n_raised']} raised to the floor {eig['min_precision']:g} (SD <= 1 log unit)"
    )
    rescale = split = None
    if settings.laplace_rescale > 0:
        cov, rescale = rescale_covariance(
            log_density, init, cov, settings.laplace_rescale, prob=prob, checkpoint=work / "rescale.npz", progress=progress
        )
        log(
            f"Laplace covariance rescaled ({rescale['rounds']} rounds at {rescale['k_sds']:g} SDs): SDs x "
            f"{rescale['sd_ratio_min']:.3g} .. {rescale['sd_ratio_max']:.3g} of the Hessian's"
        )
    if settings.laplace_split > 0:
        split = split_rescale(
            log_density, init, cov, settings.laplace_split, prob=prob, checkpoint=work / "split.npz", progress=progress
        )
        log(
            f"split-normal scales ({split['rounds']} rounds per side at {split['k_sds']:g} SDs): SD+ / SD- from "
            f"{split['side_ratio_min']:.3g} to {split['side_ratio_max']:.3g}"
        )
    return cov, eig, rescale, split


def _student_t(prob, init, cov, settings: FitSettings, work: Path, log_density, shape, progress: bool, log):
    """Student-t proposal draws with PSIS. Returns (draws or None, importance record or None, proposal)."""
    n_keep = shape[0] * shape[1]
    if settings.importance_draws < n_keep:
        raise ValueError(f"--importance-draws: at least chains x samples = {n_keep}, got {settings.importance_draws}")
    timp = importance_draws(
        log_density,
        prob,
        init,
        cov,
        settings.importance_draws,
        settings.seed + PROPOSAL_SEED_OFFSET,
        checkpoint=work / "importance.npz",
        progress=progress,
        batch=settings.hessian_batch,
    )
    resampled = bool(timp["khat"] < KHAT_RELIABLE)
    log(
        f"importance sampling from a Student-t (df {PROPOSAL_DF:g}) around the Laplace fit: {timp['n']} draws, "
        f"Pareto k-hat {timp['khat']:.2f}, ESS {timp['ess']:.1f} ({timp['n_failed']} failed solves); "
        + ("reliable: resampled" if resampled else "NOT reliable: the posterior stays the Gaussian Laplace draws")
    )
    proposal = dict(
        kind="student_t",
        df=PROPOSAL_DF,
        n=timp["n"],
        khat=timp["khat"],
        ess=timp["ess"],
        n_failed=timp["n_failed"],
        resampled=resampled,
    )
    if not resampled:
        return None, None, proposal
    # PSIS says the weighted draws stand for the posterior: resample them
    keep = importance_resample(timp["weights"], n_keep, settings.seed + 6)
    proposal["n_distinct"] = int(np.unique(keep).size)
    return timp["draws"][keep].reshape(shape), dict(timp, logp=timp["logp"][keep]), proposal


def laplace_stage(prob, init, settings: FitSettings, work: Path, f, progress: bool, log) -> tuple[np.ndarray, dict, dict]:
    """Draws (chains, samples, size) of the Laplace approximation at ``init``, their sample
    statistics in NUTS's layout (no divergences, no steps) and the record of how they were made."""
    init = np.asarray(init)
    log_density = log_density_of(prob)  # one compile for the stages below
    cov, eig, rescale, split = _covariance(prob, init, settings, work, f, log_density, progress, log)
    shape = (settings.chains, settings.samples, init.size)
    draws, imp, proposal = None, None, dict(kind="gaussian", resampled=False)
    if settings.importance_draws > 0:
        draws, imp, proposal = _student_t(prob, init, cov, settings, work, log_density, shape, progress, log)
    if draws is None and split is not None:  # the split-normal around the MAP
        flat, logq = split_normal_draws(init, split, shape[0] * shape[1], settings.seed + 3)
        draws = flat.reshape(shape)
        imp = importance_check(log_density, draws, init, None, progress=progress, logq=logq)
        what = "split-normal"
    elif draws is None:
        rng = np.random.default_rng(settings.seed + 3)
        draws = init + rng.standard_normal(shape) @ np.linalg.cholesky(cov).T
        imp = importance_check(log_density, draws, init, cov, progress=progress)
        what = "Laplace"
    if not proposal["resampled"]:
        log(
            f"importance check of the {what} draws: Pareto k-hat {imp['khat']:.2f}, ESS {imp['ess']:.1f} of {imp['n']} "
            f"({imp['n_failed']} failed solves)"
        )
    if split is not None:
        split = {k: v for k, v in split.items() if k not in ("U", "sd_plus", "sd_minus")}  # arrays: in work/split.npz
        split["drawn"] = not proposal["resampled"]
    info = dict(
        eigen=eig,
        rescale=rescale,
        split=split,
        khat=imp["khat"],
        importance_ess=imp["ess"],
        n_failed=imp["n_failed"],
        proposal=proposal,
    )
    stats = dict(
        diverging=np.zeros(shape[:2], bool),
        num_steps=np.zeros(shape[:2], np.int64),
        potential_energy=-imp["logp"].reshape(shape[:2]),
        step_size=float("nan"),
        warmup_seconds=0.0,
        sample_seconds=0.0,
    )
    log(f"Laplace approximation at the MAP: {shape[0]} x {shape[1]} independent draws (NOT MCMC)")
    return draws, stats, info


def laplace_status(info: dict) -> str:
    """The status line of a fit whose posterior is the Laplace approximation."""
    what = (
        "importance-resampled Laplace approximation (Student-t proposal around the MAP, finite-difference Hessian)"
        if info["proposal"]["resampled"]
        else "Laplace approximation at the MAP (finite-difference Hessian)"
    )
    if info["rescale"]:
        what += f", covariance rescaled along its eigen-directions ({info['rescale']['rounds']} rounds)"
    if info["split"] and info["split"]["drawn"]:
        what += f", drawn as a split-normal with one SD per side ({info['split']['rounds']} rounds)"
    return (
        f"NOT CONVERGED: {what}, not MCMC; PSIS k-hat {info['khat']:.2f} (reliable only below 0.7); "
        "NUTS did not finish in the time available (see report)"
    )
