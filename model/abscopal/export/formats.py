"""Parameter export (JSON, CSV, netCDF) and the matching loaders.

JSON and CSV hold one record per parameter: ``name``, ``tumour_line`` ("" for a value shared by all
lines, a line name for a line's own value, "(population)" for a hierarchical hyperparameter),
``value`` (the posterior median, the MAP point of a MAP-only fit, or the table default), ``q05`` and
``q95`` (the 90 % posterior interval; empty / null when there is none: a value not estimated, e.g.
every record of an export of the default table, and every value of a MAP-only fit, which holds no
parameter uncertainty), ``unit``, ``scale``, ``estimated`` and ``source``. The header's ``estimate``
says which: ``posterior median``, ``map`` or ``default``.

A header stores the record count and a SHA-256 of the records, so a truncated or edited file is
refused with a clear error. Floats are written with ``repr`` (shortest round-trip form), so export
then load gives the same values bit for bit. netCDF is a byte copy of a fit's arviz InferenceData,
read back with h5netcdf. Nothing is unpickled.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..decide.display import SPREAD_ONLY
from ..decide.display import spread_only as _spread_only
from ..io import atomic_write_text
from ..model.parameters import Params, base_tumour_line, default_params, parameter_table, spec, tumour_line_table, tumour_lines

FORMAT_NAME = "abscopal-parameters"
FORMAT_VERSION = 1
FORMATS = ("json", "csv", "netcdf", "sbml", "petab")
FIELDS = ("name", "tumour_line", "value", "q05", "q95", "unit", "scale", "estimated", "source")
POPULATION = "(population)"


class ExportError(ValueError):
    """An export that cannot be written, or a file that cannot be loaded; the message says why."""


# ----------------------------------------------------------------------------- records
def point_only(fit) -> bool:
    """A fit with no parameter uncertainty: its MAP point (``NAME@map``, or a fit made with ``--map``)."""
    return fit is not None and _spread_only(fit)


def estimate_kind(fit) -> str:
    """What a record's ``value`` is: "default" (no fit), "map" (a MAP-only fit) or "posterior median"."""
    return "default" if fit is None else "map" if point_only(fit) else "posterior median"


def _record(name, line, value, q05, q95, unit, scale, estimated, source) -> dict:
    return dict(
        name=name,
        tumour_line=line,
        value=float(value),
        q05=None if q05 is None else float(q05),
        q95=None if q95 is None else float(q95),
        unit=unit,
        scale=scale,
        estimated=bool(estimated),
        source=source,
    )


def default_records() -> list[dict]:
    """The default table: one shared record per parameter, then each tumour line's overrides."""
    rows = [_record(s.name, "", s.value, None, None, s.unit, s.scale, False, s.source) for s in parameter_table()]
    for line in tumour_lines():
        for name, (value, source) in tumour_line_table(line).items():
            s = spec(name)
            rows.append(_record(name, line, value, None, None, s.unit, s.scale, False, source))
    return rows


def fit_records(fit) -> list[dict]:
    """Records of a fit: estimated quantities at their posterior median with the 90 % interval
    (``fit.summary()``), or for a MAP-only fit at the MAP point without an interval; every other
    parameter at the value the fit held it (fixed overrides, else the table and line defaults),
    without an interval."""
    summary = fit.summary()
    point = point_only(fit)
    fixed = fit.fixed_overrides()
    estimated_shared = set(fit.shared)
    entries = fit.line_entries
    rows = []
    for s in parameter_table():
        if s.name in estimated_shared:
            continue
        value, source = (fixed[s.name], f"held fixed in fit {fit.name}") if s.name in fixed else (s.value, s.source)
        rows.append(_record(s.name, "", value, None, None, s.unit, s.scale, False, source))
    for line in tumour_lines():
        for name, (value, source) in tumour_line_table(line).items():
            if name in fixed or name in estimated_shared or line in entries.get(name, ()):
                continue
            s = spec(name)
            rows.append(_record(name, line, value, None, None, s.unit, s.scale, False, source))
    for r in summary.to_dict(orient="records"):
        if r["name"] in ("sigma_series", "v0_inoculum"):  # likelihood nuisances of the data, not model parameters
            continue
        if point:  # one draw, the MAP point: no interval to write
            source = f"fit {fit.name} (MAP point; {SPREAD_ONLY}); prior: {r['prior']}; {r['source']}"
            rows.append(_record(r["name"], r["tumour_line"], r["median"], None, None, r["unit"], r["scale"], True, source))
            continue
        source = f"fit {fit.name} (posterior median, 90 % interval); prior: {r['prior']}; {r['source']}"
        rows.append(_record(r["name"], r["tumour_line"], r["median"], r["q05"], r["q95"], r["unit"], r["scale"], True, source))
    return rows


def _digest(records: list[dict]) -> str:
    canon = json.dumps([[r[k] for k in FIELDS] for r in records], separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(canon.encode()).hexdigest()


def _check_records(records: list[dict], where: str) -> None:
    """Field-by-field validation of loaded (or about to be written) records."""
    if not records:
        raise ExportError(f"{where}: no parameter records")
    table = {s.name for s in parameter_table()}
    seen = set()
    for i, r in enumerate(records):
        at = f"{where}: record {i}"
        missing = [k for k in FIELDS if k not in r]
        if missing:
            raise ExportError(f"{at}: missing fields {missing}; every record has {list(FIELDS)}")
        name = r["name"]
        base = name.removeprefix("mu_").removeprefix("sigma_") if r["tumour_line"] == POPULATION else name
        if base not in table:
            raise ExportError(f"{at}: name {name!r} is not a parameter of the model")
        if r["tumour_line"] not in ("", POPULATION) and not _is_line(r["tumour_line"]):
            raise ExportError(
                f"{at} ({name}): tumour_line {r['tumour_line']!r}; allowed '', {POPULATION!r}, {list(tumour_lines())} "
                "or a fitted variant '<line> <variant>'"
            )
        for k in ("value", "q05", "q95"):
            v = r[k]
            if v is None and k != "value":
                continue
            if not isinstance(v, float) or not math.isfinite(v):
                raise ExportError(f"{at} ({name}): {k} must be a finite number{'' if k == 'value' else ' or empty'}, got {v!r}")
        if (r["q05"] is None) != (r["q95"] is None):
            raise ExportError(f"{at} ({name}): q05 and q95 must both be given or both be empty")
        if r["q05"] is not None and not r["q05"] <= r["value"] <= r["q95"]:
            raise ExportError(f"{at} ({name}): value {r['value']} outside its interval [{r['q05']}, {r['q95']}]")
        if r["scale"] not in ("log", "lin"):
            raise ExportError(f"{at} ({name}): scale must be 'log' or 'lin', got {r['scale']!r}")
        if not isinstance(r["estimated"], bool):
            raise ExportError(f"{at} ({name}): estimated must be true or false, got {r['estimated']!r}")
        key = (name, r["tumour_line"])
        if key in seen:
            raise ExportError(f"{at}: duplicate record for {name!r} (tumour_line {r['tumour_line']!r})")
        seen.add(key)


# ----------------------------------------------------------------------------- writers
def _interval_note(estimate: str, empty: str) -> str:
    if estimate == "map":
        return f"none: a MAP-only fit ({SPREAD_ONLY}); q05 and q95 are {empty} everywhere"
    return f"90 % posterior interval (q05, q95); {empty} where the value is not estimated"


def _json_text(records: list[dict], source: str, estimate: str = "posterior median") -> str:
    doc = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "source": source,
        "estimate": estimate,
        "interval": _interval_note(estimate, "null"),
        "fields": list(FIELDS),
        "n_records": len(records),
        "sha256": _digest(records),
        "parameters": records,
    }
    return json.dumps(doc, indent=1, allow_nan=False) + "\n"


def _csv_cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _csv_text(records: list[dict], source: str, estimate: str = "posterior median") -> str:
    buf = io.StringIO()
    buf.write(f"# {FORMAT_NAME} version {FORMAT_VERSION}\n")
    buf.write(f"# source: {source.replace(chr(10), ' ')}\n")
    buf.write(f"# estimate: {estimate}\n")
    buf.write(f"# interval: {_interval_note(estimate, 'empty')}\n")
    buf.write(f"# n_records: {len(records)}\n")
    buf.write(f"# sha256: {_digest(records)}\n")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(FIELDS)
    for r in records:
        w.writerow([_csv_cell(r[k]) for k in FIELDS])
    return buf.getvalue()


def _copy_atomic(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            while chunk := inp.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export(fmt: str, out, fit=None, schedule=None, tumour_line: str | None = None) -> Path:
    """Write the parameters (of ``fit``, else the default table) in format ``fmt`` to ``out``.

    ``json``/``csv``: parameter records; ``netcdf``: a copy of the fit's InferenceData (needs a fit);
    ``sbml``: the model as SBML Level 3 with ``schedule``'s events (optional) and the parameter values
    of ``tumour_line`` (default: the schedule's line, else "generic"); ``petab``: a PEtab problem for the
    numeric series S01-S05 in the folder ``out``."""
    if fmt not in FORMATS:
        raise ExportError(f"--format: {fmt!r} is not a format; allowed {list(FORMATS)}")
    out = Path(out)
    source = f"fit {fit.name} ({fit.path})" if fit is not None else "default parameter table (no fit: intervals empty)"
    if point_only(fit):
        source = f"fit {fit.name} ({fit.path}), MAP point: {SPREAD_ONLY}"
    estimate = estimate_kind(fit)
    if fmt in ("json", "csv"):
        records = fit_records(fit) if fit is not None else default_records()
        _check_records(records, "export")
        text = _json_text(records, source, estimate) if fmt == "json" else _csv_text(records, source, estimate)
        atomic_write_text(out, text)
    elif fmt == "netcdf":
        if fit is None:
            raise ExportError("--format netcdf: needs --fit (the default table has no posterior to export)")
        if fit.path is None or not (Path(fit.path) / "posterior.nc").is_file():
            raise ExportError(f"--fit: fit {fit.name!r} has no posterior.nc on disk to export")
        _copy_atomic(Path(fit.path) / "posterior.nc", out)
    elif fmt == "sbml":
        from .sbml import write_sbml

        line = tumour_line or (schedule.tumour_line if schedule is not None else "generic")
        params = fit.params(line) if fit is not None else default_params(line)
        write_sbml(out, schedule=schedule, params=params)
    else:
        from .petab_problem import write_petab

        write_petab(out, fit=fit)
    return out


# ----------------------------------------------------------------------------- loaders
@dataclass(frozen=True)
class ParameterExport:
    """A loaded parameter export: its records and where they came from."""

    records: tuple[dict, ...]
    source: str
    path: Path
    estimate: str = ""  # what the values are: "posterior median", "map" or "default" ("" in files before 2026-12-07)

    def frame(self):
        import pandas as pd

        return pd.DataFrame(list(self.records), columns=list(FIELDS))

    def params(self, tumour_line: str = "generic") -> Params:
        """A full parameter set for ``tumour_line``: shared records, then that line's own records.
        A per-line estimated parameter without a record for this line takes the population median
        (``mu_<name>``), if the export has one."""
        try:
            parent = base_tumour_line(tumour_line)
        except ValueError:
            raise ExportError(
                f"tumour_line: unknown tumour line {tumour_line!r}; allowed {list(tumour_lines())} or a fitted variant '<line> <variant>'"
            ) from None
        base = default_params("generic")
        values = base.values.copy()
        model_names = set(base.names)
        shared = {r["name"]: r["value"] for r in self.records if r["tumour_line"] == ""}
        # a fitted variant ("MC38 SIRPa-KO") starts from its parent line's records, then its own
        own = {r["name"]: r["value"] for r in self.records if r["tumour_line"] == parent}
        own.update({r["name"]: r["value"] for r in self.records if r["tumour_line"] == tumour_line})
        population = {r["name"].removeprefix("mu_"): r["value"] for r in self.records if r["tumour_line"] == POPULATION}
        merged = dict(shared)
        merged.update({k: v for k, v in population.items() if not k.startswith("sigma_") and k not in own})
        merged.update(own)
        for name, value in merged.items():
            if name in model_names:  # table entries outside the equations (body weight) are kept apart
                values[base.index(name)] = value
        return Params(values, tumour_line, float(merged.get("body_weight_g", base.body_weight_g)))


def _is_line(line: str) -> bool:
    try:
        base_tumour_line(line)
    except ValueError:
        return False
    return True


def _verify(records: list[dict], n_records, digest, where: str) -> None:
    if n_records is not None and len(records) != n_records:
        raise ExportError(f"{where}: {len(records)} records but the header says {n_records}: the file is truncated or edited")
    _check_records(records, where)
    if digest is not None and _digest(records) != digest:
        raise ExportError(f"{where}: the records do not match the header's sha256: the file was edited after export")


def _load_json(path: Path) -> ParameterExport:
    try:
        doc = json.loads(path.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"non-finite {c}")))
    except (json.JSONDecodeError, ValueError) as e:
        raise ExportError(f"{path}: not a valid parameter JSON file (truncated or edited?): {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
        raise ExportError(f"{path}: field 'format' must be {FORMAT_NAME!r}: not an abscopal parameter export")
    if doc.get("version") != FORMAT_VERSION:
        raise ExportError(f"{path}: field 'version' is {doc.get('version')!r}; this abscopal reads version {FORMAT_VERSION}")
    for key in ("n_records", "sha256", "parameters", "source"):
        if key not in doc:
            raise ExportError(f"{path}: field {key!r} missing")
    records = doc["parameters"]
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ExportError(f"{path}: field 'parameters' must be a list of records")
    for r in records:  # JSON writes 1.0 as 1.0, but a hand edit may leave an int: refuse silently changed types
        for k in ("value", "q05", "q95"):
            if isinstance(r.get(k), int) and not isinstance(r.get(k), bool):
                r[k] = float(r[k])
    _verify(records, doc["n_records"], doc["sha256"], str(path))
    return ParameterExport(tuple(records), doc["source"], path, str(doc.get("estimate", "")))


def _parse_csv_cell(key: str, text: str, where: str):
    if key in ("value", "q05", "q95"):
        if text == "" and key != "value":
            return None
        try:
            return float(text)
        except ValueError:
            raise ExportError(f"{where}: {key} must be a number, got {text!r}") from None
    if key == "estimated":
        if text not in ("yes", "no"):
            raise ExportError(f"{where}: estimated must be 'yes' or 'no', got {text!r}")
        return text == "yes"
    return text


def _load_csv(path: Path) -> ParameterExport:
    lines = path.read_text().splitlines()
    header = {}
    body_start = 0
    for i, line in enumerate(lines):
        if not line.startswith("# "):
            body_start = i
            break
        if ": " in line:
            k, v = line[2:].split(": ", 1)
            header[k] = v
        elif i == 0:
            header["format"] = line[2:]
    else:
        body_start = len(lines)
    if header.get("format") != f"{FORMAT_NAME} version {FORMAT_VERSION}":
        raise ExportError(
            f"{path}: first line must be '# {FORMAT_NAME} version {FORMAT_VERSION}': not an abscopal parameter export"
        )
    for key in ("n_records", "sha256", "source"):
        if key not in header:
            raise ExportError(f"{path}: header line '# {key}: ...' missing")
    rows = list(csv.reader(lines[body_start:]))
    if not rows or tuple(rows[0]) != FIELDS:
        raise ExportError(f"{path}: column header must be {','.join(FIELDS)}")
    records = []
    for j, row in enumerate(rows[1:]):
        where = f"{path}: line {body_start + 2 + j}"
        if len(row) != len(FIELDS):
            raise ExportError(f"{where}: {len(row)} columns, expected {len(FIELDS)} (truncated or edited?)")
        records.append({k: _parse_csv_cell(k, v, where) for k, v in zip(FIELDS, row)})
    try:
        n = int(header["n_records"])
    except ValueError:
        raise ExportError(f"{path}: header n_records must be an integer, got {header['n_records']!r}") from None
    _verify(records, n, header["sha256"], str(path))
    return ParameterExport(tuple(records), header["source"], path, header.get("estimate", ""))


def load_params(path) -> ParameterExport:
    """Load a JSON or CSV parameter export (by file extension), checking it is complete and unedited."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    if path.suffix == ".json":
        return _load_json(path)
    if path.suffix == ".csv":
        return _load_csv(path)
    raise ExportError(f"{path}: extension must be .json or .csv (netCDF: load_posterior), got {path.suffix!r}")


def load_posterior(path):
    """Load an exported InferenceData (netCDF via h5netcdf; never unpickles) as an ``xarray.DataTree``."""
    import xarray as xr

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        tree = xr.open_datatree(path, engine="h5netcdf")
        tree.load()
    except Exception as e:
        raise ExportError(
            f"{path}: not a readable netCDF InferenceData (truncated or edited?): {type(e).__name__}: {e}"
        ) from None
    if "posterior" not in tree.children:
        raise ExportError(f"{path}: netCDF file has no 'posterior' group: not an exported fit")
    for var in tree["posterior"].data_vars:
        if not np.all(np.isfinite(np.asarray(tree["posterior"][var].values, dtype=float))):
            raise ExportError(f"{path}: posterior variable {var!r} has non-finite values")
    return tree
