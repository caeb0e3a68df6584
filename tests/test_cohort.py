"""The cohort's fractions by the critical mouse (``inference/cohort``): against the normal mass of
known margins (closed form), against virtual mice at the normal quantiles solved one by one, and their gradient against
central differences."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from abscopal.inference import cohort, likelihood, posterior
from abscopal.inference.mapfit import carry_over
from abscopal.inference.settings import SOLVER
from helpers import quick_problem

ROOT = Path(__file__).resolve().parents[1]
ZETA = np.linspace(-3.5, 3.5, 13)


def _fraction(m_of_zeta, crit_margin):
    """``cohort.fractions`` for margins given as a function of zeta; ``crit_margin(z)`` is the
    margin solved at the refined crossing (what carries the gradient)."""
    prob = SimpleNamespace(zeta=ZETA)
    m_grid = m_of_zeta(jnp.asarray(ZETA))[None]
    primary, zc, slope = cohort.crossings(prob, m_grid)
    j = int(primary[0])
    crit = zc[0, j][None]
    return cohort.fractions(prob, m_grid, primary, zc, crit, slope[0, j][None], crit_margin(crit))[0]


@pytest.mark.parametrize("c", [-2.2, 0.3, 1.9])
def test_one_crossing_gives_the_normal_tail_and_its_derivative(c):
    """Cured where zeta > c (margin c - zeta): the fraction is 1 - Phi(c), and d/dc is -phi(c)
    (the implicit function theorem through the crossing's margin)."""

    def frac(c):
        return _fraction(lambda z: jax.lax.stop_gradient(c) - z, lambda z: c - z)

    assert float(frac(c)) == pytest.approx(norm.sf(c), abs=1e-12)
    assert float(jax.grad(frac)(c)) == pytest.approx(-norm.pdf(c), rel=1e-9)


def test_two_crossings_count_the_mass_between_them():
    """Cured between a and b (margin (z - a)(z - b), linear between nodes): the grid's linear
    interpolation of the secondary crossing, the exact primary one."""
    a, b = -0.4, 1.3
    got = _fraction(lambda z: (z - a) * (z - b), lambda z: (z - a) * (z - b))
    assert float(got) == pytest.approx(norm.cdf(b) - norm.cdf(a), abs=0.02)


def test_no_crossing_is_all_or_none():
    assert float(_fraction(lambda z: -1.0 - 0 * z, lambda z: -1.0 - 0 * z)) == pytest.approx(1.0)
    assert float(_fraction(lambda z: 1.0 + 0 * z, lambda z: 1.0 + 0 * z)) == pytest.approx(0.0)


@pytest.fixture(scope="module")
def quick_point():
    """The quick problem (R17's and R29's cohort arms) at the shipped MAP's values."""
    prob = quick_problem()
    lay = posterior.layout_of(prob)
    m = json.loads((ROOT / "fits/review/fit.json").read_text())["map"]
    z, _ = carry_over(
        dict(m, inv_mass=np.ones(len(m["z"]))), lay.names(), posterior.prior_median_z(prob), posterior.coordinate_priors(prob)
    )
    return prob, lay, jnp.asarray(z)


@pytest.mark.slow  # about 80 s of compilation: the quick suite keeps the closed forms above
def test_fractions_match_virtual_mice_and_their_gradient_central_differences(quick_point):
    prob, lay, z = quick_point

    def fractions(z):
        shared, lines = lay.values(z)
        P = likelihood.arm_values(prob, shared, lines, jnp.exp(lay.log_inoculum(z)))
        return likelihood.solve_arms(prob, P, **SOLVER)[1:]

    frac, ok = jax.jit(fractions)(z)
    assert bool(ok)
    frac = np.asarray(frac)
    assert np.any((frac > 0.05) & (frac < 0.95)), f"no partial fraction to test at this point: {frac}"
    shared, lines = lay.values(z)
    P = likelihood.arm_values(prob, shared, lines, jnp.exp(lay.log_inoculum(z)))
    n = 96  # mice at the normal quantiles: a fraction exact to 1 / n
    mc, ok = jax.jit(lambda P: cohort.monte_carlo_fractions(prob, P, likelihood.rows_solver(prob, **SOLVER), n, seed=None))(P)
    assert bool(ok)
    np.testing.assert_array_less(np.abs(frac - np.asarray(mc)), 1.0 / n + 0.005)
    # the gradient of a weighted sum along one direction against central differences
    w = jnp.asarray(np.linspace(1.0, 2.0, frac.size))
    u = np.random.default_rng(0).standard_normal(z.size)
    u /= np.linalg.norm(u)
    f = jax.jit(lambda z: jnp.sum(w * fractions(z)[0]))
    g = jax.grad(lambda z: jnp.sum(w * fractions(z)[0]))(z)
    h = 1e-4
    fd = (float(f(z + h * u)) - float(f(z - h * u))) / (2 * h)
    assert float(g @ u) == pytest.approx(fd, rel=0.03, abs=1e-4)
