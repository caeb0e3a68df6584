"""End points computed from simulated trajectories (arrays; work on batches: leading axes are free).

The one end-point definition (used by compare, sweeps, the optimiser, the report and the
likelihood's count and survival records): a mouse reaches the **end point** on the first day its
total tumour burden (irradiated + abscopal measured volume, viable + doomed) reaches
``threshold`` (1000 mm^3 by default, E-THRESH; linear interpolation between output days), and is
removed then: nothing later in its trajectory is read. Hence

- time to the end point (survival proxy): that day, ``inf`` when it is not reached by the horizon;
- volume at the horizon (mm^3) per site: the volume on the horizon, or on the end-point day for a
  mouse removed earlier (its last measurement);
- cure: viable volume below one cell (1e-6 mm^3) at the horizon (extinct and still extinct; in the
  model extinction is absorbing) **and** the end point never reached: a mouse past the end point
  is never cured, whatever its tumour does later;
- abscopal response: 100 * (1 - V_abs / V_abs untreated) at the horizon (both read as above),
  paired by parameter draw;
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
#: volumes below this are reported as "< floor" and drawn at it (about a thousand cells; the
#: detection limit of calliper measurements is of this order): differences below it decide nothing
DETECTION_FLOOR_MM3 = 1.0

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
    "cure_irradiated": ("irradiated tumour cured (viable < 1 cell, end point never reached)", "probability", "higher"),
    "cure_abscopal": ("abscopal tumour cured (viable < 1 cell, end point never reached)", "probability", "higher"),
    "time_to_endpoint": ("days until the tumour burden reaches the volume end point (survival proxy)", "days", "higher"),
}


def _idx(name: str) -> int:
    return build_model().state_names.index(name)


def volumes(ys: np.ndarray, site: str) -> np.ndarray:
    """Measured volume (viable + doomed) of ``site`` ('irr' or 'abs'): ys[..., n_out, n_states]."""
    return ys[..., _idx(f"V_{site}")] + ys[..., _idx(f"D_{site}")]


def burden(ys: np.ndarray) -> np.ndarray:
    """Total tumour burden (mm^3): both sites' measured volumes (a one-tumour mouse has v0_abs = 0)."""
    return volumes(ys, "irr") + volumes(ys, "abs")


def endpoint_day(ts: np.ndarray, ys: np.ndarray, threshold: float = DEFAULT_ENDPOINT_MM3) -> np.ndarray:
    """Day each mouse reaches the end point (total burden >= ``threshold``); inf if it does not."""
    return time_to_volume(ts, burden(ys), threshold)


def cured(ys: np.ndarray, site: str, t_end: np.ndarray | None = None) -> np.ndarray:
    """Extinct at the horizon (viable < 1 cell) and, where ``t_end`` is given, never past the end point."""
    extinct = ys[..., -1, _idx(f"V_{site}")] < CURE_VOLUME_MM3
    return extinct if t_end is None else extinct & ~np.isfinite(t_end)


def read_until(ts: np.ndarray, v: np.ndarray, t_end: np.ndarray) -> np.ndarray:
    """``v`` (..., n_out) at the horizon, or at ``t_end`` where the mouse was removed earlier
    (linear interpolation between output days)."""
    t = np.where(np.isfinite(t_end), np.minimum(t_end, ts[-1]), ts[-1])
    i = np.clip(np.searchsorted(ts, t, side="right") - 1, 0, len(ts) - 2)
    t0, t1 = ts[i], ts[i + 1]
    w = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)
    v0 = np.take_along_axis(v, i[..., None], -1)[..., 0]
    v1 = np.take_along_axis(v, (i + 1)[..., None], -1)[..., 0]
    return (1 - w) * v0 + w * v1


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
    """All end points for trajectories ``ys`` (..., n_out, n_states), paired with untreated ones
    (the module's end-point definition: a mouse is removed on its end-point day)."""
    t_end = endpoint_day(ts, ys, threshold)
    t_end0 = endpoint_day(ts, ys_untreated, threshold)
    v_abs = read_until(ts, volumes(ys, "abs"), t_end)
    return {
        "volume_irradiated": read_until(ts, volumes(ys, "irr"), t_end),
        "volume_abscopal": v_abs,
        "abscopal_response": abscopal_response(v_abs, read_until(ts, volumes(ys_untreated, "abs"), t_end0)),
        "cure_irradiated": cured(ys, "irr", t_end).astype(float),
        "cure_abscopal": cured(ys, "abs", t_end).astype(float),
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


def interp_on_grid(series, day, step):
    """Linear interpolation of ``series`` (..., n_out), saved every ``step`` days from day 0, at
    ``day`` (broadcast against the leading axes; JAX, differentiable in both)."""
    import jax.numpy as jnp

    x = day / step
    i0 = jnp.broadcast_to(jnp.clip(jnp.floor(x).astype(jnp.int32), 0, series.shape[-1] - 2), series.shape[:-1])
    w = x - i0
    a = jnp.take_along_axis(series, i0[..., None], -1)[..., 0]
    b = jnp.take_along_axis(series, (i0 + 1)[..., None], -1)[..., 0]
    return (1 - w) * a + w * b


def soft_cummax(x, tau=PEAK_TAU):
    """Smooth running maximum along the last axis: ``tau * log(sum_{j <= t} exp(x_j / tau))``, at
    least the running max and at most ``tau * log(t + 1)`` above it."""
    return tau * jax.lax.cumlogsumexp(x / tau, axis=x.ndim - 1)


def soft_min(x, where, tau=PEAK_TAU):
    """Smooth minimum along the last axis over the entries where ``where`` holds (at most the
    minimum, and at most ``tau * log(count)`` below it)."""
    return -tau * jax.nn.logsumexp(jnp.where(where, -x / tau, -jnp.inf), axis=-1)
