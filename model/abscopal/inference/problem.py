"""The fitted records as one frozen problem: every arm of every fitted record as a padded schedule
(split once into state jumps and PK doses), the observations as arrays, the virtual population's
draws, the estimated parameters' layout inputs, and a fingerprint of all of it
(``problem_fingerprint``). The likelihood (``likelihood``) reads a ``Problem``; nothing here solves
anything. The settings that define an observation's meaning (softness of penalties, detection limit,
model-error floor) live here too, so the fingerprint covers them through ``LIKELIHOOD_VERSION``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from ..model.equations import build_model
from ..model.parameters import base_tumour_line, default_params, spec
from ..model.population import variability
from ..records import Count, Record, RecordComparison, TimeCourse, load_records
from ..schedules import EVENT_NONE, schedule_from_dict
from ..simulation.solver import split_events
from .observations import OPS, Comparisons, Counts, Quantities, TimeCourses, empty
from .priors import estimated

# ---------------------------------------------------------------- settings
DETECTION_MM3 = 1.0  # a zero mean volume is read as "below 1 mm^3"
SMOOTH_LOG = 0.25  # softness (log units) of the smooth threshold crossings and cure indicator
TAU = {"log_ratio": 0.1, "time": 1.0, "fraction": 0.05}  # softness of qualitative penalties
SIGMA_MODEL = 0.1  # model-error floor on log volumes of time courses (added to sem/mean)
LOG_FLOOR = 1e-12  # volumes and cell numbers are floored here before logs
#: a version of the likelihood's code, hashed into ``problem_fingerprint``: a change of what the
#: likelihood computes (not only of the data) makes saved MAPs and Hessians stale
LIKELIHOOD_VERSION = (
    "2026-12-07e: volumes of comparisons read as measured (v + DETECTION_MM3); "
    "2026-12-07d: parameter coordinates affine in each prior's scale inside the bounds (priors.SoftClipAffine), "
    "not logistic: saved points are converted through their values; "
    "2026-12-07b: viable volumes solved as logs; one between-mouse parameter (k_in); cohort fractions by the "
    "critical mouse (grid, Newton step, implicit function theorem), median survival as the median mouse's; "
    "2026-12-07: a cure needs the burden never past the end point (outcomes' one definition); "
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

#: end points read off the cohort of an arm rather than its typical mouse: its fractions (cured,
#: abscopal response; ``cohort``: by its critical mouse); the cohort's median survival is its median
#: mouse's, the typical mouse's (``cohort``'s doc)
FRACTION_ENDPOINTS = ("cure_fraction", "abscopal_probability")

#: kinds of comparison/count quantity (``Problem.q.kind``): a log read-out at a day, the typical
#: mouse's time to a volume, and the population's cure fraction, abscopal probability and median
#: survival (``Q_POPULATION``: the fractions, whose ``arm`` indexes ``Problem.pop_arms``; a median
#: survival reads its arm's typical mouse, the median mouse)
Q_LOG, Q_TIME, Q_CURE, Q_ABSCOPAL, Q_SURVIVAL = range(5)
Q_POPULATION = (Q_CURE, Q_ABSCOPAL)
#: nodes of the cohort's grid over the between-mouse coordinate zeta ~ N(0, 1) (``cohort``): +-3.5
#: holds all but 5e-4 of the mice
ZETA_SPAN = 3.5

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


@dataclass(frozen=True)
class Problem:
    """Everything the likelihood needs, as plain arrays (built once from the records; frozen)."""

    records: tuple[Record, ...]
    arms: tuple[ArmSpec, ...]
    lines: list[str]
    shared: tuple[str, ...]
    per_line: tuple[str, ...]
    events: dict  # stacked padded event arrays (A, MAX_EVENTS)
    horizon: np.ndarray  # (A,)
    base: np.ndarray  # (A, P) base parameter values (line defaults, modifiers, single-tumour)
    line_of_arm: np.ndarray  # (A,) index into lines
    abs_delay: np.ndarray  # (A,) days the abscopal tumour is inoculated after the first
    pop_arms: np.ndarray  # (B,) indices of arms solved over the population
    zeta: np.ndarray  # (G,) grid nodes of the between-mouse coordinate (``cohort``)
    var_index: np.ndarray  # (n_var,) parameter indices that vary between mice
    var_sd: np.ndarray  # (n_var,)
    n_out: int
    days: np.ndarray  # (n_out,) output days (common to all arms)
    tc: TimeCourses = field(default_factory=lambda: empty(TimeCourses))
    cmp: Comparisons = field(default_factory=lambda: empty(Comparisons))
    cnt: Counts = field(default_factory=lambda: empty(Counts))
    q: Quantities = field(default_factory=lambda: empty(Quantities))
    frac: Quantities = field(default_factory=lambda: empty(Quantities))  # the fraction quantities of q
    frac_of_q: np.ndarray | None = None  # (Q,) index into frac, -1 for the other kinds
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
    n_nodes: int = 13,
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
                    if ep in FRACTION_ENDPOINTS:
                        arms[a].population = True
                    ref = arm_index[(rec.id, obs.reference_arm)] if obs.reference_arm else None
                    if ref is not None and ep in FRACTION_ENDPOINTS:
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
                        op=OPS[obs.op],
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
    qrows = []
    for (ep, site, a, day, threshold, ref), _pos in sorted(quantities.items(), key=lambda kv: kv[1]):
        if ep in _LOG_ENDPOINTS:
            stem = _LOG_ENDPOINTS[ep]
            kind, name = Q_LOG, (stem if stem in ("log_dc", "log_memory") else f"{stem}_{_SITE[site]}")
        elif ep in _KIND_ENDPOINTS:
            kind, name = _KIND_ENDPOINTS[ep]
            name = name.format(site=_SITE[site]) if "{site}" in name else name
        else:
            raise ValueError(f"end point {ep!r}: not supported by the likelihood")
        qrows.append(
            dict(
                kind=kind,
                arm=pop_pos[a] if kind in Q_POPULATION else a,
                obs=OBS.index(name),
                day=float(day) if day is not None else horizon_days,
                thr=math.log(threshold) if threshold is not None else 0.0,
                ref=pop_pos[ref] if ref is not None and kind in Q_POPULATION else -1,
            )
        )
    is_frac = np.array([r["kind"] in Q_POPULATION for r in qrows], dtype=bool)
    frac_rows = [r for r, keep in zip(qrows, is_frac) if keep]
    frac_of_q = np.where(is_frac, np.cumsum(is_frac) - 1, -1).astype(np.int64)

    var = variability()
    if len(var) != 1:
        raise ValueError(
            f"variability: the fit's cohort end points need exactly one parameter that varies between mice, got {list(var)}"
        )
    if int(n_nodes) != n_nodes or n_nodes < 3:
        raise ValueError(f"n_nodes: the cohort grid needs an integer number of nodes >= 3, got {n_nodes!r}")
    var_index = np.array([pnames.index(n) for n in var], dtype=np.int64)
    var_sd = np.array([v[0] for v in var.values()])
    zeta = np.linspace(-ZETA_SPAN, ZETA_SPAN, int(n_nodes))

    # pad every arm to the same, smallest multiple of 8 events (fewer no-op segments to solve)
    n_events = max(8, -(-max(len(s.rt) + len(s.drugs) for s in schedules) // 8) * 8)
    events_list = [s.to_arrays(20.0, n_events) for s in schedules]
    events = {k: np.stack([e[k] for e in events_list]) for k in events_list[0] if k != "horizon"}
    horizon = np.array([e["horizon"] for e in events_list])
    jumps, doses = compact_events(events, horizon)

    series_groups = tuple(sorted({r["group"] for r in tc_rows if r["estimated"]}))
    for r in tc_rows:
        r["group"] = series_groups.index(r["group"]) if r["estimated"] else -1
    return Problem(
        records=records,
        arms=tuple(arms),
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
        zeta=zeta,
        var_index=var_index,
        var_sd=var_sd,
        n_out=n_out,
        days=days,
        inoculum_groups=inoculum_groups,
        inoculum_of_arm=np.array(inocula, dtype=np.int64),
        jumps=jumps,
        doses=doses,
        series_groups=series_groups,
        tc=TimeCourses.from_rows(tc_rows, records=tuple(r["record"] for r in tc_rows)),
        cmp=Comparisons.from_rows(cmp_rows, labels=tuple((r["record"], r["label"]) for r in cmp_rows)),
        cnt=Counts.from_rows(cnt_rows, records=tuple(r["record"] for r in cnt_rows)),
        q=Quantities.from_rows(qrows),
        frac=Quantities.from_rows(frac_rows),
        frac_of_q=frac_of_q,
    )


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
        zeta=prob.zeta,
        var_index=prob.var_index,
        var_sd=prob.var_sd,
        days=prob.days,
        horizon=prob.horizon,
        inoculum_of_arm=prob.inoculum_of_arm,
    )
    parts.update({f"events.{k}": v for k, v in prob.events.items()})
    for group in ("tc", "cmp", "cnt"):
        parts.update({f"{group}.{k}": v for k, v in getattr(prob, group).arrays().items()})
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
