"""BitFlip: the goal-conditioned bit-flipping task of the HER paper.

Andrychowicz et al. 2017 (https://arxiv.org/abs/1707.01495), §3.1. The state is a vector of
``n_bits`` bits; the goal is another one. Each step flips one bit; the reward is 0 when the
state equals the goal and −1 otherwise, so a random policy almost never sees a success for
n ≳ 15 and plain DQN learns nothing, while goal relabelling (HER) solves it.

Observations are a ``Dict`` with ``observation``, ``achieved_goal`` (the same bits) and
``desired_goal``, as SB3's ``HerReplayBuffer`` expects, and the env has the vectorised
``compute_reward(achieved_goal, desired_goal, info)``. Actions: ``Discrete(n_bits)`` (flip
bit i), or with ``continuous=True`` a ``Box(−1, 1, (n_bits,))`` that flips the bit with the
largest component. An episode ends on success or after ``max_steps`` (default ``n_bits``)
steps (truncation).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class BitFlipEnv(gym.Env):
    """Flip bits until the state equals the goal.

    :param n_bits: number of bits
    :param continuous: Box actions (argmax picks the bit) instead of Discrete
    :param max_steps: steps before truncation (default ``n_bits``)
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        n_bits: int = 10,
        continuous: bool = False,
        max_steps: int | None = None,
        render_mode: str | None = None,
    ) -> None:
        if n_bits < 1:
            raise ValueError(f"BitFlip: n_bits must be >= 1 (got {n_bits})")
        self.n_bits = n_bits
        self.continuous = continuous
        self.max_steps = n_bits if max_steps is None else max_steps
        self.render_mode = render_mode
        bits = spaces.MultiBinary(n_bits)
        self.observation_space = spaces.Dict(
            {"observation": bits, "achieved_goal": bits, "desired_goal": bits}
        )
        self.action_space = (
            spaces.Box(-1.0, 1.0, (n_bits,), dtype=np.float32) if continuous else spaces.Discrete(n_bits)
        )
        self.state = np.zeros(n_bits, dtype=np.int8)
        self.goal = np.zeros(n_bits, dtype=np.int8)
        self._steps = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "observation": self.state.copy(),
            "achieved_goal": self.state.copy(),
            "desired_goal": self.goal.copy(),
        }

    def reset(
        self, *, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict]:
        super().reset(seed=seed)
        self.state = self.np_random.integers(0, 2, self.n_bits, dtype=np.int8)
        self.goal = self.np_random.integers(0, 2, self.n_bits, dtype=np.int8)
        while np.array_equal(self.state, self.goal):  # never start solved
            self.goal = self.np_random.integers(0, 2, self.n_bits, dtype=np.int8)
        self._steps = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        bit = int(np.argmax(action)) if self.continuous else int(action)
        self.state[bit] ^= 1
        self._steps += 1
        reward = float(self.compute_reward(self.state, self.goal, None))
        success = reward == 0.0
        return (
            self._obs(),
            reward,
            success,
            (not success) and self._steps >= self.max_steps,
            {"is_success": success},
        )

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: Any) -> np.ndarray:
        """0 where the achieved goal equals the desired one, −1 elsewhere (batched over leading axes)."""
        different = np.any(np.asarray(achieved_goal) != np.asarray(desired_goal), axis=-1)
        return -different.astype(np.float32)

    def render(self) -> str | np.ndarray | None:
        """``ansi``: "state -> goal" as text; ``rgb_array``: two rows of 8×8 cells (state, goal)."""
        if self.render_mode == "ansi":
            return "".join(map(str, self.state)) + " -> " + "".join(map(str, self.goal))
        if self.render_mode == "rgb_array":
            rows = np.stack([self.state, self.goal]).astype(np.uint8) * 255
            return np.repeat(np.repeat(rows, 8, axis=0), 8, axis=1)[:, :, None].repeat(3, axis=2)
        return None
