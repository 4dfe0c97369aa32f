"""The base of the optimizer surgeries."""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery

#: agent families whose optimizers these surgeries drive
OPTIMIZER_FAMILIES = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac", "td3")


class OptimizerSurgery(Surgery):
    """Shared plumbing: registered after every network surgery, on the final optimizers, at build and load."""

    attaches_to = (Attachment.SCHEDULE,)
    families = OPTIMIZER_FAMILIES
    build_order = 100  # after the network surgeries, which rebuild the optimizers
    params: Any

    def install(self, agent: BaseAlgorithm) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define install()")

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        self.install(agent)
