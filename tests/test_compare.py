"""compare's building blocks: schedules simulated in padded blocks, summaries of end points."""

import numpy as np
import pytest
from scipy.stats import beta

import abscopal as ab
from abscopal.decide.compare import BLOCK, draw_parameters, format_table, simulate_schedules, summarise
from abscopal.io import strict_json
from abscopal.simulation.simulate import SimulationError, SolverOptions, simulate


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


class _FitWithAStiffDraw:
    """A stand-in fit whose draws are CT26 mice, one of them with a growth rate 1000 times the
    table's (a stiff parameter set, as a broad posterior can give)."""

    def draws(self, n, seed=0, tumour_line="CT26"):
        rows, _ = draw_parameters(tumour_line, n, seed=seed)
        rows[1, ab.default_params().index("r")] *= 1e3
        return rows

    def describe(self):
        return "stand-in fit"


def test_a_failed_posterior_draw_is_left_out_and_counted():
    schedules = ab.default_scenario(horizon_days=30.0)[:2]
    opts = SolverOptions(max_steps=512, n_out=31)
    c = ab.compare(schedules, n_draws=4, fit=_FitWithAStiffDraw(), options=opts)
    assert c.n_draws == 4 and c.n_dropped == 1
    assert all(v.shape[0] == 3 for v in c.volumes.values())
    assert "1 of 4 draws were left out" in format_table(c)
    # the kept draws are the same mice a run without the stiff one gives
    rows = _FitWithAStiffDraw().draws(4)
    ts, ys = simulate_schedules(schedules, rows[[0, 2, 3]], opts)
    from abscopal.decide.compare import removed_at_endpoint

    np.testing.assert_allclose(c.volumes[schedules[1].name], removed_at_endpoint(ts, ys[1], 1000.0), rtol=1e-4)
    # without a fit a cohort is one system: a failure is an error, never a silent gap (three rows
    # with the stiff one: the shape just compiled)
    with pytest.raises(SimulationError, match="failed"):
        simulate_schedules(schedules, rows[[0, 1, 2]], opts)


def test_strict_json_has_no_nan_or_infinity():
    import json

    text = strict_json({"a": float("inf"), "b": [np.float64("nan"), np.int64(3)], "c": np.array([1.5, -np.inf])})
    assert json.loads(text) == {"a": None, "b": [None, 3], "c": [1.5, None]}


def test_single_tumour_mice_have_no_abscopal_tumour_and_no_abscopal_end_points():
    from abscopal.simulation.outcomes import ABSCOPAL_ENDPOINTS, abscopal_response

    schedules = ab.default_scenario(horizon_days=30.0)[:2]
    opts = SolverOptions(max_steps=512, n_out=31)
    two = ab.compare(schedules, n_draws=4, fit=_FitWithAStiffDraw(), options=opts)
    one = ab.compare(schedules, n_draws=4, fit=_FitWithAStiffDraw(), options=opts, single_tumour=True)
    assert one.n_dropped == two.n_dropped == 1
    for name, v in one.volumes.items():
        assert np.all(v[..., 1] == 0.0), name  # no abscopal tumour ever grows
        # the same mice with a second tumour differ in the irradiated one (shared effectors, more antigen)
        assert not np.allclose(v[..., 0], two.volumes[name][..., 0], rtol=1e-6)
    assert not set(ABSCOPAL_ENDPOINTS) & set(one.summary.endpoint)
    assert set(ABSCOPAL_ENDPOINTS) <= set(two.summary.endpoint)
    assert "one tumour per mouse" in one.source
    # the abscopal response has no reference without an untreated abscopal tumour: NaN, no warning
    with np.errstate(all="raise"):
        r = abscopal_response(np.array([5.0, 0.0]), np.array([10.0, 0.0]))
    assert r[0] == pytest.approx(50.0) and np.isnan(r[1])
