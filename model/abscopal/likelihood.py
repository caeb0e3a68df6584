"""The likelihood of the curated records (``fits/data/records``) given the model.

Every arm of every fitted record becomes one schedule, split once into its state jumps (RT
fractions, cell/antigen boluses) and its PK doses (closed form; ``solver``, ``pk``). Each arm's
"typical mouse" is a solve of its own, and the arms that a fraction end point needs (cure
fractions, counts) are solved again for each mouse of a small fixed virtual population (common
random numbers, so the likelihood is a smooth deterministic function of the parameters); all
solves run one after another in one compiled loop (``solve_arms``). Observation kinds:

* **time course** (mean +- SEM): log-normal, ``log y ~ N(log v_model(day), sqrt((sem/mean)^2 +
  sigma_model^2))``; with ``lognormal_estimated_sigma`` the SD is ``sqrt(sigma_series^2 +
  sigma_model^2)`` with the fitted ``sigma_series`` (no error bars); with
  ``lognormal_sem_plus_estimated`` it is ``sqrt((sem/mean)^2 + sigma_series^2 + sigma_model^2)``:
  the error bars plus a fitted model discrepancy (for group means whose SEMs are far smaller
  than any mechanistic model's structural error); ``sigma_series`` is one parameter per
  ``discrepancy_group`` of the records (one per source: ``Problem.series_groups``);
  zero means (``below_detection``) are censored: ``P(v_model < DETECTION_MM3)``; the records
  of an ``inoculum_group`` start from that group's fitted day-0 volume ``v0_inoculum[g]``
  (``Problem.inoculum_groups``) instead of the table's ``v0_irr`` (a two-tumour mouse's abscopal
  tumour from the same inoculum, then shrunk by its later inoculation as always);
* **count** (k of n cured): binomial on the virtual population's (smoothed) cure fraction;
* **qualitative** comparison ``lhs op rhs`` with a written margin ``m``: with ``d = f(lhs) -
  f(rhs)`` on the end point's scale (log for volumes and immune read-outs, days for times,
  fractions for fractions), the probit penalties (Mitra et al. 2018; Schmiester et al. 2020)

  - ``>``: ``Phi((d - m) / tau)``,   ``<``: ``Phi((-d - m) / tau)``,
  - ``~``: ``Phi((m - d) / tau) - Phi((-m - d) / tau)`` (d within +-m),

  with the softness ``tau`` of the scale (``TAU``).

Smooth end points: the time for a volume to reach a threshold is the integral over the output
grid of ``sigmoid((log thr - max_{t'<=t} log v(t')) / s)`` (the first crossing, censored at the
horizon); "cured" is ``sigmoid((log 1e-6 - min_t log viable) / s)``. Survival (``survival_proxy``,
the time for the total burden to reach its threshold) is the median of that time over the virtual
population (``POPULATION_ENDPOINTS``); growth delay (``time_to_volume``) is the typical mouse's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from jax.scipy.stats import norm

from .equations import build_model
from .outcomes import CURE_VOLUME_MM3, soft_cummax, soft_min
from .parameters import base_tumour_line, default_params, spec
from .population import variability
from .priors import estimated
from .records import Count, Record, RecordComparison, TimeCourse, load_records
from .schedules import EVENT_NONE, schedule_from_dict
from .solver import map_rows, solve_segments, split_events

# ---------------------------------------------------------------- settings
DETECTION_MM3 = 1.0  # a zero mean volume is read as "below 1 mm^3"
SMOOTH_LOG = 0.25  # softness (log units) of the smooth threshold crossings and cure indicator
TAU = {"log_ratio": 0.1, "time": 1.0, "fraction": 0.05}  # softness of qualitative penalties
SIGMA_MODEL = 0.1  # model-error floor on log volumes of time courses (added to sem/mean)
LOG_FLOOR = 1e-12  # volumes and cell numbers are floored here before logs
#: a version of the likelihood's code, hashed into ``problem_fingerprint``: a change of what the
#: likelihood computes (not only of the data) makes saved MAPs and Hessians stale
LIKELIHOOD_VERSION = (
    "2026-11-29b: survival_proxy is the median over the virtual population; "
    "2026-11-29: bounded table priors (priors.Prior), per-line values by the table's estimate column (no line "
    "population), credible biology (issue 20); 2026-11-27: soft running max/min (PEAK_TAU), one series SD per "
    "discrepancy group, a fitted day-0 volume per inoculum group"
)

#: observables computed per arm and output day (index -> name); all logs
OBS = (
    "log_volume_irr",
    "log_volume_abs",
    "log_viable_irr",
    "log_viable_abs",
    "log_cd8_irr",
    "log_cd8_abs",
    "log_treg_irr",
    "log_treg_abs",
    "log_myeloid_irr",
    "log_myeloid_abs",
    "log_dc",
    "log_memory",
    "log_burden",
)
_SITE = {"irradiated": "irr", "abscopal": "abs"}

#: end points read off the virtual population of an arm rather than its typical mouse: fractions
#: of mice (cured, abscopal response) and survival, the cohort's median time to the burden threshold
#: (a typical mouse is either cured or not, so its survival jumps from the threshold time to the
#: horizon across a parameter cliff; a cohort's median moves smoothly through partial cures)
POPULATION_ENDPOINTS = ("cure_fraction", "abscopal_probability", "survival_proxy")

#: kinds of comparison/count quantity (``Problem.q["kind"]``): a log read-out at a day, the typical
#: mouse's time to a volume, and the population's cure fraction, abscopal probability and median
#: survival (``Q_POPULATION``: the kinds whose ``arm`` indexes ``Problem.pop_arms``)
Q_LOG, Q_TIME, Q_CURE, Q_ABSCOPAL, Q_SURVIVAL = range(5)
Q_POPULATION = (Q_CURE, Q_ABSCOPAL, Q_SURVIVAL)

#: end point -> (quantity kind, observable; ``{site}``: the site suffix) for the other end points
_KIND_ENDPOINTS = {
    "time_to_volume": (Q_TIME, "log_volume_{site}"),
    "survival_proxy": (Q_SURVIVAL, "log_burden"),
    "cure_fraction": (Q_CURE, "log_viable_{site}"),
    "abscopal_probability": (Q_ABSCOPAL, "log_volume_abs"),
}

#: end point -> observable stem (site suffix added) for the log-scale end points
_LOG_ENDPOINTS = {
    "volume_at_day": "log_volume",
    "cd8_in_tumour": "log_cd8",
    "treg_in_tumour": "log_treg",
    "mdsc_in_tumour": "log_myeloid",
    "tam_in_tumour": "log_myeloid",
    "dc_in_tumour": "log_dc",  # no per-site DC compartment: systemic activated DCs
    "memory_t_cells": "log_memory",
}

# ---------------------------------------------------------------- estimated parameters
#: the estimated parameters come from the table's estimate column (``priors.estimated``): shared
#: mechanism parameters (one value for all lines) and per-line ones (one value per tumour line of the
#: fitted records, or, for the table's "growth" rows, per line with growth data only: the other
#: lines keep their table values)
SHARED, PER_LINE = estimated()
SERIES_SIGMA_SCALE = 0.5  # HalfNormal scale of the estimated series SD (log units)
#: SD (log units) of the fitted day-0 volume of an inoculum group around the table's v0_irr median
#: (15 mm3, Kosinsky 2018). Assumed, and wide on purpose: a lab's inoculum (cell number, site,
#: when measuring starts) sets it, and the Rauf 2025 MC38 controls are 1.5-12 mm3 on days 6-8
#: (S03), which 15 mm3 on day 0 and any growth rate that fits their later doubling contradict.
INOCULUM_SIGMA = 1.5


# ---------------------------------------------------------------- problem
@dataclass
class ArmSpec:
    record: str
    arm: str
    tumour_line: str
    population: bool = False  # solved over the virtual population too


@dataclass
class Problem:
    """Everything the likelihood needs, as plain arrays (built once from the records)."""

    records: tuple[Record, ...]
    arms: list[ArmSpec]
    lines: list[str]
    shared: tuple[str, ...]
    per_line: tuple[str, ...]
    events: dict  # stacked padded event arrays (A, MAX_EVENTS)
    horizon: np.ndarray  # (A,)
    base: np.ndarray  # (A, P) base parameter values (line defaults, modifiers, single-tumour)
    line_of_arm: np.ndarray  # (A,) index into lines
    abs_delay: np.ndarray  # (A,) days the abscopal tumour is inoculated after the first
    pop_arms: np.ndarray  # (B,) indices of arms solved over the population
    z: np.ndarray  # (K, n_var) standard normal draws of the virtual population
    var_index: np.ndarray  # (n_var,) parameter indices that vary between mice
    var_sd: np.ndarray  # (n_var,)
    n_out: int
    days: np.ndarray  # (n_out,) output days (common to all arms)
    tc: dict = field(default_factory=dict)  # time-course arrays
    cmp: dict = field(default_factory=dict)  # comparison arrays
    cnt: dict = field(default_factory=dict)  # count arrays
    labels: dict = field(default_factory=dict)  # human-readable labels per observation
    series_groups: tuple[str, ...] = ()  # discrepancy groups: one fitted series SD each
    inoculum_groups: tuple[str, ...] = ()  # inoculum groups: one fitted day-0 volume each
    inoculum_of_arm: np.ndarray | None = None  # (A,) index into inoculum_groups, -1: the table's v0
    line_base: np.ndarray | None = None  # (L, Q) table values of the per-line parameters of each line
    line_coords: tuple[tuple[int, int], ...] = ()  # the estimated (line, parameter) entries of line_base
    jumps: dict = field(default_factory=dict)  # (A, J) state jumps per arm (``solver.split_events``)
    doses: dict = field(default_factory=dict)  # (A, D) PK doses per arm (closed form)

    @property
    def n_arms(self) -> int:
        return len(self.arms)

    @property
    def line_entries(self) -> dict[str, list[str]]:
        """Per-line parameter -> the lines it is estimated for (the others hold their table values)."""
        return {n: [self.lines[j] for j, q in self.line_coords if q == i] for i, n in enumerate(self.per_line)}


def _quantity_key(ep: str, site, arm, day, threshold, ref_arm):
    return (ep, site, arm, day, threshold, ref_arm)


def build_problem(
    records: tuple[Record, ...] | None = None,
    use: str = "fit",
    n_virtual: int = 8,
    seed: int = 0,
    shared: tuple[str, ...] = SHARED,
    per_line: tuple[str, ...] = PER_LINE,
    horizon_days: float = 60.0,
    grid_step: float = 2.0,
) -> Problem:
    """Collect the arms and observations of the records with ``use`` ("fit", "check" or "all")."""
    records = tuple(records if records is not None else load_records())
    records = tuple(r for r in records if use == "all" or r.use == use)
    if not records:
        raise ValueError(f"use={use!r}: no records selected")
    model = build_model()
    pnames = model.param_names
    n_out = int(round(horizon_days / grid_step)) + 1
    days = np.linspace(0.0, horizon_days, n_out)

    arms: list[ArmSpec] = []
    arm_index: dict[tuple[str, str], int] = {}
    schedules, bases, delays, inocula = [], [], [], []
    inoculum_groups = tuple(sorted({r.inoculum_group for r in records if r.inoculum_group}))
    lines = sorted({r.fit_line for r in records})
    growth_lines = {r.fit_line for r in records if r.kind == "time_course"}
    for rec in records:
        for name, arm in rec.arms.items():
            if arm.horizon_days != horizon_days:
                raise ValueError(
                    f"record {rec.id} arm {name}: horizon_days {arm.horizon_days} differs from the fit's common horizon {horizon_days}"
                )
            sched = schedule_from_dict(rec.schedule_dict(name))
            p = default_params(rec.tumour_line)
            if "STING-deficient" in arm.modifiers:
                p = p.replace(sting=0.0)
            if rec.setting == "single-tumour":
                p = p.replace(v0_abs=0.0)
            delay = float(rec.inoculation_days.get("abscopal", 0.0)) - float(rec.inoculation_days.get("irradiated", 0.0))
            arm_index[(rec.id, name)] = len(arms)
            arms.append(ArmSpec(rec.id, name, rec.fit_line))
            schedules.append(sched)
            bases.append(p.values)
            delays.append(max(delay, 0.0))
            inocula.append(inoculum_groups.index(rec.inoculum_group) if rec.inoculum_group else -1)

    # ---- observations
    quantities: dict = {}  # key -> (position, spec dict)

    def quantity(ep, site, arm_i, day=None, threshold=None, ref=None):
        key = _quantity_key(ep, site, arm_i, day, threshold, ref)
        if key not in quantities:
            quantities[key] = len(quantities)
        return quantities[key]

    tc_rows: list[dict] = []
    cmp_rows: list[dict] = []
    cnt_rows: list[dict] = []
    for rec in records:
        for obs in rec.observations:
            if isinstance(obs, TimeCourse):
                a = arm_index[(rec.id, obs.arm)]
                suffix = _SITE[obs.site]
                for row in obs.rows:
                    tc_rows.append(
                        dict(
                            record=rec.id,
                            arm=a,
                            obs=OBS.index(f"log_volume_{suffix}"),
                            day=row.day,
                            ref_day=obs.reference_day if obs.quantity == "relative_volume" else -1.0,
                            mean=row.mean,
                            sem=row.sem if row.sem is not None else float("nan"),
                            estimated=obs.error_model != "lognormal_sem",
                            use_sem=obs.error_model != "lognormal_estimated_sigma",
                            group=obs.discrepancy_group,
                            censored=row.mean <= 0.0,
                        )
                    )
                    if row.mean <= 0.0 and obs.zero_means != "below_detection":
                        raise ValueError(f"record {rec.id}: zero mean at day {row.day} not allowed")
            elif isinstance(obs, Count):
                a = arm_index[(rec.id, obs.arm)]
                arms[a].population = True
                cnt_rows.append(dict(record=rec.id, q=quantity("cure_fraction", obs.site, a, obs.day), k=obs.k, n=obs.n))
            elif isinstance(obs, RecordComparison):
                ep = obs.endpoint
                sides = []
                for side in (obs.lhs, obs.rhs):
                    if not isinstance(side, str):
                        sides.append(None)
                        continue
                    a = arm_index[(rec.id, side)]
                    if ep in POPULATION_ENDPOINTS:
                        arms[a].population = True
                    ref = arm_index[(rec.id, obs.reference_arm)] if obs.reference_arm else None
                    if ref is not None:
                        arms[ref].population = True
                    sides.append(quantity(ep, obs.site, a, obs.day, obs.threshold_mm3, ref))
                scale = (
                    "fraction"
                    if ep in ("cure_fraction", "abscopal_probability")
                    else ("time" if ep in ("time_to_volume", "survival_proxy") else "log_ratio")
                )
                const = float("nan")
                if sides[1] is None:
                    const = float(obs.rhs) if scale != "log_ratio" else math.log(float(obs.rhs))
                cmp_rows.append(
                    dict(
                        record=rec.id,
                        lhs=sides[0],
                        rhs=sides[1] if sides[1] is not None else -1,
                        const=const,
                        op={"<": -1, ">": 1, "~": 0}[obs.op],
                        margin=obs.margin,
                        tau=TAU[scale],
                        label=f"{obs.endpoint}({obs.site or 'total'}): {obs.lhs} {obs.op} {obs.rhs} (margin {obs.margin:g})",
                    )
                )
            else:  # pragma: no cover - the loader only makes the three kinds
                raise TypeError(type(obs))

    pop_arms = np.array([i for i, a in enumerate(arms) if a.population], dtype=np.int64)
    pop_pos = {int(a): j for j, a in enumerate(pop_arms)}
    # ---- quantity table (vectorised by kind)
    qkind, qarm, qobs, qday, qthr, qref = [], [], [], [], [], []
    for (ep, site, a, day, threshold, ref), _pos in sorted(quantities.items(), key=lambda kv: kv[1]):
        if ep in _LOG_ENDPOINTS:
            stem = _LOG_ENDPOINTS[ep]
            name = stem if stem in ("log_dc", "log_memory") else f"{stem}_{_SITE[site]}"
            qkind.append(Q_LOG)
            qobs.append(OBS.index(name))
        elif ep in _KIND_ENDPOINTS:
            kind, name = _KIND_ENDPOINTS[ep]
            qkind.append(kind)
            qobs.append(OBS.index(name.format(site=_SITE[site]) if "{site}" in name else name))
        else:
            raise ValueError(f"end point {ep!r}: not supported by the likelihood")
        qarm.append(pop_pos[a] if qkind[-1] in Q_POPULATION else a)
        qday.append(float(day) if day is not None else horizon_days)
        qthr.append(math.log(threshold) if threshold is not None else 0.0)
        qref.append(pop_pos[ref] if ref is not None else -1)

    rng = np.random.default_rng(seed)
    var = variability()
    var_index = np.array([pnames.index(n) for n in var], dtype=np.int64)
    var_sd = np.array([v[0] for v in var.values()])
    z = rng.standard_normal((int(n_virtual), len(var)))

    # pad every arm to the same, smallest multiple of 8 events (fewer no-op segments to solve)
    n_events = max(8, -(-max(len(s.rt) + len(s.drugs) for s in schedules) // 8) * 8)
    events_list = [s.to_arrays(20.0, n_events) for s in schedules]
    events = {k: np.stack([e[k] for e in events_list]) for k in events_list[0] if k != "horizon"}
    horizon = np.array([e["horizon"] for e in events_list])
    jumps, doses = compact_events(events, horizon)

    def arr(rows, key, dtype=np.float64):
        return np.array([r[key] for r in rows], dtype=dtype)

    prob = Problem(
        records=records,
        arms=arms,
        lines=lines,
        shared=tuple(shared),
        per_line=tuple(per_line),
        events=events,
        horizon=horizon,
        base=np.stack(bases),
        line_of_arm=np.array([lines.index(a.tumour_line) for a in arms], dtype=np.int64),
        line_base=np.array([[default_params(base_tumour_line(ln))[n] for n in per_line] for ln in lines]).reshape(
            len(lines), len(per_line)
        ),
        line_coords=tuple(
            (j, q) for q, n in enumerate(per_line) for j, ln in enumerate(lines) if not spec(n).growth_only or ln in growth_lines
        ),
        abs_delay=np.array(delays),
        pop_arms=pop_arms,
        z=z,
        var_index=var_index,
        var_sd=var_sd,
        n_out=n_out,
        days=days,
        inoculum_groups=inoculum_groups,
        inoculum_of_arm=np.array(inocula, dtype=np.int64),
        jumps=jumps,
        doses=doses,
    )
    prob.q = dict(
        kind=np.array(qkind, dtype=np.int64),
        arm=np.array(qarm, dtype=np.int64),
        obs=np.array(qobs, dtype=np.int64),
        day=np.array(qday),
        thr=np.array(qthr),
        ref=np.array(qref, dtype=np.int64),
    )
    if tc_rows:
        prob.series_groups = tuple(sorted({r["group"] for r in tc_rows if r["estimated"]}))
        for r in tc_rows:
            r["group_index"] = prob.series_groups.index(r["group"]) if r["estimated"] else -1
        prob.tc = dict(
            arm=arr(tc_rows, "arm", np.int64),
            obs=arr(tc_rows, "obs", np.int64),
            day=arr(tc_rows, "day"),
            ref_day=arr(tc_rows, "ref_day"),
            mean=arr(tc_rows, "mean"),
            sem=arr(tc_rows, "sem"),
            estimated=arr(tc_rows, "estimated", bool),
            use_sem=arr(tc_rows, "use_sem", bool),
            group=arr(tc_rows, "group_index", np.int64),
            censored=arr(tc_rows, "censored", bool),
        )
    if cmp_rows:
        prob.cmp = dict(
            lhs=arr(cmp_rows, "lhs", np.int64),
            rhs=arr(cmp_rows, "rhs", np.int64),
            const=arr(cmp_rows, "const"),
            op=arr(cmp_rows, "op", np.int64),
            margin=arr(cmp_rows, "margin"),
            tau=arr(cmp_rows, "tau"),
        )
    if cnt_rows:
        prob.cnt = dict(q=arr(cnt_rows, "q", np.int64), k=arr(cnt_rows, "k"), n=arr(cnt_rows, "n"))
    prob.labels = dict(
        tc=[r["record"] for r in tc_rows],
        cmp=[(r["record"], r["label"]) for r in cmp_rows],
        cnt=[r["record"] for r in cnt_rows],
    )
    return prob


def compact_events(events: dict, horizon: np.ndarray) -> tuple[dict, dict]:
    """Stacked padded events (A, n_events) -> (jumps (A, J), doses (A, D)) as NumPy arrays, with J,
    D and the number of agent slots the most of any arm (at least 1): the fewest segments to solve
    and agents to evaluate. ``split_events`` puts the real jumps, doses and used slots first."""
    jumps, doses = jax.vmap(split_events)(events, jnp.asarray(horizon))
    jumps, doses = jax.tree.map(np.asarray, (jumps, doses))
    n_j = max(1, int((jumps["kind"] != EVENT_NONE).sum(axis=1).max()))
    n_d = max(1, int((doses["amount"] != 0).sum(axis=1).max()))
    n_s = max(1, int(doses["slot_used"].sum(axis=1).max()))
    per_slot = ("slot_agent", "slot_used")
    return (
        {k: v[:, :n_j] for k, v in jumps.items()},
        {k: v[:, : n_s if k in per_slot else n_d] for k, v in doses.items()},
    )


def problem_fingerprint(prob: Problem) -> str:
    """SHA-256 of everything the likelihood sees (arms, schedules, observations, virtual mice): a
    saved MAP or Hessian is only reused for the problem it was computed on."""
    import hashlib

    h = hashlib.sha256()
    parts = dict(
        base=prob.base,
        line_of_arm=prob.line_of_arm,
        abs_delay=prob.abs_delay,
        pop_arms=prob.pop_arms,
        z=prob.z,
        var_index=prob.var_index,
        var_sd=prob.var_sd,
        days=prob.days,
        horizon=prob.horizon,
        inoculum_of_arm=prob.inoculum_of_arm,
    )
    parts.update({f"events.{k}": v for k, v in prob.events.items()})
    for group in ("tc", "cmp", "cnt"):
        parts.update({f"{group}.{k}": v for k, v in getattr(prob, group).items()})
    for key in sorted(parts):
        a = np.ascontiguousarray(np.asarray(parts[key]))
        h.update(f"{key}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(
        repr(
            (
                prob.shared,
                prob.per_line,
                prob.lines,
                prob.line_coords,
                prob.series_groups,
                prob.inoculum_groups,
                LIKELIHOOD_VERSION,
            )
        ).encode()
    )
    # the equations themselves: a MAP found for other equations is no MAP of these
    m = build_model()
    h.update(repr((m.rhs, m.rt_event, m.initial, m.bolus)).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- parameters -> arm values
def arm_values(prob: Problem, shared_vals, line_vals, inoculum=None):
    """Full parameter rows (A, P) from the shared values (S,), per-line values (L, Q) and the
    day-0 volumes (mm3) of the inoculum groups (H,) (required where the problem has any)."""
    names = build_model().param_names
    P = jnp.asarray(prob.base)
    if len(prob.shared):
        P = P.at[:, np.array([names.index(n) for n in prob.shared])].set(
            jnp.broadcast_to(shared_vals, (P.shape[0], len(prob.shared)))
        )
    if len(prob.per_line):
        P = P.at[:, np.array([names.index(n) for n in prob.per_line])].set(jnp.asarray(line_vals)[prob.line_of_arm])
    if prob.inoculum_groups:
        if inoculum is None:
            raise ValueError(f"inoculum: the problem has inoculum groups {list(prob.inoculum_groups)}; give their day-0 volumes")
        g = np.asarray(prob.inoculum_of_arm)
        v0 = jnp.atleast_1d(jnp.asarray(inoculum))[np.maximum(g, 0)]
        has = jnp.asarray(g >= 0)
        i0, i1 = names.index("v0_irr"), names.index("v0_abs")
        P = P.at[:, i0].set(jnp.where(has, v0, P[:, i0]))
        # the abscopal tumour of a two-tumour mouse (v0_abs > 0) grows from the same inoculum
        P = P.at[:, i1].set(jnp.where(has & (P[:, i1] > 0), v0, P[:, i1]))
    # a later inoculation of the abscopal tumour, as a smaller tumour on day 0 (same growth)
    ir, iv = names.index("r"), names.index("v0_abs")
    P = P.at[:, iv].multiply(jnp.exp(-P[:, ir] * prob.abs_delay))
    return P


# ---------------------------------------------------------------- observables
def _observables(ys, p):
    """(..., n_out, n_states) states -> (..., n_out, len(OBS)) log observables."""
    names = build_model().state_names
    pn = build_model().param_names

    def s(n):
        return ys[..., names.index(n)]

    eps = p[..., pn.index("v_eps")]
    fl = lambda x: jnp.log(jnp.maximum(x, LOG_FLOOR))
    vol = {k: s(f"V_{k}") + s(f"D_{k}") for k in ("irr", "abs")}
    cols = [
        fl(vol["irr"]),
        fl(vol["abs"]),
        fl(s("V_irr")),
        fl(s("V_abs")),
        fl(s("E_irr") / (vol["irr"] + eps)),
        fl(s("E_abs") / (vol["abs"] + eps)),
        fl(s("R_irr") / (vol["irr"] + eps)),
        fl(s("R_abs") / (vol["abs"] + eps)),
        fl(s("M_irr") / (vol["irr"] + eps)),
        fl(s("M_abs") / (vol["abs"] + eps)),
        fl(s("DC")),
        fl(s("Tm")),
        fl(vol["irr"] + vol["abs"]),
    ]
    return jnp.stack(cols, axis=-1)


def _interp(series, days, grid_step):
    """Linear interpolation of series (..., n_out) at ``days`` (same leading shape), daily grid."""
    x = days / grid_step
    i0 = jnp.clip(jnp.floor(x).astype(jnp.int32), 0, series.shape[-1] - 2)
    w = x - i0
    a = jnp.take_along_axis(series, i0[..., None], -1)[..., 0]
    b = jnp.take_along_axis(series, (i0 + 1)[..., None], -1)[..., 0]
    return (1 - w) * a + w * b


def _smooth_time(logv, logthr, days, s=SMOOTH_LOG):
    """Smooth first-crossing time of log volume series (..., n_out) over log threshold (...,):
    the integral of ``sigmoid((log thr - running max of log v) / s)`` over the grid (trapezoid),
    i.e. the time "alive", censored at the horizon; independent of the grid's resolution."""
    peak = soft_cummax(logv)
    alive = jax.nn.sigmoid((logthr[..., None] - peak) / s)
    dt = jnp.diff(days)
    return jnp.sum(0.5 * (alive[..., 1:] + alive[..., :-1]) * dt, axis=-1)


def population_values(prob: Problem, P):
    """Parameter rows of the virtual mice of the population arms: (B, K, n_params), each mouse the
    arm's typical values times its log-normal draw (common random numbers ``prob.z``)."""
    B = prob.pop_arms
    mult = jnp.exp(jnp.asarray(prob.z) * jnp.asarray(prob.var_sd))  # (K, n_var)
    Pp = jnp.broadcast_to(P[B][:, None, :], (len(B), prob.z.shape[0], P.shape[1]))
    return Pp.at[:, :, prob.var_index].multiply(mult[None])


#: how ``solve_arms`` solves the virtual mice of a population arm: "each" (every mouse a solve of
#: its own, like the typical mice) or "lanes" (the K mice of an arm as one system of K lanes: one
#: step-size control for all). Measured on the review's problem: lanes 41 ms forward but 520 ms
#: gradient (compile 51 s), each 56 ms and 270 ms (compile 18 s).
POPULATION_MODES = ("lanes", "each")


def solve_arms(prob: Problem, P, rtol=1e-5, atol=1e-8, max_steps=4096, adjoint="checkpoint", mode="auto", population="each"):
    """Typical mice of all arms and the virtual mice of the population arms, every arm a solve of its
    own (``solver.solve_segments``: jumps only, closed-form PK, output days saved inside), run
    one after another in one compiled loop (``mode``: see ``solver.SOLVE_MODES``; ``population``: see
    ``POPULATION_MODES``). Returns (obs (A, n_out, n_obs), obs_pop (B, K, n_out, n_obs), ok)."""
    if population not in POPULATION_MODES:
        raise ValueError(f"population: must be one of {POPULATION_MODES}, got {population!r}")
    A, B, K = prob.n_arms, len(prob.pop_arms), prob.z.shape[0]
    days = jnp.asarray(prob.days)
    kw = dict(rtol=rtol, atol=atol, max_steps=max_steps, adjoint=adjoint)

    def one(x):
        p, j, d, h = x
        return solve_segments(p, j, d, h, days, **kw)

    def inputs(arm_of_row):
        return (
            {k: jnp.asarray(v[arm_of_row]) for k, v in prob.jumps.items()},
            {k: jnp.asarray(v[arm_of_row]) for k, v in prob.doses.items()},
            jnp.asarray(prob.horizon)[arm_of_row],
        )

    rows, arm_of_row = P, np.arange(A)
    if B and population == "each":
        rows = jnp.concatenate([P, population_values(prob, P).reshape(B * K, P.shape[1])])
        arm_of_row = np.concatenate([arm_of_row, np.repeat(prob.pop_arms, K)])
    ys, ok = map_rows(one, (rows, *inputs(arm_of_row)), mode)
    obs_all = _observables(ys, rows[:, None, :])
    obs = obs_all[:A]
    if not B:
        return obs, jnp.zeros((0, K, prob.n_out, len(OBS))), jnp.all(ok)
    if population == "each":
        return obs, obs_all[A:].reshape((B, K) + obs_all.shape[1:]), jnp.all(ok)
    Pp = population_values(prob, P)  # (B, K, n_params): lanes last for the solver
    ysp, okp = map_rows(one, (jnp.swapaxes(Pp, 1, 2), *inputs(prob.pop_arms)), mode)
    obs_pop = _observables(jnp.moveaxis(ysp, -1, 1), Pp[:, :, None, :])
    return obs, obs_pop, jnp.all(ok) & jnp.all(okp)


def quantities(prob: Problem, obs, obs_pop):
    """Values of every comparison/count quantity (Q,), on the end point's scale."""
    q = prob.q
    if len(q["kind"]) == 0:
        return jnp.zeros((0,))
    step = prob.days[1] - prob.days[0]
    kind, arm, o, day = q["kind"], q["arm"], q["obs"], jnp.asarray(q["day"])
    nA, nB = obs.shape[0], obs_pop.shape[0]
    # typical-mouse series
    ser = obs[jnp.clip(arm, 0, nA - 1), :, o]  # (Q, n_out)
    log_val = _interp(ser, day, step)
    time_val = _smooth_time(ser, jnp.asarray(q["thr"]), jnp.asarray(prob.days))
    if nB:
        pser = obs_pop[jnp.clip(arm, 0, nB - 1), :, :, o]  # (Q, K, n_out)
        mask = jnp.asarray(prob.days)[None, :] <= day[:, None] + 1e-9  # up to the day
        minlog = soft_min(pser, mask[:, None, :])  # (Q, K)
        cure = jnp.mean(jax.nn.sigmoid((math.log(CURE_VOLUME_MM3) - minlog) / SMOOTH_LOG), axis=-1)
        rser = obs_pop[jnp.clip(q["ref"], 0, nB - 1), :, :, o]
        at = _interp(pser, jnp.broadcast_to(day[:, None], pser.shape[:2]), step)
        at_ref = _interp(rser, jnp.broadcast_to(day[:, None], pser.shape[:2]), step)
        absc = jnp.mean(jax.nn.sigmoid((math.log(0.7) - (at - at_ref)) / SMOOTH_LOG), axis=-1)
        # survival of a cohort: the median over the virtual mice of each mouse's time to the burden
        # threshold (censored at the horizon), as a study reports median survival
        surv = jnp.median(_smooth_time(pser, jnp.asarray(q["thr"])[:, None], jnp.asarray(prob.days)), axis=-1)
    else:
        cure = absc = surv = jnp.zeros_like(log_val)
    return jnp.select([kind == Q_LOG, kind == Q_TIME, kind == Q_CURE, kind == Q_ABSCOPAL], [log_val, time_val, cure, absc], surv)


def comparison_logp(d, op, margin, tau):
    """Log-probability that the difference ``d`` satisfies ``op`` with ``margin`` (see module doc)."""
    gt = log_ndtr((d - margin) / tau)
    lt = log_ndtr((-d - margin) / tau)
    hi = norm.cdf((margin - d) / tau)
    lo = norm.cdf((-margin - d) / tau)
    approx = jnp.log(jnp.maximum(hi - lo, 1e-300))
    return jnp.where(op == 1, gt, jnp.where(op == -1, lt, approx))


def comparison_holds(d, op, margin):
    """Whether a comparison holds exactly (no softness): for reproduction probabilities."""
    return jnp.where(op == 1, d > margin, jnp.where(op == -1, -d > margin, jnp.abs(d) <= margin))


def comparison_differences(prob: Problem, qv):
    c = prob.cmp
    lhs = qv[c["lhs"]]
    rhs = jnp.where(c["rhs"] >= 0, qv[jnp.clip(c["rhs"], 0, None)], jnp.asarray(c["const"]))
    return lhs - rhs


def time_course_terms(prob: Problem, obs, sigma_series):
    """Per-point log-likelihood of the time courses, and the model's log values and SDs at the
    points. ``sigma_series``: the fitted SD of each discrepancy group, (len(prob.series_groups),)."""
    t = prob.tc
    step = prob.days[1] - prob.days[0]
    ser = obs[t["arm"], :, t["obs"]]  # (N, n_out)
    model = _interp(ser, jnp.asarray(t["day"]), step)
    rel = t["ref_day"] >= 0
    ref = _interp(ser, jnp.asarray(np.where(rel, t["ref_day"], 0.0)), step)
    model = jnp.where(rel, model - ref, model)
    mean = np.where(t["censored"], 1.0, t["mean"])
    sem_log = np.where(t["use_sem"] & np.isfinite(t["sem"]) & (mean > 0), t["sem"] / mean, 0.0)
    est = jnp.asarray(t["estimated"])
    if prob.series_groups:
        sig = jnp.atleast_1d(jnp.asarray(sigma_series))[jnp.asarray(np.maximum(t["group"], 0))]
        est_var = jnp.where(est, sig**2, 0.0)
    else:
        est_var = jnp.zeros(est.shape)
    sd = jnp.sqrt(jnp.asarray(sem_log) ** 2 + est_var + SIGMA_MODEL**2)
    obs_log = jnp.log(jnp.asarray(mean))
    lp_point = norm.logpdf(obs_log, model, sd)
    lp_cens = log_ndtr((math.log(DETECTION_MM3) - model) / sd)
    return jnp.where(jnp.asarray(t["censored"]), lp_cens, lp_point), model, sd


def count_logp(prob: Problem, qv):
    c = prob.cnt
    p = jnp.clip(qv[c["q"]], 1e-6, 1 - 1e-6)
    k, n = jnp.asarray(c["k"]), jnp.asarray(c["n"])
    logc = jax.scipy.special.gammaln(n + 1) - jax.scipy.special.gammaln(k + 1) - jax.scipy.special.gammaln(n - k + 1)
    return logc + k * jnp.log(p) + (n - k) * jnp.log1p(-p)


def log_likelihood_terms(prob: Problem, shared_vals, line_vals, sigma_series, solver=None, inoculum=None, solve_fn=None):
    """All log-likelihood terms: dict with 'tc', 'cmp', 'cnt' arrays, and 'ok' (solver success).
    ``solve_fn(prob, P, **solver)``: the solve path (default ``solve_arms``; the benchmarks pass
    the reference path they time it against)."""
    P = arm_values(prob, shared_vals, line_vals, inoculum)
    obs, obs_pop, ok = (solve_fn or solve_arms)(prob, P, **(solver or {}))
    qv = quantities(prob, obs, obs_pop)
    out = {"ok": ok}
    out["tc"] = time_course_terms(prob, obs, sigma_series)[0] if prob.tc else jnp.zeros((0,))
    if prob.cmp:
        d = comparison_differences(prob, qv)
        out["cmp"] = comparison_logp(
            d, jnp.asarray(prob.cmp["op"]), jnp.asarray(prob.cmp["margin"]), jnp.asarray(prob.cmp["tau"])
        )
    else:
        out["cmp"] = jnp.zeros((0,))
    out["cnt"] = count_logp(prob, qv) if prob.cnt else jnp.zeros((0,))
    return out


def log_likelihood(prob: Problem, shared_vals, line_vals, sigma_series, solver=None, inoculum=None, solve_fn=None):
    """Total log-likelihood; ``-inf`` when any solve fails (step limit, non-finite state).
    ``inoculum``: the day-0 volumes of ``prob.inoculum_groups`` (mm3)."""
    t = log_likelihood_terms(prob, shared_vals, line_vals, sigma_series, solver, inoculum, solve_fn)
    total = jnp.sum(t["tc"]) + jnp.sum(t["cmp"]) + jnp.sum(t["cnt"])
    return jnp.where(t["ok"] & jnp.isfinite(total), total, -jnp.inf)
