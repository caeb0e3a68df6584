"""Shared test helpers."""

import jax
import jax.numpy as jnp
import numpy as np

import abscopal as ab
from abscopal.inference import likelihood, posterior, sampling
from abscopal.inference.fitting import QUICK_RECORDS
from abscopal.inference.settings import FitSettings
from abscopal.records import load_records

# immunity switched off: no priming, no baseline infiltrate, no memory recall -> pure tumour growth + RT
NO_IMMUNITY = {"k_prime": 0.0, "e0": 0.0}


def logistic(t, v0, r, vmax):
    return vmax / (1 + (vmax / v0 - 1) * np.exp(-r * t))


def canonical_schedules():
    rt = ab.fractionated(5, 2.0, 7.0)
    return {
        "untreated": ab.Schedule(horizon_days=30, tumour_line="CT26", name="untreated"),
        "rt_pdl1_concurrent": ab.concurrent(
            rt, "anti-PD-L1", 10, "mg/kg", n_doses=6, every=2.33, horizon_days=30, tumour_line="CT26"
        ),
        "sbrt_multi": ab.Schedule(
            ab.fractionated(3, 8.0, 8.0, target="irradiated") + (ab.RTFraction(9.5, 4.0, "both"),),
            ab.drug_course("anti-CTLA-4", 200, "ug", 8, 3, 3)
            + ab.drug_course("Flt3L", 10, "ug", 9, 5, 1)
            + ab.drug_course("T-cells", 1e6, "cells", 12, 1, 1)
            + ab.drug_course("STING-agonist", 10, "ug", 10, 2, 2)
            + ab.drug_course("CSF-1R-inhibitor", 30, "mg/kg", 8, 4, 2),
            horizon_days=30,
            tumour_line="B16-F10",
            name="sbrt_multi",
        ),
    }


# ---- the fit's log density against a tight-tolerance solve (test_fast_likelihood, test_fit)
TIGHT = dict(rtol=1e-9, atol=1e-12, max_steps=100_000)


def _fit_logp_near_tight(prob, z, vt, rel_logp):
    """The fit's own log density and gradient at ``z`` (its compiled gradient, shared with the fit
    tests of this process: one compilation), after checking the value against the tight ``vt``."""
    v, g = (-np.asarray(x) for x in posterior.neg_log_density_and_grad(prob)(z))
    assert np.isfinite(vt)
    assert abs(float(v) - vt) <= 1e-3 + rel_logp * abs(vt), (float(v), vt)
    return g


def check_against_tight(prob, z, rel_logp=2e-6):
    tight = jax.jit(jax.value_and_grad(posterior.make_log_density(prob, TIGHT)))
    vt, gt = tight(z)
    assert np.all(np.isfinite(np.asarray(gt)))
    g = _fit_logp_near_tight(prob, z, float(vt), rel_logp)
    # relative to the gradient's norm, floored at 1: at a converged MAP the gradient vanishes (norm
    # 0.09 at the shipped one), and a relative error of almost nothing measures only the solver's
    # noise (there 1.3e-3 absolute, 1.4 % relative, in a 34-coordinate gradient)
    rel = float(jnp.linalg.norm(g - gt) / max(float(jnp.linalg.norm(gt)), 1.0))
    assert rel < 0.01, rel


def check_directions_against_tight(prob, z, rel_logp=2e-6, n_dirs=3, h=1e-3, seed=0):
    """The cheaper form of ``check_against_tight`` for the quick suite: the tight solve's forward
    only (a third of the gradient's compilation); the fit's gradient checked along ``n_dirs`` random
    unit directions against central differences of the tight log density (step ``h``; rtol 1e-9
    puts the differences' rounding near 1e-9 |log p| / h)."""
    tight = jax.jit(posterior.make_log_density(prob, TIGHT))
    g = _fit_logp_near_tight(prob, z, float(tight(z)), rel_logp)
    u = np.random.default_rng(seed).standard_normal((n_dirs, np.size(z)))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    for d in u:
        fd = (float(tight(z + h * d)) - float(tight(z - h * d))) / (2 * h)
        assert abs(float(g @ d) - fd) <= 0.01 * max(float(np.linalg.norm(g)), 1.0), (float(g @ d), fd)


def quick_problem():
    """The problem of ``abscopal fit --quick`` (same records, mice and seed: same fingerprint)."""
    records = tuple(r for r in load_records() if r.id in QUICK_RECORDS)
    return likelihood.build_problem(records, use="fit", n_nodes=FitSettings.quick_settings().n_nodes)


# ---- a known density for the sampler's tests (test_nuts): a correlated Gaussian
GAUSS_MU = np.array([1.0, -2.0, 0.5])
_GAUSS_A = np.array([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.2, -0.3, 0.5]])
GAUSS_COV = _GAUSS_A @ _GAUSS_A.T


@jax.jit
def gauss_neg_logp_and_grad(z):
    d = z - GAUSS_MU
    prec = jnp.asarray(np.linalg.inv(GAUSS_COV))
    return 0.5 * d @ prec @ d, prec @ d


def gauss_potential():
    """The Gaussian's potential the way the fit builds its own: a host callback into a compiled
    value-and-gradient (a module function, so that a spawned process can build it too)."""
    return sampling.compiled_potential(gauss_neg_logp_and_grad, 3)
