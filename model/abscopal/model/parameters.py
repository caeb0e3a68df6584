"""The parameter table: one record per parameter (name, value, unit, bounds, scale, prior, source).

``data/parameters.csv`` is the single source of defaults; ``data/tumour_lines.csv`` holds the named
tumour-line sets as overrides of the line-specific parameters, each with its source.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

from .equations import build_model


@dataclass(frozen=True)
class ParamSpec:
    """One row of the parameter table."""

    name: str
    value: float
    unit: str
    lower: float
    upper: float
    scale: str  # "log" or "lin"
    prior: str
    estimate: bool  # estimated by the fit ("yes": one shared value; "line", "growth": one value per tumour line)
    group: str
    source: str
    description: str
    per_line: bool = False  # estimated per tumour line (the table's estimate column says "line" or "growth")
    growth_only: bool = False  # per line, but only for the lines with growth data ("growth")


#: values of the table's ``estimate`` column: "yes" one shared value; "line" one value per tumour line
#: of the fitted records; "growth" one value per tumour line with growth data (fitted time courses),
#: other lines keeping ``tumour_lines.csv``; "no" fixed
ESTIMATE_VALUES = ("yes", "line", "growth", "no")


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("abscopal").joinpath(f"data/{name}").read_text()
    return list(csv.DictReader(text.splitlines()))


@cache
def parameter_table() -> tuple[ParamSpec, ...]:
    """All parameter records, validated (bounds contain the value, scale and names known)."""
    specs = []
    for row in _read_csv("parameters.csv"):
        spec = ParamSpec(
            name=row["name"],
            value=float(row["value"]),
            unit=row["unit"],
            lower=float(row["lower"]),
            upper=float(row["upper"]),
            scale=row["scale"],
            prior=row["prior"],
            estimate=row["estimate"] != "no",
            per_line=row["estimate"] in ("line", "growth"),
            growth_only=row["estimate"] == "growth",
            group=row["group"],
            source=row["source"],
            description=row["description"],
        )
        if row["estimate"] not in ESTIMATE_VALUES:
            raise ValueError(f"parameter {spec.name}: estimate must be one of {ESTIMATE_VALUES}, got {row['estimate']!r}")
        if spec.scale not in ("log", "lin"):
            raise ValueError(f"parameter {spec.name}: scale must be 'log' or 'lin', got {spec.scale!r}")
        if not spec.lower <= spec.value <= spec.upper:
            raise ValueError(f"parameter {spec.name}: value {spec.value} outside [{spec.lower}, {spec.upper}]")
        if not spec.source:
            raise ValueError(f"parameter {spec.name}: no source")
        specs.append(spec)
    model_names = set(build_model().param_names)
    missing = model_names - {s.name for s in specs}
    if missing:
        raise ValueError(f"parameters used by the equations but missing from the table: {sorted(missing)}")
    unused = {s.name for s in specs} - model_names - {"body_weight_g"}  # (converts mg/kg doses, not in the ODE)
    if unused:
        raise ValueError(f"parameters in the table that the equations do not use: {sorted(unused)}")
    for s in specs:
        lo, hi = structural_bounds().get(s.name, (-math.inf, math.inf))
        if s.lower < lo or s.upper > hi:
            raise ValueError(f"parameter {s.name}: table bounds [{s.lower}, {s.upper}] exceed its structural range [{lo}, {hi}]")
    return tuple(specs)


@cache
def structural_bounds() -> dict[str, tuple[float, float]]:
    """Ranges outside which a parameter makes the equations meaningless: the maximal fractional
    block ``emax`` of a blocking agent lives in [0, 1] (``1 - emax * occupancy`` is the part of the
    pathway left working; above 1 a blocker would reverse the pathway)."""
    from .agents import catalogue
    from .equations import BLOCK_MECHANISMS

    return {f"emax_{a.key}": (0.0, 1.0) for a in catalogue() if a.has_pk and set(a.mechanisms) & BLOCK_MECHANISMS}


def spec(name: str) -> ParamSpec:
    for s in parameter_table():
        if s.name == name:
            return s
    raise KeyError(f"unknown parameter {name!r}")


@cache
def _line_overrides() -> dict[str, dict[str, tuple[float, str]]]:
    lines: dict[str, dict[str, tuple[float, str]]] = {}
    for row in _read_csv("tumour_lines.csv"):
        lines.setdefault(row["line"], {})[row["parameter"]] = (float(row["value"]), row["source"])
    return lines


def tumour_lines() -> tuple[str, ...]:
    """Names of the shipped tumour-line parameter sets."""
    return tuple(_line_overrides())


def base_tumour_line(line: str) -> str:
    """The shipped tumour line that ``line`` stands for: ``line`` itself when it is shipped, else
    the shipped line a fit's hierarchy line is a variant of, named ``"<line> <variant>"``
    (``"MC38 SIRPa-KO"`` -> ``"MC38"``: the record field ``hierarchy_line``)."""
    known = tumour_lines()
    if line in known:
        return line
    head, _, variant = line.partition(" ")
    if head in known and variant.strip():
        return head
    raise ValueError(
        f"unknown tumour_line {line!r}: allowed {list(known)}, or a variant named '<line> <variant>' (e.g. 'MC38 SIRPa-KO')"
    )


def tumour_line_table(line: str) -> dict[str, tuple[float, str]]:
    """The overrides (value, source) that define a tumour line."""
    lines = _line_overrides()
    if line not in lines:
        raise ValueError(f"unknown tumour_line {line!r}: allowed {list(lines)}")
    return dict(lines[line])


@dataclass(frozen=True)
class Params:
    """A full parameter set: values in the model's parameter order, with names.

    Only the plain array ``values`` enters compiled code; names are for humans.
    """

    values: np.ndarray
    tumour_line: str = "generic"
    body_weight_g: float = 20.0

    @property
    def names(self) -> tuple[str, ...]:
        return build_model().param_names

    def __getitem__(self, name: str) -> float:
        return float(self.values[self.index(name)])

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown parameter {name!r}") from None

    def replace(self, **updates: float) -> Params:
        """A copy with some parameters changed (by name); values are checked to be finite and inside
        their structural range (``structural_bounds``)."""
        values = self.values.copy()
        bounds = structural_bounds()
        for name, value in updates.items():
            if not math.isfinite(float(value)):
                raise ValueError(f"parameter {name}: value must be finite, got {value!r}")
            lo, hi = bounds.get(name, (-math.inf, math.inf))
            if not lo <= float(value) <= hi:
                raise ValueError(
                    f"parameter {name}: {value!r} is outside its allowed range [{lo}, {hi}] (a blocker's emax is a fraction)"
                )
            values[self.index(name)] = float(value)
        return Params(values, self.tumour_line, self.body_weight_g)

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.names, map(float, self.values)))


def default_params(tumour_line: str = "generic", overrides: Mapping[str, float] | None = None) -> Params:
    """Defaults of the table, with a tumour line's overrides and then the caller's."""
    table = {s.name: s.value for s in parameter_table()}
    for name, (value, _source) in tumour_line_table(tumour_line).items():
        if name not in table:
            raise ValueError(f"tumour line {tumour_line}: unknown parameter {name!r}")
        table[name] = value
    values = np.array([table[n] for n in build_model().param_names], dtype=np.float64)
    params = Params(values, tumour_line, table["body_weight_g"])
    return params.replace(**overrides) if overrides else params


#: the volume of one tumour cell (mm^3): the table's ``v_cell`` (Del Monte 2009, 1 mm^3 ~ 1e6
#: cells), the one constant behind cell counts and cure (viable volume below one cell)
CELL_VOLUME_MM3 = spec("v_cell").value
