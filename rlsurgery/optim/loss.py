"""The agent's own loss on its own data, as a function of the current parameters.

For the agents whose update runs through rlsurgery's stage pipeline (SurgicalDQN and the DQN
family, SurgicalPPO): a batch of their replay buffer or rollout is evaluated by their own
``compute_loss`` (every loss-stage surgery included). Used by SAM (the loss again at perturbed
parameters, on the update's batch) and the loss probes (learning-rate finder, landscape).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.errors import IncompatibleSurgeryError

#: families whose loss can be re-evaluated on a batch
LOSS_FAMILIES = ("dqn", "ppo")


def loss_on_batch(agent: BaseAlgorithm, batch: Any) -> th.Tensor:
    """The agent's loss on ``batch`` at the current parameters (the batch itself is left as it was).

    The batch is taken as it is: an update's batch that was already augmented is not augmented again.
    """
    agent._rls_batch_augmented = True  # type: ignore[attr-defined]
    try:
        return agent.compute_loss(dataclasses.replace(batch))  # type: ignore[attr-defined]
    finally:
        agent._rls_batch_augmented = False  # type: ignore[attr-defined]


def training_batches(agent: BaseAlgorithm, batch_size: int, key: str) -> Iterator[Any]:
    """Endless batches of the agent's own data: replay samples (DQN family) or rollout minibatches (PPO)."""
    family = getattr(agent, "algorithm_family", None)
    if family == "dqn":
        if agent.replay_buffer is None or agent.replay_buffer.size() < batch_size:  # type: ignore[attr-defined]
            raise IncompatibleSurgeryError(
                f"{key}: the replay buffer holds fewer than {batch_size} transitions; train the agent "
                "first (or load its replay buffer)"
            )
        while True:
            yield _augmented(agent, agent.sample_batch(batch_size))  # type: ignore[attr-defined]
    elif family == "ppo":
        from rlsurgery.core.batch import PolicyBatch

        buffer = agent.rollout_buffer  # type: ignore[attr-defined]
        if not buffer.full:
            raise IncompatibleSurgeryError(f"{key}: the agent has no complete rollout yet; train it first")
        progress = agent._current_progress_remaining
        clip = agent.clip_range(progress)  # type: ignore[attr-defined]
        clip_vf = agent.clip_range_vf(progress) if agent.clip_range_vf is not None else None  # type: ignore[attr-defined]
        while True:
            for data in buffer.get(batch_size):
                yield _augmented(agent, PolicyBatch.from_rollout(data, clip, clip_vf))
    else:
        raise IncompatibleSurgeryError(
            f"{key}: needs an agent whose loss rlsurgery can evaluate ({', '.join(LOSS_FAMILIES)}), "
            f"not {type(agent).__name__}"
        )


def _augmented(agent: BaseAlgorithm, batch: Any) -> Any:
    """A fresh batch through the agent's augment stage (once; :func:`loss_on_batch` then reuses it)."""
    agent._pipeline.run_all("augment", agent, batch)  # type: ignore[attr-defined]
    return batch


def fixed_batch_loss(agent: BaseAlgorithm, batch_size: int, key: str) -> Callable[[], th.Tensor]:
    """A closure: the agent's loss on one fixed batch of its own data, at the current parameters."""
    batch = next(training_batches(agent, batch_size, key))
    return lambda: loss_on_batch(agent, batch)
