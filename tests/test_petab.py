"""PEtab problem for the numeric series S01-S05: the petab linter accepts it, it holds every
published point, and its SBML under a condition reproduces ``abscopal.simulation.simulate`` of that arm."""

import math

import libsbml
import numpy as np
import pandas as pd
import petab.v1 as petab
import pytest
import roadrunner

import abscopal as ab
from abscopal.cli import main
from abscopal.export.petab_problem import SERIES, PetabError, write_petab
from abscopal.records import load_records
from abscopal.schedules import schedule_from_dict


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    path = write_petab(tmp_path_factory.mktemp("petab") / "problem")
    return path, petab.Problem.from_yaml(str(path))


@pytest.fixture(scope="module")
def series():
    return {r.id: r for r in load_records() if r.id in SERIES}


def test_linter_accepts(problem):
    _, prob = problem
    assert petab.lint.lint_problem(prob) is False  # False: no errors


def test_every_published_point_is_a_measurement(problem, series):
    _, prob = problem
    meas = prob.measurement_df
    expected = sum(len(tc.rows) for rec in series.values() for tc in rec.time_courses)
    assert len(meas) == expected
    assert set(prob.condition_df.index) == {f"{r.id}_{a}" for r in series.values() for a in r.arms}
    rec = series["S01"]
    tc = next(t for t in rec.time_courses if t.arm == "rt8" and t.site == "abscopal")
    got = meas[(meas.simulationConditionId == "S01_rt8") & (meas.observableId == "volume_abscopal")]
    assert list(got.time) == [p.day for p in tc.rows]
    assert list(got.measurement) == [p.mean for p in tc.rows]
    assert list(got.noiseParameters.astype(float)) == [p.sem for p in tc.rows]
    rel = meas[meas.observableId == "relative_volume_irradiated"]
    assert set(rel.simulationConditionId) == {"S04_unirradiated", "S04_rt10", "S05_rt10_half"}


def _simulate_condition(path, prob, cid, times):
    """The PEtab model under one condition: condition values (numbers or parameter-table ids) set
    in the SBML, then libroadrunner."""
    doc = libsbml.readSBMLFromString((path.parent / "model.xml").read_text())
    model = doc.getModel()
    for col, value in prob.condition_df.loc[cid].items():
        if col == "conditionName":
            continue
        if isinstance(value, str) and value in prob.parameter_df.index:  # else a number (mixed columns read as text)
            value = prob.parameter_df.loc[value, "nominalValue"]
        model.getParameter(col).setValue(float(value))
    rr = roadrunner.RoadRunner(libsbml.writeSBMLToString(doc))
    rr.integrator.relative_tolerance = 1e-10
    rr.integrator.absolute_tolerance = 1e-14
    rr.timeCourseSelections = ["time", "volume_irr", "volume_abs", "vref_irr"]
    return pd.DataFrame(np.asarray(rr.simulate(times=times)), columns=["time", "volume_irr", "volume_abs", "vref_irr"])


@pytest.mark.parametrize("rid,arm,single", [("S01", "rt8", False), ("S04", "rt10", True)])
def test_condition_reproduces_simulate(problem, series, rid, arm, single):
    path, prob = problem
    rec = series[rid]
    s = schedule_from_dict(rec.schedule_dict(arm))
    params = ab.default_params(rec.tumour_line)
    if single:
        params = params.replace(v0_abs=0.0)
    # a later abscopal inoculation (S01: 3 days) is a smaller abscopal tumour on day 0
    delay = float(rec.inoculation_days.get("abscopal", 0.0)) - float(rec.inoculation_days.get("irradiated", 0.0))
    assert delay == (3.0 if rid == "S01" else 0.0)
    params = params.replace(v0_abs=params["v0_abs"] * math.exp(-params["r"] * delay))
    ours = ab.simulate(s, params, ab.SolverOptions(rtol=1e-10, atol=1e-12, n_out=61, max_steps=200_000))
    got = _simulate_condition(path, prob, f"{rid}_{arm}", list(ours.days))
    for site, col in (("irradiated", "volume_irr"), ("abscopal", "volume_abs")):
        v = ours.volume(site)
        np.testing.assert_allclose(got[col], v, rtol=1e-4, atol=1e-8 * max(v.max(), 1e-12))
    if single:
        assert got["volume_abs"].abs().max() == 0.0
        # relative volume: vref is the volume on the reference day (12), from then on
        day12 = list(ours.days).index(12.0)
        np.testing.assert_allclose(got["vref_irr"].iloc[day12:], ours.volume("irradiated")[day12], rtol=1e-6)


def test_an_inoculum_group_is_one_estimated_day0_volume(problem, series):
    """S01-S03 (Rauf 2025) share one estimated day-0 volume, for both tumours of a two-tumour
    mouse; the other series start from the table's v0_irr."""
    _, prob = problem
    cond, par = prob.condition_df, prob.parameter_df
    pid = "v0_inoculum_Rauf_2025"
    assert par.loc[pid, "estimate"] == 1 and par.loc[pid, "lowerBound"] < 1.0
    for cid, row in cond.iterrows():
        rec = series[cid.split("_")[0]]
        if rec.inoculum_group:
            assert row["v0_irr"] == pid
            if rec.setting == "two-tumour":
                assert row["v0_abs"] == pid
            else:
                assert float(row["v0_abs"]) == 0.0
        else:
            assert float(row["v0_irr"]) == ab.default_params(rec.tumour_line)["v0_irr"]


def test_cli_petab_and_bad_out(tmp_path, capsys):
    assert main(["export", "--format", "petab", "--out", str(tmp_path / "pe")]) == 0
    assert (tmp_path / "pe" / "problem.yaml").is_file()
    (tmp_path / "file").write_text("x")
    with pytest.raises(PetabError, match="not a folder"):
        write_petab(tmp_path / "file")
