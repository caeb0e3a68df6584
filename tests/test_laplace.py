"""The Laplace fallback of the fit: finite-difference Hessian (checkpointed), the eigenvalue floor
of its covariance, and the PSIS check of its draws, on targets whose answers are known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abscopal.inference import importance, laplace, mapfit


def _quadratic(A, b):
    """-log p of a Gaussian with precision A and mean b (value and gradient, like the fit's)."""
    A, b = jnp.asarray(A), jnp.asarray(b)
    return jax.jit(jax.value_and_grad(lambda z: 0.5 * (z - b) @ A @ (z - b)))


def test_hessian_of_a_quadratic_is_exact_and_resumes(tmp_path):
    rng = np.random.default_rng(1)
    M = rng.standard_normal((4, 4))
    A = M @ M.T + 4 * np.eye(4)
    f = _quadratic(A, np.arange(4.0))
    ck = tmp_path / "hessian.npz"
    z = np.array([0.3, -1.0, 2.0, 0.5])
    H = laplace.laplace_hessian(None, z, f=f, checkpoint=ck, progress=False)
    np.testing.assert_allclose(H, A, rtol=1e-8, atol=1e-8)
    # a resumed run reads the finished rows and calls the gradient only for the missing ones
    with np.load(ck) as d:
        partial, fp = d["H"].copy(), d["data_sha256"]
    partial[2:] = np.nan
    np.savez(ck, z=z, H=partial, data_sha256=fp)
    calls = []

    def counting(x):
        calls.append(1)
        return f(x)

    H2 = laplace.laplace_hessian(None, z, f=counting, checkpoint=ck, progress=False)
    assert len(calls) == 2 * 2
    np.testing.assert_allclose(H2, A, rtol=1e-8, atol=1e-8)
    # a checkpoint made at another point is not reused
    calls.clear()
    laplace.laplace_hessian(None, z + 1.0, f=counting, checkpoint=ck, progress=False)
    assert len(calls) == 2 * 4
    # nor one made for other data (another problem's fingerprint), at the same point
    np.savez(ck, z=z, H=partial, data_sha256=np.array("0" * 64))
    calls.clear()
    laplace.laplace_hessian(None, z, f=counting, checkpoint=ck, progress=False)
    assert len(calls) == 2 * 4


@pytest.mark.parametrize("batch", [2, 4, 16])
def test_batched_hessian_matches_the_row_by_row_one(batch, tmp_path):
    rng = np.random.default_rng(2)
    M = rng.standard_normal((5, 5))
    A = M @ M.T + np.eye(5)
    f = _quadratic(A, np.ones(5))
    z = rng.standard_normal(5)
    H1 = laplace.laplace_hessian(None, z, f=f, progress=False)
    Hb = laplace.laplace_hessian(None, z, f=f, checkpoint=tmp_path / "h.npz", progress=False, batch=batch)
    np.testing.assert_allclose(Hb, H1, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(Hb, A, rtol=1e-8, atol=1e-8)
    with pytest.raises(ValueError, match="batch"):
        laplace.laplace_hessian(None, z, f=f, progress=False, batch=0)


def _assert_resume_calls_no_gradient(f, ck, H):
    """A second Hessian at the same point from the finished checkpoint ``ck``: no gradient is
    called, and it returns ``H`` exactly."""
    calls = []

    def counting(x):
        calls.append(1)
        return f(x)

    H2 = laplace.laplace_hessian(None, np.zeros(2), f=counting, checkpoint=ck, progress=False)
    assert not calls
    np.testing.assert_array_equal(H2, H)


def test_stiff_rows_get_their_own_step_and_the_smaller_step_wins_each_pair(tmp_path):
    """-log p = A/2 z0^2 + c/4 z0^4 + z1^2/2 + k z0 z1 + r z0 z1^3: Hessian [[A, k], [k, 1]] at 0.
    With the fixed step h, row 0 reads A + c h^2 on the diagonal (stiff: A = 1e6, c = 1e12: twice
    too large at h = 1e-3) and row 1 reads k + r h^2 off it: the stiff row's own small step fixes
    the first, and taking each pair from the row with the smaller step fixes the second."""
    A, c, k, r = 1e6, 1e12, 2.0, 1e6

    def energy(z):
        return 0.5 * A * z[0] ** 2 + 0.25 * c * z[0] ** 4 + 0.5 * z[1] ** 2 + k * z[0] * z[1] + r * z[0] * z[1] ** 3

    f = jax.jit(jax.value_and_grad(energy))
    exact = np.array([[A, k], [k, 1.0]])
    fixed = laplace.laplace_hessian(None, np.zeros(2), f=f, progress=False, adapt=False)
    assert fixed[0, 0] / A > 1.9 and fixed[1, 0] - k > 0.4  # the fixed step's bias, which the adaptive step must remove
    ck = tmp_path / "h.npz"
    H, info = laplace.laplace_hessian(None, np.zeros(2), f=f, checkpoint=ck, progress=False, with_info=True)
    np.testing.assert_allclose(H, exact, rtol=1e-2)
    assert H[0, 1] == H[1, 0] == pytest.approx(k, rel=1e-6)  # from row 0 (step ~5e-5), not row 1 (1e-3)
    assert info["n_refined"] == 1 and info["step_max"] == laplace.HESSIAN_STEP
    assert info["step_min"] == pytest.approx(laplace.HESSIAN_STEP_SD / np.sqrt(fixed[0, 0]))
    assert info["asymmetry"] > 0.0
    # the steps are checkpointed: a resume calls no gradient
    _assert_resume_calls_no_gradient(f, ck, H)
    # the step rule: a fraction of the curvature scale, within the bounds
    np.testing.assert_allclose(
        laplace.hessian_steps(np.array([1.0, 1e6, 1e14, 0.0, -5.0])),
        [
            laplace.HESSIAN_STEP,
            laplace.HESSIAN_STEP_SD / 1e3,
            laplace.HESSIAN_STEP_MIN,
            laplace.HESSIAN_STEP,
            laplace.HESSIAN_STEP,
        ],
    )


def test_a_refined_row_is_not_refined_again_on_resume(tmp_path):
    """-log p = A/2 z0^2 - q z0^4 + z1^2/2: the difference with step h reads A - 4 q h^2, so the
    stiff row's curvature grows at its own smaller step. A resume must not take the step from
    the refined diagonal (that refined row 0 a second time, on the review fit's Hessian 7 rows)."""
    A, q = 1e4, 1e9

    def energy(z):
        return 0.5 * A * z[0] ** 2 - q * z[0] ** 4 + 0.5 * z[1] ** 2

    f = jax.jit(jax.value_and_grad(energy))
    ck = tmp_path / "h.npz"
    H, info = laplace.laplace_hessian(None, np.zeros(2), f=f, checkpoint=ck, progress=False, with_info=True)
    first = A - 4 * q * laplace.HESSIAN_STEP**2  # row 0 at the first step: 6e3
    h0 = laplace.HESSIAN_STEP_SD / np.sqrt(first)
    assert info["n_refined"] == 1 and info["step_min"] == pytest.approx(h0, rel=1e-9)
    assert H[0, 0] == pytest.approx(A - 4 * q * h0**2, rel=1e-6)  # 8.3e3: larger than at the first step
    assert laplace.hessian_steps(np.array([H[0, 0]]))[0] < h0  # the refined diagonal asks for a smaller step
    _assert_resume_calls_no_gradient(f, ck, H)


def test_failed_gradient_in_the_hessian_is_an_error():
    f = jax.jit(jax.value_and_grad(lambda z: jnp.where(z[0] > 0.0, jnp.inf * z[0], 0.5 * z @ z)))
    with pytest.raises(FloatingPointError, match="coordinate 0"):
        laplace.laplace_hessian(None, np.zeros(2), f=f, progress=False)


def test_covariance_floor_on_flat_and_negative_directions():
    Q = np.linalg.qr(np.random.default_rng(2).standard_normal((3, 3)))[0]
    w = np.array([25.0, 1e-6, -3.0])  # well identified, flat, curved the wrong way
    H = (Q * w) @ Q.T
    cov, rec = laplace.laplace_covariance(H, min_precision=1.0)
    got = np.sort(np.linalg.eigvalsh(cov))
    np.testing.assert_allclose(got, [1 / 25.0, 1.0, 1.0], rtol=1e-10)
    assert rec["n_negative"] == 1 and rec["n_raised"] == 2
    assert rec["eigen_min"] == pytest.approx(-3.0) and rec["eigen_max"] == pytest.approx(25.0)


def test_psis_check_passes_an_exact_gaussian_and_flags_a_poor_one():
    rng = np.random.default_rng(3)
    mean, cov = np.zeros(3), np.diag([1.0, 0.5, 2.0])
    draws = mean + rng.standard_normal((2, 200, 3)) @ np.linalg.cholesky(cov).T

    def gaussian(z):  # the target equals the proposal: every weight is the same
        return -0.5 * jnp.sum(z**2 / jnp.diag(jnp.asarray(cov)))

    good = importance.importance_check(gaussian, draws, mean, cov, progress=False)
    assert good["khat"] < 0.5 and good["ess"] > 0.95 * 400 and good["n_failed"] == 0

    def heavy(z):  # a target three times wider than the proposal: the weights have a heavy tail
        return -0.5 * jnp.sum(z**2 / (9.0 * jnp.diag(jnp.asarray(cov))))

    bad = importance.importance_check(heavy, draws, mean, cov, progress=False)
    assert bad["khat"] > 0.7 and bad["ess"] < 100

    def failing(z):  # a failed solve is -inf: counted, never a NaN weight
        return jnp.where(z[0] > 1.0, -jnp.inf, gaussian(z))

    part = importance.importance_check(failing, draws, mean, cov, progress=False)
    assert part["n_failed"] == int(np.sum(draws[..., 0] > 1.0)) > 0
    assert np.isfinite(part["khat"])
    few = importance.importance_check(gaussian, draws[:, :5], mean, cov, progress=False)  # 10 draws: no tail to fit
    assert few["khat"] == np.inf and few["ess"] == 0.0


def test_student_t_proposal_density_and_resampling():
    from scipy.stats import multivariate_t

    mean = np.array([1.0, -2.0, 0.5])
    M = np.array([[2.0, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.5]])
    x, logq = importance.t_proposal(mean, M, 500, seed=4)
    np.testing.assert_allclose(logq, multivariate_t(loc=mean, shape=M, df=importance.PROPOSAL_DF).logpdf(x), rtol=1e-10)
    # heavier tails than the Gaussian of the same scale
    assert np.mean(np.abs(x[:, 0] - 1.0) > 3 * np.sqrt(2.0)) > 0.01
    w = np.array([0.5, 0.0, 0.25, 0.25])
    idx = importance.importance_resample(w, 8, seed=0)
    assert sorted(np.bincount(idx, minlength=4).tolist()) == [0, 2, 2, 4] and np.bincount(idx, minlength=4)[0] == 4
    with pytest.raises(ValueError, match="weights"):
        importance.importance_resample(np.array([0.5, 0.6]), 4, seed=0)


def test_importance_draws_on_a_known_target_and_resume(tmp_path):
    """Target = a Gaussian narrower than the proposal's scale: PSIS reliable, the weighted mean is
    the target's; a resumed run evaluates only the missing rows; batched = row by row."""
    mean = np.array([0.5, -1.0])
    cov = np.array([[1.0, 0.2], [0.2, 0.8]])
    target_mean = mean + np.array([0.2, -0.1])
    A = np.linalg.inv(0.5 * cov)

    def log_density(z):
        d = z - jnp.asarray(target_mean)
        return -0.5 * d @ jnp.asarray(A) @ d

    ck = tmp_path / "importance.npz"
    out = importance.importance_draws(log_density, None, mean, cov, 2000, seed=1, checkpoint=ck, progress=False)
    assert out["khat"] < 0.5 and out["ess"] > 300 and out["n_failed"] == 0
    np.testing.assert_allclose(out["weights"] @ out["draws"], target_mean, atol=0.06)
    with np.load(ck) as d:
        saved = {k: d[k].copy() for k in d.files}
    saved["logp"][:7] = np.nan
    saved["logp"][7:] = 123.0  # a sentinel: rows already done must not be evaluated again
    np.savez(ck, **saved)
    again = importance.importance_draws(log_density, None, mean, cov, 2000, seed=1, checkpoint=ck, progress=False, batch=4)
    np.testing.assert_allclose(again["logp"][:7], out["logp"][:7], rtol=1e-12)  # batched = row by row
    assert np.all(again["logp"][7:] == 123.0)
    np.testing.assert_array_equal(again["draws"], out["draws"])
    # a checkpoint for another covariance is not reused: new draws
    other = importance.importance_draws(log_density, None, mean, 2 * cov, 2000, seed=1, checkpoint=ck, progress=False)
    assert not np.array_equal(other["draws"], out["draws"])


def _gaussian_logp(cov):
    P = jnp.asarray(np.linalg.inv(cov))
    return lambda z: -0.5 * z @ P @ z


def test_rescaling_recovers_a_gaussian_target_along_the_eigen_directions(tmp_path):
    """Secant rescaling: exact for a Gaussian target whose axes are the proposal's eigen-directions
    (any rotation), bounded per round, resumable from its checkpoint."""
    rng = np.random.default_rng(3)
    R, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    target = (R * np.array([0.5, 2.0, 1.0, 0.1]) ** 2) @ R.T
    start = (R * np.array([1.0, 1.5, 2.0, 3.0]) ** 2) @ R.T  # same axes, wrong widths
    logp = _gaussian_logp(target)
    ck = tmp_path / "rescale.npz"
    one, rec1 = laplace.rescale_covariance(logp, np.zeros(4), start, rounds=1, checkpoint=ck, progress=False)
    # round 1: three directions exact; the narrowest would shrink 30x, and stops at the bound
    sd1 = np.sqrt(np.diag(R.T @ one @ R))
    np.testing.assert_allclose(sd1, [0.5, 2.0, 1.0, 3.0 * laplace.RESCALE_BOUNDS[0]], rtol=1e-9)
    assert rec1["history"][0]["n_at_bound"] == 1 and rec1["history"][0]["n_shrunk"] == 3
    # round 2 resumes from the checkpoint (round 1 is read back, not redone) and is exact
    two, rec2 = laplace.rescale_covariance(logp, np.zeros(4), start, rounds=2, checkpoint=ck, progress=False)
    np.testing.assert_allclose(two, target, rtol=1e-8, atol=1e-12)
    assert rec2["rounds"] == 2 and rec2["history"][0] == rec1["history"][0]
    with np.load(ck) as d:
        assert int(d["rounds"]) == 2
    # a finished checkpoint is read, not recomputed (a marked SD comes back as saved)
    with np.load(ck) as d:
        saved = {k: d[k] for k in d.files}
    np.savez(ck, **dict(saved, sd=saved["sd"] * np.array([1.0, 1.0, 1.0, 7.0])))
    marked, _ = laplace.rescale_covariance(logp, np.zeros(4), start, rounds=2, checkpoint=ck, progress=False)
    assert not np.allclose(marked, target)
    # 0 rounds: the input back
    same, rec0 = laplace.rescale_covariance(logp, np.zeros(4), start, rounds=0, progress=False)
    np.testing.assert_allclose(same, start, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="rounds"):
        laplace.rescale_covariance(logp, np.zeros(4), start, rounds=-1, progress=False)


def test_rescaling_takes_the_wider_side_and_survives_failed_solves():
    """A wall (failed solve, -inf) on one side of a direction: the other side sets the width; a
    direction where the density rises on both sides widens by the bound, not without limit."""

    def logp(z):
        ok = z[0] < 1.0  # beyond: the solve fails
        return jnp.where(ok, -0.5 * (z[0] / 0.5) ** 2 - 0.5 * (z[1] / 2.0) ** 2 + 0.5 * z[2] ** 2, -jnp.inf)

    cov = np.diag([1.0, 1.0, 0.01])
    out, rec = laplace.rescale_covariance(logp, np.zeros(3), cov, rounds=1, progress=False)
    np.testing.assert_allclose(np.sqrt(np.diag(out)), [0.5, 2.0, 0.1 * laplace.RESCALE_BOUNDS[1]], rtol=1e-9)
    assert rec["history"][0]["n_failed"] == 1 and rec["history"][0]["n_at_bound"] == 1
    with pytest.raises(ValueError, match="not finite"):
        laplace.rescale_covariance(lambda z: -jnp.inf * jnp.sum(z**2 + 1), np.zeros(3), cov, rounds=1, progress=False)


def test_split_scales_recover_a_lopsided_target_and_its_density_is_exact(tmp_path):
    """A split-normal target (one SD per side along rotated axes): the per-side secant rounds
    recover both sides' SDs from a symmetric start (resumably); the split-normal's density
    integrates to 1, is continuous at the centre, and its draws weigh equally against itself."""
    rng = np.random.default_rng(4)
    R, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    plus, minus = np.array([0.5, 2.0, 1.0]), np.array([0.05, 2.0, 3.0])  # a cliff, a symmetric axis, a long slope
    mean = np.array([0.3, -1.0, 2.0])

    def logp(z):
        c = (z - mean) @ jnp.asarray(R)
        return -0.5 * jnp.sum(jnp.where(c >= 0, c / plus, c / minus) ** 2)

    start = (R * np.array([1.0, 1.5, 2.0]) ** 2) @ R.T  # symmetric, on the target's axes, wrong widths
    ck = tmp_path / "split.npz"
    one = laplace.split_rescale(logp, mean, start, rounds=1, checkpoint=ck, progress=False)
    assert one["history"][0]["n_at_bound"] == 1  # the cliff would shrink 20x: stops at the bound
    sp = laplace.split_rescale(logp, mean, start, rounds=3, checkpoint=ck, progress=False)
    assert sp["rounds"] == 3 and sp["history"][0] == one["history"][0]
    order = [int(np.argmax(np.abs(sp["U"].T @ R[:, j]))) for j in range(3)]  # target axis j -> direction
    sign = np.sign([sp["U"][:, order[j]] @ R[:, j] for j in range(3)])
    got_plus = np.where(sign > 0, sp["sd_plus"][order], sp["sd_minus"][order])
    got_minus = np.where(sign > 0, sp["sd_minus"][order], sp["sd_plus"][order])
    np.testing.assert_allclose(got_plus, plus, rtol=1e-9)
    np.testing.assert_allclose(got_minus, minus, rtol=1e-9)
    assert sp["side_ratio_max"] / sp["side_ratio_min"] == pytest.approx(10.0 * 3.0, rel=1e-9)
    # its draws: the target itself, so the importance weights are equal (k-hat 0)
    draws, logq = laplace.split_normal_draws(mean, sp, 400, seed=1)
    np.testing.assert_allclose(logq, laplace.split_normal_logpdf(draws, mean, sp), rtol=1e-12)
    lp = np.array([float(logp(jnp.asarray(x))) for x in draws])
    res = importance.psis_weights(lp, logq)
    assert res["khat"] == 0.0 and res["ess"] == pytest.approx(400.0)
    # each side holds s+ / (s+ + s-) of the mass: the cliff side of axis 0 about 1/11
    c0 = ((draws - mean) @ R)[:, 0]
    assert np.mean(c0 >= 0) == pytest.approx(plus[0] / (plus[0] + minus[0]), abs=0.05)
    # one dimension: the density integrates to 1 and is continuous at the centre
    one_d = dict(U=np.eye(1), sd_plus=np.array([0.5]), sd_minus=np.array([2.0]))
    x = np.linspace(-20.0, 5.0, 200001)[:, None]
    q = np.exp(laplace.split_normal_logpdf(x, np.zeros(1), one_d))
    assert np.trapezoid(q, x[:, 0]) == pytest.approx(1.0, abs=1e-6)
    left, right = laplace.split_normal_logpdf(np.array([[-1e-12], [1e-12]]), np.zeros(1), one_d)
    assert left == pytest.approx(right, abs=1e-9)
    with pytest.raises(ValueError, match="rounds"):
        laplace.split_rescale(logp, mean, start, rounds=0, progress=False)


def test_split_scales_bisect_a_cliff_instead_of_swinging_between_the_bounds(tmp_path):
    """Beyond x = 0.5 the log density falls by 1000 per unit (a cliff): the plain secant swings
    (0.1 -> 0.3 -> 0.04 -> 0.13 ...); the bracket makes the SD on that side converge to 0.25,
    where 2 SDs reach the cliff's edge, resumably. The other side and the other axis (Gaussian,
    SD 1) are exact."""

    def logp(z):
        return -0.5 * z[0] ** 2 - 1000.0 * jnp.maximum(z[0] - 0.5, 0.0) - 0.5 * z[1] ** 2

    ck = tmp_path / "split.npz"
    laplace.split_rescale(logp, np.zeros(2), np.diag([1.0, 4.0]), rounds=4, checkpoint=ck, progress=False)
    sp = laplace.split_rescale(logp, np.zeros(2), np.diag([1.0, 4.0]), rounds=8, checkpoint=ck, progress=False)
    i = int(np.argmax(np.abs(sp["U"][0])))
    cliff, slope = (sp["sd_plus"][i], sp["sd_minus"][i]) if sp["U"][0, i] > 0 else (sp["sd_minus"][i], sp["sd_plus"][i])
    assert 0.24 < cliff < 0.26
    assert slope == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_allclose([sp["sd_plus"][1 - i], sp["sd_minus"][1 - i]], [1.0, 1.0], rtol=1e-9)
    assert sum(h["n_bisected"] for h in sp["history"]) >= 4
    with np.load(ck) as d:
        assert int(d["rounds"]) == 8 and np.all(d["bracket_lo"] <= np.concatenate([d["sd_plus"], d["sd_minus"]]))


def test_preconditioned_refinement_solves_an_ill_conditioned_quadratic():
    """L-BFGS in coordinates whitened by a covariance estimate: on a Gaussian with curvatures from
    1e-2 to 1e4 a handful of iterations reach the mode when the estimate is the true covariance
    (and still help when it is only roughly right), where plain L-BFGS is far from it."""
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    A = Q @ np.diag(np.logspace(-2, 4, 12)) @ Q.T
    b = rng.standard_normal(12)
    f = _quadratic(A, b)
    z0 = b + 3.0 * rng.standard_normal(12)
    plain, rec_plain = mapfit.refine_map(None, z0, 6, f=f, log=lambda *_: None)
    exact, rec_exact = mapfit.refine_map(None, z0, 6, f=f, log=lambda *_: None, precondition=np.linalg.inv(A))
    np.testing.assert_allclose(exact, b, atol=1e-6)
    assert rec_exact["grad_norm"] < 1e-5 < rec_plain["grad_norm"]
    assert np.linalg.norm(plain - b) > 100 * np.linalg.norm(exact - b)
    # a covariance that is right only to within factors of 2 per eigen-direction still beats plain L-BFGS
    w, V = np.linalg.eigh(np.linalg.inv(A))
    rough = (V * (w * np.exp(np.log(2.0) * rng.uniform(-1, 1, 12)))) @ V.T
    _, rec_rough = mapfit.refine_map(None, z0, 6, f=f, log=lambda *_: None, precondition=rough)
    assert rec_rough["log_posterior"] > rec_plain["log_posterior"]
    assert rec_exact["log_posterior_before"] == rec_plain["log_posterior_before"]
    with pytest.raises(ValueError, match="precondition"):
        mapfit.refine_map(None, z0, 1, f=f, precondition=np.eye(3))


def test_hessian_preconditioner_is_the_inverse_hessian_with_absolute_eigenvalues():
    """``--precondition hessian``: on a quadratic the covariance is exactly A^-1 and one chunk of
    L-BFGS from it reaches the mode; an indefinite curvature (a saddle) enters by its absolute value
    and a flat one is raised to the floor, and the source sentence says so."""
    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    A = Q @ np.diag(np.logspace(-1, 5, 6)) @ Q.T
    b = rng.standard_normal(6)
    f = _quadratic(A, b)
    z0 = b + rng.standard_normal(6)
    cov, source = mapfit.hessian_covariance(None, z0, f=f)
    np.testing.assert_allclose(cov @ A, np.eye(6), atol=1e-5)
    assert "negative" not in source
    z1, rec = mapfit.refine_map(None, z0, 4, f=f, log=lambda *_: None, precondition=cov)
    np.testing.assert_allclose(z1, b, atol=1e-6)
    saddle = _quadratic(np.diag([4.0, -2.0, 0.0]), np.zeros(3))
    cov, source = mapfit.hessian_covariance(None, np.ones(3), f=saddle, floor=1e-2)
    np.testing.assert_allclose(np.diag(cov), [0.25, 0.5, 100.0], rtol=1e-6)
    assert "1 negative" in source


def test_whitening_factor_squares_to_the_covariance_and_floors_a_singular_one():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 6))
    C = np.cov(X.T)
    Af = mapfit.whitening_factor(C)
    np.testing.assert_allclose(Af @ Af.T, C, atol=1e-12)
    S = np.cov(X[:3].T)  # rank 2: the floor keeps the factor invertible
    assert np.all(np.linalg.eigvalsh(mapfit.whitening_factor(S)) > 0)
    with pytest.raises(ValueError, match="precondition"):
        mapfit.whitening_factor(np.full((2, 2), np.nan))
