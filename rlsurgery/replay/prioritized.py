"""Prioritized experience replay buffer (proportional variant), with optional n-step returns.

Schaul et al. 2016, https://arxiv.org/abs/1511.05952::

    P(i) = p_i^α / Σ_k p_k^α,      p_i = |δ_i| + ε
    w_i  = (N · P(i))^(-β) / max_j w_j

New transitions enter at the largest priority seen so far (as of the next sample), so
each is replayed at least once soon. Sampling is stratified: the total mass is cut into
B equal segments and one transition is drawn per segment. Deviation from the paper:
weights are normalised by the largest weight *in the batch* (as Dopamine does) rather
than over the whole buffer.

The buffer is an SB3 ``ReplayBuffer`` subclass, so it also works as
``replay_buffer_class=PrioritizedReplayBuffer`` on a plain SB3 DQN (which then gets the
importance weights and indices in its samples but does not update priorities).
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize

from rlsurgery.replay.n_step import n_step_samples
from rlsurgery.replay.sum_tree import SumTree


class PrioritizedReplayBufferSamples(NamedTuple):
    """SB3's replay samples plus importance weights and the sampled flat indices."""

    observations: th.Tensor
    actions: th.Tensor
    next_observations: th.Tensor
    dones: th.Tensor
    rewards: th.Tensor
    discounts: th.Tensor
    weights: th.Tensor
    """importance-sampling weights, shape (B,)"""
    indices: np.ndarray
    """flat indices ``pos * n_envs + env`` of the samples (for ``update_priorities``)"""


def importance_weights(probabilities: np.ndarray, n_stored: int, beta: float) -> np.ndarray:
    """w_i = (N · P(i))^(-β), normalised by the largest weight of the batch.

    >>> importance_weights(np.array([0.5, 0.25]), n_stored=4, beta=1.0).tolist()
    [0.5, 1.0]
    """
    weights = (n_stored * probabilities) ** (-beta)
    return weights / weights.max()


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay over (position, env) pairs.

    :param buffer_size: maximum number of transitions (over all envs)
    :param observation_space: observation space
    :param action_space: action space
    :param device: torch device of the sampled tensors
    :param n_envs: number of parallel environments
    :param optimize_memory_usage: not supported (must be False)
    :param handle_timeout_termination: treat time-limit truncations as non-terminal
    :param alpha: priority exponent α in [0, 1] (0: uniform)
    :param beta: importance-sampling exponent β in [0, 1] (annealed by the surgery)
    :param eps: ε added to |δ| so no transition has zero priority
    :param n_steps: n-step returns (1: one-step transitions)
    :param gamma: discount of the n-step returns
    """

    #: SurgicalDQN passes its ``n_steps`` and ``gamma`` to buffers with this flag
    supports_n_steps: ClassVar[bool] = True

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        alpha: float = 0.6,
        beta: float = 0.4,
        eps: float = 1e-6,
        n_steps: int = 1,
        gamma: float = 0.99,
    ) -> None:
        if optimize_memory_usage:
            raise ValueError("PrioritizedReplayBuffer does not support optimize_memory_usage=True")
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=False,
            handle_timeout_termination=handle_timeout_termination,
        )
        self.alpha = alpha
        self.beta = beta
        self.eps = eps
        self.n_steps = n_steps
        self.gamma = gamma
        self.max_priority = 1.0
        self.tree = SumTree(self.buffer_size * self.n_envs)
        #: positions written since the tree was last brought up to date
        self._pending: list[int] = []

    def reset(self) -> None:
        """Empty the buffer and its priorities (a new task: nothing of the old one is sampled again)."""
        super().reset()
        self.tree = SumTree(self.buffer_size * self.n_envs)
        self._pending = []
        self.max_priority = 1.0

    def add(self, *args: Any, **kwargs: Any) -> None:
        """Store a transition of every env; each enters at the maximum priority.

        The tree is updated lazily, in one vectorized call before the next sample or
        priority update, so collecting experience costs no tree walk per step.
        """
        self._pending.append(self.pos)
        super().add(*args, **kwargs)

    def _flush(self) -> None:
        """Give the positions added since the last flush the maximum priority seen so far."""
        if self._pending:
            positions = np.unique(np.asarray(self._pending, dtype=np.int64))
            flat = (positions[:, None] * self.n_envs + np.arange(self.n_envs)).reshape(-1)
            self.tree.update(flat, np.full(flat.shape, self.max_priority**self.alpha))
            self._pending.clear()

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> PrioritizedReplayBufferSamples:  # type: ignore[override]
        """Draw ``batch_size`` transitions with probability ∝ p^α (stratified)."""
        self._flush()
        total = self.tree.total
        segment = total / batch_size
        prefix = (np.arange(batch_size) + np.random.uniform(size=batch_size)) * segment
        flat = self.tree.find(prefix)
        probabilities = self.tree.get(flat) / total
        weights = importance_weights(probabilities, self.size() * self.n_envs, self.beta)
        batch_inds, env_inds = np.divmod(flat, self.n_envs)
        data = n_step_samples(self, batch_inds, env_inds, self.n_steps, self.gamma, env)
        return PrioritizedReplayBufferSamples(
            **{k: self.to_torch(v) for k, v in data.items()},
            weights=self.to_torch(weights.astype(np.float32)),
            indices=flat,
        )

    def update_priorities(self, indices: np.ndarray, td_errors: np.ndarray | th.Tensor) -> None:
        """Set p_i = |δ_i| + ε for the sampled ``indices``."""
        if isinstance(td_errors, th.Tensor):
            td_errors = td_errors.detach().cpu().numpy()
        self._flush()
        priorities = np.abs(np.asarray(td_errors, dtype=np.float64)).reshape(-1) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(indices, priorities**self.alpha)

    def priorities(self) -> np.ndarray:
        """Current p_i^α of every stored (position, env) pair, flat."""
        self._flush()
        return self.tree.get(np.arange(self.size() * self.n_envs))
