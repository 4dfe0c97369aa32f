"""Count-based optimism: UCB action selection and a visit-count exploration bonus.

Auer et al. 2002 (UCB1); Strehl & Littman 2008 (MBIE-EB, https://doi.org/10.1016/j.jcss.2007.08.009);
Tang et al. 2017 (#Exploration with SimHash, https://arxiv.org/abs/1611.04717)::

    action selection (c > 0, DQN family):   a = argmax_a  Q(s, a) + c · sqrt( log N(s) / N(s, a) )
                                              (an action never tried in s is taken first)
    intrinsic reward (β > 0, any agent):    r⁺ = β / sqrt( N(s') )

N counts visits of hashed states (:mod:`rlsurgery.exploration.counts`): exact codes for
discrete observations, a grid over low-dimensional Boxes, SimHash otherwise. The reward
part is an :class:`~rlsurgery.exploration.intrinsic.IntrinsicRewardVecEnv`, so it works
with every agent; the action part replaces ε-greedy (deterministic predictions stay
greedy and do not count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery, reject_dict_observations
from rlsurgery.exploration.acting import QValueActing, observation_batch
from rlsurgery.exploration.counts import HashKind, StateHasher, VisitCounts
from rlsurgery.exploration.intrinsic import IntrinsicReward, IntrinsicRewardVecEnv

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

    from rlsurgery.agents.dqn import SurgicalDQN

#: agent families every intrinsic-reward surgery supports
INTRINSIC_FAMILIES = ("dqn", "ppo", "a2c", "trpo", "sac", "td3")


def ucb_scores(q_values: th.Tensor, action_counts: np.ndarray, c: float) -> th.Tensor:
    """Q(s, a) + c·sqrt(log N(s) / N(s, a)); +inf where N(s, a) = 0.

    :param q_values: (B, A)
    :param action_counts: N(s, a), (B, A)
    :param c: exploration constant
    """
    n_sa = th.as_tensor(action_counts, dtype=th.float64, device=q_values.device)
    n_s = n_sa.sum(1, keepdim=True).clamp(min=1.0)
    bonus = c * th.sqrt(th.log(n_s) / n_sa.clamp(min=1.0))
    bonus = th.where(n_sa == 0, th.full_like(bonus, float("inf")), bonus)
    return q_values.double() + bonus


def count_bonus(state_counts: np.ndarray, beta: float) -> np.ndarray:
    """β / sqrt(N(s)) for visit counts N(s) ≥ 1."""
    return beta / np.sqrt(np.maximum(state_counts, 1))


class CountModel(IntrinsicReward):
    """Visit counts over hashed states; its bonus is β/sqrt(N(s')) with this visit counted."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space | None = None,
        beta: float = 0.1,
        hash: str = "auto",
        bits: int = 32,
        bins: int = 20,
    ) -> None:
        super().__init__(observation_space, action_space)
        self.beta = beta
        self.hasher = StateHasher(observation_space, kind=hash, bits=bits, bins=bins)
        self.visits = VisitCounts()
        n_actions = int(action_space.n) if isinstance(action_space, spaces.Discrete) else None
        #: N(s, a) of the actions chosen by UCB action selection
        self.tries = VisitCounts(n_actions)

    def bonus(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """β / sqrt(N(s') + 1): the count including the visit being scored."""
        return count_bonus(self.visits.state_counts(self.hasher.codes(next_obs)) + 1, self.beta)

    def observe(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray) -> None:
        """Count the visits of s'."""
        self.visits.add(self.hasher.codes(next_obs))


@dataclass
class UCBBonusParams:
    c: float = param(
        0.0, "UCB action selection Q + c·sqrt(log N(s)/N(s,a)); 0 turns it off (DQN family)", ge=0.0
    )
    beta: float = param(0.1, "intrinsic reward β/sqrt(N(s')); 0 turns it off", ge=0.0)
    hash: HashKind = param("auto", "state hashing: auto, exact, grid (low-dim Box) or simhash")
    bits: int = param(32, "SimHash code length k", ge=1, le=62)
    bins: int = param(20, "grid cells per observation dimension", ge=1)

    def check(self) -> None:
        """One of the two parts must be on."""
        if self.c == 0 and self.beta == 0:
            raise ValueError("c and beta are both 0: set c > 0 (UCB actions) and/or beta > 0 (count bonus)")


@register(proof="tests/exploration/test_ucb_bonus.py::test_ucb_scores_counts_and_bonus_values")
class UCBBonus(QValueActing, Surgery):
    """Count-based optimism: UCB actions (c) and/or a β/sqrt(N(s)) bonus reward (β)."""

    key = "ucb_bonus"
    attaches_to = (Attachment.EXPLORATION,)
    Params = UCBBonusParams
    families = INTRINSIC_FAMILIES
    stages: ClassVar[dict[str, tuple[str, ...]]] = {"dqn": ("act",)}
    params: UCBBonusParams

    @property  # type: ignore[override]
    def selects_actions(self) -> bool:
        """Only the action-selection part (c > 0) is an exploration strategy of its own."""
        return self.params.c > 0

    def stages_for(self, family: str | None) -> tuple[str, ...]:
        return ("act",) if self.params.c > 0 and family == "dqn" else ()

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        reject_dict_observations(self.key, observation_space)
        try:
            StateHasher(
                observation_space, kind=self.params.hash, bits=self.params.bits, bins=self.params.bins
            )
        except ValueError as exc:
            raise IncompatibleSurgeryError(f"{self.key}: {exc}") from None
        if self.params.c > 0 and not isinstance(action_space, spaces.Discrete):
            raise IncompatibleSurgeryError(f"{self.key}: UCB action selection (c > 0) needs discrete actions")

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        if self.params.c > 0 and agent.algorithm_family != "dqn":  # type: ignore[attr-defined]
            raise IncompatibleSurgeryError(
                f"{self.key}: UCB action selection (c > 0) needs a Q-function (DQN family); on "
                f"{type(agent).__name__} use the count bonus alone (c=0, beta > 0)"
            )

    def configure(self, agent: BaseAlgorithm) -> None:
        p = self.params
        model = CountModel(
            agent.observation_space, agent.action_space, beta=p.beta, hash=p.hash, bits=p.bits, bins=p.bins
        )
        agent.rls_modules[self.key] = model  # type: ignore[attr-defined]

    def model(self, agent: BaseAlgorithm) -> CountModel:
        """The agent's count model (saved with the agent)."""
        return agent.rls_modules[self.key]  # type: ignore[attr-defined, return-value]

    def wrap_env(self, agent: BaseAlgorithm, venv: VecEnv) -> VecEnv:
        """The count bonus around the training env (when β > 0)."""
        if self.params.beta == 0:
            return venv
        return IntrinsicRewardVecEnv(venv, self.model(agent), 1.0, name=self.key)

    def choose(self, agent: SurgicalDQN, observation: Any, q_values: th.Tensor) -> np.ndarray:
        """argmax_a Q + c·sqrt(log N(s)/N(s,a)), untried actions first; counts the choice."""
        model = self.model(agent)
        codes = model.hasher.codes(observation_batch(agent, observation))
        counts = model.tries.action_counts(codes)
        scores = ucb_scores(q_values, counts, self.params.c).cpu().numpy()
        actions = scores.argmax(axis=1)
        for i in np.flatnonzero(np.isinf(scores).any(axis=1)):
            actions[i] = np.random.choice(np.flatnonzero(np.isinf(scores[i])))  # untried: at random
        model.tries.add(codes, actions)
        return actions


__all__ = ["CountModel", "UCBBonus", "count_bonus", "ucb_scores"]
