"""Bayesian inference: multi-start MAP, then NUTS from the MAP.

The sampler moves a flat unconstrained vector ``z`` (``Layout``: the shared parameters, then the
estimated (line, per-line parameter) entries, then the log SDs of the estimated-SD series,
then the log day-0 volumes of the inoculum groups); its log density is written out in JAX
(``make_log_density``) and given to numpyro's NUTS as ``potential_fn``, so MAP and NUTS use the
same function:

* every estimated parameter (the table's ``estimate`` column: ``yes`` shared, ``line`` per tumour
  line of the fitted records, ``growth`` per line with growth data) moves through the bounded
  transform of ``priors.Prior``: its table bounds hold for every ``z``, and its prior is the
  table's, truncated to the bounds;
* the SD of the series fitted with an estimated SD, one per discrepancy group (source):
  ``sigma_series[g] ~ HalfNormal(0.5)``;
* the day-0 volume of the records of an inoculum group (a source whose own control volumes
  contradict the table's ``v0_irr``), one per group, last in ``z``:
  ``log v0_inoculum[h] ~ Normal(log 15, INOCULUM_SIGMA)`` (the table's median, a wider SD).

The likelihood is ``likelihood.log_likelihood``: a failed solve gives ``-inf`` (the non-throwing
simulation mode), so a NUTS proposal that breaks the solver is rejected instead of crashing the run.

Chains run ``vectorized`` (numpyro's ``parallel`` method breaks diffrax closures on this stack).
Sampling runs in segments that continue the same chains, checkpointing after each
(``checkpoint.npz``: plain arrays, no pickle), so an interrupted run resumes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import likelihood as L
from .priors import Prior, lognormal, prior
from .simulate import pad_rows

#: the fit's solver settings; ``max_steps`` is per segment between state jumps (a segment can span
#: the whole 60-day horizon of an untreated arm). Since the one-cell extinction floor (2026-11-29)
#: volumes near 1e-6 mm^3 matter: at the review MAP rtol 1e-5 / atol 1e-8 left the log posterior
#: 0.011 off an rtol-1e-9 solve (1e-5 / 1e-10: 0.0047); 1e-6 / 1e-10 leaves 2.5e-4 for 1.5x the cost
SOLVER = dict(rtol=1e-6, atol=1e-10, max_steps=4096)


@dataclass(frozen=True)
class FitSettings:
    """Settings of a fit run (stored in fit.json, so that a fit can be reproduced)."""

    seed: int = 0
    n_virtual: int = 8
    map_starts: int = 4
    map_steps: int = 300
    map_lr: float = 0.05
    lbfgs_steps: int = 60
    chains: int = 2
    warmup: int = 200
    samples: int = 200
    segment: int = 50
    max_tree_depth: int = 6
    target_accept: float = 0.8
    quick: bool = False
    refine_steps: int = 0  # further L-BFGS iterations from the best MAP start (resumable)
    hessian_batch: int = 1  # gradients per vmapped call of the Laplace Hessian (>1 pays on a GPU)
    importance_draws: int = 0  # Laplace: Student-t proposal draws, PSIS-resampled when k-hat < 0.7 (0: Gaussian draws)
    laplace_rescale: int = 0  # Laplace: rounds of secant rescaling of the covariance (rescale_covariance)
    laplace_split: int = 0  # Laplace: rounds of per-side rescaling: split-normal draws (split_rescale)
    precondition: str = ""  # a fit (name or folder) whose draws' covariance preconditions the MAP refinement

    @staticmethod
    def quick_settings(seed: int = 0) -> FitSettings:
        """The CI mode: few records' worth of work, a handful of steps and draws (NOT converged)."""
        return FitSettings(
            seed=seed,
            n_virtual=2,
            map_starts=2,
            map_steps=5,
            chains=2,
            warmup=4,
            samples=4,
            segment=2,
            max_tree_depth=2,
            quick=True,
        )


@dataclass(frozen=True)
class Layout:
    """Positions of the unconstrained coordinates in the flat vector ``z`` that NUTS moves."""

    shared: tuple[str, ...]
    per_line: tuple[str, ...]
    lines: tuple[str, ...]  # the tumour lines of the fitted records
    line_coords: tuple[tuple[int, int], ...] = ()  # estimated (line, per-line parameter) entries, in z order
    line_base: tuple[tuple[float, ...], ...] = ()  # (L, Q) table values of the per-line parameters
    series_groups: tuple[str, ...] = ()  # one fitted series SD per discrepancy group
    inoculum_groups: tuple[str, ...] = ()  # one fitted day-0 volume per inoculum group (last)

    @property
    def n_lines(self) -> int:
        return len(self.lines)

    @property
    def size(self) -> int:
        return len(self.shared) + len(self.line_coords) + len(self.series_groups) + len(self.inoculum_groups)

    def names(self) -> list[str]:
        """A label per coordinate."""
        out = [f"u_{n}" for n in self.shared]
        out += [f"u_{self.per_line[q]}[{j}]" for j, q in self.line_coords]
        out += [f"log_sigma_series[{g}]" for g in range(len(self.series_groups))]
        return out + [f"log_v0_inoculum[{h}]" for h in range(len(self.inoculum_groups))]

    @property
    def series_slice(self) -> slice:
        """Where the log SDs of the discrepancy groups are in ``z`` (before the inoculum groups)."""
        end = self.size - len(self.inoculum_groups)
        return slice(end - len(self.series_groups), end)

    @property
    def inoculum_slice(self) -> slice:
        """Where the log day-0 volumes of the inoculum groups are in ``z``: the last coordinates."""
        return slice(self.size - len(self.inoculum_groups), self.size)

    def split(self, z):
        """z (..., size) -> (u shared (..., S), u of the estimated line entries (..., C), log sigma_series (..., G))."""
        S, C = len(self.shared), len(self.line_coords)
        return z[..., :S], z[..., S : S + C], z[..., self.series_slice]

    def log_inoculum(self, z):
        """z (..., size) -> log v0_inoculum (..., H): the last H coordinates."""
        return z[..., self.inoculum_slice]

    def priors(self) -> tuple[list[Prior], list[Prior]]:
        """The bounded priors: one per shared parameter, one per estimated (line, parameter) entry."""
        return [prior(n) for n in self.shared], [prior(self.per_line[q], self.lines[j]) for j, q in self.line_coords]

    def values(self, z):
        """z (..., size) -> (shared values (..., S), per-line values (..., L, Q)) in their units (jnp):
        the table's values where a (line, parameter) entry is not estimated."""
        u_sh, u_line, _ = self.split(z)
        p_sh, p_line = self.priors()
        shared = jnp.stack([pr.value(u_sh[..., i]) for i, pr in enumerate(p_sh)], axis=-1) if p_sh else u_sh
        base = jnp.broadcast_to(
            jnp.asarray(np.asarray(self.line_base, dtype=np.float64).reshape(self.n_lines, len(self.per_line))),
            z.shape[:-1] + (self.n_lines, len(self.per_line)),
        )
        if not p_line:
            return shared, base
        est = jnp.stack([pr.value(u_line[..., k]) for k, pr in enumerate(p_line)], axis=-1)
        jj, qq = (np.array(ix) for ix in zip(*self.line_coords))
        return shared, base.at[..., jj, qq].set(est)

    def log_prior_parameters(self, z):
        """The log prior density of the estimated parameters' coordinates (bounded transforms)."""
        u_sh, u_line, _ = self.split(z)
        p_sh, p_line = self.priors()
        lp = 0.0
        for i, pr in enumerate(p_sh):
            lp = lp + pr.log_density(u_sh[..., i])
        for k, pr in enumerate(p_line):
            lp = lp + pr.log_density(u_line[..., k])
        return lp


def layout_of(prob: L.Problem) -> Layout:
    base = np.asarray(prob.line_base if prob.line_base is not None else np.zeros((len(prob.lines), len(prob.per_line))))
    return Layout(
        tuple(prob.shared),
        tuple(prob.per_line),
        tuple(prob.lines),
        tuple(prob.line_coords),
        tuple(map(tuple, base.tolist())),
        tuple(prob.series_groups),
        tuple(prob.inoculum_groups),
    )


def inoculum_prior() -> tuple[float, float]:
    """(mean, SD) of log v0_inoculum: the table's v0_irr median, ``likelihood.INOCULUM_SIGMA``."""
    return math.log(lognormal("v0_irr")[0]), L.INOCULUM_SIGMA


def _half_normal_log(log_x, scale):
    """log density of log(x) when x ~ HalfNormal(scale) (with the Jacobian of x = exp(log_x))."""
    x = jnp.exp(log_x)
    return math.log(2.0) - 0.5 * math.log(2 * math.pi) - math.log(scale) - 0.5 * (x / scale) ** 2 + log_x


def make_log_density(prob: L.Problem, solver: dict = SOLVER, with_likelihood: bool = True, solve_fn=None):
    """``log p(z)`` (prior + likelihood) on the flat unconstrained vector of ``layout_of(prob)``.

    Estimated parameters: the bounded table priors of ``priors.Prior`` (shared, and the estimated
    (line, parameter) entries); sigma_series[g] ~ HalfNormal(SERIES_SIGMA_SCALE) per discrepancy group; log
    v0_inoculum[h] ~ Normal(``inoculum_prior()``) per inoculum group. A failed solve gives -inf."""
    lay = layout_of(prob)

    def normal(x, m, s):
        return jnp.sum(-0.5 * ((x - m) / s) ** 2 - jnp.log(s) - 0.5 * math.log(2 * math.pi))

    def log_density(z):
        _, _, log_ss = lay.split(z)
        lp = lay.log_prior_parameters(z)
        lp += jnp.sum(_half_normal_log(log_ss, L.SERIES_SIGMA_SCALE))
        log_v0 = lay.log_inoculum(z)
        lp += normal(log_v0, *inoculum_prior())
        if not with_likelihood:
            return lp
        shared_vals, line_vals = lay.values(z)
        return lp + L.log_likelihood(prob, shared_vals, line_vals, jnp.exp(log_ss), solver, jnp.exp(log_v0), solve_fn)

    return log_density


def natural_values(prob: L.Problem, z: np.ndarray) -> dict[str, np.ndarray]:
    """Flat unconstrained draws (..., size) -> parameters in their units (per-line ones with a
    trailing tumour-line axis over ``prob.lines``)."""
    lay = layout_of(prob)
    z = np.asarray(z)
    shared, lines = (np.asarray(x) for x in lay.values(jnp.asarray(z)))
    out = {n: shared[..., i] for i, n in enumerate(prob.shared)}
    for q, n in enumerate(prob.per_line):
        out[n] = lines[..., q]
    if lay.series_groups:
        out["sigma_series"] = np.exp(z[..., lay.series_slice])  # (..., G): one per discrepancy group
    if lay.inoculum_groups:
        out["v0_inoculum"] = np.exp(lay.log_inoculum(z))  # (..., H): mm3, one per inoculum group
    return out


def prior_median_z(prob: L.Problem) -> np.ndarray:
    """The start of the first MAP run: prior medians (bounded), series SDs at their scale / 2."""
    lay = layout_of(prob)
    p_sh, p_line = lay.priors()
    z = np.zeros(lay.size)
    S = len(prob.shared)
    z[:S] = [pr.start() for pr in p_sh]
    z[S : S + len(p_line)] = [pr.start() for pr in p_line]
    z[lay.series_slice] = math.log(L.SERIES_SIGMA_SCALE / 2)
    z[lay.inoculum_slice] = inoculum_prior()[0]
    return z


def prior_draws_z(prob: L.Problem, n: int, seed: int) -> np.ndarray:
    """``n`` draws of z from the prior (no solve)."""
    lay = layout_of(prob)
    rng = np.random.default_rng(seed)
    p_sh, p_line = lay.priors()
    z = np.zeros((n, lay.size))
    S = len(prob.shared)
    for i, pr in enumerate(p_sh):
        z[:, i] = pr.draw(rng, n)
    for k, pr in enumerate(p_line):
        z[:, S + k] = pr.draw(rng, n)
    G, H = len(lay.series_groups), len(lay.inoculum_groups)
    if G:
        z[:, lay.series_slice] = np.log(np.abs(L.SERIES_SIGMA_SCALE * rng.standard_normal((n, G))))
    if H:
        m, s = inoculum_prior()
        z[:, lay.inoculum_slice] = m + s * rng.standard_normal((n, H))
    return z


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


def find_map(prob: L.Problem, settings: FitSettings, progress: bool = True, log=print, f=None):
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


def neg_log_density_and_grad(prob: L.Problem):
    """Jitted ``z -> (-log p(z), -grad log p(z))`` (one compilation, shared by MAP, refinement and
    the Laplace Hessian)."""
    return jax.jit(jax.value_and_grad(lambda z: -make_log_density(prob)(z)))


def refine_map(
    prob: L.Problem,
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


def unconstrained_values(prob: L.Problem, values: dict, lines=None, series_groups=None, inoculum_groups=None):
    """The inverse of ``natural_values``: parameters in their units -> flat ``z`` (..., size), and a
    boolean mask (size,) of the coordinates found in ``values``.

    ``values`` holds arrays with leading draw axes; per-line ones end in a tumour-line axis ordered
    as ``lines`` (default ``prob.lines``), ``sigma_series`` in ``series_groups`` and ``v0_inoculum``
    in ``inoculum_groups`` (defaults: the problem's). Lines and groups are matched by name; a
    coordinate with nothing to match (a line the values do not have) is 0 and False in the mask.
    Values on or outside a bound raise ``priors.PriorError``."""
    lay = layout_of(prob)
    lines = list(prob.lines if lines is None else lines)
    sg = list(prob.series_groups if series_groups is None else series_groups)
    ig = list(prob.inoculum_groups if inoculum_groups is None else inoculum_groups)
    first = prob.shared[0] if prob.shared else prob.per_line[0]
    lead = np.shape(values[first]) if prob.shared else np.shape(values[first])[:-1]
    z = np.zeros(lead + (lay.size,))
    found = np.zeros(lay.size, dtype=bool)
    pos = {name: k for k, name in enumerate(lay.names())}  # the layout's own labels give the positions

    def put(name, value):
        z[..., pos[name]], found[pos[name]] = value, True

    for n in prob.shared:
        put(f"u_{n}", prior(n).unconstrained(values[n]))
    for j, q in prob.line_coords:
        n, line = prob.per_line[q], prob.lines[j]
        if line in lines:
            put(f"u_{n}[{j}]", prior(n, line).unconstrained(values[n][..., lines.index(line)]))
    for label, key, have, want in (
        ("log_sigma_series", "sigma_series", sg, prob.series_groups),
        ("log_v0_inoculum", "v0_inoculum", ig, prob.inoculum_groups),
    ):
        for j, g in enumerate(want):
            if g in have:
                put(f"{label}[{j}]", np.log(values[key][..., have.index(g)]))
    return z, found


def draws_covariance(prob: L.Problem, fit) -> tuple[np.ndarray, str]:
    """The covariance of a fit's posterior draws in ``prob``'s unconstrained coordinates (matched by
    name), for ``refine_map(precondition=...)``; a coordinate the fit does not have (a new line or
    group) gets variance 1 and no correlation. ``fit``: a ``Fit`` (``load_fit``). Returns (cov, a
    sentence saying where it came from)."""
    post = fit.posterior
    values = {k: fit._samples(k) for k in post.data_vars}  # chains x draws flattened, as Fit keeps them
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


def _fingerprint(prob) -> np.ndarray:
    """The problem's fingerprint as a 0-d array, the form the npz checkpoints store it in."""
    return np.array(L.problem_fingerprint(prob) if prob is not None else "no problem given")


def _same_point(saved, fp: np.ndarray, z: np.ndarray) -> bool:
    """Whether a checkpoint (an opened npz) was made for this problem and exactly this point."""
    return (
        "data_sha256" in saved
        and str(saved["data_sha256"]) == str(fp)
        and saved["z"].shape == z.shape
        and np.array_equal(saved["z"], z)
    )


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
    prob: L.Problem,
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
    fp = _fingerprint(prob)
    H = np.full((n, n), np.nan)
    step = np.full(n, np.nan)  # the step each row was differenced with
    if checkpoint is not None and checkpoint.is_file():
        with np.load(checkpoint, allow_pickle=False) as d:
            if _same_point(d, fp, z):
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
                _save_npz(checkpoint, dict(z=z, H=H, step=step, data_sha256=fp))
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
    prob: L.Problem | None,
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
    fp = _fingerprint(prob)
    saved = None
    if checkpoint is not None and checkpoint.is_file():
        with np.load(checkpoint, allow_pickle=False) as d:
            same = _same_point(d, fp, mean) and d["draws"].shape[0] == n
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
            _save_npz(checkpoint, dict(saved, z=mean, cov=cov, data_sha256=fp, df=PROPOSAL_DF))
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    return dict(saved, **psis_weights(saved["logp"], saved["logq"]))


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
        if _same_point(d, fp, mean) and np.allclose(d["cov_in"], cov, rtol=1e-8, atol=1e-12 * np.abs(cov).max()):
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
    prob: L.Problem | None = None,
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
    fp = _fingerprint(prob)
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
            _save_npz(
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
    prob: L.Problem | None = None,
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
    fp = _fingerprint(prob)
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
            _save_npz(
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
def _save_npz(path: Path, arrays: dict):
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


EXTRA = ("diverging", "num_steps", "potential_energy")


def run_nuts(
    prob: L.Problem,
    init: np.ndarray,
    settings: FitSettings,
    workdir: Path,
    progress: bool = True,
    log=print,
    inv_mass: np.ndarray | None = None,
):
    """NUTS (numpyro, ``potential_fn`` = minus the log density) from ``init``, vectorized chains.

    The first call runs the warm-up (step size and diagonal mass matrix adaptation) and the first
    segment of ``settings.segment`` draws; later segments continue the same chains
    (``post_warmup_state``, no recompilation). After every segment ``checkpoint.npz`` holds the
    chains' positions, the adapted step sizes and mass matrices, every draw so far and the
    sample statistics (plain arrays; no pickle). A new call with the same workdir resumes after
    the last completed segment. Returns (draws z (chain, draw, size), stats)."""
    from numpyro.infer import MCMC, NUTS

    workdir.mkdir(parents=True, exist_ok=True)
    ck_path = workdir / "checkpoint.npz"
    potential = (lambda f: lambda z: -f(z))(make_log_density(prob))
    C = settings.chains
    key = jax.random.PRNGKey(settings.seed + 1)
    ck = dict(np.load(ck_path, allow_pickle=False)) if ck_path.is_file() else None

    def record(mcmc, t0):
        nonlocal ck
        z = np.asarray(mcmc.get_samples(group_by_chain=True))
        ex = mcmc.get_extra_fields(group_by_chain=True)
        st = mcmc.last_state
        new = dict(
            z_last=np.asarray(st.z),
            step_size=np.asarray(st.adapt_state.step_size),
            inv_mass=np.asarray(st.adapt_state.inverse_mass_matrix),
        )
        if ck is None:
            new.update(draws=z, warmup_seconds=np.array(time.time() - t0), sample_seconds=np.array(0.0))
            for k in EXTRA:
                new[f"x_{k}"] = np.asarray(ex[k])
        else:
            new.update(
                draws=np.concatenate([ck["draws"], z], axis=1),
                warmup_seconds=ck["warmup_seconds"],
                sample_seconds=np.array(float(ck["sample_seconds"]) + time.time() - t0),
            )
            for k in EXTRA:
                new[f"x_{k}"] = np.concatenate([ck[f"x_{k}"], np.asarray(ex[k])], axis=1)
        ck = new
        _save_npz(ck_path, ck)
        log(f"NUTS: {ck['draws'].shape[1]}/{settings.samples} draws per chain ({time.time() - t0:.0f} s)")

    t0 = time.time()
    if ck is None:
        n = min(settings.segment, settings.samples)
        kernel = NUTS(
            potential_fn=potential,
            target_accept_prob=settings.target_accept,
            max_tree_depth=settings.max_tree_depth,
            inverse_mass_matrix=None if inv_mass is None else jnp.asarray(inv_mass),
        )
        mcmc = MCMC(
            kernel, num_warmup=settings.warmup, num_samples=n, num_chains=C, chain_method="vectorized", progress_bar=progress
        )
        rng = np.random.default_rng(settings.seed + 2)
        init_c = jnp.asarray(init[None] + 0.01 * rng.standard_normal((C, init.size)))
        mcmc.run(key, init_params=init_c, extra_fields=EXTRA)
        record(mcmc, t0)
    else:
        log(f"resuming NUTS from {ck_path} ({ck['draws'].shape[1]} of {settings.samples} draws per chain done)")
        mcmc = None
    while ck["draws"].shape[1] < settings.samples:
        n = min(settings.segment, settings.samples - ck["draws"].shape[1])
        t0 = time.time()
        if mcmc is None or mcmc.num_samples != n:
            # a resumed (or shorter last) segment: the adapted step size and mass matrix, fixed
            kernel = NUTS(
                potential_fn=potential,
                step_size=float(np.median(ck["step_size"])),
                inverse_mass_matrix=jnp.asarray(np.mean(np.atleast_2d(ck["inv_mass"]), axis=0)),
                adapt_step_size=False,
                adapt_mass_matrix=False,
                max_tree_depth=settings.max_tree_depth,
            )
            mcmc = MCMC(kernel, num_warmup=0, num_samples=n, num_chains=C, chain_method="vectorized", progress_bar=progress)
            mcmc.run(jax.random.fold_in(key, ck["draws"].shape[1]), init_params=jnp.asarray(ck["z_last"]), extra_fields=EXTRA)
        else:
            mcmc.post_warmup_state = mcmc.last_state
            mcmc.run(mcmc.post_warmup_state.rng_key, extra_fields=EXTRA)
        record(mcmc, t0)

    if ck["draws"].shape[1] > settings.samples:  # a resume that asks for fewer draws: the first ones
        for k in ["draws"] + [f"x_{k}" for k in EXTRA]:
            ck[k] = ck[k][:, : settings.samples]
    stats = {k: ck[f"x_{k}"] for k in EXTRA}
    stats["step_size"] = float(np.median(ck["step_size"]))
    stats["warmup_seconds"] = float(ck["warmup_seconds"])
    stats["sample_seconds"] = float(ck["sample_seconds"])
    return ck["draws"], stats


def write_json(path: Path, obj):
    from .io import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, default=float))
