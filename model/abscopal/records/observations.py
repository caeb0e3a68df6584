"""Parsing of a record's arms and observations: time courses (inline rows or a CSV series), counts
and qualitative comparisons."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path

from ..schedules import MAX_DOSE_PER_FRACTION_GY
from .checks import _Ctx
from .schema import (
    AGENT_UNITS,
    ENDPOINTS,
    ERROR_MODELS,
    MARGIN_KINDS,
    N_STATUSES,
    OPS,
    QUANTITIES,
    RT_TARGETS,
    SITES,
    ZERO_MEANS,
    Arm,
    ArmDose,
    ArmFraction,
    Count,
    RecordComparison,
    TimeCourse,
    TimePoint,
    _freeze,
)


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


def _endpoint_field(c: _Ctx, t: dict, f: str, key: str, wanted: bool, name: str, refusal: str, parse):
    """``parse(t[key], field)`` when the end point ``name`` takes ``key`` (missing: an error), None
    when it does not (present: an error saying ``end point <name> <refusal>``)."""
    if wanted:
        if key not in t:
            c.fail(f"{f}.{key}", f"missing (required for end point {name!r})")
        return parse(t[key], f"{f}.{key}")
    if key in t:
        c.fail(f"{f}.{key}", f"end point {name!r} {refusal}")
    return None


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

    site = _endpoint_field(
        c, t, f, "site", ep.site == "required", name, "is systemic: no site", lambda v, g: _site(c, v, g, setting)
    )
    day = _endpoint_field(c, t, f, "day", ep.day, name, "takes no day", lambda v, g: c.num(v, g, lo=0.0, hi=horizon))
    threshold = _endpoint_field(
        c, t, f, "threshold_mm3", ep.threshold, name, "takes no threshold", lambda v, g: c.num(v, g, lo=0.0, lo_open=True)
    )
    ref_day = _endpoint_field(
        c, t, f, "reference_day", ep.reference_day, name, "takes no reference_day", lambda v, g: c.num(v, g, lo=0.0, hi=horizon)
    )
    ref_arm = _endpoint_field(
        c, t, f, "reference_arm", ep.reference_arm, name, "takes no reference_arm", lambda v, g: _arm_ref(c, v, g, arms)
    )
    if ep.reference_arm and site != "abscopal":
        c.fail(f"{f}.site", f"end point {name!r} is read at the 'abscopal' site")
    note = c.str_(t.get("note", ""), f"{f}.note", empty=True)
    return RecordComparison(name, lhs, op, rhs, margin, margin_kind, rule, reason, site, day, threshold, ref_day, ref_arm, note)
