"""SBML Level 3 Version 2 generated from the sympy model (``equations.build_model``); nothing is
written by hand.

- every state is a species (amount, ``hasOnlySubstanceUnits``) with a rate rule, its unit from
  ``equations.STATE_DOC``, its initial value an initial assignment of the parameters;
- every parameter is a constant SBML parameter with the value of the given ``Params`` and the unit of
  the parameter table; the named observables (volumes, densities) are assignment rules;
- a schedule's RT fractions and drug doses become events: all events of one day are composed (RT
  fractions, then doses, the order of ``Schedule.to_arrays``) into one SBML event that fires at
  ``time >= day``, so simultaneous events need no priorities.

Math is written as content MathML from the sympy trees, so no identifier is re-parsed as a
function name. ``validate`` runs libsbml's consistency checks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

import sympy as sp

from ..io import atomic_write_text
from ..model.agents import catalogue
from ..model.equations import STATE_DOC, build_model
from ..model.parameters import Params, default_params, parameter_table
from ..schedules import EVENT_DRUG, EVENT_RT, Schedule

TIME = sp.Symbol("time", real=True)  # SBML's csymbol time inside generated math
MATHML_NS = "http://www.w3.org/1998/Math/MathML"


class SBMLError(ValueError):
    """The SBML could not be generated or is not valid; the message says why."""


# ----------------------------------------------------------------------------- MathML
def _cn(value) -> str:
    if isinstance(value, sp.Integer | int):
        return f'<cn type="integer"> {int(value)} </cn>'
    if isinstance(value, sp.Rational):
        return f'<cn type="rational"> {int(value.p)} <sep/> {int(value.q)} </cn>'
    return f"<cn> {float(value)!r} </cn>"


def _mathml(e) -> str:
    """Content MathML of a sympy expression (the operators the model uses, plus comparisons)."""
    if isinstance(e, sp.Symbol):
        if e == TIME:
            return '<csymbol encoding="text" definitionURL="http://www.sbml.org/sbml/symbols/time"> time </csymbol>'
        return f"<ci> {e.name} </ci>"
    if isinstance(e, sp.Number):
        if isinstance(e, sp.Float | sp.Integer | sp.Rational):
            return _cn(e)
        raise SBMLError(f"cannot write the number {e!r} as MathML")
    if isinstance(e, sp.Add):
        return "<apply><plus/>" + "".join(_mathml(a) for a in e.args) + "</apply>"
    if isinstance(e, sp.Mul):
        num, den = [], []
        for a in e.args:
            if isinstance(a, sp.Pow) and a.exp.is_number and a.exp < 0:
                den.append(a.base if a.exp == -1 else sp.Pow(a.base, -a.exp, evaluate=False))
            elif isinstance(a, sp.Rational) and not isinstance(a, sp.Integer) and a.p == 1:
                den.append(sp.Integer(a.q))
            else:
                num.append(a)
        top = _product(num)
        if not den:
            return top
        return "<apply><divide/>" + top + _product(den) + "</apply>"
    if isinstance(e, sp.Pow):
        if e.exp == -1:
            return "<apply><divide/>" + _cn(1) + _mathml(e.base) + "</apply>"
        return "<apply><power/>" + _mathml(e.base) + _mathml(e.exp) + "</apply>"
    if isinstance(e, sp.exp):
        return "<apply><exp/>" + _mathml(e.args[0]) + "</apply>"
    if isinstance(e, sp.GreaterThan):
        return "<apply><geq/>" + _mathml(e.lhs) + _mathml(e.rhs) + "</apply>"
    raise SBMLError(f"cannot write {type(e).__name__} as MathML (the model's equations use +, *, ^, exp)")


def _product(factors) -> str:
    if not factors:
        return _cn(1)
    if len(factors) == 1:
        return _mathml(factors[0])
    return "<apply><times/>" + "".join(_mathml(a) for a in factors) + "</apply>"


def _ast(expr):
    import libsbml

    text = f'<math xmlns="{MATHML_NS}">{_mathml(expr)}</math>'
    node = libsbml.readMathMLFromString(text)
    if node is None:
        raise SBMLError(f"libsbml could not read the MathML of {expr}")
    return node


# ----------------------------------------------------------------------------- units
_BASE = {  # unit token -> (libsbml kind name, exponent, scale, multiplier)
    "day": ("second", 1, 0, 86400.0),
    "mL": ("litre", 1, -3, 1.0),
    "ug": ("gram", 1, -6, 1.0),
    "g": ("gram", 1, 0, 1.0),
    "mm^3": ("metre", 3, -3, 1.0),
    "Gy": ("gray", 1, 0, 1.0),
    "cells": ("item", 1, 0, 1.0),
    "vp": ("item", 1, 0, 1.0),
}
_DIMENSIONLESS = ("1", "unit", "relative", "fraction", "relative to baseline", "")


def _unit_id(unit: str) -> str:
    if unit in _DIMENSIONLESS:
        return "dimensionless"
    return "u_" + re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9]", "_", unit.replace("^", "").replace("/", "_per_"))).strip("_")


def _unit_factors(unit: str) -> list[tuple[str, int, int, float]]:
    """``unit`` (e.g. ``1e6 cells/(mm^3 day)``) as (kind, exponent, scale, multiplier) items."""
    num, _, den = unit.partition("/")
    items = []
    for text, sign in ((num, 1), (den.strip("()"), -1)):
        multiplier = 1.0
        for tok in text.split():
            if tok == "1":
                continue
            if re.fullmatch(r"1e\d+", tok):
                multiplier = float(tok)
                continue
            if tok not in _BASE:
                raise SBMLError(f"unit {unit!r}: unknown token {tok!r}; known {sorted(_BASE)}")
            kind, exp, scale, mult = _BASE[tok]
            items.append((kind, sign * exp, scale, (mult * multiplier) if sign > 0 else mult))
            multiplier = 1.0
        if multiplier != 1.0:
            items.append(("item", sign, 0, multiplier))  # "1e6 cells" already consumed; a bare factor
    return items


def state_unit(name: str) -> str:
    """The unit of a state (from ``STATE_DOC``; drug depots and concentrations from the agent)."""
    base, _, key = name.partition("_")
    if base in ("A", "C") and key in {a.key for a in catalogue()}:
        agent = next(a for a in catalogue() if a.key == key)
        amount = "vp" if "vp" in agent.units else "1e6 cells" if "cells" in agent.units else "ug"
        return amount if base == "A" else f"{amount}/mL"
    doc_key = name if name in STATE_DOC else base
    unit = STATE_DOC[doc_key][1].removesuffix(" dead-tumour equivalent")  # antigen load: a volume
    return "1" if unit in _DIMENSIONLESS else unit


# ----------------------------------------------------------------------------- events
@dataclass(frozen=True)
class SBMLEvent:
    """One SBML event: fires when ``trigger`` (a sympy relational in ``TIME``) becomes true."""

    id: str
    trigger: sp.Expr
    assignments: dict  # state symbol -> new value (sympy, of states and parameters)
    priority: float | None = None
    use_trigger_time_values: bool = True


def schedule_events(schedule: Schedule, body_weight_g: float) -> list[SBMLEvent]:
    """The schedule's events, composed per day (RT fractions first, then doses, as in the solver)."""
    m = build_model()
    dose, on_irr, on_abs = m.rt_symbols
    state_index = {s.name: s for s in m.states}
    arrays = schedule.to_arrays(body_weight_g)
    by_day: dict[float, list[int]] = {}
    for i, kind in enumerate(arrays["kind"]):
        if kind in (EVENT_RT, EVENT_DRUG):
            by_day.setdefault(float(arrays["time"][i]), []).append(i)
    events = []
    for k, (day, idx) in enumerate(sorted(by_day.items())):
        current = {s: s for s in m.states}  # composed map: state -> value after the events so far
        for i in idx:
            if arrays["kind"][i] == EVENT_RT:
                sub = {dose: sp.Float(float(arrays["value"][i])), on_irr: sp.Float(float(arrays["on_irr"][i]))}
                sub[on_abs] = sp.Float(float(arrays["on_abs"][i]))
                step = {s: e.subs(sub) for s, e in zip(m.states, m.rt_event) if e != s}
            else:
                target, factor = m.bolus[int(arrays["agent"][i])]
                s = state_index[target]
                step = {s: s + sp.Float(float(arrays["value"][i])) * factor}
            new = dict(current)
            for s, e in step.items():
                new[s] = e.xreplace(current)
            current = new
        assignments = {s: e for s, e in current.items() if e != s}
        events.append(SBMLEvent(f"day_{k}", sp.GreaterThan(TIME, sp.Float(day)), assignments))
    return events


# ----------------------------------------------------------------------------- document
def model_document(
    params: Params,
    events: list[SBMLEvent] = (),
    extra_parameters: dict[str, tuple[float, str, bool]] | None = None,
    model_id: str = "abscopal",
    name: str = "abscopal: irradiated and abscopal tumours linked by systemic immunity",
    initial_substitutions: dict | None = None,
):
    """A libsbml ``SBMLDocument`` of the model with ``params``' values and ``events``.

    ``extra_parameters``: name -> (value, unit, constant) for parameters that events or rules use
    beyond the model's own (e.g. PEtab's per-condition event slots). ``initial_substitutions``:
    sympy symbol -> expression replaced in the initial values only (e.g. a later inoculation of the
    abscopal tumour as a smaller tumour on day 0); its new symbols must be extra parameters."""
    import libsbml

    m = build_model()
    doc = libsbml.SBMLDocument(3, 2)
    model = doc.createModel()
    model.setId(model_id)
    model.setName(name)
    model.setTimeUnits("u_day")
    table = {s.name: s for s in parameter_table()}

    units_needed = {"day", "mL"} | {table[p].unit for p in m.param_names} | {state_unit(s) for s in m.state_names}
    units_needed |= {u for _v, u, _c in (extra_parameters or {}).values()}
    for unit in sorted(units_needed):
        uid = _unit_id(unit)
        if uid == "dimensionless" or model.getUnitDefinition(uid) is not None:
            continue
        ud = model.createUnitDefinition()
        ud.setId(uid)
        ud.setName(unit)
        for kind, exp, scale, mult in _unit_factors(unit):
            u = ud.createUnit()
            u.setKind(libsbml.UnitKind_forName(kind))
            u.setExponent(exp)
            u.setScale(scale)
            u.setMultiplier(mult)

    comp = model.createCompartment()
    comp.setId("mouse")
    comp.setName("one mouse (states are amounts; the size is not used)")
    comp.setSpatialDimensions(3)
    comp.setSize(1.0)
    comp.setUnits(_unit_id("mL"))
    comp.setConstant(True)

    values = dict(zip(params.names, map(float, params.values)))
    for p in m.param_names:
        par = model.createParameter()
        par.setId(p)
        par.setValue(values[p])
        par.setUnits(_unit_id(table[p].unit))
        par.setConstant(True)
        par.setName(table[p].description)
    for pid, (value, unit, constant) in (extra_parameters or {}).items():
        par = model.createParameter()
        par.setId(pid)
        par.setValue(float(value))
        par.setUnits(_unit_id(unit))
        par.setConstant(bool(constant))

    numeric = dict(zip(m.params, map(float, params.values)))
    numeric.update({sp.Symbol(k, real=True): float(v) for k, (v, _u, _c) in (extra_parameters or {}).items()})
    for s, rhs, init in zip(m.states, m.rhs, m.initial):
        init = init.xreplace(initial_substitutions or {})
        sp_ = model.createSpecies()
        sp_.setId(s.name)
        doc_key = s.name if s.name in STATE_DOC else s.name.split("_")[0]
        sp_.setName(STATE_DOC[doc_key][0] if doc_key in STATE_DOC else f"drug {s.name}")
        sp_.setCompartment("mouse")
        sp_.setHasOnlySubstanceUnits(True)
        sp_.setBoundaryCondition(False)
        sp_.setConstant(False)
        sp_.setSubstanceUnits(_unit_id(state_unit(s.name)))
        sp_.setInitialAmount(float(init.xreplace(numeric)))
        if init.free_symbols:
            ia = model.createInitialAssignment()
            ia.setSymbol(s.name)
            ia.setMath(_ast(init))
        rule = model.createRateRule()
        rule.setVariable(s.name)
        rule.setMath(_ast(rhs))

    for obs, expr in m.observables.items():
        par = model.createParameter()
        par.setId(obs)
        par.setConstant(False)
        par.setName(f"observable {obs}")
        rule = model.createAssignmentRule()
        rule.setVariable(obs)
        rule.setMath(_ast(expr))

    for ev in events:
        e = model.createEvent()
        e.setId(ev.id)
        e.setUseValuesFromTriggerTime(ev.use_trigger_time_values)
        t = e.createTrigger()
        t.setInitialValue(False)
        t.setPersistent(True)
        t.setMath(_ast(ev.trigger))
        if ev.priority is not None:
            pr = e.createPriority()
            pr.setMath(_ast(sp.Float(ev.priority)))
        for s, expr in ev.assignments.items():
            a = e.createEventAssignment()
            a.setVariable(s.name)
            a.setMath(_ast(expr))
    return doc


def to_sbml(schedule: Schedule | None = None, params: Params | None = None) -> str:
    """SBML text of the model with ``params`` (default: the schedule's line defaults) and, if given,
    ``schedule``'s RT fractions and drug doses as events."""
    import libsbml

    if params is None:
        params = default_params(schedule.tumour_line if schedule is not None else "generic")
    events = schedule_events(schedule, params.body_weight_g) if schedule is not None else []
    name = "abscopal" + (f" - schedule {schedule.name!r}, tumour line {params.tumour_line}" if schedule is not None else "")
    doc = model_document(params, events, name=name)
    return libsbml.writeSBMLToString(doc)


def validate(text: str) -> list[str]:
    """libsbml's consistency checks (all categories); returns the messages of severity error or fatal."""
    import libsbml

    doc = libsbml.readSBMLFromString(text)
    doc.checkConsistency()
    errors = []
    for i in range(doc.getNumErrors()):
        err = doc.getError(i)
        if err.getSeverity() >= libsbml.LIBSBML_SEV_ERROR:
            errors.append(f"{err.getErrorId()} line {err.getLine()}: {escape(err.getMessage().strip())}")
    return errors


def write_sbml(path, schedule: Schedule | None = None, params: Params | None = None) -> None:
    """Generate, validate and write (atomically) the SBML of the model (see ``to_sbml``)."""
    text = to_sbml(schedule, params)
    errors = validate(text)
    if errors:
        raise SBMLError(f"generated SBML fails libsbml validation ({len(errors)} errors): {errors[:3]}")
    atomic_write_text(path, text)
