"""Schedule validation: clear errors naming the field; the CLI exits non-zero and writes nothing."""

import math

import pytest

import abscopal as ab
from abscopal.cli import main
from abscopal.schedules import MAX_EVENTS

GOOD = """
tumor_line = "CT26"
horizon_days = 60
[[rt]]
days = [7, 8, 9, 10, 11]
dose_gy = 2.0
target = "irradiated"
[[drug]]
agent = "anti-PD-L1"
days = [7, 9, 11]
dose = 10
unit = "mg/kg"
"""


def test_good_file_loads(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(GOOD)
    s = ab.load_schedule(f)
    assert s.tumour_line == "CT26" and len(s.rt) == 5 and len(s.drugs) == 3
    assert s.total_dose_gy == 10.0
    # round trip through the TOML writer
    g = tmp_path / "t.toml"
    g.write_text(s.to_toml())
    assert ab.load_schedule(g) == s


BAD = [
    (GOOD.replace('"anti-PD-L1"', '"anti-PD-2"'), r"drug\[0\]\.agent: unknown agent 'anti-PD-2'"),
    (GOOD.replace('"CT26"', '"XYZ"'), r"tumor_line: unknown tumour line 'XYZ'"),
    (GOOD.replace("dose = 10", "dose = -1"), r"drug\[0\]\.dose: must be > 0"),
    (GOOD.replace("dose = 10", "dose = nan"), r"drug\[0\]\.dose: must be finite"),
    (GOOD.replace("dose_gy = 2.0", "dose_gy = 35.0"), r"rt\[0\]\.dose_gy: 35.0 Gy per fraction is outside \(0, 30\]"),
    (GOOD.replace("dose_gy = 2.0", "dose_gy = 0.0"), r"rt\[0\]\.dose_gy"),
    (GOOD.replace("days = [7, 9, 11]", "days = [7, 9, 61]"), r"drug\[2\]\.day: day 61.0 is outside the horizon"),
    (GOOD.replace("days = [7, 8, 9, 10, 11]", "days = [-1]"), r"rt\[0\]\.day: day -1.0 is outside the horizon"),
    (GOOD.replace('unit = "mg/kg"', 'unit = "cells"'), r"drug\[0\]\.unit: 'cells' does not fit agent 'anti-PD-L1'"),
    (GOOD.replace('target = "irradiated"', 'target = "left"'), r"rt\[0\]\.target: 'left' is not one of"),
    (GOOD.replace("horizon_days = 60", "horizon_days = 1000"), r"horizon_days: 1000.0 is outside"),
    (GOOD.replace("dose_gy = 2.0", "dose_gy = 2.0\nfraction_gy = 1"), r"rt\[0\]: unknown keys \['fraction_gy'\]"),
    (GOOD.replace("days = [7, 8, 9, 10, 11]", "day = 7\ndays = [8]"), r"rt\[0\]: give exactly one of 'day' or 'days'"),
    (GOOD.replace("[[drug]]", "[[drug]\n"), r"malformed TOML"),
    (GOOD.replace("days = [7, 9, 11]", f"days = {list(range(60))}"), rf"65 events; at most {MAX_EVENTS} are allowed"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_files_fail_clearly(tmp_path, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ab.ScheduleError, match=message):
        ab.load_schedule(f)


@pytest.mark.parametrize("text, message", BAD[:3])
def test_cli_rejects_bad_schedule_and_writes_nothing(tmp_path, capsys, text, message):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    out = tmp_path / "out.csv"
    assert main(["simulate", str(f), "--out", str(out)]) == 2
    assert not out.exists()
    assert "error" in capsys.readouterr().err


def test_missing_file(tmp_path):
    with pytest.raises(ab.ScheduleError, match="no such schedule file"):
        ab.load_schedule(tmp_path / "none.toml")


def test_builders():
    rt = ab.fractionated(5, 2.0, 7.0)
    assert [f.day for f in rt] == [7, 8, 9, 10, 11]
    c = ab.concurrent(rt, "anti-PD-1", 10, "mg/kg", n_doses=3, every=3)
    assert [d.day for d in c.drugs] == [7, 10, 13]
    s = ab.sequential(rt, "anti-PD-1", 10, "mg/kg", gap_days=7)
    assert s.drugs[0].day == 18
    f = ab.drug_first(rt, "anti-PD-1", 10, "mg/kg", lead_days=5)
    assert f.drugs[0].day == 2
    with pytest.raises(ab.ScheduleError, match="n: number of fractions"):
        ab.fractionated(0, 2.0)
    with pytest.raises(ab.ScheduleError, match="drug.day"):
        ab.DrugDose(math.inf, "anti-PD-1", 1, "ug")


def test_padding_sorts_and_converts_units():
    s = ab.Schedule(
        (ab.RTFraction(9, 2.0),),
        (ab.DrugDose(3, "anti-PD-1", 10, "mg/kg"), ab.DrugDose(9, "T-cells", 2e6, "cells")),
        horizon_days=20,
    )
    a = s.to_arrays(body_weight_g=20.0)
    assert a["time"].shape == (MAX_EVENTS,)
    assert list(a["time"][:3]) == [3, 9, 9] and list(a["kind"][:3]) == [2, 1, 2]  # RT before the drug on day 9
    assert a["value"][0] == pytest.approx(200.0)  # 10 mg/kg x 20 g = 200 ug
    assert a["value"][2] == pytest.approx(2.0)  # 2e6 cells = 2 (1e6 cells)
    assert (a["time"][3:] == 20).all() and (a["kind"][3:] == 0).all()
