"""Observations to measure networks on: rollouts in a fresh copy of the agent's environment."""

from __future__ import annotations

import numpy as np
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn


def sample_observations(
    agent: BaseAlgorithm, n: int, seed: int, key: str, policy: str = "random"
) -> th.Tensor:
    """``n`` observations (as the policy's input tensor) from rollouts in a fresh env of the agent's id.

    :param policy: ``random`` (uniform actions) or ``agent`` (the agent's own stochastic actions,
        the states a trained agent actually visits)
    :param key: the surgery asking (named in the error when the agent's env has no id)
    """
    from rlsurgery.policy.imitation import evaluation_env

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


def layer_outputs(model: BaseAlgorithm, layers: list[nn.Module], obs: th.Tensor) -> list[th.Tensor]:
    """The outputs of ``layers`` when the model's networks process ``obs`` (one forward pass each, in
    eval mode: no dropout, BatchNorm on its running statistics)."""
    outputs: dict[int, th.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, _i, out: outputs.__setitem__(id(mod), out)) for m in layers]
    modes = {m: m.training for m in model.policy.modules()}
    model.policy.train(False)
    try:
        with th.no_grad():
            policy = model.policy
            if hasattr(policy, "q_net"):
                policy.q_net(obs)
            elif hasattr(policy, "critic") and hasattr(policy, "actor"):
                actions = policy.actor(obs)
                policy.critic(obs, actions)
            else:
                policy.evaluate_actions(obs, policy._predict(obs, deterministic=True))
    finally:
        for hook in hooks:
            hook.remove()
        for module, mode in modes.items():
            module.training = mode
    return [outputs[id(m)] for m in layers if id(m) in outputs]
