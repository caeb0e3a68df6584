"""Paired comparison of two schedules on one end point: for the same virtual mouse (parameter draw)
under schedule A and under schedule B, is A better, B better, or is it a tie?

The three probabilities sum to one; each comes with its 90 % Monte Carlo interval (Jeffreys, from
the number of paired draws: how precisely the finite cohort estimates it, not parameter
uncertainty). The tie rule (``TIE_RULE``), one per kind of end point, read on the end points of
``simulation.outcomes`` (a mouse is removed on its end-point day):

- cure: both cured, or both not cured;
- time to the end point: both reach it within ``TIE_DAYS`` of each other (the same measurement
  day), or neither reaches it by the horizon;
- volumes and the abscopal response: a mouse that reaches the end point ranks below one that does
  not; two that both reach it rank by their end-point day (tied within ``TIE_DAYS``); two that do
  not, by volume, tied when the volumes differ by less than the detection floor
  (``DETECTION_FLOOR_MM3``). The abscopal response of the two arms of one draw shares its untreated
  reference, so it ranks as the abscopal volume does.
"""

from __future__ import annotations

import numpy as np

from ..simulation.outcomes import DETECTION_FLOOR_MM3

TIE_DAYS = 0.5
TIE_RULE = (
    "tie: both mice cured or both not (cure); both reach the end point within "
    f"{TIE_DAYS:g} d of each other or neither reaches it by the horizon (time to end point); volumes differing by less "
    f"than the detection floor, {DETECTION_FLOOR_MM3:g} mm3, or both reaching the end point on the same day (volumes, "
    "abscopal response; a mouse past the end point ranks below one that is not)"
)
#: the end point a pair is ranked on: the abscopal response shares its untreated reference within a draw
RANKED_AS = {"abscopal_response": "volume_abscopal"}


def _by_time(ta: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A better / B better on the day the end point is reached (later is better; inf: never)."""
    both = np.isfinite(ta) & np.isfinite(tb)
    close = np.where(
        both, np.abs(np.where(both, ta, 0.0) - np.where(both, tb, 0.0)) < TIE_DAYS, ~np.isfinite(ta) & ~np.isfinite(tb)
    )
    return (ta > tb) & ~close, (tb > ta) & ~close


def outcomes(ra: dict, rb: dict, endpoint: str, better: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per paired draw: (A better, B better, tie), boolean arrays that partition the draws.
    ``ra``/``rb``: ``outcomes.endpoints`` of the two schedules on the same draws."""
    key = RANKED_AS.get(endpoint, endpoint)
    if key != endpoint:
        better = "lower"
    xa, xb = np.asarray(ra[key], dtype=float), np.asarray(rb[key], dtype=float)
    if key.startswith("cure_"):
        a, b = xa > xb, xb > xa
    elif key == "time_to_endpoint":
        a, b = _by_time(xa, xb)
    elif key.startswith("volume_"):
        ta, tb = np.asarray(ra["time_to_endpoint"], float), np.asarray(rb["time_to_endpoint"], float)
        out_a, out_b = np.isfinite(ta), np.isfinite(tb)
        ta_wins, tb_wins = _by_time(ta, tb)
        d = xa - xb if better == "lower" else xb - xa  # > 0: B better
        v_a, v_b = d <= -DETECTION_FLOOR_MM3, d >= DETECTION_FLOOR_MM3
        neither = ~out_a & ~out_b
        a = np.where(neither, v_a, np.where(out_a & out_b, ta_wins, out_b & ~out_a))
        b = np.where(neither, v_b, np.where(out_a & out_b, tb_wins, out_a & ~out_b))
    else:  # any other end point: strict order, equal values tie
        a, b = (xa < xb, xb < xa) if better == "lower" else (xa > xb, xb > xa)
    a, b = np.asarray(a, bool), np.asarray(b, bool) & ~np.asarray(a, bool)
    return a, b, ~(a | b)


def proportion(k: float, n: int) -> tuple[float, float, float]:
    """Estimate k/n and its 90 % Jeffreys interval (0 and 1 at the ends where k = 0 or k = n)."""
    from scipy.special import betaincinv  # the Beta quantile (scipy.stats would add 0.6 s to every call)

    if n <= 0:
        return float("nan"), float("nan"), float("nan")
    lo, hi = betaincinv(k + 0.5, n - k + 0.5, [0.05, 0.95])
    return float(k / n), float(lo) if k > 0 else 0.0, float(hi) if k < n else 1.0


def pair_row(a_name: str, b_name: str, endpoint: str, ra: dict, rb: dict, better: str) -> dict:
    """One row of the pairwise table: the three probabilities, each with its 90 % MC interval."""
    wins_a, wins_b, ties = outcomes(ra, rb, endpoint, better)
    n = wins_a.size
    row = {"a": a_name, "b": b_name, "endpoint": endpoint, "n_pairs": int(n)}
    for label, mask in (("a_better", wins_a), ("b_better", wins_b), ("tie", ties)):
        p, lo, hi = proportion(float(mask.sum()), n)
        row |= {f"p_{label}": p, f"p_{label}_lo": lo, f"p_{label}_hi": hi}
    return row
