"""Choose a schedule by gradient through the solver: drug start, dose per fraction, number of
fractions (and optionally the drug's dosing interval) under a cap on total BED or total dose.

The number of fractions is discrete: for each allowed number the continuous variables are optimised
separately (multi-start), and the best is taken. The continuous variables live in a box: each is
mapped to [0, 1] and projected back after every Adam step (optax), which makes the dose cap exact
(for a fixed number of fractions the cap is an upper bound on the dose per fraction).

Schedules are built as padded event arrays inside ``jit`` (fixed slots for fractions and doses,
unused slots are no-ops at the horizon), so every candidate of every problem reuses one compiled
gradient per draw count (and per choice of optimising the dosing interval). The objective is
averaged over parameter draws (posterior draws with inter-animal variability when a fit is given),
or a risk-averse upper quantile of the volume. The objectives follow the end-point definition of
``simulation.outcomes``, smoothly: the cure surrogate is a logistic in the log of the smallest
viable volume times a logistic that the tumour burden stays below the end point (a mouse past it
is never cured), and volumes pass through a smooth floor at ``DETECTION_FLOOR_MM3`` (differences far
below one cell decide nothing). The reported comparison uses the exact end points of ``compare``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from ..model.agents import agent_index, get_agent
from ..model.equations import build_model
from ..model.parameters import Params, default_params, tumour_lines
from ..schedules import (
    EVENT_DRUG,
    EVENT_NONE,
    EVENT_RT,
    MAX_DOSE_PER_FRACTION_GY,
    MAX_EVENTS,
    MAX_HORIZON_DAYS,
    Schedule,
    concurrent,
    drug_course,
    fractionated,
    sequential,
)
from ..simulation.outcomes import (
    CURE_VOLUME_MM3,
    DEFAULT_ENDPOINT_MM3,
    DETECTION_FLOOR_MM3,
    dose_at_equal_bed,
    soft_cummax,
    soft_min,
)
from ..simulation.simulate import SolverOptions, pad_rows, require_x64, solve_grid
from . import display
from .boxopt import minimize_box
from .compare import DEFAULT_HORIZON_DAYS, Comparison, compare, draw_parameters

#: what can be optimised: name -> (description, unit, site, kind)
OBJECTIVES = {
    "volume_abscopal": ("mean abscopal tumour volume at the horizon", "mm^3", "abs", "volume"),
    "volume_irradiated": ("mean irradiated tumour volume at the horizon", "mm^3", "irr", "volume"),
    "cure_abscopal": ("probability that the abscopal tumour is cured", "probability", "abs", "cure"),
    "cure_irradiated": ("probability that the irradiated tumour is cured", "probability", "irr", "cure"),
}
CONSTRAINTS = ("bed", "dose")
RT_SLOTS, DRUG_SLOTS = 20, 16  # fixed event slots: at most 20 fractions and 16 drug doses
BATCH = 4  # candidate schedules per compiled call
N_OUT = 34  # output days for the objective (the cure surrogate takes the smallest viable volume over them)
CURE_TAU = 0.5  # width (in log volume) of the smooth cure surrogate
ENDPOINT_TAU = 0.05  # width (in log volume) of the smooth "burden stays below the end point" factor
FLOOR_TAU = 0.1  # width (relative to the floor) of the smooth detection floor of the volume objectives


#: the states summed into the tumour burden (both sites' viable and doomed volumes; outcomes.burden)
_BURDEN_STATES = tuple(build_model().state_names.index(n) for n in ("V_irr", "D_irr", "V_abs", "D_abs"))


class OptimizeError(ValueError):
    """An optimisation problem that cannot be posed; the message names the field and what is allowed."""


@dataclass(frozen=True)
class ScheduleProblem:
    """What to optimise and within which limits (see ``optimize`` for the meaning of each field)."""

    objective: str = "volume_abscopal"
    constraint: str = "bed"
    cap: float = 60.0
    ab_ratio: float = 10.0
    fractions: tuple[int, ...] = (1, 2, 3, 5)
    agent: str = "anti-PD-1"
    dose: float = 10.0
    unit: str = "mg/kg"
    n_doses: int = 3
    every: float = 3.0
    optimise_every: bool = False
    every_bounds: tuple[float, float] = (1.0, 7.0)
    gap_bounds: tuple[float, float] = (-7.0, 21.0)
    min_dose_gy: float = 1.0
    rt_start: float = 7.0
    interval: float = 1.0
    horizon_days: float = DEFAULT_HORIZON_DAYS
    tumour_line: str = "CT26"
    quantile: float | None = None
    # filled by check(): n_fractions -> (lowest, highest dose per fraction); the boxes of gap and every
    feasible: dict = field(default_factory=dict, compare=False)
    gap_range: tuple[float, float] = (0.0, 0.0)
    every_range: tuple[float, float] = (0.0, 0.0)

    def check(self) -> ScheduleProblem:
        """Validate every field and return the problem with the feasible dose range per number of fractions."""
        if self.objective not in OBJECTIVES:
            raise OptimizeError(f"objective: unknown end point {self.objective!r}; allowed {list(OBJECTIVES)}")
        if self.constraint not in CONSTRAINTS:
            raise OptimizeError(
                f"constraint: {self.constraint!r} is not one of {list(CONSTRAINTS)} (total BED or total dose, Gy)"
            )
        for name in ("cap", "ab_ratio", "min_dose_gy", "dose", "every", "interval"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise OptimizeError(f"{name}: must be a positive finite number, got {v!r}")
        if self.tumour_line not in tumour_lines():
            raise OptimizeError(f"tumour_line: unknown line {self.tumour_line!r}; allowed {list(tumour_lines())}")
        if not 0 < self.horizon_days <= MAX_HORIZON_DAYS:
            raise OptimizeError(f"horizon_days: {self.horizon_days} is outside (0, {MAX_HORIZON_DAYS:g}]")
        if not 0 <= self.rt_start < self.horizon_days:
            raise OptimizeError(f"rt_start: day {self.rt_start} is outside [0, horizon_days = {self.horizon_days:g})")
        if self.min_dose_gy > MAX_DOSE_PER_FRACTION_GY:
            raise OptimizeError(
                f"min_dose_gy: {self.min_dose_gy} Gy exceeds the {MAX_DOSE_PER_FRACTION_GY:g} Gy per fraction allowed"
            )
        if self.quantile is not None:
            if OBJECTIVES[self.objective][3] != "volume":
                raise OptimizeError("quantile: a risk-averse quantile applies to the volume objectives only")
            if not 0.5 <= self.quantile < 1:
                raise OptimizeError(
                    f"quantile: must be in [0.5, 1) (an upper quantile of the volume over draws), got {self.quantile}"
                )
        try:
            agent = get_agent(self.agent)
        except ValueError as e:
            raise OptimizeError(f"agent: {e}") from None
        if self.unit not in agent.units:
            raise OptimizeError(f"unit: {self.unit!r} does not fit agent {self.agent!r}; allowed {list(agent.units)}")
        if int(self.n_doses) != self.n_doses or not 1 <= self.n_doses <= DRUG_SLOTS:
            raise OptimizeError(f"n_doses: must be an integer in [1, {DRUG_SLOTS}], got {self.n_doses!r}")
        ns = list(self.fractions)
        if not ns or any(int(n) != n or not 1 <= n <= RT_SLOTS for n in ns) or len(set(ns)) != len(ns):
            raise OptimizeError(f"fractions: must be distinct integers in [1, {RT_SLOTS}], got {ns}")
        lo_e, hi_e = self.every_bounds if self.optimise_every else (self.every, self.every)
        if not 0 < lo_e <= hi_e:
            raise OptimizeError(f"every_bounds: need 0 < low <= high days, got {self.every_bounds}")
        g_lo = max(self.gap_bounds[0], -self.rt_start)
        g_hi = min(self.gap_bounds[1], self.horizon_days - 0.5 - self.rt_start - (self.n_doses - 1) * hi_e)
        if not g_lo <= g_hi:
            raise OptimizeError(
                f"gap_bounds: no drug start keeps all {self.n_doses} doses within [0, {self.horizon_days:g}) days "
                f"(gap from {g_lo:g} to {g_hi:g}); widen gap_bounds, lengthen horizon_days or give fewer doses"
            )
        feasible, smallest = {}, None
        for n in sorted(int(n) for n in ns):
            if self.rt_start + (n - 1) * self.interval >= self.horizon_days:
                raise OptimizeError(
                    f"fractions: {n} fractions from day {self.rt_start:g} run past the horizon ({self.horizon_days:g} d)"
                )
            d_cap = dose_at_equal_bed(n, self.cap, self.ab_ratio) if self.constraint == "bed" else self.cap / n
            one = (
                n * self.min_dose_gy * (1 + self.min_dose_gy / self.ab_ratio)
                if self.constraint == "bed"
                else n * self.min_dose_gy
            )
            smallest = one if smallest is None else min(smallest, one)
            if d_cap >= self.min_dose_gy:
                feasible[n] = (self.min_dose_gy, min(d_cap, MAX_DOSE_PER_FRACTION_GY))
        if not feasible:
            what = f"total BED (alpha/beta {self.ab_ratio:g} Gy)" if self.constraint == "bed" else "total dose"
            raise OptimizeError(
                f"cap: a {what} cap of {self.cap:g} Gy is impossible: the smallest course allowed "
                f"({min(ns)} fraction(s) of min_dose_gy = {self.min_dose_gy:g} Gy) already needs {smallest:.3g} Gy; "
                "raise the cap or lower min_dose_gy"
            )
        return replace(self, feasible=feasible, gap_range=(g_lo, g_hi), every_range=(lo_e, hi_e))

    def bounds(self, n: int) -> np.ndarray:
        """(3, 2) box of (gap, dose per fraction, every) for ``n`` fractions."""
        return np.array([self.gap_range, self.feasible[n], self.every_range], dtype=np.float64)

    def to_natural(self, n: int, z: np.ndarray) -> np.ndarray:
        b = self.bounds(n)
        return b[:, 0] + np.asarray(z) * (b[:, 1] - b[:, 0])

    def schedule(self, n: int, x: np.ndarray, name: str = "optimised") -> Schedule:
        """The schedule of ``n`` fractions and natural variables ``x`` = (gap, dose per fraction, every)."""
        gap, d, every = (float(v) for v in x)
        rt = fractionated(n, math.floor(d * 1e4) / 1e4, self.rt_start, self.interval)  # rounded down: the cap holds
        drugs = drug_course(self.agent, self.dose, self.unit, round(self.rt_start + gap, 4), self.n_doses, round(every, 4))
        return Schedule(rt, drugs, self.horizon_days, self.tumour_line, name)

    def bed(self, n: int, d: float) -> float:
        return n * d * (1 + d / self.ab_ratio)


# ----------------------------------------------------------------------------- the traced objective
def _candidate_events(x, n_frac, c):
    """Padded event arrays of one candidate: x = (gap, dose per fraction, every), inside jit."""
    gap, d, every = x[0], x[1], x[2]
    i = jnp.arange(RT_SLOTS)
    rt_on = i < n_frac
    j = jnp.arange(DRUG_SLOTS)
    dr_on = j < c["n_doses"]
    n_pad = MAX_EVENTS - RT_SLOTS - DRUG_SLOTS
    h = c["horizon"]
    zeros = jnp.zeros(n_pad)
    return {
        "time": jnp.concatenate(
            [
                jnp.where(rt_on, c["rt_start"] + i * c["interval"], h),
                jnp.where(dr_on, c["rt_start"] + gap + j * every, h),
                zeros + h,
            ]
        ),
        "kind": jnp.concatenate(
            [jnp.where(rt_on, EVENT_RT, EVENT_NONE), jnp.where(dr_on, EVENT_DRUG, EVENT_NONE), zeros.astype(int)]
        ).astype(jnp.int32),
        "value": jnp.concatenate([jnp.where(rt_on, d, 0.0), jnp.where(dr_on, c["amount"], 0.0), zeros]),
        "on_irr": jnp.concatenate([rt_on.astype(float), jnp.zeros(DRUG_SLOTS), zeros]),
        "on_abs": jnp.zeros(MAX_EVENTS),
        "agent": jnp.concatenate(
            [jnp.zeros(RT_SLOTS, jnp.int32), jnp.full(DRUG_SLOTS, c["agent"], jnp.int32), jnp.zeros(n_pad, jnp.int32)]
        ),
    }


def cure_loss(viable, burden=None, threshold: float = DEFAULT_ENDPOINT_MM3):
    """Minus the log of the smooth cure probability over draws, from viable volumes (B, N, n_out) in
    mm3: log-mean-exp over the N draws of ``log sigmoid((log CURE_VOLUME_MM3 - min_t log v) / CURE_TAU)``
    (gradients stay informative when every draw is far from cure). The minimum over the output grid
    is the smooth ``outcomes.soft_min`` (at most ``PEAK_TAU * log(n_out)`` below the hard one): a
    hard min has a kink where two grid points tie, on which gradient steps stall.

    ``burden`` (B, N, n_out): the total tumour burden; a draw then also needs it to stay below the
    end point ``threshold`` (the end-point definition: a mouse past it is never cured), the smooth
    factor ``sigmoid((log threshold - soft max_t log burden) / ENDPOINT_TAU)``."""
    log_v = jnp.log(jnp.maximum(viable, 1e-300))
    x = (math.log(CURE_VOLUME_MM3) - soft_min(log_v, jnp.ones(log_v.shape[-1], bool))) / CURE_TAU
    log_p = jax.nn.log_sigmoid(x)
    if burden is not None:
        peak = soft_cummax(jnp.log(jnp.maximum(burden, 1e-300)))[..., -1]
        log_p = log_p + jax.nn.log_sigmoid((math.log(threshold) - peak) / ENDPOINT_TAU)
    return -(jax.scipy.special.logsumexp(log_p, axis=1) - jnp.log(x.shape[1]))


def smooth_floor(v, floor: float = DETECTION_FLOOR_MM3, tau: float = FLOOR_TAU):
    """``max(v, floor)``, smoothly: ``floor + floor tau softplus((v - floor) / (floor tau))``. Volumes
    far below the floor all map to the floor within rounding (1e-15 and 1e-16 mm3 tie), volumes
    far above it to themselves."""
    return floor + floor * tau * jax.nn.softplus((v - floor) / (floor * tau))


@partial(jax.jit, static_argnames=("max_steps", "n_vars"))
def _value_and_grad(z, lo, hi, n_frac, draws, c, obj, *, rtol, atol, max_steps, n_vars=3):
    """Loss per candidate (B,) and its gradient with respect to the unit-box variables z (B, 3).

    ``obj`` holds traced scalars (so every objective shares one compilation): the state indices
    ``i_v``, ``i_d`` of the site's viable and doomed volume, ``volume`` (1: volume objective, 0:
    cure) and ``q`` (upper quantile of the volume over draws; <= 0 for the mean). Forward mode: a row's
    loss depends on its own z only, so vmapped JVPs, one unit tangent for each of the first ``n_vars``
    variables (2 when the dosing interval is fixed: its box has width zero and its derivative is 0),
    give every row's gradient, cheaper to trace, compile and run than reverse mode here
    (benchmarks/results_tests.md)."""

    def losses(z):
        x = lo + z * (hi - lo)
        events = jax.vmap(_candidate_events, in_axes=(0, 0, None))(x, n_frac, c)
        horizon = jnp.full(z.shape[0], c["horizon"])
        _, ys, _ = solve_grid(draws, events, horizon, rtol=rtol, atol=atol, max_steps=max_steps, n_out=N_OUT, adjoint="forward")
        viable = jnp.take(ys, obj["i_v"], axis=-1)  # (B, N, n_out)
        v = viable[..., -1] + jnp.take(ys[..., -1, :], obj["i_d"], axis=-1)  # (B, N) volume at the horizon
        v = smooth_floor(v)  # sub-floor differences decide nothing
        q = obj["q"]
        volume_loss = jnp.log(jnp.where(q > 0, jnp.quantile(v, jnp.clip(q, 0.0, 1.0), axis=1), jnp.mean(v, axis=1)))
        burden = jnp.sum(jnp.take(ys, jnp.asarray(_BURDEN_STATES), axis=-1), axis=-1)  # (B, N, n_out)
        return jnp.where(obj["volume"] > 0, volume_loss, cure_loss(viable, burden))

    tangents = jnp.broadcast_to(jnp.eye(z.shape[1], dtype=z.dtype)[:n_vars, None, :], (n_vars,) + z.shape)
    loss, slopes = jax.vmap(lambda t: jax.jvp(losses, (z,), (t,)), out_axes=(None, 0))(tangents)
    return loss, jnp.zeros_like(z).at[:, :n_vars].set(slopes.T)


class ModelObjective:
    """The problem's loss for candidates (n_fractions, z), evaluated in compiled batches of ``BATCH``."""

    def __init__(
        self, problem: ScheduleProblem, draws: np.ndarray, body_weight_g: float = 20.0, options: SolverOptions = SolverOptions()
    ):
        require_x64()
        self.problem = problem
        self.draws = jnp.asarray(draws)
        _, _, site, kind = OBJECTIVES[problem.objective]
        names = build_model().state_names
        self.obj = dict(
            i_v=jnp.int32(names.index(f"V_{site}")),
            i_d=jnp.int32(names.index(f"D_{site}")),
            volume=jnp.int32(kind == "volume"),
            q=jnp.float64(problem.quantile if problem.quantile is not None else -1.0),
        )
        self.static = dict(
            rtol=options.rtol, atol=options.atol, max_steps=options.max_steps, n_vars=3 if problem.optimise_every else 2
        )
        self.consts = dict(
            rt_start=jnp.float64(problem.rt_start),
            interval=jnp.float64(problem.interval),
            horizon=jnp.float64(problem.horizon_days),
            amount=jnp.float64(get_agent(problem.agent).amount(problem.dose, problem.unit, body_weight_g)),
            agent=jnp.int32(agent_index(problem.agent)),
            n_doses=jnp.int32(problem.n_doses),
        )
        self.evaluations = 0

    def __call__(self, ns: np.ndarray, z: np.ndarray):
        ns, z = np.asarray(ns), np.atleast_2d(np.asarray(z, dtype=np.float64))
        b = np.stack([self.problem.bounds(int(n)) for n in ns])
        lo, hi = pad_rows(b[..., 0], BATCH), pad_rows(b[..., 1], BATCH)
        zp, nsp = pad_rows(z, BATCH), pad_rows(ns[:, None].astype(np.int32), BATCH)[:, 0]
        out_l, out_g = [], []
        for i in range(0, zp.shape[0], BATCH):
            sl = slice(i, i + BATCH)
            val, g = _value_and_grad(zp[sl], lo[sl], hi[sl], nsp[sl], self.draws, self.consts, self.obj, **self.static)
            out_l.append(np.asarray(val))
            out_g.append(np.asarray(g))
        self.evaluations += len(z)
        return np.concatenate(out_l)[: len(z)], np.concatenate(out_g)[: len(z)]

    def objective_value(self, loss: np.ndarray) -> np.ndarray:
        """The loss in the objective's own units (mm^3, or a probability)."""
        return np.exp(loss) if OBJECTIVES[self.problem.objective][3] == "volume" else np.exp(-np.asarray(loss))


@dataclass(frozen=True)
class OptimizeResult:
    schedule: Schedule  # the best schedule found
    candidates: pd.DataFrame  # one row per (number of fractions, start), best first
    versus: pd.DataFrame  # exact end points of the optimum vs standard concurrent / sequential (compare's summary)
    comparison: Comparison | None
    problem: ScheduleProblem
    source: str

    def toml(self) -> str:
        p = self.problem
        best = self.candidates.iloc[0]
        what = f"{OBJECTIVES[p.objective][0]}" + (f" (upper {100 * p.quantile:g} % quantile)" if p.quantile else "")
        cap = (
            f"total BED <= {p.cap:g} Gy (alpha/beta {p.ab_ratio:g} Gy)"
            if p.constraint == "bed"
            else f"total dose <= {p.cap:g} Gy"
        )
        desc = (
            f"abscopal optimize: {what}, {cap}; {int(best.n_fractions)} x {best.dose_per_fraction_gy:.3g} Gy, "
            f"drug start {best.gap_days:+.2f} d from the first fraction; draws: {self.source}"
        )
        return f"description = {_toml_string(desc)}\n" + self.schedule.to_toml()


def _toml_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def optimize(
    objective: str = "volume_abscopal",
    max_bed_gy: float | None = 60.0,
    max_dose_gy: float | None = None,
    ab_ratio: float | None = None,
    fractions=(1, 2, 3, 5),
    agent: str = "anti-PD-1",
    dose: float = 10.0,
    unit: str = "mg/kg",
    n_doses: int = 3,
    every: float = 3.0,
    optimise_every: bool = False,
    gap_bounds: tuple[float, float] = (-7.0, 21.0),
    min_dose_gy: float = 1.0,
    rt_start: float = 7.0,
    horizon_days: float = DEFAULT_HORIZON_DAYS,
    tumour_line: str = "CT26",
    quantile: float | None = None,
    n_draws: int = 16,
    seed: int = 0,
    params: Params | None = None,
    fit=None,
    n_starts: int = 3,
    steps: int = 40,
    learning_rate: float = 0.05,
    compare_draws: int | None = None,
    options: SolverOptions = SolverOptions(),
    progress: bool = False,
) -> OptimizeResult:
    """Optimise the drug start (``gap_days`` from the first fraction), the dose per fraction and the
    number of fractions (each of ``fractions``; daily from ``rt_start``), and with
    ``optimise_every`` the days between drug doses, to minimise a volume or maximise a cure
    probability (``objective``, one of ``OBJECTIVES``), averaged over ``n_draws`` parameter draws
    (or their upper ``quantile`` for a risk-averse choice), under ``max_bed_gy`` (total BED to the
    irradiated tumour at ``ab_ratio``, default the line's alpha/beta) or ``max_dose_gy`` (total
    physical dose). ``n_starts`` random starts per number of fractions, ``steps`` Adam steps each.

    The optimum is compared with concurrent and sequential standard schedules (3 x 8 Gy on days
    7-9 with the same drug course) over ``compare_draws`` fresh draws (default: ``max(n_draws, 50)``)."""
    if (max_bed_gy is None) == (max_dose_gy is None):
        raise OptimizeError("max_bed_gy / max_dose_gy: give exactly one cap (total BED or total physical dose, Gy)")
    if int(n_starts) != n_starts or n_starts < 1:
        raise OptimizeError(f"n_starts: must be a positive integer, got {n_starts!r}")
    if int(steps) != steps or steps < 0:
        raise OptimizeError(f"steps: must be a non-negative integer, got {steps!r}")
    if tumour_line not in tumour_lines():
        raise OptimizeError(f"tumour_line: unknown line {tumour_line!r}; allowed {list(tumour_lines())}")
    ab = float(ab_ratio) if ab_ratio is not None else float(default_params(tumour_line)["ab_ratio"])
    problem = ScheduleProblem(
        objective=objective,
        constraint="bed" if max_bed_gy is not None else "dose",
        cap=float(max_bed_gy if max_bed_gy is not None else max_dose_gy),
        ab_ratio=ab,
        fractions=tuple(fractions),
        agent=agent,
        dose=dose,
        unit=unit,
        n_doses=n_doses,
        every=every,
        optimise_every=optimise_every,
        gap_bounds=tuple(gap_bounds),
        min_dose_gy=min_dose_gy,
        rt_start=rt_start,
        horizon_days=horizon_days,
        tumour_line=tumour_line,
        quantile=quantile,
    ).check()
    draws, source = draw_parameters(tumour_line, n_draws, seed, params, fit)
    bw = params.body_weight_g if params is not None else 20.0
    f = ModelObjective(problem, draws, bw, options)

    ns = np.repeat(sorted(problem.feasible), n_starts)
    rng = np.random.default_rng(seed)
    z0 = rng.uniform(0.05, 0.95, (len(ns), 3))
    z0[:, 1] = rng.uniform(0.5, 1.0, len(ns))  # doses start in the upper half of the allowed range
    if not optimise_every:
        z0[:, 2] = 0.0
    best_z, best_loss, _ = minimize_box(lambda z: f(ns, z), z0, steps, learning_rate, progress)

    rows = []
    for k, (n, z, loss) in enumerate(zip(ns, best_z, best_loss)):
        x = problem.to_natural(int(n), z)
        rows.append(
            dict(n_fractions=int(n), start=k % n_starts, gap_days=x[0], drug_start_day=rt_start + x[0])
            | dict(dose_per_fraction_gy=x[1], every_days=x[2], total_dose_gy=n * x[1], bed_gy=problem.bed(int(n), x[1]))
            | dict(objective=float(f.objective_value(loss)), loss=float(loss))
        )
    candidates = pd.DataFrame(rows).sort_values("loss", kind="stable").reset_index(drop=True)
    candidates.attrs.update(objective=objective, source=source, ab_ratio=ab)
    best = candidates.iloc[0]
    x_best = best[["gap_days", "dose_per_fraction_gy", "every_days"]].to_numpy(float)
    n_best = int(best.n_fractions)
    name = f"optimised: {n_best} x {display.number(x_best[1])} Gy, {agent} from day {display.number(rt_start + x_best[0])}"
    schedule = problem.schedule(n_best, x_best, name=name)

    rt_ref = fractionated(3, 8.0, start=rt_start)
    kw = dict(n_doses=n_doses, every=every, horizon_days=horizon_days, tumour_line=tumour_line)
    standards = [
        concurrent(rt_ref, agent, dose, unit, name=f"standard concurrent (3 x 8 Gy + {agent} from day {rt_start:g})", **kw),
        sequential(rt_ref, agent, dose, unit, gap_days=7.0, name=f"standard sequential (3 x 8 Gy, {agent} 7 d after)", **kw),
    ]
    n_cmp = int(compare_draws) if compare_draws is not None else max(int(n_draws), 50)
    comparison = compare([schedule, *standards], n_draws=n_cmp, seed=seed + 1, params=params, fit=fit, options=options)
    versus = comparison.summary
    return OptimizeResult(schedule, candidates, versus, comparison, problem, source)


def format_result(r: OptimizeResult) -> str:
    """The result as text (``optimize_text.format_result``)."""
    from .optimize_text import format_result as text

    return text(r)
