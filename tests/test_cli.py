"""The command line: simulate writes CSV/JSON with the documented columns; equations, agents, compare."""

import json

import pandas as pd
import pytest

import abscopal as ab
from abscopal.cli import main
from test_schedules import GOOD


def test_simulate_csv_and_json(tmp_path, capsys):
    f = tmp_path / "s.toml"
    f.write_text(GOOD)
    out = tmp_path / "out.csv"
    assert main(["simulate", str(f), "--out", str(out), "--points", "61"]) == 0
    df = pd.read_csv(out)
    for col in ("day", "site", "volume_mm3", "viable_cells", "cd8_effector_1e6_cells", "treg_1e6_cells", "pdl1_level"):
        assert col in df.columns
    assert set(df.site) == {"irradiated", "abscopal"}
    assert len(df) == 2 * 61 and df.volume_mm3.notna().all()
    out_json = tmp_path / "out.json"
    assert main(["simulate", str(f), "--out", str(out_json), "--points", "61"]) == 0
    data = json.loads(out_json.read_text())
    assert len(data["rows"]) == 2 * 61 and data["tumour_line"] == "CT26"
    assert main(["simulate", str(f), "--out", str(tmp_path / "out.xlsx")]) == 2
    assert not (tmp_path / "out.xlsx").exists()


def test_equations_and_agents(capsys):
    assert main(["equations"]) == 0
    text = capsys.readouterr().out
    assert "dV_irr/dt" in text and "dV_abs/dt" in text and "dTc/dt" in text
    assert main(["equations", "--latex"]) == 0
    assert r"\frac{d V_{irr}}{dt}" in capsys.readouterr().out
    assert main(["agents"]) == 0
    text = capsys.readouterr().out
    for agent in ab.catalogue():
        assert agent.name in text


def test_compare_small(tmp_path, capsys):
    js, png = tmp_path / "c.json", tmp_path / "c.png"
    assert main(["compare", "--draws", "20", "--json", str(js), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "concurrent" in text and "sequential" in text and "no fit loaded" in text
    data = json.loads(js.read_text())
    assert {r["endpoint"] for r in data["summary"]} >= {"volume_abscopal", "abscopal_response", "time_to_endpoint"}
    assert all(0 <= r["p_a_better"] <= 1 for r in data["pairwise"])
    assert png.stat().st_size > 10_000


def test_compare_rejects_mismatched_schedules():
    a = ab.Schedule(horizon_days=30, name="a")
    b = ab.Schedule(horizon_days=40, name="b")
    with pytest.raises(ValueError, match="share horizon_days"):
        ab.compare([a, b], n_draws=5)
    with pytest.raises(ValueError, match="threshold_mm3"):
        ab.compare([a], n_draws=5, threshold_mm3=-1)
