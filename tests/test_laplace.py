"""The Laplace fallback of the fit: finite-difference Hessian (checkpointed), the eigenvalue floor
of its covariance, and the PSIS check of its draws, on targets whose answers are known."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from abscopal import inference as I


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
    H = I.laplace_hessian(None, z, f=f, checkpoint=ck, progress=False)
    np.testing.assert_allclose(H, A, rtol=1e-8, atol=1e-8)
    # a resumed run reads the finished rows and calls the gradient only for the missing ones
    with np.load(ck) as d:
        partial = d["H"].copy()
    partial[2:] = np.nan
    np.savez(ck, z=z, H=partial)
    calls = []

    def counting(x):
        calls.append(1)
        return f(x)

    H2 = I.laplace_hessian(None, z, f=counting, checkpoint=ck, progress=False)
    assert len(calls) == 2 * 2
    np.testing.assert_allclose(H2, A, rtol=1e-8, atol=1e-8)
    # a checkpoint made at another point is not reused
    calls.clear()
    I.laplace_hessian(None, z + 1.0, f=counting, checkpoint=ck, progress=False)
    assert len(calls) == 2 * 4


def test_failed_gradient_in_the_hessian_is_an_error():
    f = jax.jit(jax.value_and_grad(lambda z: jnp.where(z[0] > 0.0, jnp.inf * z[0], 0.5 * z @ z)))
    with pytest.raises(FloatingPointError, match="coordinate 0"):
        I.laplace_hessian(None, np.zeros(2), f=f, progress=False)


def test_covariance_floor_on_flat_and_negative_directions():
    Q = np.linalg.qr(np.random.default_rng(2).standard_normal((3, 3)))[0]
    w = np.array([25.0, 1e-6, -3.0])  # well identified, flat, curved the wrong way
    H = (Q * w) @ Q.T
    cov, rec = I.laplace_covariance(H, min_precision=1.0)
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

    good = I.importance_check(gaussian, draws, mean, cov, progress=False)
    assert good["khat"] < 0.5 and good["ess"] > 0.95 * 400 and good["n_failed"] == 0

    def heavy(z):  # a target three times wider than the proposal: the weights have a heavy tail
        return -0.5 * jnp.sum(z**2 / (9.0 * jnp.diag(jnp.asarray(cov))))

    bad = I.importance_check(heavy, draws, mean, cov, progress=False)
    assert bad["khat"] > 0.7 and bad["ess"] < 100

    def failing(z):  # a failed solve is -inf: counted, never a NaN weight
        return jnp.where(z[0] > 1.0, -jnp.inf, gaussian(z))

    part = I.importance_check(failing, draws, mean, cov, progress=False)
    assert part["n_failed"] == int(np.sum(draws[..., 0] > 1.0)) > 0
    assert np.isfinite(part["khat"])
    few = I.importance_check(gaussian, draws[:, :5], mean, cov, progress=False)  # 10 draws: no tail to fit
    assert few["khat"] == np.inf and few["ess"] == 0.0
