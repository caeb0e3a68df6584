"""Simulation with diffrax: one compilation for every schedule of up to ``MAX_EVENTS`` events.

The solve itself is ``solver.solve_core`` (segments between state jumps, drug PK in closed form);
this module wraps it for one schedule (``simulate``), batches of parameter sets and schedules, and
virtual cohorts solved as lanes of one system (sharded over devices).

Float64 is required (tiny viable volumes near cure): importing this module does not switch it on;
``abscopal.enable_x64()`` (called by the CLI) does, and ``simulate`` refuses to run without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..model.codegen import observable_function
from ..model.equations import SITE_NAMES, SITES, build_model
from ..model.parameters import CELL_VOLUME_MM3, Params, default_params
from ..schedules import Schedule
from .solver import ADJOINTS, TRACE_COUNT, map_rows, solve_core  # noqa: F401  (re-exported)


class SimulationError(RuntimeError):
    """The ODE solver failed (step limit, non-finite state); never returned as silent NaN."""


@dataclass(frozen=True)
class SolverOptions:
    rtol: float = 1e-6
    atol: float = 1e-9
    max_steps: int = 4096
    n_out: int = 121

    def kwargs(self) -> dict:
        """The options as the keyword arguments of the jitted solvers."""
        return dict(rtol=self.rtol, atol=self.atol, max_steps=self.max_steps, n_out=self.n_out)


def enable_x64() -> None:
    """Switch JAX to 64-bit floats (the caller's choice; the CLI and tests do it)."""
    jax.config.update("jax_enable_x64", True)


def require_x64() -> None:
    """Refuse to run with 32-bit floats (the model's numerics need 64-bit: ``enable_x64``)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError("abscopal needs 64-bit floats: call abscopal.enable_x64() before simulating")


@partial(jax.jit, static_argnames=("max_steps", "n_out", "adjoint"))
def solve(p, events, horizon, *, rtol=1e-6, atol=1e-9, max_steps=4096, n_out=121, adjoint="checkpoint"):
    """Jitted single solve (see ``solve_core``; ``adjoint`` only matters under ``jax.grad``)."""
    return solve_core(p, events, horizon, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out, adjoint=adjoint)


@partial(jax.jit, static_argnames=("max_steps", "n_out", "batch_params", "batch_events"))
def solve_batch(p, events, horizon, *, batch_params=True, batch_events=False, rtol=1e-6, atol=1e-9, max_steps=4096, n_out=121):
    """``vmap`` of ``solve_core`` over parameter sets (axis 0 of ``p``) and/or schedules (axis 0 of
    every event array and of ``horizon``)."""
    core = partial(solve_core, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out)
    axes = (0 if batch_params else None, 0 if batch_events else None, 0 if batch_events else None)
    return jax.vmap(core, in_axes=axes)(p, events, horizon)


def pad_rows(values: np.ndarray, chunk: int) -> np.ndarray:
    """Repeat the last row so the row count is a multiple of ``chunk`` (one compiled chunk size)."""
    pad = (-values.shape[0]) % chunk
    return np.concatenate([values, np.repeat(values[-1:], pad, axis=0)]) if pad else values


def stack_schedules(schedules, body_weight_g: float = 20.0) -> tuple[dict, np.ndarray]:
    """Padded event arrays of several schedules stacked along a new axis 0, and their horizons."""
    arrays = [s.to_arrays(body_weight_g) for s in schedules]
    events = {k: np.stack([a[k] for a in arrays]) for k in arrays[0] if k != "horizon"}
    return events, np.array([a["horizon"] for a in arrays])


def _schedule_events(schedule: Schedule, body_weight_g: float):
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


def simulate(
    schedule: Schedule, params: Params | None = None, options: SolverOptions = SolverOptions(), throw: bool = True
) -> Trajectory:
    """Simulate one schedule. Raises ``SimulationError`` if the solver fails (unless ``throw=False``,
    which returns the trajectory with ``ok=False``)."""
    require_x64()
    params = params if params is not None else default_params(schedule.tumour_line)
    events, horizon = _schedule_events(schedule, params.body_weight_g)
    ts, ys, ok = solve(jnp.asarray(params.values), events, horizon, **options.kwargs())
    ok = bool(ok)
    if throw and not ok:
        raise SimulationError(
            f"ODE solve failed for schedule {schedule.name!r} (step limit {options.max_steps} per segment or a "
            "non-finite state); check the parameters or raise SolverOptions.max_steps"
        )
    return Trajectory(np.asarray(ts), np.asarray(ys), params, schedule, ok)


@partial(jax.jit, static_argnames=("max_steps", "n_out"))
def solve_population(p, events, horizon, *, rtol=1e-6, atol=1e-9, max_steps=16384, n_out=121):
    """N mice (rows of ``p``, (N, n_params)) under ONE schedule, solved as one system: the fast path
    for virtual cohorts. Returns ts (n_out,), ys (N, n_out, n_states), ok (a single flag: a failure
    of any mouse fails the cohort; use ``solve_batch`` for per-mouse flags)."""
    ts, ys, ok = solve_core(p.T, events, horizon, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out)
    return ts, jnp.moveaxis(ys, -1, 0), ok


@partial(jax.jit, static_argnames=("max_steps", "n_out", "adjoint"))
def solve_grid(p, events, horizon, *, rtol=1e-6, atol=1e-9, max_steps=4096, n_out=121, adjoint="checkpoint"):
    """Every parameter set (axis 0 of ``p``, N) under every schedule (axis 0 of the events, S): the
    population is one system per schedule, vmapped over schedules.
    Returns ts (S, n_out), ys (S, N, n_out, n_states), ok (S, N). ``adjoint``: see ``solver._adjoint``
    ("forward" for ``jax.jvp``)."""

    def population(events_one, horizon_one):
        ts, ys, ok = solve_core(
            p.T, events_one, horizon_one, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out, adjoint=adjoint
        )
        return ts, jnp.moveaxis(ys, -1, 0), jnp.broadcast_to(ok, p.shape[:1])

    return jax.vmap(population)(events, horizon)


@partial(jax.jit, static_argnames=("max_steps", "n_out"))
def solve_grid_each(p, events, horizon, *, rtol=1e-6, atol=1e-9, max_steps=512, n_out=121):
    """Like ``solve_grid`` but every mouse has its own step-size control and its own success flag:
    the path for heterogeneous parameter sets (posterior draws), where one stiff draw would slow or
    fail a whole cohort solved as one system. The mice run one after another on CPUs and as
    vmapped lanes on GPUs (``solver.map_rows``). Returns ts (S, n_out), ys (S, N, n_out, n_states),
    ok (S, N)."""

    def per_schedule(x):
        events_one, horizon_one = x
        one = lambda q: solve_core(q, events_one, horizon_one, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out)
        ts, ys, ok = map_rows(one, p)
        return ts[0], ys, ok

    return map_rows(per_schedule, (events, horizon))


@cache
def population_mesh(devices: tuple | None = None) -> Mesh:
    """A one-axis mesh ("mice") over ``devices`` (default: every JAX device: forced CPU host devices,
    GPUs, or the devices of several hosts)."""
    devices = tuple(jax.devices()) if devices is None else tuple(devices)
    if not devices:
        raise ValueError("devices: need at least one JAX device")
    return Mesh(np.array(devices, dtype=object), ("mice",))


@cache
def _sharded_population(mesh: Mesh, max_steps: int, n_out: int):
    """``solve_population`` of one chunk per device: rows sharded along the mesh axis, the schedule
    and the tolerances (``tol``: rtol, atol) replicated; each device solves its own chunk as one
    system (no communication between devices). Jitted once per mesh, step bound and output grid;
    the chunk size fixes the shapes."""

    def local(p, events, horizon, tol):
        ts, ys, ok = solve_core(p.T, events, horizon, rtol=tol[0], atol=tol[1], max_steps=max_steps, n_out=n_out)
        return ts[None], jnp.moveaxis(ys, -1, 0), ok[None]

    rows, same = PartitionSpec("mice"), PartitionSpec()
    fn = jax.shard_map(local, mesh=mesh, in_specs=(rows, same, same, same), out_specs=(rows, rows, rows), check_vma=False)
    return jax.jit(fn)


def simulate_population(
    schedule: Schedule,
    values: np.ndarray,
    options: SolverOptions = SolverOptions(),
    chunk: int = 64,
    throw: bool = True,
    body_weight_g: float = 20.0,
    devices=None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A virtual cohort (rows of parameter ``values``) under one schedule, in chunks of ``chunk`` mice
    (one compilation; a chunk is solved as one system). Returns days, states (N, n_out, n_states),
    and per-chunk success broadcast to each mouse.

    The chunks are sharded over ``devices`` (default: all JAX devices) with a ``jax.sharding`` mesh,
    one chunk per device per step; the chunk boundaries depend only on ``chunk``, so the result is
    the same on one device or many."""
    require_x64()
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk: mice per chunk must be a positive integer, got {chunk!r}")
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if not np.all(np.isfinite(values)):
        raise ValueError("values: parameter rows must be finite")
    events, horizon = _schedule_events(schedule, body_weight_g)
    n = values.shape[0]
    mesh = population_mesh(None if devices is None else tuple(devices))
    n_dev = mesh.devices.size
    step = int(chunk) * n_dev
    padded = pad_rows(values, step)  # whole chunks of padding (copies of the last row) fill the last step
    fn = _sharded_population(mesh, options.max_steps, options.n_out)
    tol = jax.device_put(jnp.array([options.rtol, options.atol]), NamedSharding(mesh, PartitionSpec()))
    rows_sharding = NamedSharding(mesh, PartitionSpec("mice"))
    ev = jax.device_put(events, NamedSharding(mesh, PartitionSpec()))
    # JAX dispatches asynchronously: every step is queued before the first result is read
    pending = [fn(jax.device_put(padded[i : i + step], rows_sharding), ev, horizon, tol) for i in range(0, padded.shape[0], step)]
    ys_all = np.concatenate([np.asarray(y) for _, y, _ in pending])[:n]
    ok_all = np.concatenate([np.repeat(np.asarray(ok), chunk) for _, _, ok in pending])[:n]
    ts = np.asarray(pending[0][0])[0]
    if throw and not ok_all.all():
        raise SimulationError(f"ODE solve failed for {int((~ok_all).sum())} of {n} mice of schedule {schedule.name!r}")
    return ts, ys_all, ok_all
