"""Surgical agents: SB3 algorithm subclasses whose train step is split into stages."""

from __future__ import annotations

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.agents.a2c import SurgicalA2C
from rlsurgery.agents.dqn import SurgicalDQN
from rlsurgery.agents.ppo import SurgicalPPO
from rlsurgery.agents.sac import SurgicalSAC
from rlsurgery.agents.trpo import SurgicalTRPO

#: recipe ``algo`` name -> surgical agent class
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {
    "dqn": SurgicalDQN,
    "ppo": SurgicalPPO,
    "a2c": SurgicalA2C,
    "sac": SurgicalSAC,
    "trpo": SurgicalTRPO,
}

__all__ = ["ALGORITHMS", "SurgicalA2C", "SurgicalDQN", "SurgicalPPO", "SurgicalSAC", "SurgicalTRPO"]
