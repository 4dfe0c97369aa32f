"""Surgical agents: SB3 algorithm subclasses whose train step is split into stages."""

from __future__ import annotations

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.agents.a2c import SurgicalA2C
from rlsurgery.agents.dqn import SurgicalDQN
from rlsurgery.agents.ppo import SurgicalPPO
from rlsurgery.agents.sac import SurgicalSAC
from rlsurgery.agents.td3 import SurgicalTD3
from rlsurgery.agents.trpo import SurgicalTRPO

#: recipe ``algo`` name -> surgical agent class
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "dqn": SurgicalDQN,
    "ppo": SurgicalPPO,
    "a2c": SurgicalA2C,
    "sac": SurgicalSAC,
    "trpo": SurgicalTRPO,
    "td3": SurgicalTD3,
}


def surgical_class_of(model: BaseAlgorithm) -> type[BaseAlgorithm]:
    """The surgical agent class for ``model`` (its own class, or the surgical subclass of its SB3 class)."""
    for cls in ALGORITHMS.values():
        if type(model) is cls:
            return cls
    for cls in ALGORITHMS.values():
        if type(model) is cls.__bases__[-1]:  # the SB3 parent is the last base class
            return cls
    raise TypeError(f"no surgical agent for {type(model).__name__} (known: {', '.join(ALGORITHMS)})")


__all__ = [
    "ALGORITHMS",
    "SurgicalA2C",
    "SurgicalDQN",
    "SurgicalPPO",
    "SurgicalSAC",
    "SurgicalTD3",
    "SurgicalTRPO",
    "surgical_class_of",
]
