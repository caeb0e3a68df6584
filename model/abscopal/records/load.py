"""Loading records: one record from its TOML table, all records of a folder, and a summary table."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from types import MappingProxyType

from .checks import _Ctx, default_data_dir, load_conventions
from .observations import (
    _arm_ref,
    _parse_arm,
    _parse_comparison,
    _parse_count,
    _parse_time_course,
)
from .schema import (
    _ID_RE,
    ARM_MODIFIERS,
    KINDS,
    PROTOCOL_STATUSES,
    SETTINGS,
    STATUS_TAGS,
    TUMOUR_LINES,
    USES,
    Arm,
    DataSource,
    Provenance,
    Record,
    RecordError,
)

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
