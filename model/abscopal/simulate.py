"""Simulation with diffrax: one compilation for every schedule of up to ``MAX_EVENTS`` events.

The solve is a ``lax.scan`` over segments between events; each event (RT fraction, drug bolus, or a
no-op pad) is a pure map on the state applied at the start of its segment. The core is a pure
function of plain arrays, so it is ``vmap``-ed over parameter sets and schedules.

Float64 is required (tiny viable volumes near cure): importing this module does not switch it on;
``abscopal.enable_x64()`` (called by the CLI) does, and ``simulate`` refuses to run without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import diffrax as dfx
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .codegen import functions, observable_function
from .equations import SITE_NAMES, SITE_STATES, SITES, build_model
from .parameters import Params, default_params
from .schedules import EVENT_DRUG, EVENT_RT, Schedule

#: one cell, in mm^3 (1 mm^3 ~ 1e6 cells, Del Monte 2009 Cell Cycle 8:505)
CELL_VOLUME_MM3 = 1e-6


class SimulationError(RuntimeError):
    """The ODE solver failed (step limit, non-finite state); never returned as silent NaN."""


@dataclass(frozen=True)
class SolverOptions:
    rtol: float = 1e-6
    atol: float = 1e-9
    max_steps: int = 4096
    n_out: int = 121


# incremented each time the core is traced: lets tests prove that schedules share one compilation
TRACE_COUNT = {"core": 0}


def enable_x64() -> None:
    """Switch JAX to 64-bit floats (the caller's choice; the CLI and tests do it)."""
    jax.config.update("jax_enable_x64", True)


def _require_x64() -> None:
    if not jax.config.jax_enable_x64:
        raise RuntimeError("abscopal needs 64-bit floats: call abscopal.enable_x64() before simulating")


def _vector_field(t, y, p):
    rhs = functions("jax")[0]
    return rhs(y, p)


def solve_core(p, events, horizon, *, rtol, atol, max_steps, n_out):
    """Pure core: ``p`` (n_params,), ``events`` dict of padded arrays, ``horizon`` scalar.

    Returns ``(ts, ys, ok)``: output days (n_out,), states (n_out, n_states), success flag.
    """
    TRACE_COUNT["core"] += 1
    _, initial, rt_event, bolus_matrix = functions("jax")
    y0 = initial(p)
    B = bolus_matrix(p)
    ts = jnp.linspace(0.0, horizon, n_out)
    n_ev = events["time"].shape[0]
    # segment k runs from start[k] to end[k]; the event applied at its start is event k-1 (k = 0: none)
    start = jnp.concatenate([jnp.zeros(1), events["time"]])
    end = jnp.concatenate([events["time"], jnp.reshape(horizon, (1,))])

    def pad(x, fill):
        return jnp.concatenate([jnp.full((1,), fill, x.dtype), x])

    seg = dict(
        t0=start, t1=end, kind=pad(events["kind"], 0), value=pad(events["value"], 0.0),
        on_irr=pad(events["on_irr"], 0.0), on_abs=pad(events["on_abs"], 0.0), agent=pad(events["agent"], 0),
        last=jnp.arange(n_ev + 1) == n_ev,
    )
    term = dfx.ODETerm(_vector_field)
    solver = dfx.Tsit5()
    controller = dfx.PIDController(rtol=rtol, atol=atol)

    def step(carry, s):
        y, out, ok = carry
        y = jnp.where(s["kind"] == EVENT_RT, rt_event(y, p, s["value"], s["on_irr"], s["on_abs"]), y)
        y = jnp.where(s["kind"] == EVENT_DRUG, y + s["value"] * B[s["agent"]], y)
        sol = dfx.diffeqsolve(
            term, solver, s["t0"], s["t1"], None, y, args=p,
            saveat=dfx.SaveAt(ts=jnp.clip(ts, s["t0"], s["t1"]), t1=True),
            stepsize_controller=controller, max_steps=max_steps, throw=False,
        )
        ys = sol.ys
        seg_ok = (sol.result == dfx.RESULTS.successful) & jnp.all(jnp.isfinite(ys))
        mask = (ts >= s["t0"]) & ((ts < s["t1"]) | (s["last"] & (ts <= s["t1"])))
        out = jnp.where(mask[:, None], ys[:-1], out)
        y_end = jnp.where(seg_ok, ys[-1], y)
        return (y_end, out, ok & seg_ok), None

    out0 = jnp.full((n_out, y0.shape[0]), jnp.nan)
    (_, out, ok), _ = jax.lax.scan(step, (y0, out0, jnp.bool_(True)), seg)
    return ts, out, ok


@partial(jax.jit, static_argnames=("rtol", "atol", "max_steps", "n_out"))
def solve(p, events, horizon, *, rtol=1e-6, atol=1e-9, max_steps=4096, n_out=121):
    """Jitted single solve (see ``solve_core``)."""
    return solve_core(p, events, horizon, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out)


@partial(jax.jit, static_argnames=("rtol", "atol", "max_steps", "n_out", "batch_params", "batch_events"))
def solve_batch(p, events, horizon, *, batch_params=True, batch_events=False, rtol=1e-6, atol=1e-9, max_steps=4096, n_out=121):
    """``vmap`` of ``solve_core`` over parameter sets (axis 0 of ``p``) and/or schedules (axis 0 of
    every event array and of ``horizon``)."""
    core = partial(solve_core, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out)
    axes = (0 if batch_params else None, 0 if batch_events else None, 0 if batch_events else None)
    return jax.vmap(core, in_axes=axes)(p, events, horizon)


def stack_schedules(schedules, body_weight_g: float = 20.0) -> tuple[dict, np.ndarray]:
    """Padded event arrays of several schedules stacked along a new axis 0, and their horizons."""
    arrays = [s.to_arrays(body_weight_g) for s in schedules]
    events = {k: np.stack([a[k] for a in arrays]) for k in arrays[0] if k != "horizon"}
    return events, np.array([a["horizon"] for a in arrays])


def _events(schedule: Schedule, body_weight_g: float):
    a = schedule.to_arrays(body_weight_g)
    horizon = a.pop("horizon")
    return a, horizon


@dataclass(frozen=True)
class Trajectory:
    """A solved schedule: days, states (named), observables, success flag."""

    days: np.ndarray
    states: np.ndarray
    params: Params
    schedule: Schedule
    ok: bool

    def state(self, name: str) -> np.ndarray:
        return self.states[:, build_model().state_names.index(name)]

    def observables(self) -> dict[str, np.ndarray]:
        obs = observable_function("numpy")
        return {k: np.asarray(v) * np.ones(len(self.days)) for k, v in obs(self.states.T, self.params.values).items()}

    def volume(self, site: str) -> np.ndarray:
        """Measured volume (viable + doomed), mm^3, of site "irradiated" or "abscopal"."""
        k = _site_key(site)
        return self.state(f"V_{k}") + self.state(f"D_{k}")

    def to_frame(self):
        """Long table: one row per day and site with volume, cells and immune read-outs."""
        import pandas as pd

        obs = self.observables()
        frames = []
        for k in SITES:
            cols = {"day": self.days, "site": SITE_NAMES[k], "volume_mm3": obs[f"volume_{k}"]}
            cols["viable_cells"] = np.maximum(self.state(f"V_{k}"), 0.0) / CELL_VOLUME_MM3
            cols["doomed_cells"] = np.maximum(self.state(f"D_{k}"), 0.0) / CELL_VOLUME_MM3
            for n, label in (("E", "cd8_effector"), ("X", "cd8_exhausted"), ("R", "treg"), ("M", "myeloid_suppressor")):
                cols[f"{label}_1e6_cells"] = self.state(f"{n}_{k}")
            cols["cd8_per_mm3_1e6"] = obs[f"cd8_density_{k}"]
            cols["treg_per_mm3_1e6"] = obs[f"treg_density_{k}"]
            cols["pdl1_level"] = self.state(f"P_{k}")
            cols["tgfb_relative"] = self.state(f"G_{k}")
            for n in ("Ag", "IFN", "DC", "Tp", "Tc", "Tm"):
                cols[f"systemic_{n}"] = self.state(n)
            frames.append(pd.DataFrame(cols))
        return pd.concat(frames, ignore_index=True)


def _site_key(site: str) -> str:
    for k, name in SITE_NAMES.items():
        if site in (k, name):
            return k
    raise ValueError(f"site must be one of {list(SITE_NAMES.values())}, got {site!r}")


def simulate(schedule: Schedule, params: Params | None = None, options: SolverOptions = SolverOptions(), throw: bool = True) -> Trajectory:
    """Simulate one schedule. Raises ``SimulationError`` if the solver fails (unless ``throw=False``,
    which returns the trajectory with ``ok=False``)."""
    _require_x64()
    params = params if params is not None else default_params(schedule.tumour_line)
    events, horizon = _events(schedule, params.body_weight_g)
    ts, ys, ok = solve(jnp.asarray(params.values), events, horizon, rtol=options.rtol, atol=options.atol,
                       max_steps=options.max_steps, n_out=options.n_out)
    ok = bool(ok)
    if throw and not ok:
        raise SimulationError(
            f"ODE solve failed for schedule {schedule.name!r} (step limit {options.max_steps} per segment or a "
            "non-finite state); check the parameters or raise SolverOptions.max_steps"
        )
    return Trajectory(np.asarray(ts), np.asarray(ys), params, schedule, ok)


def final_state_names() -> tuple[str, ...]:
    return build_model().state_names


__all__ = ["SITE_STATES", "SolverOptions", "SimulationError", "Trajectory", "simulate", "solve", "solve_batch", "solve_core",
           "stack_schedules", "enable_x64", "eqx"]


@partial(jax.jit, static_argnames=("rtol", "atol", "max_steps", "n_out"))
def solve_grid(p, events, horizon, *, rtol=1e-6, atol=1e-9, max_steps=4096, n_out=121):
    """Every parameter set (axis 0 of ``p``, N) under every schedule (axis 0 of the events, S):
    returns ts (S, n_out), ys (S, N, n_out, n_states), ok (S, N)."""
    core = partial(solve_core, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out)
    over_params = jax.vmap(core, in_axes=(0, None, None))
    ts, ys, ok = jax.vmap(over_params, in_axes=(None, 0, 0))(p, events, horizon)
    return ts[:, 0], ys, ok
