"""DeepSea: a reward-hard exploration grid (Osband et al. 2019, bsuite,
https://arxiv.org/abs/1908.03568), our own implementation.

The agent starts at the top-left cell of an ``size × size`` grid and descends one row per
step, moving one column right or left (walls clip); after ``size - 1`` steps the episode
ends. Each *right* move costs ``move_cost / size``; arriving at the bottom-right cell pays
``+1``. Only the path of ``size - 1`` right moves reaches it, so

    optimal return = 1 − (size − 1) · move_cost / size,

while a uniformly random policy finds it with probability 2^−(size−1) and a myopic one
learns to avoid the move cost. With ``randomize_actions`` the action that means *right* is
drawn per cell (from ``mapping_seed``), so no fixed action index is a shortcut.

Observation: the one-hot ``size × size`` grid of the agent's cell, flattened row by row to a
vector of ``size²`` (float32; SB3's MLP policies expect vectors).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np


class DeepSeaEnv(gym.Env):
    """The DeepSea grid.

    :param size: grid side N (>= 2); an episode lasts N - 1 steps
    :param move_cost: total cost of moving right on every step, spread as ``move_cost / N`` per move
    :param randomize_actions: draw per cell which action index moves right
    :param mapping_seed: seed of that draw (fixed per environment instance, not per episode)
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}

    def __init__(
        self,
        size: int = 10,
        move_cost: float = 0.01,
        randomize_actions: bool = True,
        mapping_seed: int = 0,
        render_mode: str | None = None,
    ) -> None:
        if int(size) < 2:
            raise ValueError(f"DeepSea: size must be >= 2 (got {size})")
        if move_cost < 0:
            raise ValueError(f"DeepSea: move_cost must be >= 0 (got {move_cost})")
        self.size = int(size)
        self.move_cost = float(move_cost)
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.size * self.size,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        if randomize_actions:
            self.right_action = np.random.default_rng(mapping_seed).integers(0, 2, (self.size, self.size))
        else:
            self.right_action = np.ones((self.size, self.size), dtype=np.int64)
        self.row = 0
        self.column = 0

    @property
    def optimal_return(self) -> float:
        """Return of the all-right path: 1 − (N − 1) · move_cost / N."""
        return 1.0 - (self.size - 1) * self.move_cost / self.size

    def _observation(self) -> np.ndarray:
        one_hot = np.zeros(self.size * self.size, dtype=np.float32)
        one_hot[self.row * self.size + self.column] = 1.0
        return one_hot

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.row, self.column = 0, 0
        return self._observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        reward = 0.0
        if int(action) == self.right_action[self.row, self.column]:
            self.column = min(self.column + 1, self.size - 1)
            reward -= self.move_cost / self.size
        else:
            self.column = max(self.column - 1, 0)
        self.row += 1
        terminated = self.row == self.size - 1
        found = terminated and self.column == self.size - 1
        if found:
            reward += 1.0
        return self._observation(), reward, terminated, False, {"found_goal": found}

    def render(self) -> str | np.ndarray | None:
        """``ansi``: the grid as text (A agent, $ treasure); ``rgb_array``: an N×N image."""
        if self.render_mode == "rgb_array":
            image = np.full((self.size, self.size, 3), 255, dtype=np.uint8)
            image[-1, -1] = (255, 200, 0)
            image[self.row, self.column] = (0, 0, 200)
            return image
        if self.render_mode != "ansi":
            return None
        cells = [["." for _ in range(self.size)] for _ in range(self.size)]
        cells[-1][-1] = "$"
        cells[self.row][self.column] = "A"
        return "\n".join("".join(row) for row in cells)
