"""The sympy model: one set of per-site equations, named modifiers equal to their definitions."""

import numpy as np
import sympy as sp

from abscopal.model.equations import SITE_STATES, build_model, modifier_definitions
from abscopal.model.parameters import parameter_table


def test_both_sites_share_one_set_of_equations():
    m = build_model()
    rhs = dict(zip(m.state_names, m.rhs, strict=True))
    rename = {sp.Symbol(f"{n}_irr", real=True): sp.Symbol(f"{n}_abs", real=True) for n in SITE_STATES}
    for n in SITE_STATES:
        if n in ("V", "D"):  # intratumoural agents (AdV-tk) are injected into the irradiated tumour only
            continue
        assert sp.simplify(rhs[f"{n}_irr"].xreplace(rename) - rhs[f"{n}_abs"]) == 0, n


def test_display_model_equals_numerical_model():
    shown, real = build_model(display=True), build_model()
    mods = {sp.Symbol(k, real=True): v for k, v in modifier_definitions().items()}
    rng = np.random.default_rng(0)
    symbols = sorted(set().union(*[e.free_symbols for e in real.rhs]), key=lambda s: s.name)
    point = {s: float(rng.uniform(0.1, 2.0)) for s in symbols}
    for a, b in zip(shown.rhs, real.rhs, strict=True):
        assert abs(float(a.xreplace(mods).xreplace(point)) - float(b.xreplace(point))) <= 1e-12 * (
            1 + abs(float(b.xreplace(point)))
        )


def test_every_parameter_has_unit_bounds_and_source():
    names = set(build_model().param_names)
    table = {s.name: s for s in parameter_table()}
    assert names <= set(table)
    for s in table.values():
        assert s.unit and s.source and s.lower <= s.value <= s.upper
        assert s.scale in ("log", "lin")
