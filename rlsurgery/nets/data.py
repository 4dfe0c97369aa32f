"""Observations to measure networks on: rollouts in a fresh copy of the agent's environment."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.nets.layout import layout_of
from rlsurgery.nets.modules import modes_kept
from rlsurgery.runtime.models import evaluation_env


def space_samples(space: spaces.Space, n: int, seed: int = 0) -> Any:
    """``n`` observations sampled from ``space`` (a copy of it, seeded: the model's own space and its
    random state are left as they were), stacked as one batch (a dict of batches for ``Dict`` spaces)."""
    space = copy.deepcopy(space)
    space.seed(seed)
    samples = [space.sample() for _ in range(n)]
    if isinstance(space, spaces.Dict):
        return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
    return np.stack(samples)


def sample_observations(
    agent: BaseAlgorithm, n: int, seed: int, key: str, policy: str = "random"
) -> th.Tensor:
    """``n`` observations (as the policy's input tensor) from rollouts in a fresh env of the agent's id.

    :param policy: ``random`` (uniform actions) or ``agent`` (the agent's own stochastic actions,
        the states a trained agent actually visits)
    :param key: the surgery asking (named in the error when the agent's env has no id)
    """
    env = evaluation_env(agent, key)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    batch = []
    for _ in range(n):
        batch.append(obs)
        if policy == "agent":
            action = agent.predict(obs, deterministic=False)[0]
        else:
            action = env.action_space.sample()
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    return agent.policy.obs_to_tensor(np.stack(batch))[0]


def recent_observations(agent: BaseAlgorithm, n: int, key: str) -> th.Tensor:
    """Up to ``n`` observations the agent trained on recently: the newest replay-buffer entries
    (off-policy), the current rollout (on-policy), or, before any data exists, a short rollout of the
    agent's policy. Draws no random numbers from the agent's generators."""
    replay = getattr(agent, "replay_buffer", None)
    if replay is not None and replay.size() > 0 and not isinstance(replay.observations, dict):
        newest = (replay.pos - 1 - np.arange(min(n, replay.size()))) % replay.buffer_size
        flat = replay.observations[newest].reshape(-1, *replay.obs_shape)
        return agent.policy.obs_to_tensor(flat[:n])[0]
    rollout = getattr(agent, "rollout_buffer", None)
    if (
        rollout is not None
        and (rollout.full or rollout.pos > 0)
        and not isinstance(rollout.observations, dict)
    ):
        size = rollout.buffer_size if rollout.full else rollout.pos
        flat = rollout.observations[:size].reshape(-1, *rollout.obs_shape)
        return agent.policy.obs_to_tensor(flat[-n:])[0]
    return sample_observations(agent, n, 0, key, "agent")


def layer_outputs(model: BaseAlgorithm, layers: list[nn.Module], obs: th.Tensor) -> list[th.Tensor]:
    """The outputs of ``layers`` when the model's networks process ``obs`` (one forward pass each, in
    eval mode: no dropout, BatchNorm on its running statistics)."""
    return _captured(model, layers, obs, lambda inputs, output: output)


def layer_inputs(model: BaseAlgorithm, layers: list[nn.Module], obs: th.Tensor) -> list[th.Tensor]:
    """The (first) inputs of ``layers`` when the model's networks process ``obs``, as
    :func:`layer_outputs` sees their outputs."""
    return _captured(model, layers, obs, lambda inputs, output: inputs[0])


def _captured(
    model: BaseAlgorithm,
    layers: list[nn.Module],
    obs: th.Tensor,
    pick: Callable[[tuple, th.Tensor], th.Tensor],
) -> list[th.Tensor]:
    with th.no_grad():
        seen = _forward_seen(model, layers, obs, pick)
    return [seen[id(m)] for m in layers if id(m) in seen]


def _forward_seen(
    model: BaseAlgorithm, layers: list[nn.Module], obs: th.Tensor, pick: Callable[[tuple, th.Tensor], Any]
) -> dict[int, Any]:
    """One forward pass of every network on ``obs`` in eval mode; ``pick(inputs, output)`` of each
    of ``layers`` that ran, by the layer's id (the training modes are restored after)."""
    seen: dict[int, Any] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inputs, out: seen.__setitem__(id(mod), pick(inputs, out)))
        for m in layers
    ]
    try:
        with modes_kept(model.policy):
            layout_of(model).forward(model.policy, obs)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def layer_feeds(model: BaseAlgorithm, layers: list[nn.Module]) -> list[set[int]]:
    """For each of ``layers``, the indices of the others whose input depends on its output, found
    through autograd on one forward pass of every network on two observations sampled from the
    observation space (only the data flow matters, not the values).

    >>> from stable_baselines3 import PPO
    >>> model = PPO("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8]))
    >>> p, extractor = model.policy, model.policy.mlp_extractor
    >>> layer_feeds(model, [extractor.policy_net[0], extractor.value_net[0], p.action_net, p.value_net])
    [{2}, {3}, set(), set()]
    """
    obs = model.policy.obs_to_tensor(space_samples(model.observation_space, 2))[0]
    with th.enable_grad():
        if obs.is_floating_point():
            obs.requires_grad_(True)  # so that frozen layers' outputs are in the graph too
        seen = _forward_seen(model, layers, obs, lambda inputs, output: (inputs[0], output))
    feeds: list[set[int]] = [set() for _ in layers]
    for i, source in enumerate(layers):
        output = seen.get(id(source), (None, None))[1]
        if output is None or not output.requires_grad:
            continue
        for j, sink in enumerate(layers):
            x = seen.get(id(sink), (None, None))[0]
            if j == i or x is None or not x.requires_grad:
                continue
            (grad,) = th.autograd.grad(x, output, th.ones_like(x), retain_graph=True, allow_unused=True)
            if grad is not None:
                feeds[i].add(j)
    return feeds
