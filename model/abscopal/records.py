"""Outcome records: the preclinical outcomes the review reports (R01-R30) and the numeric
tumour-volume series (S01-S05), read from ``fits/data/`` and validated.

Pure Python (tomllib, csv); no JAX. One record per TOML file under ``fits/data/records/``
(a file may also hold several records as a ``[[record]]`` array). ``fits/data/conventions.toml``
holds the generic-protocol elements (``G-*``), the end-point conventions (``E-*``) and the
margin rules (``M-*``) that records refer to; ``fits/data/README.md`` explains the encoding.

A record is: an id, provenance, a status tag, a tumour line and setting, named arms (each arm
is a schedule in the model's schedule-file form: ``horizon_days``, ``[[rt]]``, ``[[drug]]``),
and observations of one kind:

- ``time_course``: arm, site, quantity, rows of (day, mean, sem); sem may be missing only with
  ``error_model = "lognormal_estimated_sigma"`` and an ``error_note``; the estimated error models
  name a ``discrepancy_group``: the series that share one fitted SD (one per source); a
  time-course record may also name an ``inoculum_group``: the records of one source whose day-0
  tumour volume is fitted (one value per group) instead of the table's ``v0_irr``;
- ``count``: k of n animals cured at a site by a day;
- ``qualitative``: comparisons ``endpoint(lhs) op endpoint(rhs)`` (or against a number), with a
  margin and its reason; ``op`` is "<", ">" or "~" (equal within the margin).

Comparison semantics (how the fit turns them into soft constraints): with ``margin_kind =
"log_ratio"``, ``a < b`` means log a <= log b - margin, ``a > b`` means log a >= log b + margin and
``a ~ b`` means |log a - log b| <= margin; with ``"absolute"`` the same on a - b (days for
time end points, a fraction for fraction end points).

Days count from the inoculation of the (first) tumour. Every malformed record raises
``RecordError`` naming the record id and the field.
"""

from __future__ import annotations

import csv
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .agents import catalogue
from .io import shipped_fits
from .parameters import tumour_lines
from .schedules import MAX_DOSE_PER_FRACTION_GY

__all__ = [
    "RecordError",
    "Provenance",
    "DataSource",
    "ArmFraction",
    "ArmDose",
    "Arm",
    "TimePoint",
    "TimeCourse",
    "Count",
    "RecordComparison",
    "Record",
    "default_data_dir",
    "load_conventions",
    "load_records",
    "records_table",
]

# ----- allowed values -----
STATUS_TAGS = ("REVIEW", "READ", "READ-2nd", "INFERRED", "UNKNOWN")
USES = ("fit", "check")
#: the model's tumour lines (``data/tumour_lines.csv``, via ``parameters``)
TUMOUR_LINES = tumour_lines()
SETTINGS = ("two-tumour", "single-tumour")
KINDS = ("time_course", "count", "qualitative")
SITES = ("irradiated", "abscopal")
RT_TARGETS = ("irradiated", "abscopal", "both")
QUANTITIES = ("volume_mm3", "relative_volume")
OPS = ("<", ">", "~")
MARGIN_KINDS = ("log_ratio", "absolute")
PROTOCOL_STATUSES = ("reported", "generic")
ERROR_MODELS = ("lognormal_sem", "lognormal_estimated_sigma", "lognormal_sem_plus_estimated")
ZERO_MEANS = ("not_allowed", "below_detection")
N_STATUSES = ("reported", "assumed")
ARM_MODIFIERS = ("STING-deficient",)
#: the units each agent accepts (the agent catalogue, ``data/agents.toml``)
AGENT_UNITS: Mapping[str, tuple[str, ...]] = MappingProxyType({a.name: a.units for a in catalogue()})


@dataclass(frozen=True)
class _Endpoint:
    site: str  # "required" or "forbidden"
    day: bool = False  # needs `day`
    threshold: bool = False  # needs `threshold_mm3` (time to reach it)
    fraction: bool = False  # a fraction of (virtual) animals, in [0, 1]
    reference_day: bool = False
    reference_arm: bool = False

    @property
    def time(self) -> bool:
        return self.threshold


#: End points of comparisons (definitions in fits/data/README.md and conventions.toml).
ENDPOINTS: Mapping[str, _Endpoint] = MappingProxyType(
    {
        "volume_at_day": _Endpoint("required", day=True),
        "relative_volume_at_day": _Endpoint("required", day=True, reference_day=True),
        "time_to_volume": _Endpoint("required", threshold=True),
        "survival_proxy": _Endpoint("forbidden", threshold=True),
        "cure_fraction": _Endpoint("required", day=True, fraction=True),
        "abscopal_probability": _Endpoint("required", day=True, fraction=True, reference_arm=True),
        "cd8_in_tumour": _Endpoint("required", day=True),
        "treg_in_tumour": _Endpoint("required", day=True),
        "mdsc_in_tumour": _Endpoint("required", day=True),
        "tam_in_tumour": _Endpoint("required", day=True),
        "dc_in_tumour": _Endpoint("required", day=True),
        "memory_t_cells": _Endpoint("forbidden", day=True),
    }
)

#: R: a review outcome; S: a numeric series (a data file); P: numbers printed in a primary study the
#: review cites (counts, volumes at stated days, survival), each checked against the study's text
_ID_RE = re.compile(r"^[RSP]\d\d$")


class RecordError(ValueError):
    """A malformed record; ``record_id`` and ``field`` say where."""

    def __init__(self, record_id: str, field: str, message: str, path: str | Path | None = None):
        self.record_id, self.field = record_id, field
        where = f" [{path}]" if path else ""
        super().__init__(f"record {record_id}: field '{field}': {message}{where}")


# ----- typed data -----
@dataclass(frozen=True)
class DataSource:
    """Where a numeric series comes from (S-records)."""

    paper: str
    repo: str
    commit: str
    path: str
    licence: str
    doi: str = ""
    digitised_by: str = ""


@dataclass(frozen=True)
class Provenance:
    review_section: str  # e.g. "3.1"; "external" for series not taken from the review
    review_refs: tuple[int, ...]
    reference: str
    primary_study: str
    protocol_tag: str  # status tag of the protocol details
    protocol_text: str  # the protocol details as the source table gives them
    refs_note: str = ""
    data_source: DataSource | None = None


@dataclass(frozen=True)
class ArmFraction:
    day: float
    dose_gy: float
    target: str = "irradiated"


@dataclass(frozen=True)
class ArmDose:
    day: float
    agent: str
    dose: float
    unit: str


@dataclass(frozen=True)
class Arm:
    """A named arm: its schedule (expanded to one event per day) and, read-only, the table as written."""

    name: str
    horizon_days: float
    rt: tuple[ArmFraction, ...]
    drugs: tuple[ArmDose, ...]
    schedule: Mapping[str, Any]
    modifiers: tuple[str, ...] = ()
    note: str = ""

    def schedule_dict(self) -> dict:
        """The arm's schedule in the schedule-file form (a fresh plain dict)."""
        return _thaw(self.schedule)


@dataclass(frozen=True)
class TimePoint:
    day: float
    mean: float
    sem: float | None


@dataclass(frozen=True)
class TimeCourse:
    arm: str
    site: str
    quantity: str
    rows: tuple[TimePoint, ...]
    error_model: str
    error_note: str = ""
    reference_day: float | None = None  # relative_volume: volume / volume on this day
    discrepancy_group: str = ""  # estimated error models: the series sharing one fitted SD
    zero_means: str = "not_allowed"
    series_label: str = ""
    source: Mapping[str, Any] | None = None  # CSV file + filter the rows came from
    note: str = ""

    kind = "time_course"


@dataclass(frozen=True)
class Count:
    arm: str
    site: str
    day: float
    k: int
    n: int
    n_status: str
    note: str = ""

    kind = "count"


@dataclass(frozen=True)
class RecordComparison:
    endpoint: str
    lhs: str
    op: str
    rhs: str | float  # an arm name or a number
    margin: float
    margin_kind: str
    margin_rule: str = ""
    margin_reason: str = ""
    site: str | None = None
    day: float | None = None
    threshold_mm3: float | None = None
    reference_day: float | None = None
    reference_arm: str | None = None
    note: str = ""

    kind = "qualitative"


@dataclass(frozen=True)
class Record:
    id: str
    title: str
    status: str
    use: str
    tumour_line: str
    setting: str
    kind: str
    outcome_text: str
    provenance: Provenance
    protocol_status: str
    arms: Mapping[str, Arm]
    observations: tuple[TimeCourse | Count | RecordComparison, ...]
    use_reason: str = ""
    tumour_line_note: str = ""
    tumour_variant: str = ""
    hierarchy_line: str = ""
    inoculum_group: str = ""  # records of one source whose day-0 volume is fitted (one per group)
    other_tumour_lines: tuple[str, ...] = ()
    generic_ids: tuple[str, ...] = ()
    protocol_assumptions: tuple[str, ...] = ()
    inoculation_days: Mapping[str, float] = MappingProxyType({})
    cells_inoculated: float | None = None
    check_text: str = ""
    notes: tuple[str, ...] = ()
    source_path: str = ""

    @property
    def fit_line(self) -> str:
        """The tumour line whose per-line parameters (growth, radiosensitivity, antigenicity) the
        record informs in the hierarchical fit: ``hierarchy_line`` where the record names one (a
        variant different enough to be its own line, drawn from the same line population), else
        ``tumour_line``. The base parameters stay those of ``tumour_line``."""
        return self.hierarchy_line or self.tumour_line

    @property
    def time_courses(self) -> tuple[TimeCourse, ...]:
        return tuple(o for o in self.observations if isinstance(o, TimeCourse))

    @property
    def counts(self) -> tuple[Count, ...]:
        return tuple(o for o in self.observations if isinstance(o, Count))

    @property
    def comparisons(self) -> tuple[RecordComparison, ...]:
        return tuple(o for o in self.observations if isinstance(o, RecordComparison))

    def schedule_dict(self, arm: str) -> dict:
        """An arm as a schedule-file table, with the record's tumour line and a name added."""
        d = self.arms[arm].schedule_dict()
        d["tumour_line"] = self.tumour_line
        d["name"] = f"{self.id}:{arm}"
        return d


# ----- helpers -----
def _freeze(x):
    if isinstance(x, dict):
        return MappingProxyType({k: _freeze(v) for k, v in x.items()})
    if isinstance(x, list):
        return tuple(_freeze(v) for v in x)
    return x


def _thaw(x):
    if isinstance(x, Mapping):
        return {k: _thaw(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return [_thaw(v) for v in x]
    return x


class _Ctx:
    """Error context of one record."""

    def __init__(self, record_id: str, path: Path | None):
        self.id, self.path = record_id, path

    def fail(self, field: str, message: str):
        raise RecordError(self.id, field, message, self.path)

    def table(self, value, field: str) -> dict:
        if not isinstance(value, dict):
            self.fail(field, f"must be a table, got {type(value).__name__}")
        return value

    def keys(self, table: dict, field: str, required: set[str], optional: set[str] = frozenset()) -> None:
        for key in sorted(required):
            if key not in table:
                self.fail(f"{field}.{key}" if field else key, "missing (required)")
        unknown = set(table) - set(required) - set(optional)
        if unknown:
            key = sorted(unknown)[0]
            self.fail(f"{field}.{key}" if field else key, f"unknown field; allowed: {sorted(set(required) | set(optional))}")

    def str_(self, value, field: str, allowed=None, empty: bool = False) -> str:
        if not isinstance(value, str):
            self.fail(field, f"must be a string, got {value!r}")
        if not empty and not value.strip():
            self.fail(field, "must not be empty")
        if allowed is not None and value not in allowed:
            self.fail(field, f"{value!r} is not one of {list(allowed)}")
        return value

    def num(
        self, value, field: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.fail(field, f"must be a number, got {value!r}")
        x = float(value)
        if not math.isfinite(x):
            self.fail(field, f"must be finite, got {value!r}")
        if lo is not None and (x < lo or (lo_open and x == lo)):
            self.fail(field, f"must be {'>' if lo_open else '>='} {lo:g}, got {x:g}")
        if hi is not None and (x > hi or (hi_open and x == hi)):
            self.fail(field, f"must be {'<' if hi_open else '<='} {hi:g}, got {x:g}")
        return x

    def int_(self, value, field: str, lo: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(field, f"must be an integer, got {value!r}")
        if value < lo:
            self.fail(field, f"must be >= {lo}, got {value}")
        return value

    def strs(self, value, field: str, allowed=None) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.fail(field, f"must be a list of strings, got {value!r}")
        return tuple(self.str_(v, f"{field}[{i}]", allowed) for i, v in enumerate(value))

    def list_(self, value, field: str, nonempty: bool = True) -> list:
        if not isinstance(value, list):
            self.fail(field, f"must be a list, got {type(value).__name__}")
        if nonempty and not value:
            self.fail(field, "must not be empty")
        return value


# ----- conventions -----
def default_data_dir() -> Path:
    """The curated data: ``fits/data`` (``io.shipped_fits``)."""
    return shipped_fits() / "data"


def load_conventions(path: str | Path | None = None) -> dict[str, dict[str, Mapping[str, Any]]]:
    """``conventions.toml``: {"generic": {id: entry}, "endpoint": {...}, "margin": {...}}."""
    path = Path(path) if path is not None else default_data_dir() / "conventions.toml"
    if path.is_dir():
        path = path / "conventions.toml"
    if not path.is_file():
        raise FileNotFoundError(f"conventions file not found: {path}")
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for section in ("generic", "endpoint", "margin"):
        entries = raw.get(section, {})
        for key, entry in entries.items():
            if not isinstance(entry, dict) or not entry.get("text") or not entry.get("reason"):
                raise ValueError(f"{path}: [{section}.{key}] needs non-empty 'text' and 'reason'")
            if section == "margin" and (
                entry.get("margin_kind") not in MARGIN_KINDS or not isinstance(entry.get("margin"), (int, float))
            ):
                raise ValueError(f"{path}: [margin.{key}] needs 'margin' and 'margin_kind' in {MARGIN_KINDS}")
        out[section] = {k: MappingProxyType(v) for k, v in entries.items()}
    return out


# ----- parsing -----
_TOP_REQUIRED = {
    "id",
    "title",
    "status",
    "use",
    "tumour_line",
    "setting",
    "kind",
    "outcome_text",
    "provenance",
    "protocol_status",
    "arms",
}
_TOP_OPTIONAL = {
    "use_reason",
    "tumour_line_note",
    "tumour_variant",
    "hierarchy_line",
    "inoculum_group",
    "other_tumour_lines",
    "generic_ids",
    "protocol_assumptions",
    "inoculation_days",
    "cells_inoculated",
    "arm_notes",
    "arm_modifiers",
    "time_course",
    "count",
    "comparison",
    "check_text",
    "notes",
}
_OBS_LIST = {"time_course": "time_course", "count": "count", "qualitative": "comparison"}


def _days(c: _Ctx, entry: dict, field: str, horizon: float) -> list[float]:
    if ("day" in entry) == ("days" in entry):
        c.fail(f"{field}.day", "give exactly one of 'day' or 'days'")
    if "days" in entry:
        days = c.list_(entry["days"], f"{field}.days")
        names = [f"{field}.days[{i}]" for i in range(len(days))]
    else:
        days, names = [entry["day"]], [f"{field}.day"]
    out = []
    for d, name in zip(days, names, strict=True):
        x = c.num(d, name, lo=0.0)
        if not x < horizon:
            c.fail(name, f"day {x:g} is not inside the horizon [0, {horizon:g}) days")
        out.append(x)
    return out


def _parse_arm(c: _Ctx, name: str, table, setting: str) -> Arm:
    f = f"arms.{name}"
    table = c.table(table, f)
    c.keys(table, f, {"horizon_days"}, {"rt", "drug"})
    horizon = c.num(table["horizon_days"], f"{f}.horizon_days", lo=0.0, lo_open=True, hi=365.0)
    rt, drugs = [], []
    for i, e in enumerate(c.list_(table.get("rt", []), f"{f}.rt", nonempty=False)):
        g = f"{f}.rt[{i}]"
        e = c.table(e, g)
        c.keys(e, g, {"dose_gy"}, {"day", "days", "target"})
        dose = c.num(e["dose_gy"], f"{g}.dose_gy", lo=0.0, lo_open=True, hi=MAX_DOSE_PER_FRACTION_GY)
        target = c.str_(e.get("target", "irradiated"), f"{g}.target", RT_TARGETS)
        if setting == "single-tumour" and target != "irradiated":
            c.fail(f"{g}.target", f"{target!r} in a single-tumour record (only 'irradiated' exists)")
        rt += [ArmFraction(d, dose, target) for d in _days(c, e, g, horizon)]
    for i, e in enumerate(c.list_(table.get("drug", []), f"{f}.drug", nonempty=False)):
        g = f"{f}.drug[{i}]"
        e = c.table(e, g)
        c.keys(e, g, {"agent", "dose", "unit"}, {"day", "days"})
        agent = c.str_(e["agent"], f"{g}.agent", AGENT_UNITS)
        dose = c.num(e["dose"], f"{g}.dose", lo=0.0, lo_open=True)
        unit = c.str_(e["unit"], f"{g}.unit")
        if unit not in AGENT_UNITS[agent]:
            c.fail(f"{g}.unit", f"{unit!r} does not fit agent {agent!r}; allowed {list(AGENT_UNITS[agent])}")
        drugs += [ArmDose(d, agent, dose, unit) for d in _days(c, e, g, horizon)]
    return Arm(name, horizon, tuple(rt), tuple(drugs), _freeze(table))


def _site(c: _Ctx, value, field: str, setting: str) -> str:
    site = c.str_(value, field, SITES)
    if site == "abscopal" and setting != "two-tumour":
        c.fail(field, "'abscopal' site in a single-tumour record")
    return site


def _arm_ref(c: _Ctx, value, field: str, arms: Mapping[str, Arm]) -> str:
    name = c.str_(value, field)
    if name not in arms:
        c.fail(field, f"arm {name!r} is not defined in 'arms' (defined: {sorted(arms)})")
    return name


def _check_rows(c: _Ctx, rows: list[TimePoint], f: str, horizon: float, zero_means: str, names: list[str]):
    last = -math.inf
    for row, name in zip(rows, names, strict=True):
        if not 0 <= row.day <= horizon:
            c.fail(f"{name}.day", f"day {row.day:g} is outside [0, horizon {horizon:g}]")
        if row.day <= last:
            c.fail(f"{name}.day", f"days must increase strictly, got {row.day:g} after {last:g}")
        last = row.day
        if row.mean == 0 and zero_means != "below_detection":
            c.fail(f"{name}.mean", "a zero mean needs zero_means = 'below_detection' (log-normal errors)")


def _rows_inline(c: _Ctx, raw, f: str) -> tuple[list[TimePoint], list[str]]:
    rows, names = [], []
    for i, r in enumerate(c.list_(raw, f"{f}.rows")):
        g = f"{f}.rows[{i}]"
        if not isinstance(r, list) or len(r) not in (2, 3):
            c.fail(g, f"must be [day, mean] or [day, mean, sem], got {r!r}")
        day = c.num(r[0], f"{g}.day")
        mean = c.num(r[1], f"{g}.mean", lo=0.0)
        sem = c.num(r[2], f"{g}.sem", lo=0.0) if len(r) == 3 else None
        rows.append(TimePoint(day, mean, sem))
        names.append(g)
    return rows, names


def _rows_csv(c: _Ctx, src: dict, f: str, root: Path) -> tuple[list[TimePoint], list[str]]:
    g = f"{f}.source"
    c.keys(src, g, {"file", "day", "mean"}, {"sem", "filter", "scale", "day_offset"})
    rel = c.str_(src["file"], f"{g}.file")
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        c.fail(f"{g}.file", f"must be a path inside the data directory, got {rel!r}")
    path = root / rel
    if not path.is_file():
        c.fail(f"{g}.file", f"file not found: {path}")
    flt = c.table(src.get("filter", {}), f"{g}.filter")
    scale = c.num(src.get("scale", 1.0), f"{g}.scale", lo=0.0, lo_open=True)
    offset = c.num(src.get("day_offset", 0.0), f"{g}.day_offset")
    cols = {k: c.str_(src[k], f"{g}.{k}") for k in ("day", "mean", "sem") if k in src}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        for col in list(cols.values()) + list(flt):
            if col not in header:
                c.fail(g, f"column {col!r} not in {rel} (columns: {header})")
        lines = [(n, r) for n, r in enumerate(reader, start=2) if all(r[k] == str(v) for k, v in flt.items())]
    if not lines:
        c.fail(f"{g}.filter", f"no row of {rel} matches {dict(flt)}")
    rows, names = [], []
    for n, r in lines:
        name = f"{g} ({rel} line {n})"
        values = {}
        for k, col in cols.items():
            text = r[col].strip()
            if k == "sem" and text == "":
                values[k] = None
                continue
            try:
                values[k] = float(text)
            except ValueError:
                c.fail(f"{name}.{k}", f"not a number: {text!r}")
        day = c.num(values["day"] + offset, f"{name}.day")
        mean = c.num(values["mean"] * scale, f"{name}.mean", lo=0.0)
        sem = values.get("sem")
        sem = None if sem is None else c.num(sem * scale, f"{name}.sem", lo=0.0)
        rows.append(TimePoint(day, mean, sem))
        names.append(name)
    return rows, names


def _parse_time_course(c: _Ctx, i: int, t, arms, setting, root: Path) -> TimeCourse:
    f = f"time_course[{i}]"
    t = c.table(t, f)
    c.keys(
        t,
        f,
        {"arm", "site", "quantity", "error_model"},
        {"rows", "source", "error_note", "discrepancy_group", "reference_day", "zero_means", "series_label", "note"},
    )
    arm = _arm_ref(c, t["arm"], f"{f}.arm", arms)
    horizon = arms[arm].horizon_days
    site = _site(c, t["site"], f"{f}.site", setting)
    quantity = c.str_(t["quantity"], f"{f}.quantity", QUANTITIES)
    error_model = c.str_(t["error_model"], f"{f}.error_model", ERROR_MODELS)
    zero_means = c.str_(t.get("zero_means", "not_allowed"), f"{f}.zero_means", ZERO_MEANS)
    ref_day = None
    if quantity == "relative_volume":
        if "reference_day" not in t:
            c.fail(f"{f}.reference_day", "missing (required for quantity 'relative_volume')")
        ref_day = c.num(t["reference_day"], f"{f}.reference_day", lo=0.0, hi=horizon)
    elif "reference_day" in t:
        c.fail(f"{f}.reference_day", "only for quantity 'relative_volume'")
    if ("rows" in t) == ("source" in t):
        c.fail(f"{f}.rows", "give exactly one of 'rows' (inline) or 'source' (a CSV file)")
    if "rows" in t:
        rows, names = _rows_inline(c, t["rows"], f)
        source = None
    else:
        src = c.table(t["source"], f"{f}.source")
        rows, names = _rows_csv(c, src, f, root)
        source = _freeze(src)
    _check_rows(c, rows, f, horizon, zero_means, names)
    if any(r.sem is None for r in rows) and error_model != "lognormal_estimated_sigma":
        c.fail(f"{f}.error_model", "rows without sem need error_model = 'lognormal_estimated_sigma'")
    if error_model != "lognormal_sem" and not t.get("error_note", "").strip():
        c.fail(f"{f}.error_note", "missing: say why the error is estimated and what is assumed")
    group = c.str_(t.get("discrepancy_group", ""), f"{f}.discrepancy_group", empty=True).strip()
    if error_model != "lognormal_sem" and not group:
        c.fail(f"{f}.discrepancy_group", "missing: name the series that share this fitted SD (e.g. the source)")
    if error_model == "lognormal_sem" and group:
        c.fail(f"{f}.discrepancy_group", "only for the estimated error models (error_model 'lognormal_sem' fits no SD)")
    note = c.str_(t.get("note", ""), f"{f}.note", empty=True)
    return TimeCourse(
        arm,
        site,
        quantity,
        tuple(rows),
        error_model,
        c.str_(t.get("error_note", ""), f"{f}.error_note", empty=True),
        ref_day,
        group,
        zero_means,
        c.str_(t.get("series_label", ""), f"{f}.series_label", empty=True),
        source,
        note,
    )


def _parse_count(c: _Ctx, i: int, t, arms, setting) -> Count:
    f = f"count[{i}]"
    t = c.table(t, f)
    c.keys(t, f, {"arm", "site", "day", "k", "n", "n_status"}, {"note"})
    arm = _arm_ref(c, t["arm"], f"{f}.arm", arms)
    site = _site(c, t["site"], f"{f}.site", setting)
    day = c.num(t["day"], f"{f}.day", lo=0.0, hi=arms[arm].horizon_days)
    n = c.int_(t["n"], f"{f}.n", lo=1)
    k = c.int_(t["k"], f"{f}.k", lo=0)
    if k > n:
        c.fail(f"{f}.k", f"k = {k} exceeds n = {n}")
    n_status = c.str_(t["n_status"], f"{f}.n_status", N_STATUSES)
    note = c.str_(t.get("note", ""), f"{f}.note", empty=True)
    if n_status == "assumed" and not note.strip():
        c.fail(f"{f}.note", "an assumed n needs a note saying why")
    return Count(arm, site, day, k, n, n_status, note)


def _parse_comparison(c: _Ctx, i: int, t, arms, setting, conventions) -> RecordComparison:
    f = f"comparison[{i}]"
    t = c.table(t, f)
    c.keys(
        t,
        f,
        {"endpoint", "lhs", "op", "rhs", "margin", "margin_kind"},
        {"margin_rule", "margin_reason", "site", "day", "threshold_mm3", "reference_day", "reference_arm", "note"},
    )
    name = c.str_(t["endpoint"], f"{f}.endpoint", ENDPOINTS)
    ep = ENDPOINTS[name]
    lhs = _arm_ref(c, t["lhs"], f"{f}.lhs", arms)
    op = c.str_(t["op"], f"{f}.op", OPS)
    rhs = t["rhs"]
    if isinstance(rhs, str):
        rhs = _arm_ref(c, rhs, f"{f}.rhs", arms)
        if rhs == lhs:
            c.fail(f"{f}.rhs", "compares an arm with itself")
    else:
        rhs = c.num(rhs, f"{f}.rhs", lo=0.0, hi=1.0 if ep.fraction else None)
    margin = c.num(t["margin"], f"{f}.margin", lo=0.0)
    margin_kind = c.str_(t["margin_kind"], f"{f}.margin_kind", MARGIN_KINDS)
    if (ep.time or ep.fraction) and margin_kind != "absolute":
        c.fail(f"{f}.margin_kind", f"end point {name!r} needs 'absolute' (days or a fraction)")
    if margin_kind == "log_ratio" and not isinstance(rhs, str) and rhs <= 0:
        c.fail(f"{f}.rhs", "a log-ratio comparison needs a positive threshold")
    rule = t.get("margin_rule", "")
    if rule:
        rule = c.str_(rule, f"{f}.margin_rule", conventions["margin"])
        entry = conventions["margin"][rule]
        if float(entry["margin"]) != margin or entry["margin_kind"] != margin_kind:
            c.fail(
                f"{f}.margin",
                f"rule {rule} says margin {entry['margin']} ({entry['margin_kind']}), got {margin:g} ({margin_kind})",
            )
    reason = c.str_(t.get("margin_reason", ""), f"{f}.margin_reason", empty=True)
    if not rule and not reason.strip():
        c.fail(f"{f}.margin_reason", "missing: give margin_rule (conventions.toml) or margin_reason")
    horizon = min(arms[a].horizon_days for a in (lhs, rhs) if isinstance(a, str))

    site = None
    if ep.site == "required":
        if "site" not in t:
            c.fail(f"{f}.site", f"missing (required for end point {name!r})")
        site = _site(c, t["site"], f"{f}.site", setting)
    elif "site" in t:
        c.fail(f"{f}.site", f"end point {name!r} is systemic: no site")
    day = None
    if ep.day:
        if "day" not in t:
            c.fail(f"{f}.day", f"missing (required for end point {name!r})")
        day = c.num(t["day"], f"{f}.day", lo=0.0, hi=horizon)
    elif "day" in t:
        c.fail(f"{f}.day", f"end point {name!r} takes no day")
    threshold = None
    if ep.threshold:
        if "threshold_mm3" not in t:
            c.fail(f"{f}.threshold_mm3", f"missing (required for end point {name!r})")
        threshold = c.num(t["threshold_mm3"], f"{f}.threshold_mm3", lo=0.0, lo_open=True)
    elif "threshold_mm3" in t:
        c.fail(f"{f}.threshold_mm3", f"end point {name!r} takes no threshold")
    ref_day = None
    if ep.reference_day:
        if "reference_day" not in t:
            c.fail(f"{f}.reference_day", f"missing (required for end point {name!r})")
        ref_day = c.num(t["reference_day"], f"{f}.reference_day", lo=0.0, hi=horizon)
    elif "reference_day" in t:
        c.fail(f"{f}.reference_day", f"end point {name!r} takes no reference_day")
    ref_arm = None
    if ep.reference_arm:
        if "reference_arm" not in t:
            c.fail(f"{f}.reference_arm", f"missing (required for end point {name!r})")
        ref_arm = _arm_ref(c, t["reference_arm"], f"{f}.reference_arm", arms)
        if site != "abscopal":
            c.fail(f"{f}.site", f"end point {name!r} is read at the 'abscopal' site")
    elif "reference_arm" in t:
        c.fail(f"{f}.reference_arm", f"end point {name!r} takes no reference_arm")
    note = c.str_(t.get("note", ""), f"{f}.note", empty=True)
    return RecordComparison(name, lhs, op, rhs, margin, margin_kind, rule, reason, site, day, threshold, ref_day, ref_arm, note)


def _parse_provenance(c: _Ctx, p, is_series: bool) -> Provenance:
    p = c.table(p, "provenance")
    c.keys(
        p,
        "provenance",
        {"review_section", "review_refs", "reference", "primary_study", "protocol_tag", "protocol_text"},
        {"refs_note", "data_source"},
    )
    section = c.str_(p["review_section"], "provenance.review_section")
    if is_series:
        if section != "external":
            c.fail("provenance.review_section", "series records (S-ids) use 'external'")
    elif not re.fullmatch(r"\d+(\.\d+)*", section):
        c.fail("provenance.review_section", f"must be a section number like '3.4.1', got {section!r}")
    refs = c.list_(p["review_refs"], "provenance.review_refs", nonempty=not is_series)
    refs = tuple(c.int_(r, f"provenance.review_refs[{i}]", lo=1) for i, r in enumerate(refs))
    src = None
    if "data_source" in p:
        d = c.table(p["data_source"], "provenance.data_source")
        c.keys(d, "provenance.data_source", {"paper", "repo", "commit", "path", "licence"}, {"doi", "digitised_by"})
        src = DataSource(**{k: c.str_(v, f"provenance.data_source.{k}") for k, v in d.items()})
        if not re.fullmatch(r"[0-9a-f]{40}", src.commit):
            c.fail("provenance.data_source.commit", "must be a 40-hex-digit git commit")
    elif is_series:
        c.fail("provenance.data_source", "missing (required for series records)")
    return Provenance(
        section,
        refs,
        c.str_(p["reference"], "provenance.reference"),
        c.str_(p["primary_study"], "provenance.primary_study"),
        c.str_(p["protocol_tag"], "provenance.protocol_tag", STATUS_TAGS),
        c.str_(p["protocol_text"], "provenance.protocol_text"),
        c.str_(p.get("refs_note", ""), "provenance.refs_note", empty=True),
        src,
    )


def _parse_record(raw, path: Path | None, root: Path, conventions) -> Record:
    rid = raw.get("id") if isinstance(raw, dict) else None
    c = _Ctx(rid if isinstance(rid, str) and rid else "<no id>", path)
    raw = c.table(raw, "record")
    c.keys(raw, "", _TOP_REQUIRED, _TOP_OPTIONAL)
    rid = c.str_(raw["id"], "id")
    if not _ID_RE.fullmatch(rid):
        c.fail("id", f"must look like R01, S01 or P01, got {rid!r}")
    status = c.str_(raw["status"], "status", STATUS_TAGS)
    use = c.str_(raw["use"], "use", USES)
    use_reason = c.str_(raw.get("use_reason", ""), "use_reason", empty=True)
    if use == "check" and not use_reason.strip():
        c.fail("use_reason", "missing: a record used only as a check must say why")
    line = c.str_(raw["tumour_line"], "tumour_line", TUMOUR_LINES)
    line_note = c.str_(raw.get("tumour_line_note", ""), "tumour_line_note", empty=True)
    if line == "generic" and not line_note.strip():
        c.fail("tumour_line_note", "missing: say why the tumour line is 'generic'")
    hierarchy_line = c.str_(raw.get("hierarchy_line", ""), "hierarchy_line", empty=True)
    if hierarchy_line and (not hierarchy_line.startswith(f"{line} ") or not hierarchy_line[len(line) + 1 :].strip()):
        c.fail(
            "hierarchy_line",
            f"must be '{line} <variant>' (the record's tumour_line, a space, a variant name), got {hierarchy_line!r}",
        )
    other_lines = c.strs(raw.get("other_tumour_lines", []), "other_tumour_lines", TUMOUR_LINES)
    setting = c.str_(raw["setting"], "setting", SETTINGS)
    kind = c.str_(raw["kind"], "kind", KINDS)
    inoculum_group = c.str_(raw.get("inoculum_group", ""), "inoculum_group", empty=True).strip()
    if "inoculum_group" in raw and not inoculum_group:
        c.fail("inoculum_group", "empty: name the source whose records share one fitted day-0 volume, or leave the key out")
    if inoculum_group and kind != "time_course":
        c.fail("inoculum_group", "only for time_course records (their own volumes are what inform a fitted day-0 volume)")
    prov = _parse_provenance(c, raw["provenance"], rid.startswith("S"))

    protocol_status = c.str_(raw["protocol_status"], "protocol_status", PROTOCOL_STATUSES)
    generic_ids = c.strs(raw.get("generic_ids", []), "generic_ids")
    known = set(conventions["generic"]) | set(conventions["endpoint"])
    for i, g in enumerate(generic_ids):
        if g not in known:
            c.fail(f"generic_ids[{i}]", f"{g!r} is not defined in conventions.toml ([generic] or [endpoint])")
    assumptions = c.strs(raw.get("protocol_assumptions", []), "protocol_assumptions")
    if protocol_status == "generic" and not assumptions:
        c.fail("protocol_assumptions", "missing: a generic protocol must say what was assumed")

    arms_raw = c.table(raw["arms"], "arms")
    if not arms_raw:
        c.fail("arms", "must define at least one arm")
    arms = {name: _parse_arm(c, name, a, setting) for name, a in arms_raw.items()}
    notes_raw = c.table(raw.get("arm_notes", {}), "arm_notes")
    mods_raw = c.table(raw.get("arm_modifiers", {}), "arm_modifiers")
    for field, table in (("arm_notes", notes_raw), ("arm_modifiers", mods_raw)):
        for name in table:
            _arm_ref(c, name, f"{field}.{name}", arms)
    for name, arm in list(arms.items()):
        arms[name] = Arm(
            arm.name,
            arm.horizon_days,
            arm.rt,
            arm.drugs,
            arm.schedule,
            c.strs(mods_raw.get(name, []), f"arm_modifiers.{name}", ARM_MODIFIERS),
            c.str_(notes_raw.get(name, ""), f"arm_notes.{name}", empty=True),
        )

    inoc = c.table(raw.get("inoculation_days", {}), "inoculation_days")
    c.keys(inoc, "inoculation_days", set(), {"irradiated", "abscopal"} if setting == "two-tumour" else {"irradiated"})
    inoc = {k: c.num(v, f"inoculation_days.{k}", lo=0.0) for k, v in inoc.items()}
    inoc = {"irradiated": 0.0, **({"abscopal": 0.0} if setting == "two-tumour" else {}), **inoc}
    cells = raw.get("cells_inoculated")
    if cells is not None:
        cells = c.num(cells, "cells_inoculated", lo=0.0, lo_open=True)

    obs_key = _OBS_LIST[kind]
    for other in set(_OBS_LIST.values()) - {obs_key}:
        if other in raw:
            c.fail(other, f"a {kind!r} record holds only '{obs_key}' entries")
    check_text = c.str_(raw.get("check_text", ""), "check_text", empty=True)
    entries = raw.get(obs_key, [])
    allow_empty = kind == "qualitative" and use == "check" and check_text.strip()
    entries = c.list_(entries, obs_key, nonempty=not allow_empty)
    if kind == "time_course":
        obs = [_parse_time_course(c, i, t, arms, setting, root) for i, t in enumerate(entries)]
    elif kind == "count":
        obs = [_parse_count(c, i, t, arms, setting) for i, t in enumerate(entries)]
    else:
        obs = [_parse_comparison(c, i, t, arms, setting, conventions) for i, t in enumerate(entries)]

    return Record(
        id=rid,
        title=c.str_(raw["title"], "title"),
        status=status,
        use=use,
        tumour_line=line,
        setting=setting,
        kind=kind,
        outcome_text=c.str_(raw["outcome_text"], "outcome_text"),
        provenance=prov,
        protocol_status=protocol_status,
        arms=MappingProxyType(arms),
        observations=tuple(obs),
        use_reason=use_reason,
        tumour_line_note=line_note,
        tumour_variant=c.str_(raw.get("tumour_variant", ""), "tumour_variant", empty=True),
        hierarchy_line=hierarchy_line,
        inoculum_group=inoculum_group,
        other_tumour_lines=other_lines,
        generic_ids=generic_ids,
        protocol_assumptions=assumptions,
        inoculation_days=MappingProxyType(inoc),
        cells_inoculated=cells,
        check_text=check_text,
        notes=c.strs(raw.get("notes", []), "notes"),
        source_path=str(path) if path else "",
    )


def _resolve(path: str | Path | None) -> tuple[Path, list[Path]]:
    """(data root, record files) for a data directory, a records directory or one file."""
    if path is None:
        path = default_data_dir()
        if not path.is_dir():
            raise FileNotFoundError(
                f"no fits/data directory at {path}: load_records() without a path works only from a source "
                "checkout; pass the data directory or a record file explicitly"
            )
    path = Path(path)
    if path.is_file():
        root = path.parent.parent if path.parent.name == "records" else path.parent
        return root, [path]
    if not path.is_dir():
        raise FileNotFoundError(f"records path not found: {path}")
    if (path / "records").is_dir():
        return path, sorted((path / "records").glob("*.toml"))
    root = path.parent if path.name == "records" else path
    return root, sorted(p for p in path.glob("*.toml") if p.name != "conventions.toml")


def load_records(path: str | Path | None = None) -> tuple[Record, ...]:
    """Load and validate the records under ``path`` (``fits/data`` by default), sorted by id.

    ``path`` may be the data directory (holding ``records/`` and ``conventions.toml``), a
    directory of record files, or one TOML file (one record, or several as ``[[record]]``).
    ``conventions.toml`` is taken from the data directory, else from the checkout's ``fits/data``.
    """
    root, files = _resolve(path)
    if not files:
        raise FileNotFoundError(f"no record files (*.toml) under {path or root}")
    conv_path = root / "conventions.toml"
    conventions = load_conventions(conv_path if conv_path.is_file() else None)
    records: dict[str, Record] = {}
    for file in files:
        try:
            raw = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise RecordError(file.stem, "<file>", f"malformed TOML: {e}", file) from None
        items = raw["record"] if set(raw) == {"record"} and isinstance(raw["record"], list) else [raw]
        for item in items:
            rec = _parse_record(item, file, root, conventions)
            if rec.id in records:
                raise RecordError(rec.id, "id", f"duplicate id (also in {records[rec.id].source_path})", file)
            if len(items) == 1 and file.stem != rec.id and file.parent.name == "records":
                raise RecordError(rec.id, "id", f"file name {file.name!r} does not match the id", file)
            records[rec.id] = rec
    return tuple(records[k] for k in sorted(records))


def records_table(records: tuple[Record, ...] | None = None, path: str | Path | None = None):
    """A pandas DataFrame, one row per record: id, title, tumour line, setting, kind, status, use..."""
    import pandas as pd

    records = load_records(path) if records is None else records
    return pd.DataFrame(
        [
            {
                "id": r.id,
                "title": r.title,
                "tumour_line": r.tumour_line,
                "setting": r.setting,
                "kind": r.kind,
                "status": r.status,
                "use": r.use,
                "protocol_status": r.protocol_status,
                "n_arms": len(r.arms),
                "n_observations": len(r.observations),
            }
            for r in records
        ]
    )
