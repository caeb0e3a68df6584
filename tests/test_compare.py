"""compare's building blocks: schedules simulated in padded blocks, summaries of end points."""

import numpy as np
import pytest
from scipy.stats import beta

import abscopal as ab
from abscopal.compare import BLOCK, draw_parameters, simulate_schedules, summarise
from abscopal.simulate import simulate


def test_blocks_and_chunks_do_not_change_a_schedule_result():
    s = ab.default_scenario(horizon_days=30.0)
    schedules = s + [x.with_(name=x.name + " again") for x in s]  # 6: one full block and one padded
    assert len(schedules) % BLOCK != 0
    draws, _ = draw_parameters("CT26", 3, seed=4)
    ts, ys = simulate_schedules(schedules, draws)
    assert ys.shape[:2] == (6, 3)
    np.testing.assert_allclose(ys[:3], ys[3:], rtol=1e-12)  # same schedule, other block position
    # one mouse alone, solved by simulate() (its own step-size control), agrees to solver tolerance
    traj = simulate(s[1], ab.Params(draws[1], "CT26", 20.0))
    np.testing.assert_allclose(ts, traj.days)
    np.testing.assert_allclose(ys[1, 1], traj.states, rtol=1e-4, atol=1e-7)


def test_summarise_probabilities_and_censored_values():
    r = summarise(np.array([1, 0, 0, 1, 0, 0, 0, 0, 0, 0.0]), "probability")
    assert r["median"] == pytest.approx(0.2)
    np.testing.assert_allclose([r["lo"], r["hi"]], beta.ppf([0.05, 0.95], 2.5, 8.5))
    none = summarise(np.zeros(10), "probability")
    assert none["lo"] == 0.0 and 0 < none["hi"] < 0.3
    days = summarise(np.array([5.0, 6.0, np.inf, np.inf, np.inf]), "days")
    assert days["median"] == np.inf and days["lo"] == 5.0
    with pytest.raises(ValueError, match="n_draws"):
        draw_parameters("CT26", 0)
