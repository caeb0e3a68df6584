"""The likelihood: each observation kind against a hand-computed value, the smooth end points
against exact ones, the record-to-problem mapping, and MAP parameter recovery on synthetic data."""

import math
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import binom, norm

import abscopal as ab
from abscopal.inference import likelihood
from abscopal.records import Arm, Provenance, Record, TimeCourse, TimePoint, load_records
from abscopal.simulation import outcomes

Phi = norm.cdf


@pytest.mark.parametrize("d", [-0.7, 0.05, 0.3, 1.2])
def test_comparison_penalties_by_hand(d):
    m, tau = 0.2, 0.1
    got = np.asarray(
        likelihood.comparison_logp(jnp.array([d, d, d]), jnp.array([1, -1, 0]), jnp.array([m] * 3), jnp.array([tau] * 3))
    )
    want = [
        norm.logcdf((d - m) / tau),
        norm.logcdf((-d - m) / tau),
        math.log(Phi((m - d) / tau) - Phi((-m - d) / tau)),
    ]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15)
    holds = np.asarray(likelihood.comparison_holds(jnp.array([d, d, d]), jnp.array([1, -1, 0]), jnp.array([m] * 3)))
    assert list(holds) == [d > m, -d > m, abs(d) <= m]


def test_count_binomial_by_hand():
    prob = SimpleNamespace(cnt=likelihood.Counts(q=np.array([0, 1]), k=np.array([3.0, 0.0]), n=np.array([5.0, 8.0])))
    qv = jnp.array([0.37, 0.05])
    got = np.asarray(likelihood.count_logp(prob, qv))
    np.testing.assert_allclose(got, [binom.logpmf(3, 5, 0.37), binom.logpmf(0, 8, 0.05)], rtol=1e-10)


def _tc_problem(rows, estimated=False, ref_day=-1.0, use_sem=None, group=None):
    days = np.linspace(0.0, 60.0, 31)
    n = len(rows)
    group = np.zeros(n, dtype=np.int64) if group is None else np.asarray(group, dtype=np.int64)
    estimated = np.broadcast_to(np.asarray(estimated), (n,))
    groups = tuple(f"source {g}" for g in range(group.max() + 1)) if estimated.any() else ()
    tc = likelihood.TimeCourses(
        arm=np.zeros(n, dtype=np.int64),
        obs=np.full(n, likelihood.OBS.index("log_volume_irr")),
        day=np.array([r[0] for r in rows], dtype=float),
        ref_day=np.full(n, ref_day),
        mean=np.array([r[1] for r in rows], dtype=float),
        sem=np.array([r[2] for r in rows], dtype=float),
        estimated=estimated,
        use_sem=~estimated if use_sem is None else np.full(n, use_sem),
        group=np.where(estimated, group, -1),
        censored=np.array([r[1] <= 0 for r in rows]),
    )
    return SimpleNamespace(tc=tc, days=days, series_groups=groups)


def test_time_course_lognormal_and_censored_by_hand():
    days = np.linspace(0.0, 60.0, 31)
    logv = np.log(5.0) + 0.2 * days  # exponential growth: log-linear interpolation is exact
    obs = np.zeros((1, 31, len(likelihood.OBS)))
    obs[0, :, likelihood.OBS.index("log_volume_irr")] = logv
    rows = [(11.0, 50.0, 5.0), (20.0, 300.0, 60.0), (27.0, 0.0, 0.0)]
    prob = _tc_problem(rows)
    lp, model, sd = likelihood.time_course_terms(prob, jnp.asarray(obs), 0.3)
    lp, model = np.asarray(lp), np.asarray(model)
    for i, (day, mean, sem) in enumerate(rows[:2]):
        m = math.log(5.0) + 0.2 * day
        s = math.sqrt((sem / mean) ** 2 + likelihood.SIGMA_MODEL**2)
        assert model[i] == pytest.approx(m, rel=1e-12)
        assert lp[i] == pytest.approx(norm.logpdf(math.log(mean), m, s), rel=1e-10)
    m = math.log(5.0) + 0.2 * 27.0  # censored zero: P(model < detection limit)
    assert lp[2] == pytest.approx(norm.logcdf((math.log(likelihood.DETECTION_MM3) - m) / likelihood.SIGMA_MODEL), rel=1e-10)
    # estimated SD, relative volume
    prob = _tc_problem([(20.0, 2.5, float("nan"))], estimated=True, ref_day=12.0)
    lp, model, _ = likelihood.time_course_terms(prob, jnp.asarray(obs), 0.3)
    m = 0.2 * (20.0 - 12.0)
    assert float(model[0]) == pytest.approx(m, rel=1e-12)
    assert float(lp[0]) == pytest.approx(norm.logpdf(math.log(2.5), m, math.sqrt(0.3**2 + likelihood.SIGMA_MODEL**2)), rel=1e-10)
    # error bars plus an estimated discrepancy (lognormal_sem_plus_estimated)
    prob = _tc_problem([(11.0, 50.0, 5.0)], estimated=True, use_sem=True)
    lp, model, sd = likelihood.time_course_terms(prob, jnp.asarray(obs), 0.3)
    s = math.sqrt(0.1**2 + 0.3**2 + likelihood.SIGMA_MODEL**2)
    assert float(sd[0]) == pytest.approx(s, rel=1e-12)
    assert float(lp[0]) == pytest.approx(norm.logpdf(math.log(50.0), math.log(5.0) + 0.2 * 11.0, s), rel=1e-10)
    # two discrepancy groups (one per source), and a point with error bars only: each takes its own SD
    prob = _tc_problem(
        [(11.0, 50.0, 5.0), (20.0, 300.0, 60.0), (20.0, 300.0, 60.0)],
        estimated=[True, True, False],
        use_sem=True,
        group=[1, 0, 0],
    )
    lp, _, sd = likelihood.time_course_terms(prob, jnp.asarray(obs), jnp.array([0.2, 0.7]))
    want = [math.sqrt(0.1**2 + 0.7**2 + likelihood.SIGMA_MODEL**2), math.sqrt(0.2**2 + 0.2**2 + likelihood.SIGMA_MODEL**2)]
    want.append(math.sqrt(0.2**2 + likelihood.SIGMA_MODEL**2))
    np.testing.assert_allclose(np.asarray(sd), want, rtol=1e-12)
    assert float(lp[0]) == pytest.approx(norm.logpdf(math.log(50.0), math.log(5.0) + 0.2 * 11.0, want[0]), rel=1e-10)


def test_smooth_crossing_time_matches_exact_crossing():
    days = np.linspace(0.0, 60.0, 301)
    logv = jnp.asarray(np.log(10.0) + 0.5 * days)[None]
    t = float(likelihood._smooth_time(logv, jnp.array([math.log(1000.0)]), jnp.asarray(days))[0])
    exact = math.log(100.0) / 0.5
    assert abs(t - exact) < 0.5
    never = float(
        likelihood._smooth_time(jnp.full((1, 301), math.log(10.0)), jnp.array([math.log(1000.0)]), jnp.asarray(days))[0]
    )
    assert never == pytest.approx(60.0, abs=1e-5)  # censored at the horizon (soft max: 0.05 log 301 above)


@pytest.mark.parametrize("gap", [0.0, 1e-9, 1e-3])
def test_smooth_end_points_have_true_gradients_where_grid_points_nearly_tie(gap):
    """The running max (crossing time) and the min (cure) over the output grid are smooth: where two
    grid points nearly tie and move apart, the gradient equals the finite difference (a hard max
    gave one side's slope there, and the MAP search stalled on such a kink)."""
    import jax

    days = jnp.linspace(0.0, 8.0, 5)

    def series(th):
        return jnp.array([0.0, 1.0 + th, 1.0 + gap - 2.0 * th, 0.5, 0.2])

    def crossing(th):
        return likelihood._smooth_time(series(th)[None], jnp.array([1.1]), days)[0]

    def lowest(th):
        return outcomes.soft_min(-series(th), jnp.ones(5, bool))

    for f in (crossing, lowest):
        ad = float(jax.grad(f)(0.0))
        fd = (float(f(1e-6)) - float(f(-1e-6))) / 2e-6
        assert ad == pytest.approx(fd, rel=1e-5, abs=1e-9)
    # and they stay close to the hard ones (bias at most PEAK_TAU * log(points))
    x = series(0.3)
    assert float(outcomes.soft_cummax(x[None])[0, -1]) - float(jnp.max(x)) == pytest.approx(
        0.0, abs=outcomes.PEAK_TAU * math.log(5)
    )
    assert float(jnp.min(x)) - float(outcomes.soft_min(x, jnp.ones(5, bool))) <= outcomes.PEAK_TAU * math.log(5)


def test_every_fitted_observation_is_mapped():
    recs = load_records()
    prob = likelihood.build_problem(recs)
    fit = [r for r in recs if r.use == "fit"]
    assert prob.n_arms == sum(len(r.arms) for r in fit)
    n_tc = sum(len(o.rows) for r in fit for o in r.time_courses)
    assert len(prob.tc.day) == n_tc
    assert len(prob.cmp.op) == sum(len(r.comparisons) for r in fit)
    assert len(prob.cnt.q) == sum(len(r.counts) for r in fit)
    # single-tumour arms have no abscopal tumour; STING-deficient arms have sting = 0
    names = ab.build_model().param_names
    for i, a in enumerate(prob.arms):
        rec = next(r for r in fit if r.id == a.record)
        assert (prob.base[i, names.index("v0_abs")] == 0.0) == (rec.setting == "single-tumour")
        assert (prob.base[i, names.index("sting")] == 0.0) == ("STING-deficient" in rec.arms[a.arm].modifiers)
    with pytest.raises(ValueError, match="use="):
        likelihood.build_problem(recs, use="nothing")


def test_the_problem_is_frozen_and_its_observation_groups_are_consistent():
    """A Problem cannot gain or change fields after construction, each observation group's arrays
    have one row per label, and the comparison operators are the named codes."""
    import dataclasses

    prob = likelihood.build_problem(load_records())
    with pytest.raises(dataclasses.FrozenInstanceError):
        prob.tc = prob.tc
    with pytest.raises(dataclasses.FrozenInstanceError):
        prob.series_groups = ()
    assert all(len(v) == len(prob.tc) for v in prob.tc.arrays().values()) and len(prob.tc.records) == len(prob.tc)
    assert len(prob.cmp.labels) == len(prob.cmp) and len(prob.cnt.records) == len(prob.cnt)
    assert set(np.unique(prob.cmp.op)) <= {likelihood.OP_BELOW, likelihood.OP_SIMILAR, likelihood.OP_ABOVE}
    # an empty group is empty (False) and contributes no arrays to the fingerprint
    empty = dataclasses.replace(prob, cnt=likelihood.Counts.from_rows([]))
    assert not empty.cnt and empty.cnt.arrays() == {}
    assert likelihood.problem_fingerprint(empty) != likelihood.problem_fingerprint(prob)


def test_per_line_parameters_follow_the_tables_estimate_column():
    """Per-line parameters are estimated per tumour line of the fitted records ("line": antigenicity, k_in)
    or only for the lines with growth data ("growth": r, alpha); the other entries keep the table's
    values. S01-S03 (MC38 in SIRPa-/- hosts) are a line of their own, 'MC38 SIRPa-KO', whose table
    values are MC38's."""
    recs = load_records()
    prob = likelihood.build_problem(recs)
    fitted = [r for r in recs if r.use == "fit"]
    growth = {r.fit_line for r in fitted if r.kind == "time_course"}
    assert list(prob.lines) == sorted({r.fit_line for r in fitted}) and {"MC38 SIRPa-KO", "MC38"} <= growth
    want = {(j, prob.per_line.index(n)) for j in range(len(prob.lines)) for n in ("antigenicity", "k_in")}
    want |= {(prob.lines.index(ln), prob.per_line.index(n)) for ln in growth for n in ("r", "alpha")}
    assert set(prob.line_coords) == want
    names = ab.build_model().param_names
    mc38 = ab.default_params("MC38")
    j = prob.lines.index("MC38 SIRPa-KO")
    assert list(prob.line_base[j]) == [mc38[n] for n in prob.per_line]
    for i, a in enumerate(prob.arms):
        rec = next(r for r in recs if r.id == a.record)
        assert prob.lines[prob.line_of_arm[i]] == rec.fit_line
        if a.record in ("S01", "S02", "S03"):
            assert rec.fit_line == "MC38 SIRPa-KO" and prob.base[i, names.index("r")] == mc38["r"]


def test_an_inoculum_group_starts_its_records_from_the_fitted_day0_volume():
    """S01-S03 (Rauf 2025) name an inoculum group: their irradiated tumours start from the group's
    fitted volume, a two-tumour mouse's abscopal tumour from the same one shrunk by its later
    inoculation (S01: 3 days), a single-tumour mouse (S03) keeps none; every other arm keeps the
    table's v0. Without the group's volume the likelihood refuses to guess."""
    recs = load_records()
    prob = likelihood.build_problem(recs)
    assert prob.inoculum_groups == ("Rauf 2025",)
    names = ab.build_model().param_names
    i0, i1, ir = names.index("v0_irr"), names.index("v0_abs"), names.index("r")
    shared = jnp.asarray([prob.base[0, names.index(n)] for n in prob.shared])
    lines = jnp.asarray(np.full((len(prob.lines), len(prob.per_line)), 0.3))
    P = np.asarray(likelihood.arm_values(prob, shared, lines, jnp.asarray([0.5])))
    for i, a in enumerate(prob.arms):
        rec = next(r for r in recs if r.id == a.record)
        delay = rec.inoculation_days.get("abscopal", 0.0) - rec.inoculation_days["irradiated"]
        if rec.inoculum_group == "Rauf 2025":
            assert P[i, i0] == 0.5
            want_abs = 0.0 if rec.setting == "single-tumour" else 0.5 * math.exp(-P[i, ir] * delay)
        else:
            assert P[i, i0] == prob.base[i, i0]
            want_abs = prob.base[i, i1] * math.exp(-P[i, ir] * max(delay, 0.0))
        assert P[i, i1] == pytest.approx(want_abs, rel=1e-12), (a.record, a.arm)
    s01 = [i for i, a in enumerate(prob.arms) if a.record == "S01"]
    assert P[s01[0], i1] == pytest.approx(0.5 * math.exp(-0.3 * 3.0))  # S01's abscopal tumour: 3 days later
    with pytest.raises(ValueError, match="inoculum"):
        likelihood.arm_values(prob, shared, lines)


def test_the_inoculum_prior_enters_the_log_density_by_hand():
    """The day-0 volume of an inoculum group is the last coordinate, lognormal around the table's
    v0_irr median with SD INOCULUM_SIGMA: moving it changes the prior by the hand-computed amount."""
    from abscopal.inference.posterior import layout_of, make_log_density, natural_values, prior_median_z

    prob = likelihood.build_problem(load_records())
    lay = layout_of(prob)
    assert lay.names()[-1] == "log_v0_inoculum[0]" and lay.size == len(lay.names())
    z = prior_median_z(prob)
    assert natural_values(prob, z)["v0_inoculum"] == pytest.approx([15.0])
    lp = make_log_density(prob, with_likelihood=False)
    z2 = z.copy()
    z2[-1] = math.log(0.5)
    want = -0.5 * (math.log(0.5 / 15.0) / likelihood.INOCULUM_SIGMA) ** 2
    assert float(lp(jnp.asarray(z2)) - lp(jnp.asarray(z))) == pytest.approx(want, rel=1e-12)


def _synthetic_record(true_r, true_alpha):
    """A two-arm MC38 record whose volumes are the model's at known r and alpha (SEM 5 %)."""
    control = {"horizon_days": 60.0}
    rt = {"horizon_days": 60.0, "rt": [{"day": 12.0, "dose_gy": 8.0, "target": "irradiated"}]}
    params = ab.default_params("MC38").replace(r=true_r, alpha=true_alpha)
    obs = []
    for name, sched in (("control", control), ("rt", rt)):
        s = ab.schedule_from_dict(dict(sched, tumour_line="MC38", name=name))
        traj = ab.simulate(s, params, ab.SolverOptions(n_out=61))
        v = traj.volume("irradiated")
        rows = tuple(TimePoint(float(d), float(v[int(d)]), 0.05 * float(v[int(d)])) for d in range(6, 31, 3))
        obs.append(TimeCourse(name, "irradiated", "volume_mm3", rows, "lognormal_sem"))
    arms = {n: Arm(n, 60.0, (), (), s) for n, s in (("control", control), ("rt", rt))}
    prov = Provenance("external", (), "synthetic", "synthetic", "READ", "synthetic")
    return Record(
        "S99", "synthetic", "READ", "fit", "MC38", "two-tumour", "time_course", "synthetic", prov, "reported", arms, tuple(obs)
    )


def test_map_recovers_known_parameters():
    from abscopal.inference.mapfit import find_map
    from abscopal.inference.posterior import natural_values
    from abscopal.inference.settings import FitSettings

    true_r, true_alpha = 0.3, 0.25
    rec = _synthetic_record(true_r, true_alpha)
    prob = likelihood.build_problem((rec,), shared=("r", "alpha"), per_line=())
    settings = FitSettings(map_starts=1, map_steps=20, map_lr=0.05)  # then L-BFGS (lbfgs_steps)
    z, starts = find_map(prob, settings, progress=False, log=lambda *a: None)
    nat = natural_values(prob, z)
    r_hat, alpha_hat = float(nat["r"]), float(nat["alpha"])
    # starts at the prior medians (0.4, 0.146): both must move to within 5 % of the truth
    assert r_hat == pytest.approx(true_r, rel=0.05)
    assert alpha_hat == pytest.approx(true_alpha, rel=0.05)


def test_failed_solve_gives_minus_infinity_not_nan():
    rec = _synthetic_record(0.3, 0.25)
    prob = likelihood.build_problem((rec,), shared=("r", "alpha"), per_line=())

    @jax.jit  # one compilation (and one solve) for both numbers
    def loglik_and_ok(shared):
        terms = likelihood.log_likelihood_terms(prob, shared, jnp.zeros((1, 0)), 0.3)
        return likelihood.total_log_likelihood(terms), terms["ok"]

    ok, solved = loglik_and_ok(jnp.array([0.3, 0.25]))
    assert np.isfinite(float(ok)) and bool(solved)
    # a growth rate of 3000 per day: the explicit solver needs far more than its 4096 steps
    failed, solved = loglik_and_ok(jnp.array([3000.0, 0.25]))
    assert not bool(solved) and float(failed) == -np.inf


def test_survival_is_the_median_mouse_and_fractions_are_the_cohorts():
    """survival_proxy is the cohort's median, its median mouse's (zeta = 0: the typical mouse's)
    smooth time to the burden threshold; the fraction quantities read the cohort's fractions.
    Checked on R29's problem with made-up series, against numpy and the exact crossing."""
    r29 = tuple(r for r in load_records() if r.id == "R29")
    prob = likelihood.build_problem(r29, n_nodes=5)
    q = prob.q
    surv = np.flatnonzero(q.kind == likelihood.Q_SURVIVAL)
    survival_arms = {a for c in r29[0].comparisons if c.endpoint == "survival_proxy" for a in (c.lhs, c.rhs)}
    assert len(surv) == len(survival_arms) == 6
    days = np.asarray(prob.days)
    n_obs = len(likelihood.OBS)
    rates = np.random.default_rng(0).uniform(0.0, 0.4, size=prob.n_arms)  # some never reach the threshold
    obs = np.zeros((prob.n_arms, len(days), n_obs))
    obs[..., likelihood.OBS.index("log_burden")] = np.log(50.0) + rates[:, None] * days
    frac = np.linspace(0.1, 0.9, len(prob.frac))
    got = np.asarray(likelihood.quantities(prob, jnp.asarray(obs), jnp.asarray(frac)))
    for i in surv:
        exact = np.log(20.0) / rates[q.arm[i]] if rates[q.arm[i]] > 0 else np.inf
        assert got[i] == pytest.approx(min(exact, days[-1]), abs=1.0)  # the smooth crossing is within a day
    for i in np.flatnonzero(np.isin(q.kind, likelihood.Q_POPULATION)):
        assert got[i] == frac[prob.frac_of_q[i]]


def test_soft_clip_coordinates_are_the_priors_affine_map_inside_and_bounded_everywhere():
    """A parameter coordinate u maps to t (log theta) as loc + scale * u inside the bounds (to 1e-3
    at 1.5 prior SD from a bound), stays inside the bounds and nondecreasing for every u, has the
    log-Jacobian of its autodiff derivative, inverts exactly, and gives a lognormal prior the
    standard normal density in u away from the bounds."""
    from abscopal.inference.priors import HINGE, prior

    pr = prior("delta_P")  # lognormal(median 0.5, sigma 1) on [0.05, 5]
    T = pr._bijector
    loc, scale = pr.loc_scale
    assert (loc, scale) == (math.log(0.5), 1.0)
    u = jnp.linspace(-40.0, 40.0, 4001)
    t = np.asarray(T(u))
    a, b = pr.interval
    assert np.all((t >= a) & (t <= b)) and np.all(np.diff(t) >= 0)
    affine = loc + scale * np.asarray(u)
    inside = (affine - a >= 1.5 * scale) & (b - affine >= 1.5 * scale)
    assert inside.sum() > 50 and np.max(np.abs(t - affine)[inside]) < 1e-3
    near = np.abs(np.asarray(u)) <= 10
    auto = np.log(np.asarray(jax.vmap(jax.grad(T))(u)))
    np.testing.assert_allclose(np.asarray(T.log_abs_det_jacobian(u, T(u)))[near], auto[near], rtol=0, atol=1e-10)
    # a pytree with static numbers only: it passes through jit and comes back equal
    leaves, tree = jax.tree_util.tree_flatten(T)
    assert leaves == [] and jax.tree_util.tree_unflatten(tree, leaves) == T
    assert float(jax.jit(lambda tr, x: tr(x))(T, 0.3)) == pytest.approx(float(T(jnp.asarray(0.3))), rel=1e-14)
    back = np.asarray(T.inv(T(u)))
    mid = np.abs(np.asarray(u)) <= 5
    np.testing.assert_allclose(back[mid], np.asarray(u)[mid], rtol=0, atol=1e-9)
    kp = prior("k_prime")  # lognormal(median 5, sigma 1) on [0.001, 50]: the bounds 2.3 and 8.5 SD away
    uu = jnp.linspace(-1.0, 1.0, 9)
    lp = np.asarray(kp.log_density(uu)) - float(kp.log_density(jnp.asarray(0.0)))
    # the bend's reach decays like exp(-distance / HINGE), distance to the nearer bound in prior SDs
    (ka, kb), (kl, ks) = kp.interval, kp.loc_scale
    y = kl + ks * np.asarray(uu)
    reach = 2.0 * np.exp(-np.minimum(y - ka, kb - y) / ks / HINGE)
    assert np.all(np.abs(lp + 0.5 * np.asarray(uu) ** 2) <= reach + reach[4]) and reach.max() < 0.02  # lp is relative to u = 0


def test_volumes_of_comparisons_are_read_as_measured_and_other_read_outs_are_not():
    """A volume in a comparison is v + DETECTION_MM3 (by hand: a tumour of 1e-9 mm^3 reads as
    log 1, one of 500 mm^3 as log 501), so two tumours on their way to extinction compare as
    equal instead of by their tiny logs; immune read-outs keep their own logs. R30's problem
    (Deng 2014: volume and MDSC comparisons), made-up series."""
    r30 = tuple(r for r in load_records() if r.id == "R30")
    prob = likelihood.build_problem(r30, n_nodes=5)
    q = prob.q
    vol = np.flatnonzero((q.kind == likelihood.Q_LOG) & np.isin(q.obs, likelihood.VOLUME_OBS))
    other = np.flatnonzero((q.kind == likelihood.Q_LOG) & ~np.isin(q.obs, likelihood.VOLUME_OBS))
    assert len(vol) and len(other)
    days = np.asarray(prob.days)
    obs = np.zeros((prob.n_arms, len(days), len(likelihood.OBS)))
    level = np.where(np.arange(prob.n_arms) % 2 == 0, 1e-9, 500.0)  # alternate arms: nearly extinct, large
    for name in ("log_volume_irr", "log_volume_abs"):
        obs[..., likelihood.OBS.index(name)] = np.log(level)[:, None]
    obs[..., likelihood.OBS.index("log_myeloid_irr")] = np.log(1e-9)
    got = np.asarray(likelihood.quantities(prob, jnp.asarray(obs), jnp.zeros(len(prob.frac))))
    want = np.log(level[q.arm[vol]] + likelihood.DETECTION_MM3)
    np.testing.assert_allclose(got[vol], want, rtol=1e-12, atol=1e-12)
    mdsc = [i for i in other if q.obs[i] == likelihood.OBS.index("log_myeloid_irr")]
    assert mdsc and np.allclose(got[mdsc], np.log(1e-9))
