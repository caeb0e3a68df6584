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

from .checks import default_data_dir, load_conventions
from .load import load_records, records_table
from .schema import (
    AGENT_UNITS,
    ENDPOINTS,
    KINDS,
    OPS,
    SETTINGS,
    SITES,
    STATUS_TAGS,
    TUMOUR_LINES,
    USES,
    Arm,
    ArmDose,
    ArmFraction,
    Count,
    DataSource,
    Provenance,
    Record,
    RecordComparison,
    RecordError,
    TimeCourse,
    TimePoint,
)

__all__ = [
    "AGENT_UNITS",
    "ENDPOINTS",
    "KINDS",
    "OPS",
    "SETTINGS",
    "SITES",
    "STATUS_TAGS",
    "TUMOUR_LINES",
    "USES",
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
