"""The outcome records in fits/data/: the shipped ones load; malformed ones fail clearly."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import shutil
import tomllib
from pathlib import Path

import pytest
import tomli_w

from abscopal.records import (
    KINDS,
    RecordError,
    default_data_dir,
    load_records,
    records_table,
)

DATA = default_data_dir()


@pytest.fixture(scope="module")
def records():
    return {r.id: r for r in load_records()}


# ----- the shipped records -----
#: every shipped record: the review's outcomes, the numeric series, and numbers printed in primary studies
SHIPPED = {f"R{i:02d}" for i in range(1, 31)} | {f"S{i:02d}" for i in range(1, 22)} | {"P01", "P10", "P30", "P31", "P32"}


def test_all_shipped_records_load(records):
    assert set(records) == SHIPPED
    assert len(list((DATA / "records").glob("*.toml"))) == len(SHIPPED)
    assert records == {r.id: r for r in load_records(DATA)}  # explicit path gives the same


def test_review_ids_all_present(records):
    assert {f"R{i:02d}" for i in range(1, 31)} <= set(records)
    assert {"S01", "S02", "S03", "S04", "S05"} <= set(records)


def test_each_kind_present(records):
    assert {r.kind for r in records.values()} == set(KINDS)
    for r in records.values():
        assert all(o.kind == r.kind for o in r.observations)


def test_check_records_say_why(records):
    checks = {r.id for r in records.values() if r.use == "check"}
    # (issue 20: a record whose tumour line the study does not name, or names outside the catalogue,
    # is a check; so are R12 (an intracranial survival, not a flank volume) and R21 (fitted via P30))
    assert checks == {"R02", "R26", "R27", "R28", "S05", "S08", "S11", "S12", "S16", "S17", "S18", "S19", "P10", "P32"} | {
        f"R{i:02d}" for i in (3, 4, 6, 7, 8, 9, 10, 12, 14, 15, 16, 20, 21, 22, 23, 24, 25)
    }
    assert all(records[i].use_reason.strip() for i in checks)
    assert records["R28"].comparisons == () and records["R28"].check_text


def test_generic_protocols_are_documented(records):
    for r in records.values():
        if r.protocol_status == "generic":
            assert r.protocol_assumptions, r.id
        if r.tumour_line == "generic":
            assert r.tumour_line_note, r.id


def test_no_generic_record_is_fitted(records):
    """An unnamed tumour is a different tumour in each study: a record on ``generic`` is a check,
    never a fitted line of its own (issue 20)."""
    assert not [r.id for r in records.values() if r.tumour_line == "generic" and r.use == "fit"]
    assert all(r.fit_line == "generic" for r in records.values() if r.tumour_line == "generic")


def test_series_copies_are_unchanged():
    for line in (DATA / "series" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((DATA / "series" / name).read_bytes()).hexdigest() == digest, name


def test_series_records_cover_every_csv_row(records):
    rauf = sum(len(t.rows) for i in ("S01", "S02", "S03") for t in records[i].time_courses)
    markovsky = sum(len(t.rows) for i in ("S04", "S05") for t in records[i].time_courses)
    assert (rauf, markovsky) == (99, 109)  # the row counts of the two CSV files
    # the second Rauf file: every row but the zeros outside the authors' fitting windows (dropped as
    # in S01-S03) and the arms no record can encode (agents outside the catalogue, see the records)
    tidy2 = (DATA / "series" / "rauf2025_tidy2.csv").read_text().splitlines()
    later = sum(len(t.rows) for i in range(6, 20) for t in records[f"S{i:02d}"].time_courses)
    assert later == 318 and len(tidy2) - 1 == 415


def test_series_values(records):
    s01 = records["S01"].time_courses[0]
    assert (s01.arm, s01.site, s01.rows[0].day, s01.rows[0].mean) == ("control", "irradiated", 8.0, 48.333333)
    w1 = next(t for t in records["S04"].time_courses if t.series_label == "W1")
    assert w1.quantity == "relative_volume" and w1.reference_day == 12.0
    assert w1.rows[0].day == 12.0 and w1.rows[0].mean == pytest.approx(1.0) and w1.rows[0].sem is None
    assert all(math.isfinite(p.mean) for r in records.values() for t in r.time_courses for p in t.rows)


def test_schedule_form_round_trips(records):
    raw = tomllib.loads((DATA / "records" / "R29.toml").read_text())
    assert records["R29"].arms["concurrent_d7"].schedule_dict() == raw["arms"]["concurrent_d7"]
    arm = records["R29"].arms["sequential_d19"]
    assert [f.day for f in arm.rt] == [7, 8, 9, 10, 11] and arm.drugs[0].day == 19
    assert records["R13"].inoculation_days == {"irradiated": 0.0, "abscopal": 2.0}


def test_records_are_immutable(records):
    r = records["R01"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.status = "READ"
    with pytest.raises(TypeError):
        r.arms["rt"].schedule["horizon_days"] = 10


def test_records_table(records):
    table = records_table()
    assert list(table.columns[:7]) == ["id", "title", "tumour_line", "setting", "kind", "status", "use"]
    assert len(table) == len(records) and table["id"].is_unique


def test_arms_are_accepted_by_the_schedule_loader(records):
    """Every arm loads as a schedule with the same fractions, doses, horizon and tumour line."""
    from abscopal.model.agents import get_agent
    from abscopal.schedules import schedule_from_dict

    for r in records.values():
        for name, arm in r.arms.items():
            s = schedule_from_dict(r.schedule_dict(name))
            where = f"{r.id}:{name}"
            assert s.tumour_line == r.tumour_line and s.horizon_days == arm.horizon_days, where
            assert [(f.day, f.dose_gy, f.target) for f in s.rt] == [(f.day, f.dose_gy, f.target) for f in arm.rt], where
            got = sorted((d.day, get_agent(d.agent).name, d.dose, d.unit) for d in s.drugs)
            want = sorted((d.day, get_agent(d.agent).name, d.dose, d.unit) for d in arm.drugs)
            assert got == want, where


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_records(tmp_path / "nowhere")


# ----- malformed records -----
def _set(path: str, value):
    """A mutation that sets a dotted path (list indices as integers) in the raw record."""

    def mutate(raw):
        *head, last = [int(p) if p.isdigit() else p for p in path.split(".")]
        node = raw
        for key in head:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return mutate


_DELETE = object()


def _inline_rows(rows):
    def mutate(raw):
        tc = raw["time_course"][0]
        del tc["source"]
        tc["rows"] = rows

    return mutate


MALFORMED = [
    # (case, record, mutation, field named in the error)
    ("missing field", "R01", _set("status", _DELETE), "status"),
    ("missing provenance field", "R01", _set("provenance.reference", _DELETE), "provenance.reference"),
    ("unknown agent", "R01", _set("arms.rt_flt3l.drug.0.agent", "Flt-3L"), "arms.rt_flt3l.drug[0].agent"),
    ("unit not fitting the agent", "R01", _set("arms.rt_flt3l.drug.0.unit", "mg/kg"), "arms.rt_flt3l.drug[0].unit"),
    ("bad status tag", "R01", _set("status", "READ-3rd"), "status"),
    ("bad protocol tag", "R12", _set("provenance.protocol_tag", "read"), "provenance.protocol_tag"),
    ("comparison names a missing arm", "R01", _set("comparison.2.rhs", "rt_alone"), "comparison[2].rhs"),
    ("comparison lhs missing arm", "R29", _set("comparison.0.lhs", "concurrent"), "comparison[0].lhs"),
    ("count names a missing arm", "R17", _set("count.0.arm", "rt12"), "count[0].arm"),
    ("RT day beyond the horizon", "R01", _set("arms.rt.rt.0.day", 60), "arms.rt.rt[0].day"),
    ("drug day beyond the horizon", "R29", _set("arms.sequential_d19.drug.0.days.8", 75), "arms.sequential_d19.drug[0].days[8]"),
    ("comparison day beyond the horizon", "R10", _set("comparison.0.day", 61), "comparison[0].day"),
    ("negative day", "R13", _set("arms.rt_pd1.drug.0.days.0", -1), "arms.rt_pd1.drug[0].days[0]"),
    ("dose per fraction above 30 Gy", "R13", _set("arms.rt_pd1.rt.0.dose_gy", 40.0), "arms.rt_pd1.rt[0].dose_gy"),
    ("string instead of a number", "R01", _set("arms.control.horizon_days", "60"), "arms.control.horizon_days"),
    ("boolean instead of a number", "R01", _set("arms.rt_flt3l.drug.0.dose", True), "arms.rt_flt3l.drug[0].dose"),
    ("unknown field (typo)", "R01", _set("stauts", "REVIEW"), "stauts"),
    ("hierarchy line not a string", "S01", _set("hierarchy_line", 38), "hierarchy_line"),
    ("hierarchy line not named after its line", "S01", _set("hierarchy_line", "SIRPa-KO"), "hierarchy_line"),
    ("hierarchy line without a variant", "S01", _set("hierarchy_line", "MC38 "), "hierarchy_line"),
    ("inoculum group not a string", "S01", _set("inoculum_group", 1), "inoculum_group"),
    ("empty inoculum group", "S01", _set("inoculum_group", " "), "inoculum_group"),
    ("inoculum group on a qualitative record", "R01", _set("inoculum_group", "Lab X"), "inoculum_group"),
    ("NaN mean", "S01", _inline_rows([[8.0, math.nan, 1.0]]), "time_course[0].rows[0].mean"),
    ("infinite sem", "S01", _inline_rows([[8.0, 40.0, math.inf]]), "time_course[0].rows[0].sem"),
    (
        "time-course day beyond the horizon",
        "S01",
        _inline_rows([[8.0, 40.0, 1.0], [80.0, 50.0, 1.0]]),
        "time_course[0].rows[1].day",
    ),
    ("zero mean not declared", "S01", _inline_rows([[8.0, 0.0, 1.0]]), "time_course[0].rows[0].mean"),
    ("missing sem without error note", "S01", _inline_rows([[8.0, 40.0]]), "time_course[0].error_model"),
    ("unknown error model", "S01", _set("time_course.0.error_model", "normal"), "time_course[0].error_model"),
    ("estimated discrepancy without a note", "S01", _set("time_course.0.error_note", _DELETE), "time_course[0].error_note"),
    (
        "estimated discrepancy without a group",
        "S01",
        _set("time_course.0.discrepancy_group", _DELETE),
        "time_course[0].discrepancy_group",
    ),
    (
        "discrepancy group with error bars only",
        "S01",
        _set("time_course.0.error_model", "lognormal_sem"),
        "time_course[0].discrepancy_group",
    ),
    ("abscopal site in a single-tumour record", "S03", _set("time_course.0.site", "abscopal"), "time_course[0].site"),
    ("k above n", "R17", _set("count.0.k", 6), "count[0].k"),
    ("bad op", "R01", _set("comparison.0.op", "<="), "comparison[0].op"),
    ("unknown end point", "R01", _set("comparison.0.endpoint", "tumour_size"), "comparison[0].endpoint"),
    ("margin not matching its rule", "R01", _set("comparison.0.margin", 1.0), "comparison[0].margin"),
    ("time end point without threshold", "R01", _set("comparison.0.threshold_mm3", _DELETE), "comparison[0].threshold_mm3"),
    ("check without a reason", "R26", _set("use_reason", _DELETE), "use_reason"),
    ("generic tumour line without a note", "R03", _set("tumour_line_note", _DELETE), "tumour_line_note"),
    ("unknown tumour line", "R03", _set("tumour_line", "B16"), "tumour_line"),
    ("unknown generic protocol id", "R01", _set("generic_ids.0", "G-NOPE"), "generic_ids[0]"),
    ("generic protocol without assumptions", "R01", _set("protocol_assumptions", _DELETE), "protocol_assumptions"),
    ("unknown arm modifier", "R24", _set("arm_modifiers.rt_stingdef.0", "STING-KO"), "arm_modifiers.rt_stingdef[0]"),
    ("observations of another kind", "R17", _set("comparison", []), "comparison"),
]


@pytest.fixture
def data_copy(tmp_path):
    dst = tmp_path / "data"
    shutil.copytree(DATA, dst)
    return dst


def _rewrite(data_dir: Path, rid: str, mutate) -> None:
    path = data_dir / "records" / f"{rid}.toml"
    raw = tomllib.loads(path.read_text())
    mutate(raw)
    path.write_text(tomli_w.dumps(raw))


@pytest.mark.parametrize("case, rid, mutate, field", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_record_names_record_and_field(data_copy, case, rid, mutate, field):
    _rewrite(data_copy, rid, mutate)
    with pytest.raises(RecordError) as err:
        load_records(data_copy)
    assert err.value.record_id == rid
    assert err.value.field == field
    assert f"record {rid}" in str(err.value) and field in str(err.value)


def test_unmodified_copy_loads(data_copy):
    _rewrite(data_copy, "R01", lambda raw: None)  # a tomli_w round trip changes nothing
    assert {r.id for r in load_records(data_copy)} == SHIPPED


def test_nan_in_series_csv(data_copy):
    csv_path = data_copy / "series" / "rauf2025_tidy.csv"
    csv_path.write_text(csv_path.read_text().replace("abs100,control,irradiated,8,48.333333", "abs100,control,irradiated,8,nan"))
    with pytest.raises(RecordError) as err:
        load_records(data_copy)
    assert err.value.record_id == "S01"
    assert err.value.field.startswith("time_course[0].source") and err.value.field.endswith(".mean")


def test_malformed_toml(data_copy):
    (data_copy / "records" / "R05.toml").write_text('id = "R05"\nstatus = \n')
    with pytest.raises(RecordError, match="record R05: field '<file>': malformed TOML"):
        load_records(data_copy)


def test_file_name_must_match_id(data_copy):
    (data_copy / "records" / "R01.toml").rename(data_copy / "records" / "R99.toml")
    with pytest.raises(RecordError, match="record R01: field 'id'"):
        load_records(data_copy)


def test_single_file_and_record_arrays(tmp_path):
    raw = tomllib.loads((DATA / "records" / "R01.toml").read_text())
    one = tmp_path / "one.toml"
    one.write_text(tomli_w.dumps(raw))
    assert [r.id for r in load_records(one)] == ["R01"]  # conventions come from the checkout

    other = copy.deepcopy(raw)
    other["id"] = "R02"
    many = tmp_path / "many.toml"
    many.write_text(tomli_w.dumps({"record": [raw, other]}))
    assert [r.id for r in load_records(many)] == ["R01", "R02"]

    many.write_text(tomli_w.dumps({"record": [raw, raw]}))
    with pytest.raises(RecordError, match="record R01: field 'id': duplicate"):
        load_records(many)


def test_the_estimation_table_agrees_with_the_parameter_table():
    """fits/data/README.md shows, for each parameter it lists, whether it is estimated: the same as
    the estimate column of parameters.csv (the one source)."""
    from abscopal.model.parameters import parameter_table

    text = (DATA / "README.md").read_text()
    shown = {}
    for line in text.splitlines():
        if line.startswith("| `") and "` |" in line:
            cells = [c.strip() for c in line.strip("|").split("|")]
            shown[cells[0].strip("`")] = cells[1]
    table = {s.name: s for s in parameter_table()}
    listed = {n for n in shown if n in table}
    assert len(listed) > 50
    for name in listed:
        s = table[name]
        want = (
            "estimated per line with growth data"
            if s.growth_only
            else "estimated per line"
            if s.per_line
            else "estimated"
            if s.estimate
            else "fixed"
        )
        assert shown[name] == want, name
    # every estimated parameter is listed
    assert {s.name for s in table.values() if s.estimate} <= listed


def test_kosinsky_proxy_record_says_it_is_a_model_with_its_error(records):
    """S20 (Dovedi's arms through Kosinsky 2018's fitted model) carries a log-volume SD of at
    least 0.3 and no more points than the 59 mice it stands for; S21 holds its survival medians."""
    s20, s21 = records["S20"], records["S21"]
    assert s20.status == "INFERRED" and s20.use == "fit" and s20.tumour_line == "CT26"
    rows = [(row.day, row.mean, row.sem) for tc in s20.observations for row in tc.rows]
    assert 0 < len(rows) <= 59
    assert all(sem / mean >= 0.3 - 1e-9 for _, mean, sem in rows if mean > 0)
    assert {c.lhs for c in s21.observations} == {"control", "pdl1", "rt", "concurrent_d7", "sequential_d12", "sequential_d19"}
