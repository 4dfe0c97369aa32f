"""The base of the optimizer surgeries.

They act through the agents' optimizers (a hook right before every ``optimizer.step()``, or the
optimizer itself). On TRPO that is only its value-function (critic) step: sb3-contrib's TRPO moves
the policy by conjugate gradient and a line search under the KL bound, writing the actor's
parameters directly, so no optimizer hook sees that step. The catalog says so
(:data:`TRPO_CRITIC_ONLY`, in ``family_notes``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery

#: agent families whose optimizers these surgeries drive
OPTIMIZER_FAMILIES = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac", "td3")
#: what an optimizer surgery acts on in TRPO
TRPO_CRITIC_ONLY = (
    "critic only: acts on the value-function optimizer step; the policy moves by conjugate gradient "
    "+ line search, not through the optimizer"
)


class OptimizerSurgery(Surgery):
    """Shared plumbing: registered after every network surgery, on the final optimizers, at build and load."""

    attaches_to = (Attachment.SCHEDULE,)
    families = OPTIMIZER_FAMILIES
    family_notes: ClassVar[dict[str, str]] = {"trpo": TRPO_CRITIC_ONLY}
    build_order = 100  # after the network surgeries, which rebuild the optimizers
    params: Any

    def install(self, agent: BaseAlgorithm) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define install()")

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        self.install(agent)
