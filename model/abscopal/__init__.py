"""abscopal: radiotherapy + immunotherapy in two tumours (irradiated and abscopal), with JAX + diffrax.

64-bit floats are needed: call ``abscopal.enable_x64()`` before simulating (the CLI does).
"""

__version__ = "0.1.0"

from .decide.compare import compare, default_scenario, dovedi2014  # noqa: E402
from .decide.optimize import OptimizeError, optimize  # noqa: E402
from .decide.sweeps import sweep_fractionation, sweep_gap  # noqa: E402
from .export.formats import ExportError, load_params, load_posterior  # noqa: E402
from .inference.fitresult import Fit, FitError, load_fit  # noqa: E402
from .model.agents import Agent, catalogue, get_agent  # noqa: E402
from .model.equations import build_model, equations_text  # noqa: E402
from .model.parameters import Params, default_params, parameter_table, tumour_lines  # noqa: E402
from .schedules import (  # noqa: E402
    DrugDose,
    RTFraction,
    Schedule,
    ScheduleError,
    combined,
    concurrent,
    drug_course,
    drug_first,
    fractionated,
    load_schedule,
    schedule_from_dict,
    sequential,
)
from .simulation.outcomes import bed  # noqa: E402
from .simulation.simulate import SimulationError, SolverOptions, Trajectory, enable_x64, simulate  # noqa: E402

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
