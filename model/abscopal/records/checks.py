"""Validation context of one record (every failure names the record and field) and the shared
conventions file (generic protocol elements, end-point conventions, margin rules)."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..io import shipped_fits
from .schema import MARGIN_KINDS, RecordError


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
