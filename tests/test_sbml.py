"""SBML export: generated from the sympy model, valid for libsbml, and libroadrunner's simulation of
it matches ``abscopal.simulation.simulate`` on canonical schedules."""

import libsbml
import numpy as np
import pytest
import roadrunner

import abscopal as ab
from abscopal.cli import main
from abscopal.decide.compare import default_scenario
from abscopal.export.sbml import SBMLError, _unit_factors, state_unit, to_sbml, validate
from abscopal.model.parameters import parameter_table

OPTS = ab.SolverOptions(rtol=1e-10, atol=1e-12, n_out=81, max_steps=200_000)


def _schedules():
    mixed = ab.Schedule(
        rt=(ab.RTFraction(6.0, 6.0, "both"), ab.RTFraction(6.0, 4.0, "irradiated"), ab.RTFraction(10.0, 12.0, "abscopal")),
        drugs=(
            ab.DrugDose(6.0, "anti-CTLA-4", 5.0, "mg/kg"),  # same day as two fractions: composed into one event
            ab.DrugDose(8.5, "DC", 1e6, "cells"),  # a bolus into a systemic state, not PK
            ab.DrugDose(9.0, "AdV-tk", 1e9, "vp"),
        ),
        horizon_days=30.0,
        tumour_line="MC38",
        name="mixed",
    )
    return [*default_scenario(), mixed]


def _doc(text):
    doc = libsbml.readSBMLFromString(text)
    assert doc.getNumErrors(libsbml.LIBSBML_SEV_ERROR) == 0
    return doc.getModel()


def test_sbml_is_valid_and_complete():
    s = _schedules()[-1]
    text = to_sbml(s)
    assert validate(text) == []
    m = ab.build_model()
    model = _doc(text)
    assert model.getLevel() == 3
    assert [model.getSpecies(i).getId() for i in range(model.getNumSpecies())] == list(m.state_names)
    assert model.getNumRules() == len(m.states) + len(m.observables)
    p = ab.default_params("MC38")
    for name in m.param_names:
        par = model.getParameter(name)
        assert par.getValue() == p[name] and par.getConstant()
        assert model.getUnitDefinition(par.getUnits()) is not None or par.getUnits() == "dimensionless"
    # events: one per distinct day (days 6, 8.5, 9, 10); day 6 composes 2 fractions and a dose
    days = sorted({f.day for f in s.rt} | {d.day for d in s.drugs})
    assert model.getNumEvents() == len(days)
    first = model.getEvent(0)
    assert {first.getEventAssignment(i).getVariable() for i in range(first.getNumEventAssignments())} >= {
        "V_irr",
        "V_abs",
        "D_irr",
        "IFN",
        "A_ctla4",
    }


def test_units_from_the_table():
    # 1/day: second^-1 with multiplier 86400; 1e6 cells/(mm^3 day): item (x1e6) per mm^3 per day
    assert _unit_factors("1/day") == [("second", -1, 0, 86400.0)]
    assert _unit_factors("1e6 cells/(mm^3 day)") == [("item", 1, 0, 1e6), ("metre", -3, -3, 1.0), ("second", -1, 0, 86400.0)]
    for s in parameter_table():
        _unit_factors(s.unit)  # every unit of the table is understood
    assert state_unit("A_advtk") == "vp" and state_unit("C_pd1") == "ug/mL" and state_unit("Ag") == "mm^3"
    with pytest.raises(SBMLError, match="unknown token 'furlong'"):
        _unit_factors("furlong/day")


@pytest.mark.parametrize("k", range(4))
def test_roadrunner_matches_simulate(k):
    s = _schedules()[k]
    params = ab.default_params(s.tumour_line)
    ours = ab.simulate(s, params, OPTS)
    rr = roadrunner.RoadRunner(to_sbml(s, params))
    rr.integrator.relative_tolerance = 1e-10
    rr.integrator.absolute_tolerance = 1e-14
    rr.integrator.maximum_num_steps = 100_000
    names = list(ab.build_model().state_names)
    rr.timeCourseSelections = ["time", *names]
    res = np.asarray(rr.simulate(0.0, s.horizon_days, OPTS.n_out))
    np.testing.assert_allclose(res[:, 0], ours.days, rtol=0, atol=1e-12)
    # rtol 1e-4 on every state; the absolute floor is 1e-8 of that state's largest value (drug
    # depots decay to ~1e-10 of their dose, where only absolute agreement means anything)
    scale = np.abs(ours.states).max(axis=0)
    excess = np.abs(res[:, 1:] - ours.states) / np.maximum(1e-4 * np.abs(ours.states) + 1e-8 * scale, 1e-300)
    worst = np.unravel_index(np.argmax(excess), excess.shape)
    assert excess.max() <= 1.0, (
        f"{names[worst[1]]} on day {ours.days[worst[0]]}: {res[worst[0], 1 + worst[1]]} vs {ours.states[worst]}"
    )
    # the two solvers really integrated something: tumours grow and respond
    assert np.ptp(ours.volume("irradiated")) > 10.0


def test_cli_sbml(tmp_path, capsys):
    sched = tmp_path / "s.toml"
    sched.write_text(_schedules()[1].to_toml())
    out = tmp_path / "m.xml"
    assert main(["export", "--format", "sbml", "--schedule", str(sched), "--out", str(out)]) == 0
    model = _doc(out.read_text())
    assert model.getNumEvents() == len({f.day for f in _schedules()[1].rt} | {d.day for d in _schedules()[1].drugs})
    assert model.getParameter("r").getValue() == ab.default_params("CT26")["r"]
    assert main(["export", "--format", "sbml", "--schedule", str(tmp_path / "none.toml"), "--out", str(out)]) == 2
    assert "no such schedule file" in capsys.readouterr().err
