"""abscopal: radiotherapy + immunotherapy in two tumours (irradiated and abscopal), with JAX + diffrax.

64-bit floats are needed: call ``abscopal.enable_x64()`` before simulating (the CLI does).

The names below are imported on first use (PEP 562), so that ``import abscopal`` and the command
line's ``--help`` and input errors answer without importing JAX.
"""

from importlib import import_module

__version__ = "0.1.0"

#: public name -> the module that defines it
_LAZY = {
    "compare": ".decide.compare",
    "default_scenario": ".decide.compare",
    "dovedi2014": ".decide.compare",
    "OptimizeError": ".decide.optimize",
    "optimize": ".decide.optimize",
    "sweep_fractionation": ".decide.sweeps",
    "sweep_gap": ".decide.sweeps",
    "ExportError": ".export.formats",
    "load_params": ".export.formats",
    "load_posterior": ".export.formats",
    "Fit": ".inference.fitresult",
    "FitError": ".inference.fitresult",
    "load_fit": ".inference.fitresult",
    "Agent": ".model.agents",
    "catalogue": ".model.agents",
    "get_agent": ".model.agents",
    "build_model": ".model.equations",
    "equations_text": ".model.equations",
    "Params": ".model.parameters",
    "default_params": ".model.parameters",
    "parameter_table": ".model.parameters",
    "tumour_lines": ".model.parameters",
    "DrugDose": ".schedules",
    "RTFraction": ".schedules",
    "Schedule": ".schedules",
    "ScheduleError": ".schedules",
    "combined": ".schedules",
    "concurrent": ".schedules",
    "drug_course": ".schedules",
    "drug_first": ".schedules",
    "fractionated": ".schedules",
    "load_schedule": ".schedules",
    "schedule_from_dict": ".schedules",
    "sequential": ".schedules",
    "bed": ".simulation.outcomes",
    "SimulationError": ".simulation.simulate",
    "SolverOptions": ".simulation.simulate",
    "Trajectory": ".simulation.simulate",
    "enable_x64": ".simulation.simulate",
    "simulate": ".simulation.simulate",
}


def __getattr__(name: str):
    try:
        module = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'abscopal' has no attribute {name!r}") from None
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Agent",
    "DrugDose",
    "ExportError",
    "Params",
    "RTFraction",
    "Schedule",
    "ScheduleError",
    "SimulationError",
    "SolverOptions",
    "Trajectory",
    "bed",
    "build_model",
    "catalogue",
    "combined",
    "compare",
    "dovedi2014",
    "optimize",
    "OptimizeError",
    "sweep_fractionation",
    "sweep_gap",
    "concurrent",
    "default_params",
    "default_scenario",
    "drug_course",
    "drug_first",
    "enable_x64",
    "equations_text",
    "fractionated",
    "get_agent",
    "load_fit",
    "Fit",
    "FitError",
    "load_params",
    "load_posterior",
    "load_schedule",
    "parameter_table",
    "schedule_from_dict",
    "sequential",
    "simulate",
    "tumour_lines",
]
