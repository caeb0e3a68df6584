"""Projected Adam on the unit box (the optimiser's inner loop, ``optimize.minimize_box``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax


def minimize_box(value_and_grad, z0: np.ndarray, steps: int = 40, learning_rate: float = 0.05, progress: bool = False):
    """Projected Adam on the unit box for a batch of independent candidates.

    ``value_and_grad(z)`` maps z (B, k) to (losses (B,), gradients (B, k)); each row is its own
    problem. Returns the best z seen per row, its loss, and the loss history (steps + 1, B)."""
    z = np.clip(np.asarray(z0, dtype=np.float64), 0.0, 1.0)
    opt = optax.adam(learning_rate)
    state = opt.init(jnp.asarray(z))
    best_z, best_loss = z.copy(), np.full(z.shape[0], np.inf)
    history = []
    it = range(steps + 1)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="optimising", unit="step")
    for k in it:
        loss, grad = value_and_grad(z)
        loss, grad = np.asarray(loss, dtype=np.float64), np.asarray(grad, dtype=np.float64)
        grad = np.where(np.isfinite(grad), grad, 0.0)
        better = np.isfinite(loss) & (loss < best_loss)
        best_z[better], best_loss[better] = z[better], loss[better]
        history.append(loss)
        if k == steps:
            break
        updates, state = opt.update(jnp.asarray(grad), state)
        z = np.clip(np.asarray(optax.apply_updates(jnp.asarray(z), updates)), 0.0, 1.0)
    return best_z, best_loss, np.array(history)
