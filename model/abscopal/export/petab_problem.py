"""A PEtab (v1) problem for the numeric tumour-volume series of the fit (records S01-S05).

One SBML model (``sbml.model_document``) serves every arm: RT fractions and drug doses are event
*slots* whose day, dose and targets are per-condition parameters (an unused slot fires after the
last observation and does nothing); slots fire in order of their priority, each with the state left
by the one before, so several events on one day compose as in the solver. A relative volume is
the volume divided by ``vref_<site>``, which an event sets on the condition's reference day.

Conditions are the records' arms; the tumour line enters through per-line parameter ids
(``r_MC38`` ...) in the condition table; a single-tumour record sets ``v0_abs`` to 0 (as the
likelihood does); the records of an ``inoculum_group`` start from that group's estimated day-0
volume ``v0_inoculum_<group>`` (both tumours of a two-tumour mouse), the rest from the table's
``v0_irr``. Measurements are the published means; the noise is normal, with the published
SEM combined with a fixed floor ``sd_floor_mm3`` (zeros below detection have a zero SEM), and an
estimated ``sigma_relative_volume`` for relative volumes, which come without error bars.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import sympy as sp

from ..io import atomic_write_text
from ..model.agents import get_agent
from ..model.equations import build_model
from ..model.parameters import default_params, parameter_table, tumour_line_table
from .sbml import TIME, SBMLEvent, model_document, validate

SERIES = ("S01", "S02", "S03", "S04", "S05")
NEVER = 1.0e6  # day of an unused event slot: after every observation
SITE_KEY = {"irradiated": "irr", "abscopal": "abs"}


class PetabError(ValueError):
    """The records cannot be written as a PEtab problem; the message names the record and field."""


def _sid(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)


def _slots(records):
    """Event slots needed by the arms: the most RT fractions of any arm, and per agent the most doses."""
    n_rt, n_drug = 0, {}
    for rec in records:
        for arm_name, arm in rec.arms.items():
            if arm.modifiers:
                raise PetabError(
                    f"record {rec.id}: field 'arm_modifiers.{arm_name}': {list(arm.modifiers)} not supported in PEtab"
                )
            n_rt = max(n_rt, len(arm.rt))
            counts = {}
            for d in arm.drugs:
                counts[d.agent] = counts.get(d.agent, 0) + 1
            for agent, c in counts.items():
                n_drug[agent] = max(n_drug.get(agent, 0), c)
    return n_rt, n_drug


def _abs_delay(rec) -> float:
    """Days the abscopal tumour is inoculated after the irradiated one (as in the likelihood)."""
    d = float(rec.inoculation_days.get("abscopal", 0.0)) - float(rec.inoculation_days.get("irradiated", 0.0))
    if d < 0:
        raise PetabError(f"record {rec.id}: field 'inoculation_days': an abscopal tumour inoculated first is not supported")
    return d


def problem_tables(records, fit=None):
    """The SBML text and the condition, measurement, observable and parameter tables (DataFrames)."""
    m = build_model()
    state = {s.name: s for s in m.states}
    dose, on_irr, on_abs = m.rt_symbols
    n_rt, n_drug = _slots(records)
    extra = {}
    events = []
    priority = 0
    for k in range(n_rt):
        day, gy, irr, abs_ = (sp.Symbol(f"rt{k}_{x}", real=True) for x in ("day", "dose", "irr", "abs"))
        extra.update(
            {day.name: (NEVER, "day", True), gy.name: (0.0, "Gy", True), irr.name: (0.0, "1", True), abs_.name: (0.0, "1", True)}
        )
        sub = {dose: gy, on_irr: irr, on_abs: abs_}
        assign = {s: e.xreplace(sub) for s, e in zip(m.states, m.rt_event) if e != s}
        events.append(
            SBMLEvent(
                f"rt_slot_{k}", sp.GreaterThan(TIME, day), assign, priority=float(1000 - priority), use_trigger_time_values=False
            )
        )
        priority += 1
    for agent_name, n in sorted(n_drug.items()):
        agent = get_agent(agent_name)
        target, factor = m.bolus[[a.name for a in _catalogue()].index(agent_name)]
        for j in range(n):
            day, amount = (sp.Symbol(f"dose_{agent.key}_{j}_{x}", real=True) for x in ("day", "amount"))
            extra.update({day.name: (NEVER, "day", True), amount.name: (0.0, "1", True)})
            s = state[target]
            ev = SBMLEvent(
                f"dose_slot_{agent.key}_{j}", sp.GreaterThan(TIME, day), {s: s + amount * factor}, float(1000 - priority), False
            )
            events.append(ev)
            priority += 1
    ref_day = sp.Symbol("ref_day", real=True)
    extra[ref_day.name] = (NEVER, "day", True)
    ref_assign = {}
    for k in ("irr", "abs"):
        extra[f"vref_{k}"] = (1.0, "mm^3", False)
        ref_assign[sp.Symbol(f"vref_{k}", real=True)] = m.observables[f"volume_{k}"]
    events.append(SBMLEvent("reference_volume", sp.GreaterThan(TIME, ref_day), ref_assign, 0.0, False))

    # a later inoculation of the abscopal tumour: a smaller tumour on day 0 with the same growth
    # (likelihood.arm_values does the same), through a per-condition parameter
    extra["abs_delay"] = (0.0, "day", True)
    v0, r = (sp.Symbol(n, real=True) for n in ("v0_abs", "r"))
    later = {v0: v0 * sp.exp(-r * sp.Symbol("abs_delay", real=True))}
    base = fit.params("generic") if fit is not None else default_params("generic")
    doc = model_document(
        base,
        events,
        extra_parameters=extra,
        model_id="abscopal_petab",
        name="abscopal PEtab: series S01-S05",
        initial_substitutions=later,
    )
    import libsbml

    sbml_text = libsbml.writeSBMLToString(doc)

    lines = sorted({rec.tumour_line for rec in records})
    line_params = sorted({name for line in lines for name in tumour_line_table(line)})
    line_values = {}
    for line in lines:
        p = fit.params(line) if fit is not None else default_params(line)
        for name in line_params:
            line_values[f"{name}_{_sid(line)}"] = (name, p[name], line)

    values = dict(zip(base.names, map(float, base.values)))
    conditions, measurements, inocula = [], [], {}
    for rec in records:
        for arm_name, arm in rec.arms.items():
            cid = _sid(f"{rec.id}_{arm_name}")
            row = {"conditionId": cid, "conditionName": f"{rec.id} arm {arm_name} ({rec.tumour_line}, {rec.setting})"}
            row["abs_delay"] = _abs_delay(rec)
            for k in range(n_rt):
                row.update({f"rt{k}_day": NEVER, f"rt{k}_dose": 0.0, f"rt{k}_irr": 0.0, f"rt{k}_abs": 0.0})
            for k, f in enumerate(sorted(arm.rt, key=lambda f: f.day)):
                row.update(
                    {
                        f"rt{k}_day": float(f.day),
                        f"rt{k}_dose": float(f.dose_gy),
                        f"rt{k}_irr": float(f.target != "abscopal"),
                        f"rt{k}_abs": float(f.target != "irradiated"),
                    }
                )
            for agent_name, n in n_drug.items():
                key = get_agent(agent_name).key
                for j in range(n):
                    row.update({f"dose_{key}_{j}_day": NEVER, f"dose_{key}_{j}_amount": 0.0})
                doses = sorted((d for d in arm.drugs if d.agent == agent_name), key=lambda d: d.day)
                for j, d in enumerate(doses):
                    amount = get_agent(agent_name).amount(d.dose, d.unit, base.body_weight_g)
                    row.update({f"dose_{key}_{j}_day": float(d.day), f"dose_{key}_{j}_amount": float(amount)})
            for name in line_params:
                row[name] = f"{name}_{_sid(rec.tumour_line)}"
            row["v0_abs"] = 0.0 if rec.setting == "single-tumour" else "v0_abs_two_tumour"
            row["v0_irr"] = values["v0_irr"]
            if rec.inoculum_group:
                inocula.setdefault(rec.inoculum_group, _inoculum_nominal(fit, rec.inoculum_group, values["v0_irr"]))
                row["v0_irr"] = f"v0_inoculum_{_sid(rec.inoculum_group)}"
                if rec.setting != "single-tumour":
                    row["v0_abs"] = row["v0_irr"]
            refs = {tc.reference_day for tc in rec.time_courses if tc.arm == arm_name and tc.quantity == "relative_volume"}
            if len(refs) > 1:
                raise PetabError(
                    f"record {rec.id}: field 'time_course.reference_day': arm {arm_name} uses several {sorted(refs)}"
                )
            row["ref_day"] = float(refs.pop()) if refs else NEVER
            conditions.append(row)
            for i, tc in enumerate(rec.time_courses):
                if tc.arm != arm_name:
                    continue
                site = SITE_KEY[tc.site]
                for pt in tc.rows:
                    if pt.day > arm.horizon_days:
                        raise PetabError(f"record {rec.id}: field 'time_course[{i}]': day {pt.day} after the horizon")
                    meas = {"simulationConditionId": cid, "measurement": float(pt.mean), "time": float(pt.day)}
                    meas["datasetId"] = _sid(f"{rec.id}_tc{i}_{arm_name}_{tc.site}")
                    if tc.quantity == "volume_mm3":
                        if pt.sem is None:
                            raise PetabError(f"record {rec.id}: field 'time_course[{i}].sem': volumes need an SEM")
                        meas.update(observableId=f"volume_{tc.site}", noiseParameters=float(pt.sem))
                    elif tc.quantity == "relative_volume":
                        if pt.day < tc.reference_day:
                            raise PetabError(
                                f"record {rec.id}: field 'time_course[{i}]': day {pt.day} before reference_day {tc.reference_day}"
                            )
                        meas.update(observableId=f"relative_volume_{tc.site}", noiseParameters="")
                    else:
                        raise PetabError(f"record {rec.id}: field 'time_course[{i}].quantity': {tc.quantity!r} not supported")
                    measurements.append(meas)

    observables = []
    for site, key in SITE_KEY.items():
        observables.append(
            {
                "observableId": f"volume_{site}",
                "observableName": f"{site} tumour volume (viable + doomed), mm^3",
                "observableFormula": f"volume_{key}",
                "observableTransformation": "lin",
                "noiseFormula": f"sqrt(noiseParameter1_volume_{site}^2 + sd_floor_mm3^2)",
                "noiseDistribution": "normal",
            }
        )
        observables.append(
            {
                "observableId": f"relative_volume_{site}",
                "observableName": f"{site} tumour volume relative to the reference day",
                "observableFormula": f"volume_{key} / vref_{key}",
                "observableTransformation": "lin",
                "noiseFormula": "sigma_relative_volume",
                "noiseDistribution": "normal",
            }
        )
    used = {r["observableId"] for r in measurements}
    observables = [o for o in observables if o["observableId"] in used]

    table = {s.name: s for s in parameter_table()}

    def prow(pid, name, spec_name, nominal):
        s = table[spec_name]
        log = s.scale == "log" and s.lower > 0
        return {
            "parameterId": pid,
            "parameterName": name,
            "parameterScale": "log10" if log else "lin",
            "lowerBound": s.lower,
            "upperBound": s.upper,
            "nominalValue": nominal,
            "estimate": int(s.estimate),
        }

    params = []
    in_conditions = set(line_params) | {"v0_abs", "v0_irr"}
    for name in m.param_names:
        if name not in in_conditions:
            params.append(prow(name, table[name].description, name, values[name]))
    for pid, (name, value, line) in sorted(line_values.items()):
        params.append(prow(pid, f"{table[name].description} ({line})", name, value))
    if any(row["v0_abs"] == "v0_abs_two_tumour" for row in conditions):
        params.append(
            prow("v0_abs_two_tumour", "initial abscopal tumour volume (two-tumour records)", "v0_abs", values["v0_abs"])
        )
    extras = [("sd_floor_mm3", "noise floor of volumes (zeros below detection)", 1.0, 1.0, 1.0, 0)]
    for group, nominal in sorted(inocula.items()):
        extras.append(
            (
                f"v0_inoculum_{_sid(group)}",
                f"day-0 tumour volume of the {group} records (inoculum group), mm^3",
                nominal,
                0.01,
                300.0,
                1,
            )
        )
    if any(o["noiseFormula"] == "sigma_relative_volume" for o in observables):
        extras.append(("sigma_relative_volume", "SD of relative volumes (no error bars published)", 0.2, 0.01, 2.0, 1))
    for pid, name, nominal, lo, hi, est in extras:
        params.append(
            dict(parameterId=pid, parameterName=name, parameterScale="log10" if est else "lin", lowerBound=lo, upperBound=hi)
            | dict(nominalValue=nominal, estimate=est)
        )
    return (
        sbml_text,
        pd.DataFrame(conditions),
        pd.DataFrame(measurements),
        pd.DataFrame(observables),
        pd.DataFrame(params),
    )


def _inoculum_nominal(fit, group: str, default: float) -> float:
    """The day-0 volume of an inoculum group: the fit's posterior median where the fit has the
    group, else ``default`` (the problem's ``v0_irr``)."""
    if fit is not None and "v0_inoculum" in fit.posterior:
        groups = fit.meta.get("estimated", {}).get("inoculum_groups", [])
        if group in groups:
            samples = fit.samples("v0_inoculum").reshape(-1, len(groups))
            return float(np.median(samples[:, groups.index(group)]))
    return default


def _catalogue():
    from ..model.agents import catalogue

    return catalogue()


def write_petab(folder, fit=None, records=None) -> Path:
    """Write the PEtab problem (``problem.yaml`` and its files) into ``folder``; each file atomically.
    ``records``: default the series S01-S05 of ``abscopal.records.load_records()``."""
    if records is None:
        from ..records import load_records

        records = [r for r in load_records() if r.id in SERIES]
        missing = set(SERIES) - {r.id for r in records}
        if missing:
            raise PetabError(f"records: series {sorted(missing)} not found in fits/data/records")
    sbml_text, cond, meas, obs, par = problem_tables(records, fit)
    errors = validate(sbml_text)
    if errors:
        raise PetabError(f"generated SBML fails libsbml validation: {errors[:3]}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise PetabError(f"--out: {folder} exists and is not a folder (PEtab writes a folder)")
    atomic_write_text(folder / "model.xml", sbml_text)
    atomic_write_text(folder / "conditions.tsv", cond.to_csv(sep="\t", index=False))
    atomic_write_text(folder / "measurements.tsv", meas.to_csv(sep="\t", index=False))
    atomic_write_text(folder / "observables.tsv", obs.to_csv(sep="\t", index=False))
    atomic_write_text(folder / "parameters.tsv", par.to_csv(sep="\t", index=False))
    yaml = (
        "format_version: 1\n"
        "parameter_file: parameters.tsv\n"
        "problems:\n"
        "- sbml_files: [model.xml]\n"
        "  condition_files: [conditions.tsv]\n"
        "  measurement_files: [measurements.tsv]\n"
        "  observable_files: [observables.tsv]\n"
    )
    atomic_write_text(folder / "problem.yaml", yaml)  # written last: a complete problem or none
    return folder / "problem.yaml"
