"""End points computed from simulated trajectories (arrays; work on batches: leading axes are free).

- volume at the horizon (mm^3) per site;
- cure: viable volume below one cell (1e-6 mm^3) at some output time after day 0;
- abscopal response: 100 * (1 - V_abs / V_abs untreated) at the horizon, paired by parameter draw;
- time to a volume end point (survival proxy): first day the volume reaches ``threshold`` (linear
  interpolation between output days), ``inf`` when it never does within the horizon;
- BED of an RT course: sum d (1 + d / (alpha/beta)), and the dose per fraction of n fractions at a given BED;
- smooth running maximum and minimum of a series (the fit's and the optimiser's differentiable end points).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..model.equations import build_model
from ..model.parameters import CELL_VOLUME_MM3

CURE_VOLUME_MM3 = CELL_VOLUME_MM3  # cured: viable volume below one cell

#: temperature (log units) of the soft running maximum and minimum of a series over the output
#: grid (log-sum-exp): a hard max over grid points has a kink wherever two points tie, and the MAP
#: search stalled on one (a 2-day-grid peak tie in an untreated arm: the gradient there was one
#: side's, finite differences the average). Bias: at most PEAK_TAU * log(points near the max)
#: (0.05 x log 31 = 0.17 for a series flat over the whole grid; under 0.01 for a peaked one).
PEAK_TAU = 0.05
DEFAULT_ENDPOINT_MM3 = 1000.0

ENDPOINTS = {
    # name: (description, unit, "lower" or "higher" is better)
    "volume_irradiated": ("irradiated tumour volume at the horizon", "mm^3", "lower"),
    "volume_abscopal": ("abscopal tumour volume at the horizon", "mm^3", "lower"),
    "abscopal_response": ("reduction of the abscopal tumour vs untreated, at the horizon", "%", "higher"),
    "cure_irradiated": ("irradiated tumour cured (viable < 1 cell)", "probability", "higher"),
    "cure_abscopal": ("abscopal tumour cured (viable < 1 cell)", "probability", "higher"),
    "time_to_endpoint": ("days until either tumour reaches the volume end point (survival proxy)", "days", "higher"),
}


def _idx(name: str) -> int:
    return build_model().state_names.index(name)


def volumes(ys: np.ndarray, site: str) -> np.ndarray:
    """Measured volume (viable + doomed) of ``site`` ('irr' or 'abs'): ys[..., n_out, n_states]."""
    return ys[..., _idx(f"V_{site}")] + ys[..., _idx(f"D_{site}")]


def cured(ys: np.ndarray, site: str) -> np.ndarray:
    return np.min(ys[..., _idx(f"V_{site}")], axis=-1) < CURE_VOLUME_MM3


def time_to_volume(ts: np.ndarray, v: np.ndarray, threshold: float = DEFAULT_ENDPOINT_MM3) -> np.ndarray:
    """First crossing of ``threshold`` by ``v`` (..., n_out) on days ``ts``; inf if never."""
    above = v >= threshold
    first = np.argmax(above, axis=-1)
    hit = np.any(above, axis=-1)
    i = np.clip(first, 1, v.shape[-1] - 1)
    v0 = np.take_along_axis(v, (i - 1)[..., None], -1)[..., 0]
    v1 = np.take_along_axis(v, i[..., None], -1)[..., 0]
    t0, t1 = ts[i - 1], ts[i]
    frac = np.clip((threshold - v0) / np.where(v1 > v0, v1 - v0, 1.0), 0.0, 1.0)
    t = np.where(first == 0, ts[0], t0 + frac * (t1 - t0))
    return np.where(hit, t, np.inf)


#: end points of the unirradiated tumour (meaningless for a mouse with one tumour)
ABSCOPAL_ENDPOINTS = ("volume_abscopal", "abscopal_response", "cure_abscopal")


def abscopal_response(v_abs, v_abs_untreated):
    """Percent reduction of the abscopal tumour against the paired untreated mouse; NaN where
    the untreated mouse has no abscopal tumour (a single-tumour mouse)."""
    v_abs, v_ref = np.asarray(v_abs, dtype=float), np.asarray(v_abs_untreated, dtype=float)
    has = v_ref > 0
    return np.where(has, 100.0 * (1.0 - v_abs / np.where(has, v_ref, 1.0)), np.nan)


def endpoints(
    ts: np.ndarray, ys: np.ndarray, ys_untreated: np.ndarray, threshold: float = DEFAULT_ENDPOINT_MM3
) -> dict[str, np.ndarray]:
    """All end points for trajectories ``ys`` (..., n_out, n_states), paired with untreated ones."""
    v_irr, v_abs = volumes(ys, "irr"), volumes(ys, "abs")
    v_abs0 = volumes(ys_untreated, "abs")
    t_end = np.minimum(time_to_volume(ts, v_irr, threshold), time_to_volume(ts, v_abs, threshold))
    return {
        "volume_irradiated": v_irr[..., -1],
        "volume_abscopal": v_abs[..., -1],
        "abscopal_response": abscopal_response(v_abs[..., -1], v_abs0[..., -1]),
        "cure_irradiated": cured(ys, "irr").astype(float),
        "cure_abscopal": cured(ys, "abs").astype(float),
        "time_to_endpoint": t_end,
    }


def bed(doses_gy, ab_ratio: float) -> float:
    """Biologically effective dose of fractions ``doses_gy`` for a tissue with alpha/beta ``ab_ratio``."""
    d = np.asarray(doses_gy, dtype=float)
    if ab_ratio <= 0:
        raise ValueError(f"ab_ratio: must be > 0 Gy, got {ab_ratio}")
    return float(np.sum(d * (1 + d / ab_ratio)))


def dose_at_equal_bed(n_fractions: int, bed_gy: float, ab_ratio: float) -> float:
    """Dose per fraction d with n d (1 + d / (alpha/beta)) = BED (the positive root)."""
    if ab_ratio <= 0 or not math.isfinite(ab_ratio):
        raise ValueError(f"ab_ratio: must be a positive number of Gy, got {ab_ratio}")
    if bed_gy <= 0 or not math.isfinite(bed_gy):
        raise ValueError(f"bed_gy: must be a positive number of Gy, got {bed_gy}")
    return ab_ratio / 2 * (math.sqrt(1 + 4 * bed_gy / (n_fractions * ab_ratio)) - 1)


def soft_cummax(x, tau=PEAK_TAU):
    """Smooth running maximum along the last axis: ``tau * log(sum_{j <= t} exp(x_j / tau))``, at
    least the running max and at most ``tau * log(t + 1)`` above it."""
    return tau * jax.lax.cumlogsumexp(x / tau, axis=x.ndim - 1)


def soft_min(x, where, tau=PEAK_TAU):
    """Smooth minimum along the last axis over the entries where ``where`` holds (at most the
    minimum, and at most ``tau * log(count)`` below it)."""
    return -tau * jax.nn.logsumexp(jnp.where(where, -x / tau, -jnp.inf), axis=-1)
