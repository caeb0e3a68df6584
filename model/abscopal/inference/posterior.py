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

NUTS is ``nuts.sample``: numpyro's kernel in compiled segments, the full kernel state of every chain
checkpointed after each (``checkpoint.npz``: plain arrays, no pickle), so an interrupted run resumes
bit for bit; the potential is the compiled gradient of the MAP, reached through a host callback
(``compiled_potential``), so NUTS does not compile the solver again.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from . import likelihood
from .priors import Prior, lognormal, prior

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
    processes: int = 1  # NUTS chains split over this many processes (same draws; 2 uses both cores here)
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


def layout_of(prob: likelihood.Problem) -> Layout:
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
    return math.log(lognormal("v0_irr")[0]), likelihood.INOCULUM_SIGMA


def _half_normal_log(log_x, scale):
    """log density of log(x) when x ~ HalfNormal(scale) (with the Jacobian of x = exp(log_x))."""
    x = jnp.exp(log_x)
    return math.log(2.0) - 0.5 * math.log(2 * math.pi) - math.log(scale) - 0.5 * (x / scale) ** 2 + log_x


def make_log_density(prob: likelihood.Problem, solver: dict = SOLVER, with_likelihood: bool = True, solve_fn=None):
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
        lp += jnp.sum(_half_normal_log(log_ss, likelihood.SERIES_SIGMA_SCALE))
        log_v0 = lay.log_inoculum(z)
        lp += normal(log_v0, *inoculum_prior())
        if not with_likelihood:
            return lp
        shared_vals, line_vals = lay.values(z)
        return lp + likelihood.log_likelihood(prob, shared_vals, line_vals, jnp.exp(log_ss), solver, jnp.exp(log_v0), solve_fn)

    return log_density


def natural_values(prob: likelihood.Problem, z: np.ndarray) -> dict[str, np.ndarray]:
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


def prior_median_z(prob: likelihood.Problem) -> np.ndarray:
    """The start of the first MAP run: prior medians (bounded), series SDs at their scale / 2."""
    lay = layout_of(prob)
    p_sh, p_line = lay.priors()
    z = np.zeros(lay.size)
    S = len(prob.shared)
    z[:S] = [pr.start() for pr in p_sh]
    z[S : S + len(p_line)] = [pr.start() for pr in p_line]
    z[lay.series_slice] = math.log(likelihood.SERIES_SIGMA_SCALE / 2)
    z[lay.inoculum_slice] = inoculum_prior()[0]
    return z


def prior_draws_z(prob: likelihood.Problem, n: int, seed: int) -> np.ndarray:
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
        z[:, lay.series_slice] = np.log(np.abs(likelihood.SERIES_SIGMA_SCALE * rng.standard_normal((n, G))))
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


#: compiled functions of a problem, by (what, problem fingerprint): a second fit of the same
#: problem in one process (a rerun, a resumed fit, the tests) reuses their compilations
_COMPILED: dict[tuple[str, str], object] = {}
_COMPILED_MAX = 8


def compiled_for(prob: likelihood.Problem, what: str, build):
    """``build()`` (a jitted function of ``prob``) once per problem and process, under ``what``."""
    key = (what, likelihood.problem_fingerprint(prob))
    if key not in _COMPILED:
        if len(_COMPILED) >= _COMPILED_MAX:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = build()
    return _COMPILED[key]


def neg_log_density_and_grad(prob: likelihood.Problem):
    """Jitted ``z -> (-log p(z), -grad log p(z))`` (one compilation per problem and process, shared
    by MAP, refinement, NUTS (``compiled_potential``) and the Laplace Hessian)."""
    return compiled_for(
        prob, "neg_log_density_and_grad", lambda: jax.jit(jax.value_and_grad(lambda z: -make_log_density(prob)(z)))
    )


def log_density_of(prob: likelihood.Problem):
    """Jitted ``log p(z)`` at the fit's solver settings (one compilation per problem and process)."""
    return compiled_for(prob, "log_density", lambda: jax.jit(make_log_density(prob)))


def compiled_potential(f, size: int):
    """numpyro ``potential_fn`` whose value and gradient are those of the compiled ``f``
    (``neg_log_density_and_grad``), reached through a host callback with a custom VJP.

    Why: traced into NUTS, the solver-backed gradient is compiled again inside every jitted stage
    of numpyro (initialisation, step-size search, warm-up, sampling; each chain batch): 100 s of
    compilation for the 3-record quick fit, against 25 s for ``f`` alone. Through the callback, ``f``
    is compiled once (and shared with the MAP) and NUTS compiles only its own tree arithmetic. The
    callback costs microseconds against the milliseconds of a gradient. Each call returns the
    value and the gradient together (NUTS always asks for both)."""
    shapes = (jax.ShapeDtypeStruct((), jnp.float64), jax.ShapeDtypeStruct((size,), jnp.float64))

    def host(z):
        # numpyro runs the chains under ``jax.default_device(cpu:0)``, which is part of jit's cache
        # key: f is called as the MAP calls it (no default device), so it is not compiled again
        with jax.default_device(None):
            v, g = f(np.asarray(z))
        return np.asarray(v, dtype=np.float64), np.asarray(g, dtype=np.float64)

    def both(z):
        return jax.pure_callback(host, shapes, z, vmap_method="sequential")

    @jax.custom_vjp
    def potential(z):
        return both(z)[0]

    def forward(z):
        return both(z)

    def backward(g, ct):
        return (ct * g,)

    potential.defvjp(forward, backward)
    return potential


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


def unconstrained_values(prob: likelihood.Problem, values: dict, lines=None, series_groups=None, inoculum_groups=None):
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


def problem_potential(record_ids: tuple[str, ...], n_virtual: int, seed: int, fingerprint: str):
    """The fit's NUTS potential rebuilt from its records (a picklable recipe for ``nuts.sample_processes``:
    a spawned process builds the same problem, checked by its fingerprint, and compiles its gradient)."""
    from ..records import load_records

    by_id = {r.id: r for r in load_records()}
    prob = likelihood.build_problem(tuple(by_id[i] for i in record_ids), n_virtual=n_virtual, seed=seed)
    if likelihood.problem_fingerprint(prob) != fingerprint:
        raise RuntimeError("problem_potential: the records rebuilt in this process are not the fit's (fingerprints differ)")
    return compiled_potential(neg_log_density_and_grad(prob), layout_of(prob).size)


def run_nuts(
    prob: likelihood.Problem,
    init: np.ndarray,
    settings: FitSettings,
    workdir: Path,
    progress: bool = True,
    log=print,
    inv_mass: np.ndarray | None = None,
    f=None,
):
    """NUTS (``nuts.sample``: numpyro's kernel in checkpointed segments, bit-for-bit resumable) on
    minus the log density, the compiled ``f`` of ``neg_log_density_and_grad`` through
    ``compiled_potential``, from ``init`` (jittered per chain). With ``settings.processes`` > 1 the
    chains are split over that many processes (``nuts.sample_processes``; same draws). ``workdir``
    holds the checkpoints; a new call on it resumes. Returns (draws z (chain, draw, size), stats)."""
    from functools import partial

    from .nuts import NutsOptions, sample, sample_processes

    opts = NutsOptions(
        chains=settings.chains,
        warmup=settings.warmup,
        samples=settings.samples,
        segment=settings.segment,
        max_tree_depth=settings.max_tree_depth,
        target_accept=settings.target_accept,
        seed=settings.seed + 1,
    )
    rng = np.random.default_rng(settings.seed + 2)
    starts = init[None] + 0.01 * rng.standard_normal((settings.chains, init.size))
    if settings.processes > 1:
        recipe = partial(
            problem_potential,
            tuple(r.id for r in prob.records),
            prob.z.shape[0],
            settings.seed,
            likelihood.problem_fingerprint(prob),
        )
        return sample_processes(recipe, starts, opts, workdir, settings.processes, inv_mass=inv_mass, progress=progress, log=log)
    potential = compiled_potential(f or neg_log_density_and_grad(prob), layout_of(prob).size)
    return sample(potential, starts, opts, workdir, inv_mass=inv_mass, progress=progress, log=log)


def write_json(path: Path, obj):
    from ..io import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, default=float))
