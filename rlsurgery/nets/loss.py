"""The agent's own loss on its own data, as a function of the current parameters.

Every surgical agent runs its update through its stage pipeline and exposes, for each of its
optimizer roles (``policy``; ``actor`` and ``critic`` on SAC/TD3), the loss that optimizer
minimises (:meth:`~rlsurgery.agents.surgical.SurgicalMixin.step_loss`, every loss-stage
surgery and auxiliary term included), and endless batches of its own data
(``training_batches``: replay samples, or rollout minibatches). Used by SAM (the loss again at
perturbed parameters, on the update's batch) and the loss probes (learning-rate finder,
landscape). On TRPO the ``policy`` optimizer moves the value function only: its loss is the
value loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.layout import layout_of

#: families whose loss can be re-evaluated on a batch: every surgical agent
LOSS_FAMILIES = ("dqn", "ppo", "a2c", "sac", "td3", "trpo")


def loss_roles(agent: BaseAlgorithm) -> tuple[str, ...]:
    """The agent's optimizer roles, in the order its update steps them (the first is the default)."""
    return tuple(layout_of(agent).optimizer_owners)


def check_role(agent: BaseAlgorithm, key: str, role: str) -> str:
    """``role``, or the agent's first role when empty; raises naming ``key`` for a role it lacks."""
    roles = loss_roles(agent)
    if not role:
        return roles[0]
    if role not in roles:
        raise IncompatibleSurgeryError(
            f"{key}: parameter 'role' must be one of {', '.join(roles)} on {type(agent).__name__} "
            f"(got {role!r})"
        )
    return role


def loss_on_batch(agent: BaseAlgorithm, batch: Any, role: str = "") -> th.Tensor:
    """The loss of the optimizer of ``role`` on ``batch`` at the current parameters (the batch, already
    augmented, is left as it was)."""
    return agent.step_loss(role or loss_roles(agent)[0], batch)  # type: ignore[attr-defined]


def training_batches(agent: BaseAlgorithm, batch_size: int, key: str) -> Iterator[Any]:
    """Endless augmented batches of the agent's own data: replay samples or rollout minibatches."""
    batches = getattr(agent, "training_batches", None)
    if batches is None:
        raise IncompatibleSurgeryError(
            f"{key}: needs a surgical agent whose loss rlsurgery can evaluate, not a plain "
            f"{type(agent).__name__}"
        )
    return batches(batch_size, key)


def fixed_batch_loss(
    agent: BaseAlgorithm, batch_size: int, key: str, role: str = ""
) -> Callable[[], th.Tensor]:
    """A closure: the loss of ``role`` on one fixed batch of the agent's own data, at the current
    parameters."""
    batch = next(training_batches(agent, batch_size, key))
    return lambda: loss_on_batch(agent, batch, role)
