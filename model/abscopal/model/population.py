"""Virtual populations: parameter draws for inter-animal variability (and, once a fit ships,
posterior draws). Random numbers come from an explicit ``numpy.random.Generator`` seed."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

import numpy as np

from .parameters import Params


@cache
def variability() -> dict[str, tuple[float, str]]:
    """Log-SD and source of each parameter that varies between mice."""
    raw = tomllib.loads(resources.files("abscopal").joinpath("data/variability.toml").read_text())
    return {k: (float(v["value"]), v["source"]) for k, v in raw["log_sd"].items()}


def between_mice() -> str:
    """What varies between virtual mice, in words (for outputs that state their intervals' meaning)."""
    return ", ".join(f"{name} log-SD {sd:g}" for name, (sd, _src) in variability().items())


def virtual_population(params: Params, n: int, seed: int = 0) -> np.ndarray:
    """``n`` mice (rows of parameter values): log-normal variation around ``params``."""
    if int(n) != n or n < 1:
        raise ValueError(f"n: number of virtual mice must be a positive integer, got {n!r}")
    rng = np.random.default_rng(seed)
    values = np.tile(params.values, (int(n), 1))
    for name, (sd, _source) in variability().items():
        values[:, params.index(name)] *= np.exp(sd * rng.standard_normal(int(n)))
    return values
