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
    data = json.loads(js.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert {r["endpoint"] for r in data["summary"]} >= {"volume_abscopal", "abscopal_response", "time_to_endpoint"}
    assert data["n_draws"] == 20 and data["n_dropped"] == 0 and "censored" in data["note"]
    assert all(0 <= r["p_a_better"] <= 1 for r in data["pairwise"])
    assert png.stat().st_size > 10_000


def test_compare_rejects_mismatched_schedules():
    a = ab.Schedule(horizon_days=30, name="a")
    b = ab.Schedule(horizon_days=40, name="b")
    with pytest.raises(ValueError, match="share horizon_days"):
        ab.compare([a, b], n_draws=5)
    with pytest.raises(ValueError, match="threshold_mm3"):
        ab.compare([a], n_draws=5, threshold_mm3=-1)


def test_compare_and_simulate_with_a_fit(tmp_path, capsys):
    from abscopal.inference.fitresult import toy_fit

    fit = toy_fit(tmp_path / "toy")
    assert main(["compare", "--fit", str(fit), "--draws", "8", "--plot", str(tmp_path / "c.png")]) == 0
    text = capsys.readouterr().out
    assert "fit 'toy'" in text and "no fit loaded" not in text
    f = tmp_path / "s.toml"
    f.write_text(GOOD)
    out = tmp_path / "q.csv"
    assert main(["simulate", str(f), "--fit", str(fit), "--draws", "8", "--points", "31", "--out", str(out)]) == 0
    df = pd.read_csv(out)
    assert {"day", "site", "quantity", "q05", "q50", "q95"} <= set(df.columns)
    assert (df.q05 <= df.q50).all() and (df.q50 <= df.q95).all() and (df.q05 < df.q95).any()
    assert main(["compare", "--fit", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_sweep_and_optimize_commands(tmp_path, capsys):
    csv, png = tmp_path / "g.csv", tmp_path / "g.png"
    args = ["compare", "--sweep-gap", "--agent", "anti-PD-L1", "--gaps", "0,7", "--draws", "8", "--horizon", "40"]
    assert main([*args, "--csv", str(csv), "--plot", str(png)]) == 0
    assert "anti-PD-L1" in capsys.readouterr().out and png.stat().st_size > 10_000
    assert set(pd.read_csv(csv).gap_days.dropna()) == {0, 7}
    out = tmp_path / "best.toml"
    # 4 draws: the optimiser's compiled shape in test_optimize; 8 compare draws: the sweep's above
    opt = "optimize --fractions 3 --starts 1 --steps 2 --draws 4 --compare-draws 8".split() + ["--out", str(out)]
    assert main(["optimize", "--objective", "size", "--out", str(out)]) == 2
    assert "allowed ['volume_abscopal'" in capsys.readouterr().err
    assert main([*opt, "--max-bed", "0.5"]) == 2
    assert "impossible" in capsys.readouterr().err and not out.exists()
    assert main(opt) == 0
    assert "standard sequential" in capsys.readouterr().out
    s = ab.load_schedule(out)
    assert len(s.rt) == 3 and s.bed_gy(10.0) <= 60.0 + 1e-6
