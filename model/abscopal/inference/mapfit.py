"""The MAP: a multi-start search (Adam, then L-BFGS), resumable L-BFGS refinements (optionally in
coordinates whitened by a fit's draws), and the MAP checkpoint that a resumed or re-run fit
continues from (``work/map.json``, or rebuilt from a shipped fit)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from ..io import atomic_write_json
from . import likelihood
from .posterior import (
    coordinate_priors,
    layout_of,
    natural_values,
    neg_log_density_and_grad,
    prior_draws_z,
    prior_median_z,
    unconstrained_values,
)
from .priors import COORDINATES, LEGACY_COORDINATES
from .settings import FitSettings


# ------------------------------------------------------------------ MAP
def _scipy_objective(f):
    """``f`` (jitted value and gradient of -log p) as scipy's ``fun(x) -> (float, ndarray)``; a
    failed solve returns a huge value and a zero gradient, so the line search backs off."""

    def fun(x):
        v, g = f(jnp.asarray(x))
        v, g = float(v), np.asarray(g)
        if not math.isfinite(v) or not np.all(np.isfinite(g)):
            return 1e300, np.zeros_like(g)
        return v, g

    return fun


def find_map(prob: likelihood.Problem, settings: FitSettings, progress: bool = True, log=print, f=None):
    """Multi-start MAP (Adam on the log posterior, then L-BFGS; JAX gradients). Start 1: prior
    medians; the others: prior draws shrunk halfway towards the medians. Returns (best z, table of
    starts, each with the diagonal of L-BFGS's inverse-Hessian estimate, used as NUTS's initial
    inverse mass matrix)."""
    import optax
    from scipy.optimize import minimize
    from tqdm.auto import tqdm

    f = f or neg_log_density_and_grad(prob)
    fun = _scipy_objective(f)

    z0 = prior_median_z(prob)
    draws = prior_draws_z(prob, max(settings.map_starts - 1, 0), settings.seed)
    starts = [z0] + [0.5 * (z0 + d) for d in draws]
    opt = optax.adam(settings.map_lr)
    results = []
    for s, x in enumerate(starts):
        x = jnp.asarray(x)
        state = opt.init(x)
        best = (math.inf, x)
        bar = tqdm(range(settings.map_steps), desc=f"MAP start {s + 1}/{len(starts)}", disable=not progress, leave=False)
        for _ in bar:
            v, g = f(x)
            v = float(v)
            if not math.isfinite(v) or not bool(jnp.all(jnp.isfinite(g))):
                x = 0.5 * (x + best[1])  # a failed solve: step back halfway towards the best point
                state = opt.init(x)
                continue
            if v < best[0]:
                best = (v, x)
            upd, state = opt.update(g, state, x)
            x = optax.apply_updates(x, upd)
            bar.set_postfix(logpost=f"{-best[0]:.2f}")
        # polish with L-BFGS (the posterior is sharp: Adam's fixed step cannot resolve its mode)
        res = minimize(fun, np.asarray(best[1]), jac=True, method="L-BFGS-B", options=dict(maxiter=settings.lbfgs_steps))
        if math.isfinite(res.fun) and res.fun < best[0]:
            best = (float(res.fun), jnp.asarray(res.x))
        inv_mass = np.clip(np.diag(res.hess_inv.todense()), 1e-6, 10.0)
        results.append(
            dict(start=s, log_posterior=-best[0], z=np.asarray(best[1]), inv_mass=inv_mass, lbfgs_message=str(res.message))
        )
        log(
            f"MAP start {s + 1}/{len(starts)}: log posterior {-best[0]:.3f} (Adam {settings.map_steps} steps, then L-BFGS: {res.message})"
        )
    best = max(results, key=lambda r: r["log_posterior"])
    return np.asarray(best["z"]), results


def refine_map(
    prob: likelihood.Problem,
    z,
    steps: int,
    f=None,
    log=print,
    progress: bool = False,
    precondition: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """``steps`` more L-BFGS iterations from ``z`` (a progress bar per iteration with ``progress``).
    Returns (z, record with the log posterior, the gradient norm before and after, and scipy's
    message).

    ``precondition``: a covariance estimate ``C`` of the posterior (size x size, e.g. from
    ``draws_covariance``). L-BFGS then runs in whitened coordinates ``u`` with ``z = z0 + A u``,
    ``A A^T = C``: on a posterior whose curvature spans five orders of magnitude, its few dozen
    iterations otherwise go into learning the scales (measured on the review fit: 3 nats per 50
    plain iterations, against 5 nats in 5 preconditioned ones). The returned gradient norm is
    that of ``z`` (unwhitened), comparable across refinements."""
    from scipy.optimize import minimize
    from tqdm.auto import tqdm

    fun = _scipy_objective(f or neg_log_density_and_grad(prob))
    z = np.asarray(z, dtype=float)
    v0, g0 = fun(z)
    if precondition is None:
        A = np.eye(len(z))
    else:
        A = whitening_factor(precondition)
        if A.shape[0] != len(z):
            raise ValueError(f"precondition: expected a {len(z)} x {len(z)} covariance, got {np.shape(precondition)}")

    def fu(u):
        v, g = fun(z + A @ u)
        return v, A.T @ g

    with tqdm(total=int(steps), desc="MAP refinement (L-BFGS)", disable=not progress, leave=False) as bar:
        res = minimize(
            fu, np.zeros(len(z)), jac=True, method="L-BFGS-B", options=dict(maxiter=int(steps)), callback=lambda *_: bar.update(1)
        )
    z1 = z + A @ np.asarray(res.x) if res.fun < v0 else z
    v1, g1 = fun(z1)
    rec = dict(
        steps=int(steps),
        log_posterior_before=-v0,
        log_posterior=-v1,
        grad_norm_before=float(np.linalg.norm(g0)),
        grad_norm=float(np.linalg.norm(g1)),
        message=str(res.message),
    )
    log(
        f"MAP refinement ({steps} L-BFGS iterations{'' if precondition is None else ', preconditioned'}): log posterior "
        f"{-v0:.3f} -> {-v1:.3f}, gradient norm {rec['grad_norm_before']:.3g} -> {rec['grad_norm']:.3g} ({res.message})"
    )
    return z1, rec


def whitening_factor(cov: np.ndarray, floor: float = 1e-8) -> np.ndarray:
    """``A`` with ``A A^T = cov`` (symmetric square root; eigenvalues raised to ``floor``, so that a
    rank-deficient sample covariance still gives a usable, invertible factor)."""
    cov = np.asarray(cov, dtype=float)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1] or not np.all(np.isfinite(cov)):
        raise ValueError(f"precondition: a finite square covariance matrix is needed, got shape {cov.shape}")
    w, V = np.linalg.eigh(0.5 * (cov + cov.T))
    return (V * np.sqrt(np.maximum(w, floor))) @ V.T


#: ``FitSettings.precondition`` value that preconditions each refinement chunk by the inverse of the
#: log posterior's Hessian at the chunk's start (instead of a fit's draws)
PRECONDITION_HESSIAN = "hessian"


def hessian_covariance(
    prob: likelihood.Problem, z, f=None, progress: bool = False, floor: float = 1e-2
) -> tuple[np.ndarray, str]:
    """The inverse of the Hessian of ``-log p`` at ``z`` (central differences of the gradient,
    ``laplace.laplace_hessian``), each eigenvalue taken by its absolute value and raised to
    ``floor``, for ``refine_map(precondition=...)``: L-BFGS then starts from Newton's scaling.
    Measured on the review fit (2026-12-07): the plain refinement gained 4 nats in 400 iterations
    (-646.75 -> -642.54, gradient norm 33); three Hessian-preconditioned chunks of 50 reached
    -638.33 with gradient norm 0.0018 (each Hessian 92 gradients, about 60 s). Returns (cov, source)."""
    from .laplace import laplace_hessian

    H = np.asarray(laplace_hessian(prob, np.asarray(z), f=f, progress=progress))
    w, V = np.linalg.eigh(0.5 * (H + H.T))
    cov = (V / np.maximum(np.abs(w), floor)) @ V.T
    n_neg = int(np.sum(w < 0))
    return cov, (
        f"the inverse Hessian at the chunk's start (eigenvalues {w.min():.3g} to {w.max():.3g}"
        + (f", {n_neg} negative, taken by their absolute values)" if n_neg else ")")
    )


def draws_covariance(prob: likelihood.Problem, fit) -> tuple[np.ndarray, str]:
    """The covariance of a fit's posterior draws in ``prob``'s unconstrained coordinates (matched by
    name), for ``refine_map(precondition=...)``; a coordinate the fit does not have (a new line or
    group) gets variance 1 and no correlation. ``fit``: a ``Fit`` (``load_fit``). Returns (cov, a
    sentence saying where it came from)."""
    post = fit.posterior
    values = {k: fit.samples(k) for k in post.data_vars}  # chains x draws flattened, as Fit keeps them
    coords = {
        d: [str(x) for x in post.coords[d].values]
        for d in ("tumour_line", "discrepancy_group", "inoculum_group")
        if d in post.coords
    }
    z, found = unconstrained_values(
        prob, values, coords.get("tumour_line"), coords.get("discrepancy_group"), coords.get("inoculum_group")
    )
    if z.shape[0] < 2:
        raise ValueError(f"precondition: the fit {fit.name!r} has {z.shape[0]} draw(s); at least 2 are needed for a covariance")
    cov = np.eye(z.shape[-1])
    cov[np.ix_(found, found)] = np.cov(z[:, found].T)
    return (
        cov,
        f"the covariance of the {z.shape[0]} posterior draws of the fit {fit.name!r} ({int(found.sum())} of {len(found)} coordinates matched)",
    )


def map_point(prob, z, map_record: dict) -> dict:
    """The MAP in the parameters' units (for ``Fit.at_map``), with its log posterior and gradient norm."""
    refs = map_record.get("refinements") or []
    if refs:
        lp, gn = refs[-1]["log_posterior"], refs[-1]["grad_norm"]
    else:
        lp, gn = max(st["log_posterior"] for st in map_record["starts"]), None
    values = {k: np.asarray(v).tolist() for k, v in natural_values(prob, np.asarray(z)).items()}
    return dict(
        values=values,
        log_posterior=float(lp),
        grad_norm=None if gn is None else float(gn),
        # the flat unconstrained point itself (coordinates named as in the layout): the checks of
        # the shipped fit re-evaluate the log posterior and its gradient there
        z=np.asarray(z, dtype=np.float64).tolist(),
        names=layout_of(prob).names(),
        coordinates=COORDINATES,
    )


#: L-BFGS iterations per saved chunk of the MAP refinement (each restarts L-BFGS's curvature memory)
REFINE_CHUNK = 50


def carry_over(
    map_record: dict, names: list[str], default: np.ndarray, priors: dict | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A saved MAP point (and mass matrix) on the coordinates ``names``: coordinates of the same
    name are copied; ``log_sigma_series[g]`` takes a saved shared ``log_sigma_series`` (the SD was
    once one for all series); the rest start at ``default`` (mass 1). A point saved in other
    coordinates than ``priors.COORDINATES`` (a record without the key: the logistic ones) has its
    parameter coordinates converted through their values (``priors``: name -> ``Prior``, from
    ``posterior.coordinate_priors``; required then) and its mass reset to 1."""
    old = {n: i for i, n in enumerate(map_record["names"])}
    z_old, m_old = np.asarray(map_record["z"], dtype=float), np.asarray(map_record["inv_mass"], dtype=float)
    legacy = map_record.get("coordinates", LEGACY_COORDINATES) != COORDINATES
    z, m = np.array(default, dtype=float), np.ones(len(names))
    for k, n in enumerate(names):
        src = old.get(n, old.get(n.split("[")[0]) if n.startswith("log_sigma_series[") else None)
        if src is None:
            continue
        z[k], m[k] = z_old[src], m_old[src]
        if legacy and n.startswith("u_"):
            if priors is None or n not in priors:
                raise ValueError(f"carry_over: {n} was saved in the logistic coordinates; its prior is needed to convert it")
            z[k], m[k] = float(priors[n].from_legacy(z_old[src])), 1.0
    return z, m


#: settings that may change when a fit resumes: the number of draws (extend a run, or stop it
#: early), the MAP refinement (it continues from the saved MAP) and how the later stages compute
FREE_SETTINGS = (
    "samples",
    "segment",
    "processes",
    "refine_steps",
    "hessian_batch",
    "importance_draws",
    "laplace_rescale",
    "laplace_split",
    "precondition",
)


def short_fingerprint(fp) -> str:
    """A data fingerprint for a note: a SHA-256 digest shortened to 12 hex digits; anything else
    (a hand-made checkpoint's label) whole."""
    if fp is None:
        return "not recorded"
    fp = str(fp)
    return fp[:12] if len(fp) == 64 and all(c in "0123456789abcdef" for c in fp) else fp


def same_settings(a: dict, b: dict) -> bool:
    """Whether two settings dicts agree on everything that a resume may not change (a key absent
    from one side, from a fit made before the key existed, counts as its default)."""
    default = asdict(FitSettings())
    return all(a.get(k, default.get(k)) == b.get(k, default.get(k)) for k in set(a) | set(b) if k not in FREE_SETTINGS)


def map_record_from_fit(out: Path, fingerprint: str, names: list[str], settings: FitSettings) -> dict | None:
    """The MAP checkpoint rebuilt from a finished fit in ``out`` (fit.json's point, diagnostics.json's
    account of the search), so that a fresh clone, which has the shipped fit but not its gitignored
    ``work/``, can continue the refinement instead of starting the MAP search afresh. None unless
    the fit is of the same records, coordinates and settings."""
    fj, dj = out / "fit.json", out / "diagnostics.json"
    if not (fj.is_file() and dj.is_file()):
        return None
    meta, diag = json.loads(fj.read_text()), json.loads(dj.read_text())
    m = meta.get("map") or {}
    if meta.get("data_sha256") != fingerprint or m.get("names") != names:
        return None
    if not same_settings(meta.get("settings", {}), asdict(settings)):
        return None
    search = diag.get("map") or {}
    return dict(
        z=list(m["z"]),
        inv_mass=[1.0] * len(names),  # not shipped; only NUTS's starting mass matrix (adapted in warm-up)
        names=names,
        coordinates=m.get("coordinates", LEGACY_COORDINATES),
        starts=search.get("starts", []),
        refinements=search.get("refinements", []),
        seconds=0.0,
        note=search.get("note", ""),
        data_sha256=fingerprint,
        from_fit=str(fj),
    )


# ------------------------------------------------------------------ the MAP stage of a fit
def _warm_start(map_record: dict, prob, names: list[str], fingerprint: str) -> dict:
    """A MAP checkpoint of other records turned into the start of this fit's refinement."""
    old_note = map_record.get("note", "")
    z0, m0 = carry_over(map_record, names, prior_median_z(prob), coordinate_priors(prob))
    if list(map_record["names"]) != names:
        old_note = (
            f"The coordinates changed ({len(map_record['names'])} -> {len(names)}): those of the same name were "
            "carried over, a split log_sigma_series[g] took the old shared log_sigma_series, new ones started at "
            f"the prior median. {old_note}"
        )
    return dict(
        z=z0.tolist(),
        inv_mass=m0.tolist(),
        names=names,
        coordinates=COORDINATES,
        starts=[],
        seconds=0.0,
        note=(
            f"Warm start: the refinement began at a MAP found for earlier records "
            f"(data fingerprint {short_fingerprint(map_record.get('data_sha256'))}); the records changed since. "
            f"Before that: {old_note}"
        ).strip(),
        data_sha256=fingerprint,
    )


def start_map(prob, settings: FitSettings, out: Path, work: Path, f, progress: bool, log) -> tuple[dict, bool]:
    """The MAP checkpoint ``work/map.json`` to continue from: the saved one (reused as it is for the
    same records, a warm start for changed records when ``refine_steps`` > 0), else one rebuilt from
    the finished fit in ``out``, else a new multi-start search. Returns (record, resumed)."""
    map_path = work / "map.json"
    fingerprint = likelihood.problem_fingerprint(prob)
    names = layout_of(prob).names()
    if not map_path.is_file():
        shipped = map_record_from_fit(out, fingerprint, names, settings)
        if shipped is not None:
            atomic_write_json(map_path, shipped)
            log(f"MAP: no checkpoint in {work}; the refinement continues from the MAP of {shipped['from_fit']}")
    if not map_path.is_file():
        t0 = time.time()
        init, results = find_map(prob, settings, progress=progress, log=log, f=f)
        best_inv_mass = max(results, key=lambda r: r["log_posterior"])["inv_mass"]
        record = dict(
            z=np.asarray(init).tolist(),
            inv_mass=np.asarray(best_inv_mass).tolist(),
            names=names,
            coordinates=COORDINATES,
            starts=[dict(start=r["start"], log_posterior=r["log_posterior"], lbfgs=r["lbfgs_message"]) for r in results],
            seconds=time.time() - t0,
            data_sha256=fingerprint,
        )
        atomic_write_json(map_path, record)
        return record, False
    record = json.loads(map_path.read_text())
    if record.get("data_sha256") == fingerprint:
        log(f"MAP: reusing {map_path}")
        return record, True
    # the records (or the problem built from them) changed since this MAP: its point is a warm
    # start for the refinement, not a MAP of these data
    if settings.refine_steps <= 0:
        raise ValueError(
            f"{map_path}: this MAP was found for other records (data fingerprint differs); give "
            f"--refine-steps N to continue from it on the current records, or delete {work} to start afresh"
        )
    record = _warm_start(record, prob, names, fingerprint)
    atomic_write_json(map_path, record)
    log(f"MAP: the records changed since {map_path}; its point starts the refinement (warm start)")
    return record, True


def refine_stage(prob, settings: FitSettings, record: dict, work: Path, f, progress: bool, log) -> np.ndarray:
    """Continue the MAP refinement to ``settings.refine_steps`` L-BFGS iterations in all, in chunks of
    ``REFINE_CHUNK``, each saved to ``work/map.json`` (an interrupted refinement resumes); with
    ``settings.precondition``, in coordinates whitened by that fit's draws. Returns the point."""
    init = np.asarray(record["z"])
    done = sum(r["steps"] for r in record.get("refinements", []))
    cov = None
    by_hessian = settings.precondition == PRECONDITION_HESSIAN
    if settings.precondition and not by_hessian and settings.refine_steps > done:
        from .fitresult import load_fit

        cov, source = draws_covariance(prob, load_fit(settings.precondition))
        log(f"MAP refinement preconditioned by {source}")
    while settings.refine_steps > done:
        steps = min(REFINE_CHUNK, settings.refine_steps - done)
        if by_hessian:
            cov, source = hessian_covariance(prob, init, f=f, progress=progress)
            log(f"MAP refinement preconditioned by {source}")
        init, rec = refine_map(prob, init, steps, f=f, log=log, progress=progress, precondition=cov)
        if cov is not None:
            rec["preconditioned"] = source
        record["z"] = np.asarray(init).tolist()
        record["refinements"] = record.get("refinements", []) + [rec]
        atomic_write_json(work / "map.json", record)
        done += steps
    return np.asarray(init)
