"""Chain: a RiverSwim-like exploration chain (Strehl & Littman 2008,
https://doi.org/10.1016/j.jcss.2007.08.009), our own implementation.

``n_states`` states in a row, the agent starts at the left end. Action 0 (*left*, with the
current) always moves one state left; at the left end it stays and pays a small
``left_reward``. Action 1 (*right*, against the current) moves right with probability
``p_right``, stays with ``p_stay``, slips left otherwise; at the right end a *right* that
stays pays ``right_reward``. The myopic policy farms the small reward at the left end; the
optimal one swims right. Episodes are truncated after ``horizon`` steps.

:meth:`ChainEnv.transition_table` exposes the MDP (probabilities and expected rewards), so
tests and analyses compute exact values by dynamic programming.
Observation: the one-hot state (float32).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

LEFT, RIGHT = 0, 1


class ChainEnv(gym.Env):
    """A RiverSwim-like chain.

    :param n_states: number of states (>= 3)
    :param horizon: steps per episode (truncation)
    :param p_right: probability that *right* moves right (in a middle state)
    :param p_stay: probability that *right* stays (in a middle state)
    :param left_reward: reward for *left* at the left end
    :param right_reward: reward for a *right* that stays at the right end
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(
        self,
        n_states: int = 6,
        horizon: int = 100,
        p_right: float = 0.35,
        p_stay: float = 0.6,
        left_reward: float = 0.005,
        right_reward: float = 1.0,
        render_mode: str | None = None,
    ) -> None:
        if int(n_states) < 3:
            raise ValueError(f"Chain: n_states must be >= 3 (got {n_states})")
        if int(horizon) < 1:
            raise ValueError(f"Chain: horizon must be >= 1 (got {horizon})")
        if not (p_right > 0 and p_stay >= 0 and p_right + p_stay <= 1):
            raise ValueError(
                f"Chain: need 0 < p_right, 0 <= p_stay, p_right + p_stay <= 1 (got {p_right}, {p_stay})"
            )
        self.n_states = int(n_states)
        self.horizon = int(horizon)
        self.p_right, self.p_stay = float(p_right), float(p_stay)
        self.left_reward, self.right_reward = float(left_reward), float(right_reward)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (self.n_states,), dtype=np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.render_mode = render_mode
        self.state = 0
        self.t = 0

    def transition_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``P[s, a, s']`` and the expected reward ``R[s, a]`` of the MDP."""
        n = self.n_states
        probabilities = np.zeros((n, 2, n))
        rewards = np.zeros((n, 2))
        for s in range(n):
            probabilities[s, LEFT, max(s - 1, 0)] = 1.0
            p_left = 1.0 - self.p_right - self.p_stay
            if s == 0:  # no slipping past the left end: a slip is a stay
                probabilities[s, RIGHT, 1] += self.p_right
                probabilities[s, RIGHT, 0] += self.p_stay + p_left
            elif s == n - 1:  # no moving past the right end: a move is a stay
                probabilities[s, RIGHT, s] += self.p_right + self.p_stay
                probabilities[s, RIGHT, s - 1] += p_left
                rewards[s, RIGHT] = (self.p_right + self.p_stay) * self.right_reward
            else:
                probabilities[s, RIGHT, s + 1] += self.p_right
                probabilities[s, RIGHT, s] += self.p_stay
                probabilities[s, RIGHT, s - 1] += p_left
        rewards[0, LEFT] = self.left_reward
        return probabilities, rewards

    def state_observation(self, state: int) -> np.ndarray:
        """The observation of ``state`` (its one-hot vector), for tabular analyses."""
        one_hot = np.zeros(self.n_states, dtype=np.float32)
        one_hot[state] = 1.0
        return one_hot

    def optimal_values(self) -> np.ndarray:
        """Finite-horizon optimal values ``V*[t, s]`` (t = steps left, 0..horizon) by backward induction."""
        probabilities, rewards = self.transition_table()
        values = np.zeros((self.horizon + 1, self.n_states))
        for steps_left in range(1, self.horizon + 1):
            q = rewards + probabilities @ values[steps_left - 1]
            values[steps_left] = q.max(axis=1)
        return values

    @property
    def optimal_return(self) -> float:
        """Expected return of an optimal policy from the start state."""
        return float(self.optimal_values()[self.horizon, 0])

    def _observation(self) -> np.ndarray:
        one_hot = np.zeros(self.n_states, dtype=np.float32)
        one_hot[self.state] = 1.0
        return one_hot

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.state, self.t = 0, 0
        return self._observation(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        s, n = self.state, self.n_states
        reward = 0.0
        if int(action) == LEFT:
            reward = self.left_reward if s == 0 else 0.0
            self.state = max(s - 1, 0)
        else:
            u = self.np_random.random()
            if u < self.p_right:
                self.state = min(s + 1, n - 1)
            elif u >= self.p_right + self.p_stay:
                self.state = max(s - 1, 0)
            if s == n - 1 and self.state == n - 1:
                reward = self.right_reward
        self.t += 1
        return self._observation(), reward, False, self.t >= self.horizon, {}

    def render(self) -> np.ndarray | None:
        """``rgb_array``: a 1×n image, the agent's state dark."""
        if self.render_mode != "rgb_array":
            return None
        image = np.full((1, self.n_states, 3), 255, dtype=np.uint8)
        image[0, self.state] = (0, 0, 200)
        return image
