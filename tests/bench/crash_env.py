"""A CartPole that crashes on its 150th step (over all episodes) when seeded with an odd seed."""

from __future__ import annotations

import gymnasium as gym
from gymnasium.envs.classic_control import CartPoleEnv


class CrashingCartPole(CartPoleEnv):
    """CartPole whose odd-seeded instances raise on step 150."""

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.crash = seed % 2 == 1
        return super().reset(seed=seed, options=options)

    def step(self, action):
        self.steps_taken = getattr(self, "steps_taken", 0) + 1
        if getattr(self, "crash", False) and self.steps_taken >= 150:
            raise RuntimeError("simulated crash of an odd-seeded run")
        return super().step(action)


if "rlsurgery-test/CrashingCartPole-v0" not in gym.registry:
    gym.register("rlsurgery-test/CrashingCartPole-v0", entry_point=CrashingCartPole, max_episode_steps=500)
