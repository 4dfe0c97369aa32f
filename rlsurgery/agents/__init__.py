"""Surgical agents: SB3 algorithm subclasses whose train step is split into stages."""

from __future__ import annotations

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.agents.dqn import SurgicalDQN
from rlsurgery.agents.ppo import SurgicalPPO

#: recipe ``algo`` name -> surgical agent class
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"dqn": SurgicalDQN, "ppo": SurgicalPPO}

__all__ = ["ALGORITHMS", "SurgicalDQN", "SurgicalPPO"]
