"""Curiosity: intrinsic rewards from prediction error (RND and ICM).

Random network distillation (Burda et al. 2019, https://arxiv.org/abs/1810.12894)::

    x = clip((s' − μ_s) / σ_s, −5, 5)                 observation normalisation (running moments)
    b = ‖ f̂_θ(x) − f(x) ‖² / dim                      f fixed and random, f̂_θ trained to match it
    b ← b / σ_R                                       σ_R: running std of the discounted bonus return
                                                      (raw b for the first 32 returns, while σ_R settles)

Intrinsic curiosity module (Pathak et al. 2017, https://arxiv.org/abs/1705.05363)::

    φ = encoder(s), φ' = encoder(s')
    inverse   â = g(φ, φ')          L_I = CE(â, a)  (discrete)  or  ‖â − a‖²  (continuous)
    forward   φ̂' = h(φ, a)          L_F = ½ ‖φ̂' − φ'‖² / dim     (φ' not back-propagated)
    loss      (1 − β) L_I + β L_F,   b = η · L_F(s, a, s')

Both are :class:`~rlsurgery.exploration.intrinsic.IntrinsicReward` models trained inside
the :class:`~rlsurgery.exploration.intrinsic.IntrinsicRewardVecEnv`: transitions are
collected, and every ``update_every`` environment steps the predictor takes ``epochs``
passes over them in minibatches. The bonus of a transition is computed before the model
learns from it, so often-seen states lose their bonus and novel ones keep it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch as th
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_BATCH, MAX_SAMPLES, MAX_WIDTH, param
from rlsurgery.core.surgery import Attachment, Surgery, reject_dict_observations
from rlsurgery.exploration.intrinsic import (
    IntrinsicReward,
    IntrinsicRewardVecEnv,
    RunningMoments,
    flat_observations,
    mlp,
)
from rlsurgery.exploration.ucb_bonus import INTRINSIC_FAMILIES
from rlsurgery.nets.optim import minibatch_steps
from rlsurgery.runtime.schedules import ScheduleFields, ValueSchedule

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecEnv


class TrainedNoveltyModel(IntrinsicReward):
    """Shared plumbing of RND and ICM: a transition store, periodic minibatch training,
    and optional normalisation of the bonus by the running std of its discounted return.

    Subclasses define :meth:`raw_bonus` (tensors in, (B,) out) and :meth:`loss`.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space | None,
        learning_rate: float = 1e-3,
        update_every: int = 128,
        epochs: int = 4,
        batch_size: int = 128,
        normalize_reward: bool = True,
        gamma: float = 0.99,
    ) -> None:
        super().__init__(observation_space, action_space)
        self.learning_rate = learning_rate
        self.update_every, self.epochs, self.batch_size = update_every, epochs, batch_size
        self.normalize_reward, self.gamma = normalize_reward, gamma
        #: returns seen before the bonus is divided by their std (the raw bonus until then)
        self.normalization_warmup = 32
        self.return_moments = RunningMoments(())
        self._store: list[tuple[th.Tensor, th.Tensor, th.Tensor]] = []
        self._returns: th.Tensor | None = None
        self._steps = 0
        self.optimizer: th.optim.Optimizer | None = None

    def build_optimizer(self) -> None:
        """Adam over the trained parameters (call at the end of the subclass constructor)."""
        self.optimizer = th.optim.Adam(
            [p for p in self.parameters() if p.requires_grad], lr=self.learning_rate
        )

    # -- tensors
    def obs_tensor(self, obs: np.ndarray) -> th.Tensor:
        """Flat float observations on the model's device."""
        return flat_observations(obs, self.observation_space, self.device)

    def action_tensor(self, actions: np.ndarray) -> th.Tensor:
        """Actions as float features: one-hot for discrete spaces, flat otherwise."""
        a = th.as_tensor(np.asarray(actions), device=self.device)
        if isinstance(self.action_space, spaces.Discrete):
            return F.one_hot(a.long().reshape(-1), int(self.action_space.n)).float()
        return a.float().reshape(a.shape[0], -1)

    def raw_bonus(self, obs: th.Tensor, actions: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define raw_bonus()")

    def loss(self, obs: th.Tensor, actions: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define loss()")

    def prepare(self, next_obs: th.Tensor) -> None:
        """Update statistics that the bonus uses (e.g. observation moments) before scoring."""

    # -- IntrinsicReward interface
    @th.no_grad()
    def bonus(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray) -> np.ndarray:
        """Prediction error of the transitions, normalised by the std of the bonus return."""
        o, a, o2 = self.obs_tensor(obs), self.action_tensor(actions), self.obs_tensor(next_obs)
        self.prepare(o2)
        raw = self.raw_bonus(o, a, o2)
        if not self.normalize_reward:
            return raw.cpu().numpy()
        if self._returns is None or self._returns.shape != raw.shape:
            self._returns = th.zeros_like(raw)
        self._returns = self._returns * self.gamma + raw
        self.return_moments.update(self._returns)
        if self.return_moments.samples < self.normalization_warmup:
            return raw.cpu().numpy()  # too few returns for a trustworthy σ_R yet
        return (raw / th.sqrt(self.return_moments.var + 1e-8)).cpu().numpy()

    def observe(self, obs: np.ndarray, actions: np.ndarray, next_obs: np.ndarray) -> None:
        """Store the transitions; train on the store every ``update_every`` steps."""
        self._store.append((self.obs_tensor(obs), self.action_tensor(actions), self.obs_tensor(next_obs)))
        self._steps += 1
        if self._steps % self.update_every == 0:
            self.fit()

    def fit(self) -> list[float]:
        """``epochs`` passes of minibatch Adam over the stored transitions; empties the store."""
        if not self._store:
            return []
        o, a, o2 = (th.cat(parts) for parts in zip(*self._store))
        self._store.clear()
        assert self.optimizer is not None, "build_optimizer() was not called"
        losses: list[float] = []
        for _ in range(self.epochs):
            losses += minibatch_steps(
                self.optimizer,
                o.shape[0],
                self.batch_size,
                None,
                o.device,
                lambda i: self.loss(o[i], a[i], o2[i]),
            )
        return losses

    def get_extra_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict() if self.optimizer is not None else {},
            "steps": self._steps,
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if self.optimizer is not None and state.get("optimizer"):
            self.optimizer.load_state_dict(state["optimizer"])
        self._steps = int(state.get("steps", 0))


class RNDModel(TrainedNoveltyModel):
    """Random network distillation: the bonus is the error of a predictor of a fixed random net."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space | None = None,
        hidden: int = 64,
        feature_dim: int = 32,
        normalize_obs: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, **kwargs)
        self.normalize_obs = normalize_obs
        self.obs_moments = RunningMoments((self.obs_dim,))
        self.target = mlp([self.obs_dim, hidden, hidden, feature_dim], nn.LeakyReLU)
        self.predictor = mlp([self.obs_dim, hidden, hidden, feature_dim], nn.LeakyReLU)
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.build_optimizer()

    def prepare(self, next_obs: th.Tensor) -> None:
        if self.normalize_obs:
            self.obs_moments.update(next_obs)

    def _inputs(self, obs: th.Tensor) -> th.Tensor:
        return self.obs_moments.normalize(obs, clip=5.0) if self.normalize_obs else obs

    def errors(self, next_obs: th.Tensor) -> th.Tensor:
        """‖f̂(x) − f(x)‖² / dim per sample."""
        x = self._inputs(next_obs)
        with th.no_grad():
            target = self.target(x)
        return (self.predictor(x) - target).pow(2).mean(1)

    def raw_bonus(self, obs: th.Tensor, actions: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
        return self.errors(next_obs)

    def loss(self, obs: th.Tensor, actions: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
        return self.errors(next_obs).mean()


class ICMModel(TrainedNoveltyModel):
    """Intrinsic curiosity module: forward-model error in a feature space learnt by an inverse model."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        hidden: int = 64,
        feature_dim: int = 32,
        forward_weight: float = 0.2,
        eta: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(observation_space, action_space, **kwargs)
        self.forward_weight, self.eta = forward_weight, eta
        self.discrete = isinstance(action_space, spaces.Discrete)
        action_dim = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.encoder = mlp([self.obs_dim, hidden, feature_dim])
        self.inverse = mlp([2 * feature_dim, hidden, action_dim])
        self.forward_model = mlp([feature_dim + action_dim, hidden, feature_dim])
        self.build_optimizer()

    def forward_errors(self, obs: th.Tensor, actions: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
        """½ ‖h(φ, a) − φ'‖² / dim per sample (φ' is a fixed target)."""
        phi, phi_next = self.encoder(obs), self.encoder(next_obs).detach()
        predicted = self.forward_model(th.cat([phi, actions], dim=1))
        return 0.5 * (predicted - phi_next).pow(2).mean(1)

    def raw_bonus(self, obs: th.Tensor, actions: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
        return self.eta * self.forward_errors(obs, actions, next_obs)

    def loss(self, obs: th.Tensor, actions: th.Tensor, next_obs: th.Tensor) -> th.Tensor:
        phi, phi_next = self.encoder(obs), self.encoder(next_obs)
        predicted_action = self.inverse(th.cat([phi, phi_next], dim=1))
        if self.discrete:
            inverse_loss = F.cross_entropy(predicted_action, actions.argmax(1))
        else:
            inverse_loss = F.mse_loss(predicted_action, actions)
        forward_loss = self.forward_errors(obs, actions, next_obs).mean()
        return (1 - self.forward_weight) * inverse_loss + self.forward_weight * forward_loss


@dataclass
class CuriosityParams(ScheduleFields):
    variant: Literal["rnd", "icm"] = param(
        "rnd", "rnd (random network distillation) or icm (curiosity module)"
    )
    schedule: Literal["linear", "exponential", "piecewise", "constant"] = param(
        "constant", "how the bonus coefficient moves: constant, linear, exponential, piecewise"
    )
    initial: float = param(1.0, "bonus coefficient c at the start", ge=0.0)
    final: float = param(0.0, "bonus coefficient c at the end (non-constant schedules)", ge=0.0)
    hidden: int = param(64, "hidden units of the models", ge=1, le=MAX_WIDTH)
    feature_dim: int = param(32, "output size of the RND networks / ICM feature size", ge=1, le=MAX_WIDTH)
    learning_rate: float = param(1e-3, "Adam learning rate of the predictor", gt=0.0)
    update_every: int = param(
        128, "environment steps between predictor updates (their transitions are kept)", ge=1, le=MAX_SAMPLES
    )
    epochs: int = param(4, "passes over the collected transitions per update", ge=1)
    batch_size: int = param(128, "minibatch size of the predictor updates", ge=1, le=MAX_BATCH)
    normalize_obs: bool = param(True, "rnd: normalise observations with running moments")
    normalize_reward: bool = param(True, "divide the bonus by the running std of its discounted return")
    forward_weight: float = param(
        0.2, "icm: β, weight of the forward loss against the inverse loss", ge=0.0, le=1.0
    )
    eta: float = param(1.0, "icm: η, scale of the forward-error bonus", gt=0.0)


@register(
    proof="tests/exploration/test_curiosity.py::test_bonus_shrinks_for_seen_states_and_stays_high_for_novel"
)
class CuriosityDriven(Surgery):
    """An RND or ICM novelty bonus added to the reward by an env wrapper (any agent)."""

    cost_note = (
        "the bonus model (ICM: an encoder, inverse and forward models) runs on every transition, "
        "and trains for `epochs` passes every `update_every` env steps: the bonus is its error"
    )
    key = "curiosity_driven"
    attaches_to = (Attachment.EXPLORATION,)
    Params = CuriosityParams
    families = INTRINSIC_FAMILIES
    params: CuriosityParams

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        reject_dict_observations(self.key, observation_space)
        if self.params.variant == "icm" and not isinstance(action_space, (spaces.Discrete, spaces.Box)):
            raise IncompatibleSurgeryError(
                f"{self.key}: variant icm needs Discrete or Box actions, got {type(action_space).__name__}"
            )

    def configure(self, agent: BaseAlgorithm) -> None:
        p = self.params
        common = dict(
            hidden=p.hidden,
            feature_dim=p.feature_dim,
            learning_rate=p.learning_rate,
            update_every=p.update_every,
            epochs=p.epochs,
            batch_size=p.batch_size,
            normalize_reward=p.normalize_reward,
            gamma=float(getattr(agent, "gamma", 0.99)),
        )
        if p.variant == "rnd":
            model: TrainedNoveltyModel = RNDModel(
                agent.observation_space, agent.action_space, normalize_obs=p.normalize_obs, **common
            )
        else:
            model = ICMModel(
                agent.observation_space,
                agent.action_space,
                forward_weight=p.forward_weight,
                eta=p.eta,
                **common,
            )
        agent.rls_modules[self.key] = model.to(agent.device)  # type: ignore[attr-defined]
        model.build_optimizer()  # over the parameters on the agent's device
        self.schedule = ValueSchedule.from_fields(p, p.initial, p.final)

    def coefficient(self, agent: BaseAlgorithm) -> float:
        """c(t) at the agent's current step."""
        return self.schedule.at(agent)

    def wrap_env(self, agent: BaseAlgorithm, venv: VecEnv) -> VecEnv:
        """The novelty bonus around the training env."""
        model = agent.rls_modules[self.key]  # type: ignore[attr-defined]
        return IntrinsicRewardVecEnv(venv, model, lambda: self.coefficient(agent), name=self.key)
