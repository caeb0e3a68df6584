"""The agent catalogue (review Section 3): one record per agent, read from ``data/agents.toml``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

MECHANISMS = (
    "pd1_axis",
    "priming",
    "treg_depletion",
    "treg_expansion",
    "dc_recruitment",
    "dc_activation",
    "t_expansion",
    "tgfb_block",
    "myeloid_depletion",
    "myeloid_recruitment",
    "myeloid_function",
    "ifn",
    "in_situ_kill",
    "dc_bolus",
    "t_bolus",
    "antigen_bolus",
)

#: conversion of each accepted unit to the agent's internal amount (ug, 1e6 cells, vp);
#: "mg/kg" is multiplied by the body weight in grams (mg/kg * g = ug).
UNIT_FACTORS = {"ug": 1.0, "mg/kg": None, "cells": 1e-6, "vp": 1.0}


@dataclass(frozen=True)
class Agent:
    """One agent of the catalogue."""

    name: str
    key: str
    agent_class: str
    review_section: str
    units: tuple[str, ...]
    delivery: str
    mechanisms: tuple[str, ...]
    route: str
    description: str

    @property
    def has_pk(self) -> bool:
        return self.delivery == "pk"

    @property
    def bolus_state(self) -> str | None:
        """The systemic state a non-PK agent is added to (``DC``, ``Tc`` or ``Ag``)."""
        return self.delivery.split(":", 1)[1] if self.delivery.startswith("bolus:") else None

    def amount(self, dose: float, unit: str, body_weight_g: float) -> float:
        """Convert a dose in ``unit`` to the internal amount (ug, 1e6 cells, or vp)."""
        if unit not in self.units:
            raise ValueError(f"unit {unit!r} does not fit agent {self.name!r}: allowed {list(self.units)}")
        factor = UNIT_FACTORS[unit]
        return dose * (body_weight_g if factor is None else factor)


@cache
def catalogue() -> tuple[Agent, ...]:
    """All agents, in catalogue order (this order indexes the drug events)."""
    raw = tomllib.loads(resources.files("abscopal").joinpath("data/agents.toml").read_text())
    agents = []
    for entry in raw["agent"]:
        agent = Agent(
            name=entry["name"],
            key=entry["key"],
            agent_class=entry["class"],
            review_section=entry["review_section"],
            units=tuple(entry["units"]),
            delivery=entry["delivery"],
            mechanisms=tuple(entry["mechanisms"]),
            route=entry["route"],
            description=entry["description"],
        )
        unknown = set(agent.mechanisms) - set(MECHANISMS)
        if unknown:
            raise ValueError(f"agent {agent.name}: unknown mechanisms {sorted(unknown)}")
        if not set(agent.units) <= set(UNIT_FACTORS):
            raise ValueError(f"agent {agent.name}: unknown units {agent.units}")
        agents.append(agent)
    return tuple(agents)


def agent_names() -> tuple[str, ...]:
    return tuple(a.name for a in catalogue())


def get_agent(name: str) -> Agent:
    """The agent called ``name`` (exact catalogue name); a clear error otherwise."""
    for agent in catalogue():
        if agent.name == name:
            return agent
    raise ValueError(f"unknown agent {name!r}: allowed {list(agent_names())}")


def agent_index(name: str) -> int:
    return agent_names().index(get_agent(name).name)
