"""Simulation with diffrax: one compilation for every schedule of up to ``MAX_EVENTS`` events.

The solve is a ``lax.scan`` over segments between events; each event (RT fraction, drug bolus, or a
no-op pad) is a pure map on the state applied at the start of its segment. The core is a pure
function of plain arrays, so it is ``vmap``-ed over parameter sets and schedules.

Float64 is required (tiny viable volumes near cure): importing this module does not switch it on;
``abscopal.enable_x64()`` (called by the CLI) does, and ``simulate`` refuses to run without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .codegen import functions, observable_function
from .equations import SITE_NAMES, SITES, build_model
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

    def kwargs(self) -> dict:
        """The options as the keyword arguments of the jitted solvers."""
        return dict(rtol=self.rtol, atol=self.atol, max_steps=self.max_steps, n_out=self.n_out)


# incremented each time the core is traced: lets tests prove that schedules share one compilation
TRACE_COUNT = {"core": 0}


def enable_x64() -> None:
    """Switch JAX to 64-bit floats (the caller's choice; the CLI and tests do it)."""
    jax.config.update("jax_enable_x64", True)


def _require_x64() -> None:
    if not jax.config.jax_enable_x64:
        raise RuntimeError("abscopal needs 64-bit floats: call abscopal.enable_x64() before simulating")


def _max_norm(x) -> jax.Array:
    return jnp.max(jnp.abs(x))


def _vector_field(t, y, p):
    rhs = functions("jax")[0]
    return rhs(y, p)


ADJOINTS = ("checkpoint", "backsolve")


def _adjoint(adjoint: str, rtol: float, atol: float):
    """diffrax's reverse-mode method for a segment's solve.

    ``"checkpoint"``: differentiate through the solver's own steps (recursive checkpointing; exact
    gradient of the discrete solve). ``"backsolve"``: the continuous adjoint, integrated backwards
    over each segment with the same solver and tolerances: about half the cost on a canonical
    schedule (``benchmarks/results.md``) and within ~1e-5 of the exact gradient there
    (``tests/test_gradient.py``), but integrating fast-decaying states backwards is unstable: at the
    fit's MAP it gave an infinite gradient and took 9x longer. Opt-in only; the fit does not use it.
    """
    if adjoint == "checkpoint":
        return dfx.RecursiveCheckpointAdjoint()
    if adjoint == "backsolve":
        return dfx.BacksolveAdjoint(solver=dfx.Tsit5(), stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol))
    raise ValueError(f"adjoint: must be one of {ADJOINTS}, got {adjoint!r}")


def solve_core(p, events, horizon, *, rtol, atol, max_steps, n_out, adjoint="checkpoint"):
    """Pure core: ``p`` (n_params,), ``events`` dict of padded arrays, ``horizon`` scalar.

    The event days and the ``n_out`` output days are merged into one sorted list of points (events
    before outputs on the same day, so an output on an event day shows the post-event state); one
    ``lax.scan`` integrates from point to point and applies each event as a pure map on the state.

    ``p`` may carry a trailing lane axis (n_params, N): the N mice then share the schedule and are
    solved as one system (one step-size controller, max-norm error over all of them).

    Returns ``(ts, ys, ok)``: output days (n_out,), states (n_out, n_states[, N]), success flag.
    """
    TRACE_COUNT["core"] += 1
    _, initial, rt_event, bolus_matrix = functions("jax")
    y0 = initial(p)
    B = bolus_matrix(p)
    ts = jnp.linspace(0.0, horizon, n_out)
    n_ev = events["time"].shape[0]
    times = jnp.concatenate([events["time"], ts])
    order = jnp.argsort(times, stable=True)  # events come first in `times`, so they sort first on ties
    point = dict(
        t=times[order],
        kind=jnp.concatenate([events["kind"], jnp.zeros(n_out, events["kind"].dtype)])[order],
        value=jnp.concatenate([events["value"], jnp.zeros(n_out)])[order],
        on_irr=jnp.concatenate([events["on_irr"], jnp.zeros(n_out)])[order],
        on_abs=jnp.concatenate([events["on_abs"], jnp.zeros(n_out)])[order],
        agent=jnp.concatenate([events["agent"], jnp.zeros(n_out, events["agent"].dtype)])[order],
    )
    term = dfx.ODETerm(_vector_field)
    solver = dfx.Tsit5()
    # max-norm of the scaled error: every state of every lane (mouse) meets the tolerance
    controller = dfx.PIDController(rtol=rtol, atol=atol, norm=_max_norm)
    adjoint_method = _adjoint(adjoint, rtol, atol)

    def step(carry, pt):
        t_prev, y, ok = carry
        sol = dfx.diffeqsolve(
            term,
            solver,
            t_prev,
            pt["t"],
            None,
            y,
            args=p,
            saveat=dfx.SaveAt(t1=True),
            stepsize_controller=controller,
            max_steps=max_steps,
            throw=False,
            adjoint=adjoint_method,
        )
        y_new = sol.ys[-1]
        seg_ok = (sol.result == dfx.RESULTS.successful) & jnp.all(jnp.isfinite(y_new))
        y_new = jnp.where(seg_ok, y_new, y)  # keep a finite state; the flag records the failure
        y_new = jnp.where(pt["kind"] == EVENT_RT, rt_event(y_new, p, pt["value"], pt["on_irr"], pt["on_abs"]), y_new)
        y_new = jnp.where(pt["kind"] == EVENT_DRUG, y_new + pt["value"] * B[pt["agent"]], y_new)
        return (pt["t"], y_new, ok & seg_ok), y_new

    (_, _, ok), ys = jax.lax.scan(step, (jnp.zeros(()), y0, jnp.bool_(True)), point)
    position = jnp.argsort(order)[n_ev:]  # where each output day landed in the sorted list
    return ts, ys[position], ok


@partial(jax.jit, static_argnames=("rtol", "atol", "max_steps", "n_out", "adjoint"))
def solve(p, events, horizon, *, rtol=1e-6, atol=1e-9, max_steps=4096, n_out=121, adjoint="checkpoint"):
    """Jitted single solve (see ``solve_core``; ``adjoint`` only matters under ``jax.grad``)."""
    return solve_core(p, events, horizon, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out, adjoint=adjoint)


@partial(jax.jit, static_argnames=("rtol", "atol", "max_steps", "n_out", "batch_params", "batch_events"))
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


def simulate(
    schedule: Schedule, params: Params | None = None, options: SolverOptions = SolverOptions(), throw: bool = True
) -> Trajectory:
    """Simulate one schedule. Raises ``SimulationError`` if the solver fails (unless ``throw=False``,
    which returns the trajectory with ``ok=False``)."""
    _require_x64()
    params = params if params is not None else default_params(schedule.tumour_line)
    events, horizon = _events(schedule, params.body_weight_g)
    ts, ys, ok = solve(jnp.asarray(params.values), events, horizon, **options.kwargs())
    ok = bool(ok)
    if throw and not ok:
        raise SimulationError(
            f"ODE solve failed for schedule {schedule.name!r} (step limit {options.max_steps} per segment or a "
            "non-finite state); check the parameters or raise SolverOptions.max_steps"
        )
    return Trajectory(np.asarray(ts), np.asarray(ys), params, schedule, ok)


@partial(jax.jit, static_argnames=("rtol", "atol", "max_steps", "n_out"))
def solve_population(p, events, horizon, *, rtol=1e-6, atol=1e-9, max_steps=16384, n_out=121):
    """N mice (rows of ``p``, (N, n_params)) under ONE schedule, solved as one system: the fast path
    for virtual cohorts. Returns ts (n_out,), ys (N, n_out, n_states), ok (a single flag: a failure
    of any mouse fails the cohort; use ``solve_batch`` for per-mouse flags)."""
    ts, ys, ok = solve_core(p.T, events, horizon, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out)
    return ts, jnp.moveaxis(ys, -1, 0), ok


@partial(jax.jit, static_argnames=("rtol", "atol", "max_steps", "n_out"))
def solve_grid(p, events, horizon, *, rtol=1e-6, atol=1e-9, max_steps=4096, n_out=121):
    """Every parameter set (axis 0 of ``p``, N) under every schedule (axis 0 of the events, S): the
    population is one system per schedule, vmapped over schedules.
    Returns ts (S, n_out), ys (S, N, n_out, n_states), ok (S, N)."""

    def population(events_one, horizon_one):
        ts, ys, ok = solve_core(p.T, events_one, horizon_one, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out)
        return ts, jnp.moveaxis(ys, -1, 0), jnp.broadcast_to(ok, p.shape[:1])

    return jax.vmap(population)(events, horizon)


@partial(jax.jit, static_argnames=("rtol", "atol", "max_steps", "n_out"))
def solve_grid_each(p, events, horizon, *, rtol=1e-6, atol=1e-9, max_steps=512, n_out=121):
    """Like ``solve_grid`` but every mouse has its own step-size control and its own success flag:
    the path for heterogeneous parameter sets (posterior draws), where one stiff draw would slow or
    fail a whole cohort solved as one system. Returns ts (S, n_out), ys (S, N, n_out, n_states),
    ok (S, N)."""

    def per_schedule(events_one, horizon_one):
        one = lambda q: solve_core(q, events_one, horizon_one, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out)
        ts, ys, ok = jax.vmap(one)(p)
        return ts[0], ys, ok

    return jax.vmap(per_schedule)(events, horizon)


@cache
def population_mesh(devices: tuple | None = None) -> Mesh:
    """A one-axis mesh ("mice") over ``devices`` (default: every JAX device: forced CPU host devices,
    GPUs, or the devices of several hosts)."""
    devices = tuple(jax.devices()) if devices is None else tuple(devices)
    if not devices:
        raise ValueError("devices: need at least one JAX device")
    return Mesh(np.array(devices, dtype=object), ("mice",))


@cache
def _sharded_population(mesh: Mesh, rtol: float, atol: float, max_steps: int, n_out: int):
    """``solve_population`` of one chunk per device: rows sharded along the mesh axis, the schedule
    replicated; each device solves its own chunk as one system (no communication between devices).
    Jitted once per mesh and solver options; the chunk size fixes the shapes."""

    def local(p, events, horizon):
        ts, ys, ok = solve_core(p.T, events, horizon, rtol=rtol, atol=atol, max_steps=max_steps, n_out=n_out)
        return ts[None], jnp.moveaxis(ys, -1, 0), ok[None]

    rows, same = PartitionSpec("mice"), PartitionSpec()
    fn = jax.shard_map(local, mesh=mesh, in_specs=(rows, same, same), out_specs=(rows, rows, rows), check_vma=False)
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
    _require_x64()
    if int(chunk) != chunk or chunk < 1:
        raise ValueError(f"chunk: mice per chunk must be a positive integer, got {chunk!r}")
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if not np.all(np.isfinite(values)):
        raise ValueError("values: parameter rows must be finite")
    events, horizon = _events(schedule, body_weight_g)
    n = values.shape[0]
    mesh = population_mesh(None if devices is None else tuple(devices))
    n_dev = mesh.devices.size
    step = int(chunk) * n_dev
    padded = pad_rows(values, step)  # whole chunks of padding (copies of the last row) fill the last step
    fn = _sharded_population(mesh, **options.kwargs())
    rows_sharding = NamedSharding(mesh, PartitionSpec("mice"))
    ev = jax.device_put(events, NamedSharding(mesh, PartitionSpec()))
    # JAX dispatches asynchronously: every step is queued before the first result is read
    pending = [fn(jax.device_put(padded[i : i + step], rows_sharding), ev, horizon) for i in range(0, padded.shape[0], step)]
    ys_all = np.concatenate([np.asarray(y) for _, y, _ in pending])[:n]
    ok_all = np.concatenate([np.repeat(np.asarray(ok), chunk) for _, _, ok in pending])[:n]
    ts = np.asarray(pending[0][0])[0]
    if throw and not ok_all.all():
        raise SimulationError(f"ODE solve failed for {int((~ok_all).sum())} of {n} mice of schedule {schedule.name!r}")
    return ts, ys_all, ok_all
