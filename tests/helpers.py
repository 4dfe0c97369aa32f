"""Helpers shared by the tests: small settings and a tiny image environment."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np

#: small, fast DQN settings for tests
TINY = dict(
    learning_starts=64,
    batch_size=16,
    buffer_size=2_000,
    train_freq=4,
    gradient_steps=1,
    target_update_interval=50,
    policy_kwargs=dict(net_arch=[16, 16]),
)


class TinyImageEnv(gym.Env):
    """36x36 greyscale frames (NatureCNN's smallest input); reward 1 for action 1."""

    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0, 255, (36, 36, 1), dtype=np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._t = 0
        return self.np_random.integers(0, 256, (36, 36, 1), dtype=np.uint8), {}

    def render(self):
        return np.zeros((36, 36, 3), dtype=np.uint8)

    def step(self, action):
        self._t += 1
        obs = self.np_random.integers(0, 256, (36, 36, 1), dtype=np.uint8)
        return obs, float(action == 1), False, self._t >= 20, {}
