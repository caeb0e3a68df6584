"""The posterior of the fit: its coordinates, its log density, and the way between them and the
parameters in their units.

``z`` is a flat unconstrained vector (``Layout``: the shared parameters, then the estimated (line,
per-line parameter) entries, then the log SDs of the estimated-SD series, then the log day-0
volumes of the inoculum groups); ``make_log_density`` writes ``log p(z)`` in JAX, and the MAP
(``mapfit``), NUTS (``sampling``) and the Laplace approximation all use that one function:

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
``natural_values`` / ``unconstrained_values`` go between ``z`` and the parameters' units;
``prior_median_z`` / ``prior_draws_z`` give starts and prior draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import likelihood
from .priors import Prior, lognormal, prior
from .settings import SOLVER


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


def coordinate_priors(prob: likelihood.Problem) -> dict:
    """The ``Prior`` of each parameter coordinate, by its layout name (``u_k_kill``, ``u_r[3]``)."""
    lay = layout_of(prob)
    p_sh, p_line = lay.priors()
    return dict(zip(lay.names(), p_sh + p_line, strict=False))


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
