"""The schedule optimiser: known optima (a quadratic through the same projected-Adam code, and a
model toy whose optimum lies on the dose cap), at least as good as a grid search on the full model,
and clear errors for impossible problems."""

import numpy as np
import pytest

import abscopal as ab
from abscopal.decide.compare import draw_parameters
from abscopal.decide.optimize import ModelObjective, OptimizeError, ScheduleProblem, minimize_box, optimize
from abscopal.simulation.outcomes import dose_at_equal_bed
from abscopal.simulation.simulate import SolverOptions
from helpers import NO_IMMUNITY

N_DRAWS = 4  # one compiled gradient for every model test here (and the CLI test, and notebook 05's quick mode)
COMPARE_DRAWS = 8  # the compare path's shape in test_cli and the notebooks


def test_minimize_box_finds_known_optima_of_a_quadratic():
    # two independent problems in one batch: an interior minimum, and one whose minimum lies
    # outside the box in the second coordinate (the projected optimum is on the bound)
    target = np.array([[0.3, 0.7, 0.5], [0.6, 1.4, -0.2]])
    scale = np.array([1.0, 10.0, 0.1])  # badly scaled on purpose: Adam's steps do not care

    def value_and_grad(z):
        r = z - target
        return np.sum(scale * r**2, axis=1), 2 * scale * r

    rng = np.random.default_rng(1)
    z, loss, history = minimize_box(value_and_grad, rng.uniform(0, 1, (2, 3)), steps=300, learning_rate=0.02)
    np.testing.assert_allclose(z[0], target[0], atol=2e-3)
    np.testing.assert_allclose(z[1], [0.6, 1.0, 0.0], atol=2e-3)
    assert np.all((z >= 0) & (z <= 1))
    assert history.shape == (301, 2) and np.all(loss <= history[0])


@pytest.mark.parametrize("constraint, cap", [("dose", 24.0), ("bed", 50.0)])
def test_model_toy_optimum_is_on_the_dose_cap(constraint, cap):
    """Without immunity the irradiated tumour only feels the LQ kill, which grows with the dose per
    fraction: for each number of fractions the optimum is the largest dose the cap allows (total
    dose D -> D / n; total BED B -> the root of n d (1 + d / ab) = B)."""
    prob = ScheduleProblem(
        objective="volume_irradiated", constraint=constraint, cap=cap, fractions=(2, 4), horizon_days=30.0
    ).check()
    draws, _ = draw_parameters("CT26", N_DRAWS, 0, params=ab.default_params("CT26", NO_IMMUNITY))
    f = ModelObjective(prob, draws)
    ns = np.array([2, 4])
    z0 = np.array([[0.5, 0.4, 0.0], [0.2, 0.6, 0.0]])
    loss0, grad0 = f(ns, z0)
    assert np.all(grad0[:, 1] < 0), "more dose per fraction must lower the irradiated volume"
    z, loss, _ = minimize_box(lambda z: f(ns, z), z0, steps=15, learning_rate=0.1)
    doses = np.array([prob.to_natural(n, zi)[1] for n, zi in zip(ns, z)])
    expected = [cap / n if constraint == "dose" else dose_at_equal_bed(n, cap, prob.ab_ratio) for n in ns]
    np.testing.assert_allclose(doses, expected, rtol=1e-9)
    assert np.all(loss < loss0)


def test_forward_mode_gradient_matches_central_differences():
    """The objective's gradient (forward mode through the solver, one tangent per variable) equals
    central differences of the objective itself, for the drug's start and the dose per fraction.

    Moving a dose moves a kink of its concentration, on which the solver ends a step: the derivative
    of the discrete solve then differs from the true one by an error that shrinks with the tolerance
    (drug start: 1 % at the default rtol 1e-6, 0.1 % at 1e-11; the dose per fraction: 1e-7 at any),
    hence the tight tolerance here (traced, so the same compiled gradient)."""
    draws, _ = draw_parameters("CT26", N_DRAWS, 0)
    prob = ScheduleProblem(objective="volume_abscopal", agent="anti-PD-L1", fractions=(3,), horizon_days=30.0).check()
    f = ModelObjective(prob, draws, options=SolverOptions(rtol=1e-11, atol=1e-14))
    z0, h = np.array([0.4, 0.55, 0.0]), 1e-4
    steps = np.array([[h, 0, 0], [-h, 0, 0], [0, h, 0], [0, -h, 0]])
    (loss0,), (grad,) = f(np.array([3]), z0[None])
    loss, _ = f(np.full(4, 3), z0 + steps)  # one compiled batch of four candidates
    fd = np.array([loss[0] - loss[1], loss[2] - loss[3]]) / (2 * h)
    assert np.all(np.abs(fd) > 1e-2), fd  # both variables matter here: the check is not of zeros
    np.testing.assert_allclose(grad[:2], fd, rtol=3e-3)
    assert grad[2] == 0.0  # the dosing interval is fixed (optimise_every=False): a box of width zero


def test_optimum_beats_a_grid_search_on_the_full_model(tmp_path):
    r = optimize(
        "volume_abscopal",
        max_bed_gy=60.0,
        fractions=(3,),
        agent="anti-PD-L1",
        n_draws=N_DRAWS,
        n_starts=2,
        steps=12,
        learning_rate=0.08,
        compare_draws=COMPARE_DRAWS,
        horizon_days=40.0,
    )
    best = r.candidates.iloc[0]
    assert best.bed_gy <= 60.0 + 1e-9 and best.n_fractions == 3
    # the same objective on a grid over the same variables and draws
    draws, _ = draw_parameters("CT26", N_DRAWS, 0)
    f = ModelObjective(r.problem, draws)
    g = np.array([[a, b, 0.0] for a in np.linspace(0, 1, 4) for b in np.linspace(0, 1, 3)])
    grid_loss, _ = f(np.full(len(g), 3), g)
    assert best.loss <= grid_loss.min() + 1e-9, (best.loss, grid_loss.min())
    # the reported candidate is the point whose loss was reported
    np.testing.assert_allclose(f(np.array([3]), _z(r.problem, best)[None])[0], [best.loss], rtol=1e-6)
    # the optimum and the two standard schedules were compared on exact end points
    names = list(r.versus.schedule.unique())
    assert names[0] == r.schedule.name and len(names) == 3 and all(n.startswith("standard") for n in names[1:])
    # the TOML file loads back to the same schedule
    path = tmp_path / "opt.toml"
    path.write_text(r.toml())
    s = ab.load_schedule(path)
    assert [f.dose_gy for f in s.rt] == pytest.approx([f.dose_gy for f in r.schedule.rt])
    assert [d.day for d in s.drugs] == pytest.approx([d.day for d in r.schedule.drugs])


def _z(problem, row):
    """Unit-box coordinates of a candidate row."""
    b = problem.bounds(int(row.n_fractions))
    x = np.array([row.gap_days, row.dose_per_fraction_gy, row.every_days])
    return np.where(b[:, 1] > b[:, 0], (x - b[:, 0]) / np.where(b[:, 1] > b[:, 0], b[:, 1] - b[:, 0], 1.0), 0.0)


def test_impossible_cap_and_unknown_objective_are_clear_errors():
    with pytest.raises(OptimizeError, match=r"cap: .*impossible.*min_dose_gy"):
        optimize(max_bed_gy=0.5, fractions=(1, 2), min_dose_gy=1.0)
    with pytest.raises(OptimizeError, match=r"cap: .*total dose"):
        optimize(max_bed_gy=None, max_dose_gy=1.5, fractions=(2, 3), min_dose_gy=1.0)
    with pytest.raises(OptimizeError, match=r"objective: unknown end point 'tumour_size'; allowed \['volume_abscopal'"):
        optimize("tumour_size")
    with pytest.raises(OptimizeError, match="exactly one cap"):
        optimize(max_bed_gy=60, max_dose_gy=30)
    with pytest.raises(OptimizeError, match="quantile"):
        optimize("cure_abscopal", quantile=0.9)
    with pytest.raises(OptimizeError, match="fractions"):
        optimize(fractions=(0, 2))
    with pytest.raises(OptimizeError, match=r"agent: unknown agent .*allowed"):
        optimize(agent="aPD1")
    with pytest.raises(OptimizeError, match=r"unit: .*allowed \[.mg/kg., .ug.\]"):
        optimize(unit="cells")
    with pytest.raises(OptimizeError, match=r"tumour_line: unknown line 'CT-26'; allowed"):
        optimize(tumour_line="CT-26")
    with pytest.raises(OptimizeError, match=r"horizon_days: 400"):
        optimize(horizon_days=400.0)
    with pytest.raises(OptimizeError, match="gap_bounds"):
        optimize(horizon_days=12.0, n_doses=6, every=3.0)


def test_cap_keeps_only_feasible_fraction_numbers():
    prob = ScheduleProblem(constraint="bed", cap=12.0, ab_ratio=10.0, fractions=(1, 5, 10), min_dose_gy=1.0).check()
    # 10 x 1 Gy needs BED 11 Gy (allowed), but 10 x 1.0 is at the floor; 5 x >= 1 Gy needs >= 5.5 Gy
    assert set(prob.feasible) == {1, 5, 10}
    prob = ScheduleProblem(constraint="bed", cap=10.0, ab_ratio=10.0, fractions=(1, 5, 10), min_dose_gy=1.0).check()
    assert set(prob.feasible) == {1, 5}
    for n, (lo, hi) in prob.feasible.items():
        assert lo == 1.0 and prob.bed(n, hi) == pytest.approx(10.0)


def test_traced_schedule_matches_the_schedule_written(tmp_path):
    """The events built inside jit for a candidate are the events of the Schedule written to TOML:
    the objective equals the mean (or the quantile) of the volumes that compare's path simulates."""
    from abscopal.decide.compare import simulate_schedules
    from abscopal.inference.fitresult import load_fit, toy_fit
    from abscopal.simulation.outcomes import volumes

    fit = load_fit(toy_fit(tmp_path / "toy"))
    draws = fit.draws(N_DRAWS, seed=3, tumour_line="CT26")
    z = np.array([[0.37, 0.61, 0.5], [0.81, 0.23, 0.5]])
    ns = np.array([2, 5])
    for q in (None, 0.9):
        prob = ScheduleProblem(agent="anti-CTLA-4", fractions=(2, 5), quantile=q, optimise_every=True, horizon_days=35.0).check()
        loss, grad = ModelObjective(prob, draws)(ns, z)
        assert np.all(np.isfinite(grad)) and np.any(grad != 0)
        for k, n in enumerate(ns):
            s = prob.schedule(int(n), prob.to_natural(int(n), z[k]))
            assert len(s.rt) == n and len(s.drugs) == prob.n_doses
            _, ys = simulate_schedules([s], draws)
            v = volumes(ys[0], "abs")[:, -1]
            want = np.log(np.mean(v) if q is None else np.quantile(v, q))
            assert loss[k] == pytest.approx(want, rel=1e-4)


def test_cure_objective_has_useful_gradients():
    """Far from cure the smooth cure probability is tiny; its log still has O(1) gradients, so the
    search moves (more dose per fraction raises the chance of cure of the irradiated tumour)."""
    draws, _ = draw_parameters("CT26", N_DRAWS, 0)
    prob = ScheduleProblem(objective="cure_irradiated", agent="anti-CTLA-4", fractions=(1, 3)).check()
    f = ModelObjective(prob, draws)
    ns = np.array([1, 3])
    z0 = np.array([[0.5, 0.6, 0.0], [0.5, 0.6, 0.0]])
    loss, grad = f(ns, z0)
    p = f.objective_value(loss)
    assert np.all((p > 0) & (p < 1)) and np.all(np.isfinite(grad))
    assert np.all(grad[:, 1] < 0) and np.all(np.abs(grad[:, 1]) > 1e-3)
    _, best, history = minimize_box(lambda z: f(ns, z), z0, steps=6, learning_rate=0.1)
    assert np.all(best < history[0] - 1.0)


@pytest.mark.parametrize("gap", [1e-9, 1e-3])
def test_cure_surrogate_is_smooth_where_grid_minima_nearly_tie(gap):
    """The cure objective takes the smallest viable volume over the output grid: where two grid
    points nearly tie as the lowest and move apart, its gradient equals the finite difference (a
    hard min gives one side's slope there, a kink on which gradient steps stall)."""
    import jax
    import jax.numpy as jnp

    from abscopal.decide.optimize import cure_loss

    def viable(th):  # (B=1, N=2 draws, 5 output days) in mm3; draw 0's minimum is a near tie
        low = jnp.array([1.0, -3.0 - th, -3.0 + gap + 2.0 * th, -1.0, 0.5])
        return jnp.exp(jnp.stack([low, low + 1.0]))[None]

    def f(th):
        return cure_loss(viable(th))[0]

    ad = float(jax.grad(f)(0.0))
    fd = (float(f(1e-6)) - float(f(-1e-6))) / 2e-6
    assert ad == pytest.approx(fd, rel=1e-5, abs=1e-9)
    # and the surrogate is the log-mean over draws of the sigmoid at the (nearly) hard minimum
    hard = jnp.min(jnp.log(viable(0.0)), axis=-1)
    expected = -np.log(np.mean(jax.nn.sigmoid((np.log(1e-6) - hard) / 0.5)))
    assert float(f(0.0)) == pytest.approx(float(expected), rel=0.05)
