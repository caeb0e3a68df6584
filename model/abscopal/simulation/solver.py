"""The ODE solve of one schedule: tumour/immune states integrated by diffrax between state jumps,
drug PK in closed form (``pk``).

A schedule's events are of two kinds. **Jumps** change the state at an instant: RT fractions (the
linear-quadratic map of ``equations``) and boluses of cells or antigen (DC vaccine, adoptive T
cells, antigen). **PK doses** (antibodies, cytokines, small molecules) only enter a depot whose
concentration is known in closed form, so they are no event of the ODE at all: the right-hand side
reads each agent's concentration as a function of time. The solve is a ``lax.scan`` over the
segments between jumps (one ``diffeqsolve`` each, with its own step-size control), saving the output
days that fall in the segment (``SaveAt(ts=...)``) inside it; segments of zero length (padding,
two jumps on one day) are skipped by ``lax.cond``. An output on an event's day shows the state
after the event.

``p`` may carry a trailing lane axis (n_params, N): N mice that share the schedule are then solved
as one system (one step-size controller, max-norm error over all of them): the path for cohorts.
Heterogeneous schedules (the fit's arms) are solved one after another (``lax.map``), each with its
own steps: see ``likelihood.solve_arms``.
"""

from __future__ import annotations

from functools import cache

import diffrax as dfx
import jax
import jax.numpy as jnp
import numpy as np

from ..model.codegen import core_functions
from ..model.equations import build_model
from ..model.pk import concentrations, pk_schedule, pk_states, pk_structure
from ..schedules import EVENT_DRUG, EVENT_NONE, EVENT_RT, MAX_PK_AGENTS

# incremented each time a solve is traced: lets tests prove that schedules share one compilation
TRACE_COUNT = {"core": 0}

ADJOINTS = ("checkpoint", "backsolve", "forward")


def _max_norm(x) -> jax.Array:
    return jnp.max(jnp.abs(x))


def _adjoint(adjoint: str, rtol: float, atol: float):
    """diffrax's reverse-mode method for a segment's solve.

    ``"checkpoint"``: differentiate through the solver's own steps (recursive checkpointing; exact
    gradient of the discrete solve). ``"backsolve"``: the continuous adjoint, integrated backwards
    with the same solver and tolerances; integrating fast-decaying states backwards can be unstable
    (at the 2026-11 fit's MAP it gave an infinite gradient). Opt-in only; the fit does not use it.
    ``"forward"``: no reverse mode at all (diffrax's ``ForwardMode``): for ``jax.jvp``, the choice
    when few inputs are differentiated (the schedule optimiser's three variables). Same discrete
    derivative as ``"checkpoint"``, without tracing and compiling a checkpointed backward loop.
    """
    if adjoint == "forward":
        return dfx.ForwardMode()
    if adjoint == "checkpoint":
        return dfx.RecursiveCheckpointAdjoint()
    if adjoint == "backsolve":
        return dfx.BacksolveAdjoint(solver=dfx.Tsit5(), stepsize_controller=dfx.PIDController(rtol=rtol, atol=atol))
    raise ValueError(f"adjoint: must be one of {ADJOINTS}, got {adjoint!r}")


#: how heterogeneous solves (the fit's arms, posterior draws) run: "sequential" (``lax.map``: each arm or mouse its own steps;
#: the fastest on CPUs, where a vmapped solve runs every lane for as many steps as its slowest:
#: 14x slower forward and 20x slower gradient on the review's arms, issue 19) or "vmap" (all
#: solves as lanes of one vectorised loop: the choice for GPUs, whose lanes run in parallel).
#: ``"auto"`` picks "vmap" when JAX's default backend is a GPU, else "sequential".
SOLVE_MODES = ("auto", "sequential", "vmap")


def solve_mode(mode: str = "auto") -> str:
    """The documented rule behind ``SOLVE_MODES``."""
    if mode not in SOLVE_MODES:
        raise ValueError(f"mode: must be one of {SOLVE_MODES}, got {mode!r}")
    if mode == "auto":
        return "vmap" if jax.default_backend() == "gpu" else "sequential"
    return mode


def map_rows(fn, xs, mode: str = "auto"):
    """``fn`` over axis 0 of the pytree ``xs``, by the rule of ``solve_mode``: one after another
    (``lax.map``) or as vmapped lanes."""
    return jax.vmap(fn)(xs) if solve_mode(mode) == "vmap" else jax.lax.map(fn, xs)


@cache
def _state_layout():
    """Permutation that puts [core states, depots, concentrations] into the model's state order."""
    names = build_model().state_names
    pk = pk_structure()
    stacked = list(pk.core_states) + list(pk.depot_states) + list(pk.conc_states)
    return np.array([stacked.index(n) for n in names])


def split_events(events: dict, horizon):
    """Padded schedule events (``Schedule.to_arrays``) -> (jumps, doses), same length each.

    ``jumps``: the RT fractions and cell/antigen boluses first, in time order, then no-ops at the
    horizon. ``doses``: the PK doses first, in time order (``agent``: PK index; ``amount`` 0 for the
    other events), with each dose's ``slot`` among the schedule's distinct agents (``slot_agent``,
    ``slot_used``: ``pk.pk_schedule``; at most ``MAX_PK_AGENTS``, which ``Schedule`` enforces).
    Works on NumPy or JAX arrays (traced or not, vmappable)."""
    pk_index = jnp.asarray(pk_structure().pk_index)
    kind = jnp.asarray(events["kind"])
    agent = jnp.asarray(events["agent"])
    time = jnp.asarray(events["time"])
    j_pk = pk_index[agent]
    is_dose = (kind == EVENT_DRUG) & (j_pk >= 0)
    is_jump = (kind == EVENT_RT) | ((kind == EVENT_DRUG) & ~is_dose)
    order = jnp.argsort(jnp.where(is_jump, time, jnp.inf), stable=True)
    real = is_jump[order]
    jumps = dict(
        time=jnp.where(real, time[order], horizon),
        kind=jnp.where(real, kind[order], EVENT_NONE),
        value=jnp.where(real, jnp.asarray(events["value"])[order], 0.0),
        on_irr=jnp.where(real, jnp.asarray(events["on_irr"])[order], 0.0),
        on_abs=jnp.where(real, jnp.asarray(events["on_abs"])[order], 0.0),
        agent=jnp.where(real, agent[order], 0),
    )
    by_time = jnp.argsort(jnp.where(is_dose, time, jnp.inf), stable=True)  # the doses first, in time order
    agent_d = jnp.maximum(j_pk, 0)[by_time]
    given = is_dose[by_time]
    doses = dict(time=time[by_time], agent=agent_d, amount=jnp.where(given, jnp.asarray(events["value"])[by_time], 0.0))
    # slots: the schedule's distinct PK agents (in PK order), at most MAX_PK_AGENTS
    n_pk = len(pk_structure().agents)
    used = jnp.zeros(n_pk, bool).at[agent_d].max(given)
    slot_agent = jnp.argsort(~used, stable=True)[:MAX_PK_AGENTS]
    slot_of_agent = jnp.zeros(n_pk, jnp.int32).at[slot_agent].set(jnp.arange(MAX_PK_AGENTS, dtype=jnp.int32))
    doses.update(slot=slot_of_agent[agent_d], slot_agent=slot_agent, slot_used=used[slot_agent])
    return jumps, doses


#: the viable volumes are integrated as their logarithms (``LOG_STATES``): near extinction a viable
#: volume falls by orders of magnitude (a few cells, 1e-6 mm^3) and regrows, and an absolute
#: tolerance on V cannot control its relative error there, nor the error of its sensitivities
#: (issue 32: the reverse-mode derivative of a near-cure arm's median survival changed sign between
#: rtol 1e-6 and 1e-8, benchmarks/results_gradient_near_cure.md). In log form the kill and growth
#: terms are per-cell rates (bounded as V -> 0) and the step control bounds the relative error of V.
LOG_STATES = ("V_irr", "V_abs")
#: a viable volume of zero (an absent tumour: ``v0_abs = 0`` for one-tumour mice) is held at this
#: volume (mm^3; 1e-24 cells) in log form: no growth (below one cell), no CTL influx worth a cell
LOG_STATE_FLOOR = 1e-30
_LOG_FLOOR = float(np.log(LOG_STATE_FLOOR))


@cache
def _log_index():
    return np.array([pk_structure().core_states.index(n) for n in LOG_STATES])


@cache
def _log_mask():
    """(n_core,) True for the states integrated as logs: elementwise selects, no scatter (a scatter
    in the right-hand side keeps XLA from fusing it)."""
    m = np.zeros(len(pk_structure().core_states), bool)
    m[_log_index()] = True
    return m


def _mask_like(z):
    return _log_mask().reshape((-1,) + (1,) * (z.ndim - 1))


def to_log(y):
    """Core states (n_core[, N]) -> the integrated form: viable volumes as their logarithms."""
    return jnp.where(_mask_like(y), jnp.log(jnp.maximum(y, LOG_STATE_FLOOR)), y)


def from_log(z):
    """The integrated form -> core states (inverse of ``to_log`` above the floor; a volume at or
    below the floor, an absent tumour or one far below a cell, reads as 0)."""
    m = _mask_like(z)
    return jnp.where(m, jnp.where(z <= _LOG_FLOOR, 0.0, jnp.exp(jnp.where(m, z, 0.0))), z)


@jax.jit
def _rhs(t, y, p, coef):
    # jitted on its own: the right-hand side is traced once per shape and the trace reused by every
    # stage of a Tsit5 step and by its derivatives (the quick fit's gradient: trace 7.8 -> 5.8 s,
    # compile 14.9 -> 12.7 s; same run time; benchmarks/results_tests.md)
    return core_functions("jax")[0](y, p, concentrations(t, coef))


def _vector_field(t, z, args):
    # d log V / dt = (dV/dt) / V: every term of dV/dt is proportional to V (growth, CTL and in-situ
    # killing), so the quotient is a bounded per-cell rate, exact to rounding at any volume
    p, coef = args
    m = _mask_like(z)
    v = jnp.exp(jnp.where(m, z, 0.0))
    f = _rhs(t, jnp.where(m, v, z), p, coef)
    return jnp.where(m, f / v, f)


def _tolerances(z, rtol, atol):
    """Per-state absolute tolerance: ``atol`` on the linear states, ``rtol`` on the log volumes
    (an absolute error e of log V is a relative error e of V; ``atol`` there would be far tighter
    than any relative accuracy asked for wherever V crosses 1 mm^3)."""
    return jnp.where(_mask_like(z), rtol, atol).astype(z.dtype)


def segment_table(jumps, horizon):
    """The segments between state jumps (``split_events``' jumps): from day 0 to the first jump, ...,
    from the last to the horizon; each segment carries the jump at its end (the last none, and
    ``last`` set)."""
    n_jumps = jumps["time"].shape[0]
    starts = jnp.concatenate([jnp.zeros((1,)), jumps["time"]])
    ends = jnp.concatenate([jumps["time"], jnp.reshape(horizon, (1,)).astype(starts.dtype)])
    pad = lambda x, v: jnp.concatenate([x, jnp.full((1,), v, x.dtype)])
    return dict(
        t0=starts,
        t1=ends,
        last=jnp.arange(n_jumps + 1) == n_jumps,
        kind=pad(jumps["kind"], EVENT_NONE),
        value=pad(jumps["value"], 0.0),
        on_irr=pad(jumps["on_irr"], 0.0),
        on_abs=pad(jumps["on_abs"], 0.0),
        agent=pad(jumps["agent"], 0),
    )


def apply_jump(y, s, p, B):
    """The state (log volumes) after segment ``s``'s jump: an RT fraction or a cell/antigen bolus
    (rows of the bolus matrix ``B``) acts on the states themselves (the LQ map multiplies V), then
    back to log form; no jump leaves ``y`` as it is."""
    rt_event = core_functions("jax")[2]
    x = from_log(y)
    x = jnp.where(s["kind"] == EVENT_RT, rt_event(x, p, s["value"], s["on_irr"], s["on_abs"]), x)
    x = jnp.where(s["kind"] == EVENT_DRUG, x + s["value"] * B[s["agent"]], x)
    return jnp.where(s["kind"] == EVENT_NONE, y, to_log(x))


def solve_segments(p, jumps, doses, horizon, days, *, rtol, atol, max_steps, adjoint="checkpoint"):
    """States at ``days`` (n_out,) of one schedule given as (jumps, doses) (``split_events``).

    Returns ``(ys, ok)``: all model states (n_out, n_states[, N]) in the model's order (the PK
    states from the closed form) and the success flag (a failed segment keeps a finite state and
    clears the flag; it never returns a silent NaN as success)."""
    TRACE_COUNT["core"] += 1
    _, initial, _, bolus_matrix, pk_rates = core_functions("jax")
    coef = pk_schedule(pk_rates(p), doses)
    y0 = to_log(initial(p))
    B = bolus_matrix(p)
    seg = segment_table(jumps, horizon)
    term = dfx.ODETerm(_vector_field)
    # a dose is a kink of its concentration (continuous, with a jump in slope): steps end on it
    # (``step_ts``) instead of straddling it, which the error estimate would punish with rejected
    # steps and which would make the solution only piecewise smooth in the parameters
    dose_ts = jnp.where(doses["amount"] != 0, doses["time"], horizon + 1.0)
    controller = dfx.ClipStepSizeController(
        dfx.PIDController(rtol=rtol, atol=_tolerances(y0, rtol, atol), norm=_max_norm), step_ts=dose_ts
    )
    adjoint_method = _adjoint(adjoint, rtol, atol)

    def integrate(y, s):
        sol = dfx.diffeqsolve(
            term,
            dfx.Tsit5(),
            s["t0"],
            s["t1"],
            None,
            y,
            args=(p, coef),
            saveat=dfx.SaveAt(ts=jnp.clip(days, s["t0"], s["t1"])),
            stepsize_controller=controller,
            max_steps=max_steps,
            throw=False,
            adjoint=adjoint_method,
        )
        good = (sol.result == dfx.RESULTS.successful) & jnp.all(jnp.isfinite(sol.ys))
        return jnp.where(good, sol.ys, y[None]), good

    def hold(y, s):
        return jnp.broadcast_to(y[None], (days.shape[0],) + y.shape), jnp.bool_(True)

    def step(carry, s):
        y, ok, out = carry
        ys, good = jax.lax.cond(s["t1"] > s["t0"], integrate, hold, y, s)
        inside = (days >= s["t0"]) & ((days < s["t1"]) | s["last"])
        out = jnp.where(inside.reshape((-1,) + (1,) * y.ndim), ys, out)
        y = apply_jump(ys[-1], s, p, B)
        return (y, ok & good, out), None

    out0 = jnp.zeros((days.shape[0],) + y0.shape)
    (_, ok, core), _ = jax.lax.scan(step, (y0, jnp.bool_(True), out0), seg)
    depot, conc = pk_states(days, coef)
    core = jax.vmap(from_log)(core)
    full = jnp.concatenate([core, depot, conc], axis=1)[:, _state_layout()]
    return full, ok


def solve_core(p, events, horizon, *, rtol, atol, max_steps, n_out, adjoint="checkpoint"):
    """Pure core: ``p`` (n_params[, N]), ``events`` dict of padded arrays, ``horizon`` scalar.
    Returns ``(ts, ys, ok)``: output days (n_out,), states (n_out, n_states[, N]), success flag."""
    ts = jnp.linspace(0.0, horizon, n_out)
    jumps, doses = split_events(events, horizon)
    ys, ok = solve_segments(p, jumps, doses, horizon, ts, rtol=rtol, atol=atol, max_steps=max_steps, adjoint=adjoint)
    return ts, ys, ok
