"""Schedules as data: RT fractions and drug administrations, builders, the TOML file form, and
the padded arrays that let every schedule reuse one compilation.

Days count from the inoculation of the tumours (day 0). Allowed values, and why:
- RT dose per fraction: > 0 and <= 30 Gy. The largest single fractions in the review's preclinical
  studies are 20 Gy (R13, R20); beyond ~30 Gy the LQ model is not a credible description.
- Drug doses: > 0, finite, in a unit the agent accepts (``abscopal agents``).
- Days: finite, in [0, horizon_days).
- horizon_days: in (0, 365]: the model is calibrated on mouse experiments lasting weeks.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .model.agents import agent_index, agent_names, get_agent
from .model.parameters import tumour_lines

MAX_EVENTS = 64
#: distinct drugs with pharmacokinetics (antibodies, cytokines, small molecules) in one schedule
MAX_PK_AGENTS = 4
MAX_DOSE_PER_FRACTION_GY = 30.0
MAX_HORIZON_DAYS = 365.0
TARGETS = ("irradiated", "abscopal", "both")

EVENT_NONE, EVENT_RT, EVENT_DRUG = 0, 1, 2


class ScheduleError(ValueError):
    """A schedule that cannot be simulated; the message names the field and what is allowed."""


def _finite(value, where: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ScheduleError(f"{where}: must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise ScheduleError(f"{where}: must be finite, got {value!r}")
    return x


@dataclass(frozen=True)
class RTFraction:
    """One RT fraction: ``dose_gy`` Gy on ``day`` to ``target`` ("irradiated", "abscopal" or "both")."""

    day: float
    dose_gy: float
    target: str = "irradiated"

    def __post_init__(self):
        _finite(self.day, "rt.day")
        dose = _finite(self.dose_gy, "rt.dose_gy")
        if not 0 < dose <= MAX_DOSE_PER_FRACTION_GY:
            raise ScheduleError(
                f"rt.dose_gy: {dose} Gy per fraction is outside (0, {MAX_DOSE_PER_FRACTION_GY:g}] Gy "
                "(the LQ model is not credible beyond ~30 Gy per fraction)"
            )
        if self.target not in TARGETS:
            raise ScheduleError(f"rt.target: {self.target!r} is not one of {list(TARGETS)}")


@dataclass(frozen=True)
class DrugDose:
    """One administration of ``dose`` ``unit`` of ``agent`` on ``day``."""

    day: float
    agent: str
    dose: float
    unit: str

    def __post_init__(self):
        _finite(self.day, "drug.day")
        if self.agent not in agent_names():
            raise ScheduleError(f"drug.agent: unknown agent {self.agent!r}; allowed {list(agent_names())}")
        dose = _finite(self.dose, "drug.dose")
        if dose <= 0:
            raise ScheduleError(f"drug.dose: must be > 0, got {dose}")
        allowed = get_agent(self.agent).units
        if self.unit not in allowed:
            raise ScheduleError(f"drug.unit: {self.unit!r} does not fit agent {self.agent!r}; allowed {list(allowed)}")


@dataclass(frozen=True)
class Schedule:
    """A treatment protocol: RT fractions and drug doses over ``horizon_days``."""

    rt: tuple[RTFraction, ...] = ()
    drugs: tuple[DrugDose, ...] = ()
    horizon_days: float = 60.0
    tumour_line: str = "generic"
    name: str = "schedule"
    notes: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "rt", tuple(self.rt))
        object.__setattr__(self, "drugs", tuple(self.drugs))
        h = _finite(self.horizon_days, "horizon_days")
        if not 0 < h <= MAX_HORIZON_DAYS:
            raise ScheduleError(f"horizon_days: {h} is outside (0, {MAX_HORIZON_DAYS:g}]")
        if self.tumour_line not in tumour_lines():
            raise ScheduleError(f"tumor_line: unknown tumour line {self.tumour_line!r}; allowed {list(tumour_lines())}")
        for kind, items in (("rt", self.rt), ("drug", self.drugs)):
            for i, item in enumerate(items):
                if not 0 <= item.day < h:
                    raise ScheduleError(f"{kind}[{i}].day: day {item.day} is outside the horizon [0, {h:g})")
        n = len(self.rt) + len(self.drugs)
        if n > MAX_EVENTS:
            raise ScheduleError(f"schedule {self.name!r}: {n} events; at most {MAX_EVENTS} are allowed")
        pk_agents = sorted({a.name for a in (get_agent(d.agent) for d in self.drugs) if a.has_pk})
        if len(pk_agents) > MAX_PK_AGENTS:
            raise ScheduleError(
                f"drug: schedule {self.name!r} uses {len(pk_agents)} agents with PK ({', '.join(pk_agents)}); "
                f"at most {MAX_PK_AGENTS} are allowed (each is evaluated in closed form at every solver step)"
            )

    # ----- derived quantities -----
    @property
    def total_dose_gy(self) -> float:
        return float(sum(f.dose_gy for f in self.rt if f.target in ("irradiated", "both")))

    def bed_gy(self, ab_ratio: float) -> float:
        """Biologically effective dose of the RT course to the irradiated tumour: sum d (1 + d / (alpha/beta))."""
        return float(sum(f.dose_gy * (1 + f.dose_gy / ab_ratio) for f in self.rt if f.target in ("irradiated", "both")))

    def with_(self, **changes) -> Schedule:
        fields = dict(rt=self.rt, drugs=self.drugs, horizon_days=self.horizon_days, tumour_line=self.tumour_line, name=self.name)
        fields.update(changes)
        return Schedule(**fields)

    def to_arrays(self, body_weight_g: float = 20.0, n_events: int = MAX_EVENTS) -> dict[str, np.ndarray]:
        """Events sorted by day (RT before drugs on the same day), padded to ``n_events`` with no-ops
        at the horizon. Drug doses are converted to internal amounts here, once."""
        events = []
        for f in self.rt:
            events.append((f.day, 0, EVENT_RT, f.dose_gy, float(f.target != "abscopal"), float(f.target != "irradiated"), 0))
        for d in self.drugs:
            amount = get_agent(d.agent).amount(d.dose, d.unit, body_weight_g)
            events.append((d.day, 1, EVENT_DRUG, amount, 0.0, 0.0, agent_index(d.agent)))
        if len(events) > n_events:
            raise ScheduleError(f"schedule {self.name!r}: {len(events)} events exceed the padded length {n_events}")
        events.sort(key=lambda e: (e[0], e[1]))
        pad = n_events - len(events)
        events += [(self.horizon_days, 2, EVENT_NONE, 0.0, 0.0, 0.0, 0)] * pad
        cols = list(zip(*events))
        return {
            "time": np.asarray(cols[0], dtype=np.float64),
            "kind": np.asarray(cols[2], dtype=np.int32),
            "value": np.asarray(cols[3], dtype=np.float64),
            "on_irr": np.asarray(cols[4], dtype=np.float64),
            "on_abs": np.asarray(cols[5], dtype=np.float64),
            "agent": np.asarray(cols[6], dtype=np.int32),
            "horizon": np.float64(self.horizon_days),
        }

    def to_toml(self) -> str:
        """The schedule in the TOML file form (one table per RT fraction / drug dose)."""
        lines = [f'name = "{self.name}"', f'tumor_line = "{self.tumour_line}"', f"horizon_days = {self.horizon_days:g}"]
        for f in self.rt:
            lines += ["", "[[rt]]", f"day = {f.day:g}", f"dose_gy = {f.dose_gy:g}", f'target = "{f.target}"']
        for d in self.drugs:
            lines += ["", "[[drug]]", f'agent = "{d.agent}"', f"day = {d.day:g}", f"dose = {d.dose:g}", f'unit = "{d.unit}"']
        return "\n".join(lines) + "\n"


# ----- builders -----
def fractionated(
    n: int = 5, dose_gy: float = 2.0, start: float = 7.0, interval: float = 1.0, target: str = "irradiated"
) -> tuple[RTFraction, ...]:
    """``n`` fractions of ``dose_gy`` Gy every ``interval`` days from day ``start``."""
    if int(n) != n or n < 1:
        raise ScheduleError(f"n: number of fractions must be a positive integer, got {n!r}")
    return tuple(RTFraction(start + i * interval, dose_gy, target) for i in range(int(n)))


def drug_course(agent: str, dose: float, unit: str, start: float, n_doses: int, every: float) -> tuple[DrugDose, ...]:
    """``n_doses`` administrations of ``agent`` every ``every`` days from day ``start``."""
    if int(n_doses) != n_doses or n_doses < 1:
        raise ScheduleError(f"n_doses: must be a positive integer, got {n_doses!r}")
    return tuple(DrugDose(start + i * every, agent, dose, unit) for i in range(int(n_doses)))


def combined(
    rt,
    agent: str,
    dose: float,
    unit: str,
    gap_days: float,
    n_doses: int = 3,
    every: float = 3.0,
    horizon_days: float = 60.0,
    tumour_line: str = "generic",
    name: str | None = None,
) -> Schedule:
    """RT course plus a drug course starting ``gap_days`` after the first fraction (negative: drug first)."""
    rt = tuple(rt)
    if not rt:
        raise ScheduleError("rt: a combined schedule needs at least one RT fraction")
    start = min(f.day for f in rt) + gap_days
    drugs = drug_course(agent, dose, unit, start, n_doses, every)
    return Schedule(rt, drugs, horizon_days, tumour_line, name or f"{agent} gap {gap_days:+g} d")


def concurrent(rt, agent: str, dose: float, unit: str, **kw) -> Schedule:
    """Drug from the day of the first fraction."""
    kw.setdefault("name", f"concurrent {agent}")
    return combined(rt, agent, dose, unit, gap_days=0.0, **kw)


def sequential(rt, agent: str, dose: float, unit: str, gap_days: float = 7.0, **kw) -> Schedule:
    """Drug starting ``gap_days`` after the LAST fraction."""
    rt = tuple(rt)
    span = max(f.day for f in rt) - min(f.day for f in rt)
    kw.setdefault("name", f"sequential {agent} (+{gap_days:g} d)")
    return combined(rt, agent, dose, unit, gap_days=span + gap_days, **kw)


def drug_first(rt, agent: str, dose: float, unit: str, lead_days: float = 7.0, **kw) -> Schedule:
    """Drug starting ``lead_days`` before the first fraction."""
    kw.setdefault("name", f"{agent} first (-{lead_days:g} d)")
    return combined(rt, agent, dose, unit, gap_days=-lead_days, **kw)


# ----- the TOML file form -----
def _days(entry: dict, where: str) -> list[float]:
    if ("day" in entry) == ("days" in entry):
        raise ScheduleError(f"{where}: give exactly one of 'day' or 'days'")
    days = entry["days"] if "days" in entry else [entry["day"]]
    if not isinstance(days, list) or not days:
        raise ScheduleError(f"{where}.days: must be a non-empty list of days")
    return [_finite(d, f"{where}.days") for d in days]


def _check_keys(entry, allowed: set[str], where: str) -> None:
    if not isinstance(entry, dict):
        raise ScheduleError(f"{where}: must be a table")
    unknown = set(entry) - allowed
    if unknown:
        raise ScheduleError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(allowed)}")


def schedule_from_dict(data: dict, name: str = "schedule") -> Schedule:
    """Build and validate a schedule from the TOML file's table; errors name the field."""
    _check_keys(data, {"tumor_line", "tumour_line", "horizon_days", "rt", "drug", "name", "description"}, "schedule")
    rt, drugs = [], []
    for i, entry in enumerate(data.get("rt", [])):
        where = f"rt[{i}]"
        _check_keys(entry, {"day", "days", "dose_gy", "target"}, where)
        if "dose_gy" not in entry:
            raise ScheduleError(f"{where}.dose_gy: missing")
        for day in _days(entry, where):
            try:
                rt.append(RTFraction(day, entry["dose_gy"], entry.get("target", "irradiated")))
            except ScheduleError as e:
                raise ScheduleError(str(e).replace("rt.", f"{where}.", 1)) from None
    for i, entry in enumerate(data.get("drug", [])):
        where = f"drug[{i}]"
        _check_keys(entry, {"agent", "day", "days", "dose", "unit"}, where)
        for key in ("agent", "dose", "unit"):
            if key not in entry:
                raise ScheduleError(f"{where}.{key}: missing")
        for day in _days(entry, where):
            try:
                drugs.append(DrugDose(day, entry["agent"], entry["dose"], entry["unit"]))
            except ScheduleError as e:
                raise ScheduleError(str(e).replace("drug.", f"{where}.", 1)) from None
    line = data.get("tumor_line", data.get("tumour_line", "generic"))
    return Schedule(tuple(rt), tuple(drugs), data.get("horizon_days", 60.0), line, data.get("name", name))


def load_schedule(path: str | Path) -> Schedule:
    """Read a schedule TOML file (see the module docstring for the allowed values)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScheduleError(f"{path}: no such schedule file") from None
    except tomllib.TOMLDecodeError as e:
        raise ScheduleError(f"{path}: malformed TOML: {e}") from None
    try:
        return schedule_from_dict(data, name=path.stem)
    except ScheduleError as e:
        raise ScheduleError(f"{path}: {e}") from None
