"""Quantization surgeries' tests, and what they share."""

from __future__ import annotations

import torch as th

from rlsurgery import SurgicalDQN, SurgicalSAC

DQN_KW = dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[32, 32]))


def trained_dqn(steps: int = 300) -> SurgicalDQN:
    """A CartPole DQN with [32, 32] hidden layers, trained for ``steps`` (replay to calibrate on)."""
    return SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW).learn(steps)


def trained_sac(steps: int, buffer_size: int) -> SurgicalSAC:
    """A Pendulum SAC with [32, 32] hidden layers, trained for ``steps`` (replay to calibrate on)."""
    return SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        learning_starts=16,
        batch_size=16,
        buffer_size=buffer_size,
        policy_kwargs=dict(net_arch=[32, 32]),
    ).learn(steps)


def observations(n: int = 64, seed: int = 1) -> th.Tensor:
    """``n`` CartPole-shaped observations, standard normal."""
    return th.randn(n, 4, generator=th.Generator().manual_seed(seed))


def keeps_every_layer(self, module, place, prepared):
    """A broken ``replacement``: leaves the layer as it is (a no-op surgery)."""
    return None
