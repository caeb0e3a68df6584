"""The fit's solve path (arms one by one, jumps-only segments, closed-form PK) against a
tight-tolerance solve of the same log posterior (rtol 1e-9), and one compilation for all arms and
points.

Tolerances, as measured at the fit's solver settings (rtol 1e-5, atol 1e-8): at the shipped MAP
|d log p| = 1.1e-4 and the gradient differs by 0.26 % (relative, norm); at a prior draw (log p =
-5115) |d log p| = 4.3e-3, a relative 8.5e-7 (far in the tail a probit comparison's log penalty
moves by d / tau^2 per unit of log-volume error), gradient 1e-5. The checks are
|d log p| <= 1e-3 + 2e-6 |log p| and a gradient within 1 % of its norm (or of 1, where the norm is
smaller: at a converged MAP). The quick problem's check runs with the quick fit
(``tests/test_fit.py``), whose compiled gradient it shares."""

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abscopal.inference import likelihood, posterior
from abscopal.inference.settings import SOLVER
from abscopal.records import load_records
from abscopal.simulation.solver import TRACE_COUNT
from helpers import check_against_tight, quick_problem

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("point", ["shipped MAP", "prior draw"])
def test_review_problem_matches_a_tight_solve(point):
    prob = likelihood.build_problem(load_records(), use="fit", n_nodes=13)
    if point == "shipped MAP":
        z = np.asarray(json.loads((ROOT / "fits/review/fit.json").read_text())["map"]["z"])
    else:
        z = posterior.prior_draws_z(prob, 1, seed=3)[0]
    check_against_tight(prob, jnp.asarray(z))


def test_all_arms_share_one_compilation():
    """Typical mice and the cohort's mice (grid, refinement, critical mouse): one trace of the
    solver, whatever the number of arms; a new point reuses it."""
    prob = quick_problem()
    f = jax.jit(posterior.make_log_density(prob, dict(SOLVER, rtol=2e-5)))  # options unique to this test
    before = TRACE_COUNT["core"]
    z = jnp.asarray(posterior.prior_median_z(prob))
    f(z)
    assert TRACE_COUNT["core"] - before == 1, "one body for the typical and the virtual mice"
    f(z + 0.01)
    assert TRACE_COUNT["core"] - before == 1
