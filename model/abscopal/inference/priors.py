"""Priors and bounds of the estimated parameters, read from the parameter table (the single source).

Each estimated parameter theta has the bounds ``[lower, upper]`` of ``data/parameters.csv`` and its
``prior`` (``lognormal(median=m, sigma=s)``: log theta ~ Normal(log m, s); ``uniform``: uniform on
the parameter's ``scale``), truncated to the bounds. A fit moves an unconstrained coordinate ``u``:

    t = SoftClipAffine(a, b, loc, scale)(u),   theta = exp(t) (scale "log") or t (scale "lin"),

with ``[a, b]`` the bounds on the scale of ``t``, ``loc`` and ``scale`` the prior's median and SD on
that scale (a uniform prior: the middle and a quarter of the interval). Inside the bounds the map is
affine, ``t = loc + scale * u``; it bends only within about ``HINGE`` prior SDs of a bound, where it
approaches the bound exponentially, so the bounds hold for every ``u`` (a transform, not a penalty).
The log density of ``u`` is the prior density of ``t`` plus ``log |dt/du|``.

Why not the logistic map onto the interval (numpyro's ``biject_to(interval)``, used until
2026-12-07): its curvature bends every well-measured combination of log-parameters. At the review
fit's MAP the posterior's ridge along ``k_kill`` (a straight line in log-parameters to 0.17
whitened SD at +-0.3 SD) was a parabola in the logistic coordinates, 3.6 SD off its tangent there
and 10.6 at +-0.5 SD, and NUTS took steps of 0.01-0.06 at the tree-depth limit
(``benchmarks/results_posterior_ridge.md``, ``results_nuts_review.md``).

Per-line parameters (the table's ``estimate = line``) take the median of the tumour line's row in
``data/tumour_lines.csv`` where it has one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache

import jax.numpy as jnp
import numpy as np
from jax.nn import softplus
from numpyro.distributions import constraints
from numpyro.distributions.transforms import Transform, biject_to
from scipy import stats

from ..model.parameters import base_tumour_line, parameter_table, spec, tumour_line_table

_LOGNORMAL = re.compile(r"^lognormal\(median=([0-9.eE+-]+),\s*sigma=([0-9.eE+-]+)\)$")


#: width of the bends of the coordinate transform near each bound, in prior SDs
HINGE = 0.25
#: the coordinates' version, stored with saved points: a point saved under another version is
#: converted through the parameters' values (``Prior.from_legacy``, by ``mapfit.carry_over``), never
#: reused as it is
COORDINATES = "soft-clip affine (2026-12-07)"
LEGACY_COORDINATES = "logistic onto the bounds"


class SoftClipAffine(Transform):
    """``u`` (real) -> ``t`` in ``(low, high)``: ``t = loc + scale * u`` inside the interval, bent
    smoothly within about ``hinge * scale`` of each bound:

        t = low + (high - low) h(xi),  xi = (loc + scale * u - low) / (high - low),
        h(xi) = (softplus(beta xi) - softplus(beta (xi - 1))) / beta,  beta = (high - low) / (hinge * scale),

    a monotone bijection of the reals onto (0, 1) with ``h(xi) = xi`` up to ``exp(-beta min(xi,
    1 - xi))`` inside, and ``1 - h(xi) = h(1 - xi)`` (used near the upper bound for accuracy)."""

    domain = constraints.real

    def __init__(self, low: float, high: float, loc: float, scale: float, hinge: float = HINGE):
        if not (low < high and scale > 0 and hinge > 0):
            raise ValueError(f"SoftClipAffine: needs low < high, scale > 0, hinge > 0; got {low}, {high}, {scale}, {hinge}")
        self.low, self.high, self.loc, self.scale = float(low), float(high), float(loc), float(scale)
        self.width = self.high - self.low
        self.beta = self.width / (hinge * self.scale)

    @property
    def codomain(self):
        return constraints.interval(self.low, self.high)

    def _xi(self, u):
        return (self.loc + self.scale * u - self.low) / self.width

    def _h(self, xi):
        b = self.beta
        return (softplus(b * xi) - softplus(b * (xi - 1.0))) / b

    def __call__(self, u):
        xi = self._xi(u)
        lower_half = xi < 0.5
        return jnp.where(
            lower_half,
            self.low + self.width * self._h(jnp.where(lower_half, xi, 0.0)),
            self.high - self.width * self._h(jnp.where(lower_half, 1.0, 1.0 - xi)),
        )

    def _inverse(self, t):
        b = self.beta
        q = jnp.clip((t - self.low) / self.width, 1e-300, 1.0 - 1e-16)
        # h(xi) = q  <=>  exp(beta xi) = expm1(beta q) / -expm1(beta (q - 1))
        xi = (jnp.log(jnp.expm1(b * q)) - jnp.log(-jnp.expm1(b * (q - 1.0)))) / b
        return (self.low + self.width * xi - self.loc) / self.scale

    def log_abs_det_jacobian(self, u, t, intermediates=None):
        # dt/du = scale * h'(xi),  h'(xi) = sigmoid(a) - sigmoid(a - beta),  a = beta xi
        #       = sinh(beta / 2) / (2 cosh(a / 2) cosh((a - beta) / 2))
        a = self.beta * self._xi(u)
        return math.log(self.scale) + _log_sinh(self.beta / 2) - math.log(2.0) - _log_cosh(a / 2) - _log_cosh((a - self.beta) / 2)

    def tree_flatten(self):
        # no array leaves: every number is static (numpyro's ``tree_unflatten`` sets them back)
        keys = ("low", "high", "loc", "scale", "width", "beta")
        return (), ((), {k: getattr(self, k) for k in keys})

    def __eq__(self, other):
        return isinstance(other, SoftClipAffine) and (self.low, self.high, self.loc, self.scale, self.beta) == (
            other.low,
            other.high,
            other.loc,
            other.scale,
            other.beta,
        )


def _log_cosh(x):
    x = jnp.abs(x)
    return x + jnp.log1p(jnp.exp(-2.0 * x)) - math.log(2.0)


def _log_sinh(x: float) -> float:
    return x + math.log(-math.expm1(-2.0 * x)) - math.log(2.0)


class PriorError(ValueError):
    """An estimated parameter whose table row cannot define a bounded prior."""


@dataclass(frozen=True)
class Prior:
    """The bounded prior of one estimated parameter (for one tumour line when per-line)."""

    name: str
    lower: float
    upper: float
    scale: str  # "log" or "lin": the scale of t
    kind: str  # "lognormal" or "uniform"
    median: float = math.nan  # lognormal only
    sigma: float = math.nan  # lognormal only (log units)

    @property
    def interval(self) -> tuple[float, float]:
        """The bounds on the scale of t."""
        if self.scale == "log":
            return math.log(self.lower), math.log(self.upper)
        return self.lower, self.upper

    @property
    def loc_scale(self) -> tuple[float, float]:
        """The prior's centre and SD on the scale of t (uniform: the middle and a quarter of the interval)."""
        a, b = self.interval
        if self.kind == "lognormal":
            return math.log(self.median), self.sigma
        return 0.5 * (a + b), 0.25 * (b - a)

    @property
    def _bijector(self):
        return SoftClipAffine(*self.interval, *self.loc_scale)

    def from_legacy(self, u_old) -> np.ndarray:
        """u in the logistic coordinates of points saved before 2026-12-07 (``LEGACY_COORDINATES``)
        -> u in these coordinates, through the same parameter value."""
        t = biject_to(constraints.interval(*self.interval))(jnp.asarray(u_old, dtype=jnp.float64))
        return np.asarray(self._bijector.inv(t))

    def value(self, u):
        """Unconstrained u -> theta in its units (jnp; inside the bounds for every u)."""
        t = self._bijector(u)
        return jnp.exp(t) if self.scale == "log" else t

    def _u(self, t) -> np.ndarray:
        """t (strictly inside the interval) -> u: the bijector's inverse, as numpy."""
        return np.asarray(self._bijector.inv(jnp.asarray(t, dtype=jnp.float64)))

    def unconstrained(self, theta) -> np.ndarray:
        """theta -> u (numpy); theta must lie strictly inside the bounds."""
        theta = np.asarray(theta, dtype=np.float64)
        if np.any(theta <= self.lower) or np.any(theta >= self.upper):
            raise PriorError(f"{self.name}: {theta} is not strictly inside its bounds [{self.lower}, {self.upper}]")
        return self._u(np.log(theta) if self.scale == "log" else theta)

    def log_density(self, u):
        """log p(u): the prior density of t at t(u) (up to the constant of truncation) + log |dt/du|."""
        tr = self._bijector
        t = tr(u)
        lp = tr.log_abs_det_jacobian(u, t)
        if self.kind == "lognormal":
            lp = lp - 0.5 * ((t - math.log(self.median)) / self.sigma) ** 2
        return lp

    def start(self) -> float:
        """u at the prior median (lognormal) or the middle of the bounds (uniform)."""
        a, b = self.interval
        t = math.log(self.median) if self.kind == "lognormal" else 0.5 * (a + b)
        return float(self._u(min(max(t, a + 1e-6 * (b - a)), b - 1e-6 * (b - a))))

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` draws of u from the (truncated) prior."""
        a, b = self.interval
        if self.kind == "lognormal":
            m, s = math.log(self.median), self.sigma
            t = stats.truncnorm.rvs((a - m) / s, (b - m) / s, loc=m, scale=s, size=n, random_state=rng)
        else:
            t = rng.uniform(a, b, n)
        return self._u(np.clip(t, a + 1e-12 * (b - a), b - 1e-12 * (b - a)))


def lognormal(name: str) -> tuple[float, float] | None:
    """(median, sigma) of the table's prior ``lognormal(median=m, sigma=s)`` of ``name``, or None
    when its prior is not lognormal."""
    m = _LOGNORMAL.match(spec(name).prior.strip())
    return (float(m.group(1)), float(m.group(2))) if m else None


@cache
def prior(name: str, tumour_line: str | None = None) -> Prior:
    """The bounded prior of an estimated parameter from its table row (and the tumour line's median)."""
    sp = spec(name)
    if not sp.estimate:
        raise PriorError(f"{name}: not estimated (the table's estimate column says 'no')")
    if sp.scale == "log" and sp.lower <= 0:
        raise PriorError(f"{name}: a log-scale estimated parameter needs lower > 0, got {sp.lower}")
    ln = lognormal(name)
    if ln:
        if sp.scale != "log":
            raise PriorError(f"{name}: a lognormal prior needs scale 'log'")
        median, sigma = ln
        if tumour_line is not None and sp.per_line:
            median = tumour_line_table(base_tumour_line(tumour_line)).get(name, (median, ""))[0]
        if not sp.lower < median < sp.upper:
            raise PriorError(f"{name}: prior median {median} is not strictly inside [{sp.lower}, {sp.upper}]")
        return Prior(name, sp.lower, sp.upper, sp.scale, "lognormal", median, sigma)
    if sp.prior.strip() == "uniform":
        return Prior(name, sp.lower, sp.upper, sp.scale, "uniform")
    raise PriorError(f"{name}: prior must be 'lognormal(median=m, sigma=s)' or 'uniform', got {sp.prior!r}")


def estimated() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(shared, per-line) names of the estimated parameters, in table order (the estimate column)."""
    table = parameter_table()
    return (
        tuple(s.name for s in table if s.estimate and not s.per_line),
        tuple(s.name for s in table if s.per_line),
    )
