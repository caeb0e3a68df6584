"""An independent reference solver: the same generated equations (NumPy backend) integrated one
schedule at a time with ``scipy.integrate.solve_ivp``, events applied between segments in Python.

Used by the tests (tight-tolerance agreement) and by the benchmarks (the per-solve peer)."""

from __future__ import annotations

import numpy as np
from scipy.integrate import solve_ivp

from ..model.codegen import functions
from ..model.parameters import Params
from ..schedules import EVENT_DRUG, EVENT_RT, Schedule


def solve_reference(
    schedule: Schedule, params: Params, ts: np.ndarray, method: str = "DOP853", rtol: float = 1e-10, atol: float = 1e-12
) -> np.ndarray:
    """States at days ``ts`` (post-event values at event days), shape (len(ts), n_states)."""
    rhs, initial, rt_event, bolus_matrix = functions("numpy")
    p = np.asarray(params.values)
    B = np.asarray(bolus_matrix(p))
    ev = schedule.to_arrays(params.body_weight_g)
    y = np.asarray(initial(p), dtype=float)
    times = [0.0, *ev["time"].tolist(), float(ev["horizon"])]
    kinds = [0, *ev["kind"].tolist()]
    out = np.full((len(ts), y.size), np.nan)
    fun = lambda t, x: np.asarray(rhs(x, p), dtype=float)  # noqa: E731
    for k in range(len(kinds)):
        if kinds[k] == EVENT_RT:
            y = np.asarray(rt_event(y, p, ev["value"][k - 1], ev["on_irr"][k - 1], ev["on_abs"][k - 1]), dtype=float)
        elif kinds[k] == EVENT_DRUG:
            y = y + ev["value"][k - 1] * B[ev["agent"][k - 1]]
        t0, t1 = times[k], times[k + 1]
        last = k == len(kinds) - 1
        mask = (ts >= t0) & ((ts < t1) | (last & (ts <= t1)))
        if t1 <= t0:
            out[mask] = y
            continue
        sol = solve_ivp(fun, (t0, t1), y, method=method, rtol=rtol, atol=atol, t_eval=np.append(ts[mask], t1))
        if not sol.success:
            raise RuntimeError(f"solve_ivp failed on [{t0}, {t1}]: {sol.message}")
        out[mask] = sol.y[:, :-1].T
        y = sol.y[:, -1]
    return out
