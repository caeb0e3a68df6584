"""What a user reads is true and readable (issue 34): a mouse past the end point is never cured, the
pairwise table counts ties and sums to one, volumes below the detection floor read as such, a
MAP-only fit says it has no parameter uncertainty (and exports no interval), every option has help,
a wrong call answers before JAX is imported, and the README's commands write nothing into the
repository.

Most checks here run on hand-built trajectories (``fake_cohort``: arrays in the model's state
layout), so they test the reading of trajectories, not the solver."""

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import abscopal as ab
from abscopal.cli import build_parser, main
from abscopal.decide import display
from abscopal.decide.pairwise import TIE_DAYS, outcomes, pair_row
from abscopal.model.equations import build_model
from abscopal.simulation.outcomes import DETECTION_FLOOR_MM3, endpoints

ROOT = Path(__file__).resolve().parents[1]
NAMES = build_model().state_names


def trajectories(volumes_irr, volumes_abs=None, viable_irr=None):
    """ys (mice, days, states) with the given measured volumes (viable; doomed 0) per mouse."""
    v_irr = np.atleast_2d(np.asarray(volumes_irr, dtype=float))
    v_abs = np.zeros_like(v_irr) if volumes_abs is None else np.atleast_2d(np.asarray(volumes_abs, dtype=float))
    ys = np.zeros(v_irr.shape + (len(NAMES),))
    ys[..., NAMES.index("V_irr")] = v_irr if viable_irr is None else viable_irr
    ys[..., NAMES.index("D_irr")] = 0.0 if viable_irr is None else v_irr - viable_irr
    ys[..., NAMES.index("V_abs")] = v_abs
    return ys


def test_a_mouse_past_the_end_point_is_never_cured():
    ts = np.arange(0.0, 50.0, 10.0)  # days 0, 10, 20, 30, 40
    gone = [100.0, 1500.0, 1e-3, 0.0, 0.0]  # passes 1000 mm3 (removed on day ~5.4), then vanishes
    cleared = [100.0, 500.0, 1e-3, 0.0, 0.0]  # shrinks to nothing without reaching the end point
    growing = [100.0, 300.0, 600.0, 900.0, 990.0]  # never reaches it, never extinct
    ys = trajectories([gone, cleared, growing])
    e = endpoints(ts, ys, trajectories([[100.0, 2000.0, 4000.0, 8000.0, 9000.0]] * 3))
    assert e["cure_irradiated"].tolist() == [0.0, 1.0, 0.0]
    assert np.isfinite(e["time_to_endpoint"][0]) and np.isinf(e["time_to_endpoint"][1:]).all()
    assert e["volume_irradiated"][0] >= 1000.0 - 1e-9  # read on its end-point day, not at the horizon
    # the optimiser's smooth cure objective agrees: the mouse past the end point counts as not cured
    import jax.numpy as jnp

    from abscopal.decide.optimize import cure_loss

    viable = jnp.asarray(np.maximum(ys[..., NAMES.index("V_irr")], 1e-300))[:, None, :]  # (3 candidates, 1 draw, days)
    burden = jnp.asarray(ys[..., NAMES.index("V_irr")])[:, None, :]
    p = np.exp(-np.asarray(cure_loss(viable, burden)))
    assert p[0] < 1e-3 and p[1] > 0.99 and p[2] < 1e-6
    p_without = np.exp(-np.asarray(cure_loss(viable)))  # without the end-point factor it would count as cured
    assert p_without[0] > 0.99


def _results(cure, t_end, volume):
    return {
        "cure_irradiated": np.asarray(cure, float),
        "time_to_endpoint": np.asarray(t_end, float),
        "volume_irradiated": np.asarray(volume, float),
    }


def test_pairwise_probabilities_sum_to_one_with_ties():
    inf = np.inf
    # six paired mice: both cured; both past the end point within TIE_DAYS; volumes within the floor;
    # A removed earlier; B larger by more than the floor; neither past, both uncured
    a = _results([1, 0, 0, 0, 0, 0], [inf, 20.0, inf, 15.0, inf, inf], [0.0, 1000.0, 5.0, 1000.0, 10.0, 10.0])
    b = _results([1, 0, 0, 0, 0, 0], [inf, 20.0 + TIE_DAYS / 2, inf, 25.0, inf, inf], [0.0, 1000.0, 5.5, 1000.0, 30.0, 10.0])
    wins_a, wins_b, ties = outcomes(a, b, "volume_irradiated", "lower")
    assert ties.tolist() == [True, True, True, False, False, True]
    assert wins_b.tolist() == [False, False, False, True, False, False]  # B reached the end point later
    assert wins_a.tolist() == [False, False, False, False, True, False]  # B's volume exceeds A's by 20 mm3
    assert ((wins_a.astype(int) + wins_b + ties) == 1).all()
    t = outcomes(a, b, "time_to_endpoint", "higher")
    assert t[2].tolist() == [True, True, True, False, True, True] and t[1][3]
    c = outcomes(a, b, "cure_irradiated", "higher")
    assert c[2].all()  # the same cure outcome in every pair: all ties
    for endpoint, better in (("volume_irradiated", "lower"), ("time_to_endpoint", "higher"), ("cure_irradiated", "higher")):
        row = pair_row("A", "B", endpoint, a, b, better)
        assert row["p_a_better"] + row["p_b_better"] + row["p_tie"] == pytest.approx(1.0)
        for k in ("a_better", "b_better", "tie"):
            assert 0.0 <= row[f"p_{k}_lo"] <= row[f"p_{k}"] <= row[f"p_{k}_hi"] <= 1.0


def fake_cohort(schedules, draws, options, body_weight_g, progress, per_draw):
    """A stand-in for ``compare.simulate_cohort``: exponential growth or decay per schedule and
    mouse (no solver), in the model's state layout."""
    horizon = schedules[0].horizon_days
    ts = np.linspace(0.0, horizon, 31)
    n = draws.shape[0]
    ys = np.zeros((len(schedules), n, len(ts), len(NAMES)))
    for j, s in enumerate(schedules):
        for i in range(n):
            rate = 0.25 - 0.12 * len(s.rt) / 3 - 0.1 * min(len(s.drugs), 1) - 0.04 * (i % 4)
            v = 20.0 * np.exp(rate * ts)
            ys[j, i, :, NAMES.index("V_irr")] = np.where(v < 1e-7, 0.0, v)
            ys[j, i, :, NAMES.index("V_abs")] = 0.0 if draws[i, ab.default_params().index("v0_abs")] == 0 else 0.5 * v
    return ts, ys, draws


@pytest.fixture
def no_solver(monkeypatch):
    import abscopal.decide.compare as compare_mod
    import abscopal.decide.sweeps as sweeps_mod

    monkeypatch.setattr(compare_mod, "simulate_cohort", fake_cohort)
    monkeypatch.setattr(sweeps_mod, "simulate_cohort", fake_cohort)


def test_table_json_and_figure_carry_ties_floor_schedules_and_status(no_solver, tmp_path, monkeypatch, capsys):
    js = tmp_path / "c.json"
    assert main(["compare", "--draws", "8", "--json", str(js), "--plot", str(tmp_path / "c.png")]) == 0
    text = capsys.readouterr().out
    assert "A better" in text and "B better" in text and "tie" in text and "Rule: tie" in text
    assert "< 1" in text and "cured" in text  # sub-floor volumes read as such, cured fraction beside
    assert "anti-PD-1 10 mg/kg on days 7, 10, 13" in text and "RT 3 x 8 Gy to the irradiated tumour on days 7, 8, 9" in text
    assert "Horizon: day 60" in text and display.SPREAD_ONLY in text and " to " in text
    assert not re.search(r"\d\[|\[-?\d", text), "intervals read 'a to b', not '[a-b]'"
    data = json.loads(js.read_text())
    assert data["intervals"] == display.SPREAD_ONLY and data["horizon_days"] == 60
    for r in data["pairwise"]:
        assert r["p_a_better"] + r["p_b_better"] + r["p_tie"] == pytest.approx(1.0)
    assert "tie" in data["pairwise_rule"] and len(data["schedules"]) == 3
    # the figure: one panel for mice with one tumour, schedule markers, ties in the caption
    figs = []
    monkeypatch.setattr("abscopal.io.atomic_write_figure", lambda fig, path: figs.append(fig))
    assert main(["compare", "--draws", "8", "--single-tumour", "--plot", str(tmp_path / "one.png")]) == 0
    assert main(["compare", "--draws", "8", "--plot", str(tmp_path / "two.png")]) == 0
    one, two = figs
    assert len([ax for ax in one.axes if ax.get_visible()]) == 1 and len(two.axes) == 2
    caption = " ".join(t.get_text() for t in one.texts)
    assert "tie" in caption and "A = " in caption and display.SPREAD_ONLY in one._suptitle.get_text().replace("\n", " ")
    assert min(ax.get_ylim()[0] for ax in two.axes) >= DETECTION_FLOOR_MM3 / 10  # no 1e-40 mm3 axes
    from matplotlib.collections import PathCollection

    assert all(sum(isinstance(x, PathCollection) for x in ax.collections) >= 5 for ax in two.axes)  # RT and drug markers


def test_numbers_and_volumes_read_well():
    assert display.volume(1e-21, "mm3") == "< 1 mm3" and display.volume(250.0, "mm3") == "250 mm3"
    assert display.number(16.377558) == "16.4" and display.number(8.0) == "8" and display.number(1234.5) == "1230"
    assert display.interval("1", "2") == "(90% interval 1 to 2)" and display.percent(0.004) == "0.4 %"
    assert display.days(np.inf, 60) == "not reached by day 60"


def test_map_only_fit_says_so_and_exports_no_interval(tmp_path, capsys):
    from abscopal.export.formats import export, load_params

    fit = ab.load_fit("review")
    if not display.spread_only(fit):
        pytest.skip("the shipped fit has posterior draws now; the MAP point is checked through review@map")
    text = display.describe_fit(fit)
    assert display.SPREAD_ONLY in text and "posterior draws" not in text and "R-hat" not in text
    for fmt in ("json", "csv"):
        loaded = load_params(export(fmt, tmp_path / f"p.{fmt}", fit=fit))
        est = [r for r in loaded.records if r["estimated"]]
        assert est and all(r["q05"] is None and r["q95"] is None for r in est)
        assert loaded.estimate == "map" and "MAP point" in loaded.source
    assert json.loads((tmp_path / "p.json").read_text())["interval"].startswith("none: a MAP-only fit")
    assert main(["export", "--fit", "review", "--format", "json", "--out", str(tmp_path / "q.json")]) == 0
    assert "no intervals" in capsys.readouterr().out
    # a scenario named after a record says whether the fit reproduces it
    rows = json.loads((Path(fit.path) / "reproduction.json").read_text())
    p = next(r["probability"] for r in rows if r["record"] == "R29")
    said = display.record_reproduction(fit, "R29")
    assert ("REPRODUCES R29" in said) == (p >= 0.8) and ("does NOT reproduce R29" in said) == (p < 0.8)
    assert "not fitted to R29" in display.record_reproduction(None, "R29")


def test_every_cli_option_has_help():
    def walk(parser, where):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, f"{where} {name}")
            elif not isinstance(action, argparse._HelpAction):
                yield where, action

    missing = [f"{w}: {a.option_strings or a.dest}" for w, a in walk(build_parser(), "abscopal") if not (a.help or "").strip()]
    assert not missing, f"options without help text: {missing}"


def test_one_default_horizon():
    import inspect

    from abscopal import cli
    from abscopal.decide import compare, optimize, sweeps

    assert cli.DEFAULT_HORIZON_DAYS == compare.DEFAULT_HORIZON_DAYS == 60.0
    for f in (compare.default_scenario, compare.dovedi2014, sweeps.sweep_gap, sweeps.sweep_fractionation, optimize.optimize):
        assert inspect.signature(f).parameters["horizon_days"].default == 60.0, f.__name__
    assert optimize.ScheduleProblem().horizon_days == 60.0


def test_a_wrong_call_answers_before_jax_is_imported(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('tumor_line = "CT26"\n[[rt]]\nday = 7\ndose_gy = 99\n')
    code = (
        "import sys; from abscopal.cli import main\n"
        f"rc = [main(a) for a in (['compare', {str(bad)!r}], ['compare', '--fit', 'nowhere'], ['simulate', {str(bad)!r}, '--out', 'x.csv'], "
        "['optimize', '--fractions', 'a'], ['compare', '--sweep-gap', '--gaps', '1:2:0'])]\n"
        "assert rc == [2] * 5, rc\n"
        "assert 'jax' not in sys.modules, 'JAX was imported'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (
        "rt[0].dose_gy" in r.stderr and "--fit: fit 'nowhere'" in r.stderr and "--fractions" in r.stderr and "--gaps" in r.stderr
    )


SCHEDULE = """name = "{name}"
tumor_line = "CT26"
horizon_days = 60
[[rt]]
days = [7, 8, 9]
dose_gy = 8.0
[[drug]]
agent = "anti-PD-1"
days = [{days}]
dose = 10
unit = "mg/kg"
"""


def _status() -> set[str]:
    """The repository's git status lines, ignored files included (caches and virtual environments
    left out). The shipped fit's folder is left out too: the only command that writes there is
    ``abscopal fit``, stubbed below with a check of the folder it was given, and a fit running
    beside the tests may rewrite it."""
    out = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=ROOT, capture_output=True, text=True).stdout
    skip = ("__pycache__", ".pytest_cache", ".ruff_cache", ".venv", ".ci-venv", ".egg-info", "/work/", " fits/review/")
    return {line for line in out.splitlines() if not any(s in line for s in skip)}


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout")
def test_readme_commands_leave_the_repository_clean(no_solver, tmp_path, monkeypatch, capsys):
    """Every command of the README's table, run as a user would (here with the solver replaced by
    hand-built trajectories and the fit by a stub, since only where files go is checked), writes
    into the working folder only: the repository's git status, ignored files included, is unchanged."""
    import abscopal.decide.optimize as optimize_mod
    import abscopal.inference.fitting as fitting_mod

    readme = (ROOT / "README.md").read_text()
    table = [c for c in re.findall(r"`(abscopal [^`]+)`", readme) if len(c.split()) > 2]
    assert len(table) >= 9
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(SCHEDULE.format(name="s", days="7, 10, 13"))
    (tmp_path / "A.toml").write_text(SCHEDULE.format(name="A", days="7, 10, 13"))
    (tmp_path / "B.toml").write_text(SCHEDULE.format(name="B", days="16, 19, 22"))

    def flat(z, lo, hi, n_frac, draws, c, obj, **kw):
        import jax.numpy as jnp

        return jnp.zeros(z.shape[0]), jnp.zeros_like(z)

    monkeypatch.setattr(optimize_mod, "_value_and_grad", flat)
    written = []
    monkeypatch.setattr(fitting_mod, "run_fit", lambda out, *a, **k: written.append(Path(out).resolve()))
    import abscopal.commands as commands_mod

    monkeypatch.setattr(commands_mod, "_simulate_fit", lambda args, schedule, out: out.write_text("day\n") and 0)
    before = _status()
    small = {"compare": ["--draws", "4"], "optimize": ["--draws", "2", "--steps", "0", "--starts", "1", "--compare-draws", "4"]}
    for cmd in table:
        args = shlex.split(cmd)[1:]
        args += small.get(args[0], [])
        assert main(args) == 0, cmd
    capsys.readouterr()
    new = _status() - before  # entries that appeared (a file written, or a tracked file changed)
    assert not new, f"a README command wrote into the repository: {sorted(new)}"
    assert (tmp_path / "abscopal-output").is_dir() and (tmp_path / "best.toml").is_file() and (tmp_path / "params.json").is_file()
    assert written == [(tmp_path / "fits" / "review").resolve()]  # `fit --out fits/review` is relative to the working folder


def test_readme_python_example_simulates_with_the_fit_and_prints_a_table():
    block = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)[0]
    assert 'ab.load_fit("review")' in block and "ab.simulate(s, fit.params(" in block and "print(" in block
