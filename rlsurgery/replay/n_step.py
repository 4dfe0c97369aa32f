"""n-step returns gathered from an SB3 replay buffer's arrays.

For a transition stored at position t of env e, the n-step sample is::

    R = Σ_{k=0}^{m-1} γ^k r_{t+k},    s' = s_{t+m},    discount = γ^m,
    done = terminal(t+m-1) and not truncated(t+m-1)

where m ≤ n stops early at the first terminal or time-limit truncation (inclusive) and
at the newest stored transition (the slots after it hold older, unrelated data). This is
the arithmetic of SB3's ``NStepReplayBuffer``; it is rewritten here so that a sampler can
choose the env index of each sample itself (prioritized replay samples (t, e) pairs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.vec_env import VecNormalize


def n_step_samples(
    buffer: ReplayBuffer,
    batch_inds: np.ndarray,
    env_inds: np.ndarray,
    n_steps: int,
    gamma: float,
    env: VecNormalize | None = None,
) -> dict[str, Any]:
    """n-step transitions starting at ``(batch_inds, env_inds)`` of ``buffer`` (numpy arrays).

    :return: dict with ``observations``, ``actions``, ``next_observations``, ``dones``
        (B, 1), ``rewards`` (B, 1) and ``discounts`` (B, 1)
    """
    if n_steps == 1:  # one-step transitions: SB3's ReplayBuffer arithmetic, without the window
        dones = buffer.dones[batch_inds, env_inds] * (1.0 - buffer.timeouts[batch_inds, env_inds])
        rewards = buffer._normalize_reward(buffer.rewards[batch_inds, env_inds], env)
        return {
            "observations": buffer._normalize_obs(buffer.observations[batch_inds, env_inds], env),
            "actions": buffer.actions[batch_inds, env_inds],
            "next_observations": buffer._normalize_obs(buffer.next_observations[batch_inds, env_inds], env),
            "dones": dones.reshape(-1, 1).astype(np.float32),
            "rewards": rewards.reshape(-1, 1).astype(np.float32),
            "discounts": np.full((len(batch_inds), 1), gamma, dtype=np.float32),
        }
    steps = np.arange(n_steps).reshape(1, -1)
    idx = (batch_inds[:, None] + steps) % buffer.buffer_size  # (B, n)
    env_col = env_inds[:, None]
    dones_seq = buffer.dones[idx, env_col]
    timeouts_seq = buffer.timeouts[idx, env_col]
    newest = (buffer.pos - 1) % buffer.buffer_size
    stop = np.logical_or(dones_seq, timeouts_seq) | (idx == newest)
    last_k = np.where(stop.any(axis=1), stop.argmax(axis=1), n_steps - 1)  # inclusive
    mask = steps <= last_k[:, None]

    rewards_seq = buffer._normalize_reward(buffer.rewards[idx, env_col], env)
    powers = gamma ** np.arange(n_steps, dtype=np.float32).reshape(1, -1)
    returns = (rewards_seq * powers * mask).sum(axis=1, keepdims=True)
    discounts = gamma ** mask.sum(axis=1, keepdims=True).astype(np.float32)

    last = idx[np.arange(len(batch_inds)), last_k]
    final_dones = buffer.dones[last, env_inds] * (1.0 - buffer.timeouts[last, env_inds])
    return {
        "observations": buffer._normalize_obs(buffer.observations[batch_inds, env_inds], env),
        "actions": buffer.actions[batch_inds, env_inds],
        "next_observations": buffer._normalize_obs(buffer.next_observations[last, env_inds], env),
        "dones": final_dones[:, None].astype(np.float32),
        "rewards": returns.astype(np.float32),
        "discounts": discounts.astype(np.float32),
    }
