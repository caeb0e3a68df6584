"""Priors and bounds of the estimated parameters, read from the parameter table (the single source).

Each estimated parameter theta has the bounds ``[lower, upper]`` of ``data/parameters.csv`` and its
``prior`` (``lognormal(median=m, sigma=s)``: log theta ~ Normal(log m, s); ``uniform``: uniform on
the parameter's ``scale``), truncated to the bounds. A fit moves an unconstrained coordinate ``u``:

    t = biject_to(interval(a, b))(u),   theta = exp(t) (scale "log") or t (scale "lin"),

with ``[a, b]`` the bounds on the scale of ``t``: the bounds hold for every ``u`` (a transform, not a
penalty), and the log density of ``u`` is the prior density of ``t`` plus ``log |dt/du|``. Per-line
parameters (the table's ``estimate = line``) take the median of the tumour line's row in
``data/tumour_lines.csv`` where it has one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cache

import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from scipy import stats

from ..model.parameters import base_tumour_line, parameter_table, spec, tumour_line_table

_LOGNORMAL = re.compile(r"^lognormal\(median=([0-9.eE+-]+),\s*sigma=([0-9.eE+-]+)\)$")


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
    def _bijector(self):
        return biject_to(constraints.interval(*self.interval))

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
