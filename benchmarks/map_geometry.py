"""What the posterior-shape benchmarks share (``posterior_geometry``, ``posterior_ridge``,
``posterior_counterfactual``, ``bench_neutra_review``, ``bench_nuts_review``): the MAP's Hessian
(computed, or loaded from and saved to a ``.npy``), the coordinates it whitens, and one short NUTS
chain's per-iteration statistics."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

from abscopal.inference import nuts
from abscopal.inference.laplace import laplace_covariance, laplace_hessian
from abscopal.inference.mapfit import whitening_factor

#: Hessian eigenvalues below this are raised to it before inverting (as the NUTS metric is)
MIN_PRECISION = 1e-2


def map_hessian(prob, z, path: str | None = None, f=None) -> np.ndarray:
    """The Hessian of ``-log p`` at ``z`` (``laplace.laplace_hessian``): loaded from ``path`` when it
    exists, else computed (and saved there when ``path`` is given)."""
    if path and os.path.exists(path):
        return np.load(path)
    H = np.asarray(laplace_hessian(prob, np.asarray(z), f=f, progress=False))
    if path:
        np.save(path, H)
    return H


def whitened(H: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(eigenvalues, eigenvectors, A) of the symmetrised ``H``, with ``A A^T`` its inverse
    (``laplace.laplace_covariance``, eigenvalues raised to ``MIN_PRECISION``): in ``u`` with
    ``z = z_MAP + A u`` a Gaussian posterior falls by exactly ``|u|^2 / 2``."""
    H = 0.5 * (H + H.T)
    ev, V = np.linalg.eigh(H)
    return ev, V, whitening_factor(laplace_covariance(H, MIN_PRECISION)[0])


def short_chain(pot, start: np.ndarray, iterations: int, inv_mass=None) -> dict:
    """One NUTS chain of ``iterations`` warm-up iterations (max tree depth 6, adaptation on) from
    ``start``, checkpointed in a temporary folder: seconds and, per iteration, gradients, step size
    and divergence."""
    opts = nuts.NutsOptions(chains=1, warmup=iterations, samples=1, segment=iterations, max_tree_depth=6, seed=0)
    folder = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    nuts.sample(pot, np.asarray(start)[None], opts, folder, inv_mass=inv_mass, progress=False)
    ck = np.load(folder / nuts.CHECKPOINT)
    return dict(
        seconds=time.perf_counter() - t,
        num_steps=ck["rec_num_steps"][0, :iterations].astype(int).tolist(),
        step_size=ck["rec_step_size"][0, :iterations].tolist(),
        diverging=ck["rec_diverging"][0, :iterations].astype(int).tolist(),
    )
