"""The fitted observations as arrays: one frozen group per kind (time-course points, comparisons,
counts) and the end-point quantities that comparisons and counts read, each a dataclass of
equal-length arrays with its labels. ``problem.build_problem`` fills them from the records."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

#: comparison operators (``Comparisons.op``): the left side below, about equal to, above the right
OP_BELOW, OP_SIMILAR, OP_ABOVE = -1, 0, 1
OPS = {"<": OP_BELOW, "~": OP_SIMILAR, ">": OP_ABOVE}


# ---------------------------------------------------------------- observations as arrays
class _Rows:
    """A group of observations as equal-length arrays (the dataclass fields), plus the labels of
    each row (``records``, ``labels``: not arrays, not fingerprinted). False when empty."""

    _LABELS = ("records", "labels")

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays by name (empty for an empty group): what ``problem_fingerprint`` hashes."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self._LABELS} if len(self) else {}

    @classmethod
    def from_rows(cls, rows: list[dict], **labels):
        """The group from one dict per row (dtypes from the class's ``DTYPES``, float64 when absent)."""
        names = [f.name for f in fields(cls) if f.name not in cls._LABELS]
        return cls(**{n: np.array([r[n] for r in rows], dtype=cls.DTYPES.get(n, np.float64)) for n in names}, **labels)


@dataclass(frozen=True)
class TimeCourses(_Rows):
    """Time-course points: arm, observable and day, the reported mean (and SEM) and how its error
    is modelled (``estimated``: the series SD of discrepancy ``group`` is fitted; ``use_sem``: the
    reported SEM counts; ``censored``: a zero mean, read as below the detection limit);
    ``ref_day`` >= 0 makes the point relative to that day's volume."""

    arm: np.ndarray
    obs: np.ndarray
    day: np.ndarray
    ref_day: np.ndarray
    mean: np.ndarray
    sem: np.ndarray
    estimated: np.ndarray
    use_sem: np.ndarray
    group: np.ndarray
    censored: np.ndarray
    records: tuple[str, ...] = ()  # the record of each point

    DTYPES = dict(arm=np.int64, obs=np.int64, estimated=bool, use_sem=bool, group=np.int64, censored=bool)


@dataclass(frozen=True)
class Comparisons(_Rows):
    """Comparisons ``lhs op rhs`` with ``margin`` (quantities by index into ``Problem.q``; ``rhs``
    -1: the constant ``const``), each with the softness ``tau`` of its scale."""

    lhs: np.ndarray
    rhs: np.ndarray
    const: np.ndarray
    op: np.ndarray  # OP_BELOW, OP_SIMILAR, OP_ABOVE
    margin: np.ndarray
    tau: np.ndarray
    labels: tuple[tuple[str, str], ...] = ()  # (record, readable statement) of each comparison

    DTYPES = dict(lhs=np.int64, rhs=np.int64, op=np.int64)


@dataclass(frozen=True)
class Counts(_Rows):
    """Counts: ``k`` of ``n`` animals cured, against the population quantity ``q``."""

    q: np.ndarray
    k: np.ndarray
    n: np.ndarray
    records: tuple[str, ...] = ()

    DTYPES = dict(q=np.int64)


@dataclass(frozen=True)
class Quantities(_Rows):
    """The end-point values the comparisons and counts read: ``kind`` (``Q_LOG`` ... ``Q_SURVIVAL``),
    the arm (an index into ``Problem.pop_arms`` for the population kinds), the observable, the day,
    the log threshold of time end points and the reference arm (-1: none)."""

    kind: np.ndarray
    arm: np.ndarray
    obs: np.ndarray
    day: np.ndarray
    thr: np.ndarray
    ref: np.ndarray

    DTYPES = dict(kind=np.int64, arm=np.int64, obs=np.int64, ref=np.int64)


def empty(cls):
    """The group with no rows."""
    return cls.from_rows([])
