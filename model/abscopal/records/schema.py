"""Record vocabularies (allowed values, end points) and the typed, frozen record data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..model.agents import catalogue
from ..model.parameters import tumour_lines

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
