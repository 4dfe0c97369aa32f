"""Imitation: behaviour cloning and DAgger, on the policy of any surgical agent.

Behaviour cloning (Pomerleau 1991; Bain & Sammut 1995) fits the policy to expert pairs::

    discrete actions:    min_θ  E_(s,a)~D [ −log π_θ(a | s) ]     (DQN family: π_θ = softmax(Q_θ))
    continuous (SAC):    min_θ  E_(s,a)~D [ ‖μ_θ(s) − a‖² ]        (deterministic actor output)

DAgger (Ross et al. 2011, https://arxiv.org/abs/1011.0686)::

    D ← expert rollouts;  fit π_1 on D
    for i = 1 … N−1:  roll out π_mix = β^i · expert + (1 − β^i) · π_i   (per step)
                      label every visited state with the expert's action; D ← D ∪ new; fit π_{i+1} on D

The expert is a saved SB3 model (any algorithm) or, for behaviour cloning, an ``.npz`` of
``observations`` and ``actions``. Both surgeries run once when the agent is built
(``after_build``), before any RL step; ``learn`` then continues with RL if wanted. What
they measured (accuracy on held-out pairs, dataset sizes, learner returns) is in
the surgery's state (``result``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from torch.nn import functional as F

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.core.params import MAX_BATCH, MAX_EPISODES, param
from rlsurgery.core.state import ResultState, transient
from rlsurgery.core.surgery import (
    IMITATION_FAMILIES,
    Attachment,
    Surgery,
    reject_dict_observations,
)
from rlsurgery.io import load_saved_model
from rlsurgery.nets.layout import acting_parameters, layout_of, sync_acting_targets
from rlsurgery.nets.optim import minibatch_steps
from rlsurgery.runtime.models import evaluation_env
from rlsurgery.zoo import is_model_source

#: agent families whose policy the imitation surgeries can fit


@dataclass
class Demonstrations:
    """Expert (observation, action) pairs."""

    observations: np.ndarray
    actions: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)

    def split(self, holdout: float, seed: int) -> tuple[Demonstrations, Demonstrations]:
        """A random (train, held-out) split; ``holdout`` is the held-out fraction."""
        order = np.random.default_rng(seed).permutation(len(self))
        n_out = round(holdout * len(self))
        out, keep = order[:n_out], order[n_out:]
        return (
            Demonstrations(self.observations[keep], self.actions[keep]),
            Demonstrations(self.observations[out], self.actions[out]),
        )


def load_demonstrations(path: str | Path) -> Demonstrations:
    """Pairs from an ``.npz`` with ``observations`` (or ``obs``) and ``actions``."""
    with np.load(path, allow_pickle=False) as data:
        obs_key = "observations" if "observations" in data else "obs"
        if obs_key not in data or "actions" not in data:
            raise ParameterError(
                f"{path}: an expert .npz needs 'observations' and 'actions' arrays (has {list(data)})"
            )
        return Demonstrations(np.asarray(data[obs_key]), np.asarray(data["actions"]))


def rollouts(
    env: gym.Env,
    expert: Any,
    n_episodes: int,
    seed: int,
    learner: Any = None,
    expert_probability: float = 1.0,
) -> tuple[Demonstrations, np.ndarray, list[float]]:
    """Roll out the expert (or the β-mixture of expert and learner) and label with the expert.

    :return: the pairs (every visited state, labelled with the expert's action), a mask of the
        states where the expert acted, and the episode returns
    """
    rng = np.random.default_rng(seed)
    observations, actions, expert_acted, returns = [], [], [], []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            label = expert.predict(obs, deterministic=True)[0]
            use_expert = learner is None or rng.random() < expert_probability
            action = label if use_expert else learner.predict(obs, deterministic=True)[0]
            observations.append(np.array(obs, copy=True))
            actions.append(np.array(label, copy=True))
            expert_acted.append(use_expert)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    data = Demonstrations(np.stack(observations), np.stack(actions))
    return data, np.array(expert_acted), returns


def imitation_loss(agent: BaseAlgorithm, obs: th.Tensor, actions: th.Tensor) -> th.Tensor:
    """−log π(a|s) (softmax of Q for the DQN family) or ‖μ(s) − a‖² for SAC's actor."""
    layout = layout_of(agent)
    if layout.kind == "q":
        return F.cross_entropy(layout.acting_network(agent.policy)(obs), actions.long().reshape(-1))
    if layout.kind == "actor":
        scaled = th.as_tensor(agent.policy.scale_action(actions.cpu().numpy()), device=obs.device)
        return F.mse_loss(agent.actor(obs, deterministic=True), scaled.float())
    if isinstance(agent.action_space, spaces.Discrete):
        actions = actions.long().reshape(-1)
    _, log_prob, _ = agent.policy.evaluate_actions(obs, actions)
    return -log_prob.mean()


def fit_policy(
    agent: BaseAlgorithm, data: Demonstrations, epochs: int, batch_size: int, learning_rate: float, seed: int
) -> list[float]:
    """Minibatch Adam on the imitation loss (a separate optimizer: the agent's own is untouched).

    Target networks are copied from the fitted online networks afterwards.
    """
    agent.policy.set_training_mode(True)
    params = acting_parameters(agent)
    optimizer = th.optim.Adam(params, lr=learning_rate)
    obs = th.as_tensor(data.observations, device=agent.device).float()
    actions = th.as_tensor(data.actions, device=agent.device)
    generator = th.Generator().manual_seed(seed)
    epoch_losses = []
    for _ in range(epochs):
        losses = minibatch_steps(
            optimizer,
            len(data),
            batch_size,
            generator,
            agent.device,
            lambda idx: imitation_loss(agent, obs[idx], actions[idx]),
        )
        epoch_losses.append(float(np.mean(losses)))
    agent.policy.set_training_mode(False)
    sync_acting_targets(agent)
    return epoch_losses


def imitation_accuracy(agent: BaseAlgorithm, data: Demonstrations) -> float:
    """Share of pairs whose greedy action is the expert's (discrete); −mean |a − a*| otherwise."""
    predicted = agent.predict(data.observations, deterministic=True)[0]
    if isinstance(agent.action_space, spaces.Discrete):
        return float(np.mean(np.asarray(predicted).reshape(-1) == data.actions.reshape(-1)))
    return -float(np.mean(np.abs(np.asarray(predicted) - data.actions)))


class ImitationSurgery(Surgery):
    """Shared checks of the imitation surgeries."""

    attaches_to = (Attachment.POST_TRAINING,)
    families = IMITATION_FAMILIES
    State = ResultState

    def check_spaces(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        reject_dict_observations(self.key, observation_space)

    def expert_model(self, agent: BaseAlgorithm) -> BaseAlgorithm:
        """The expert model, checked against the agent's spaces."""
        expert = load_saved_model(self.params.expert)
        if expert.observation_space.shape != agent.observation_space.shape or type(
            expert.action_space
        ) is not type(agent.action_space):
            raise IncompatibleSurgeryError(
                f"{self.key}: the expert's spaces ({expert.observation_space}, {expert.action_space}) "
                f"do not match the agent's ({agent.observation_space}, {agent.action_space})"
            )
        return expert

    def _check_expert_path(self, suffixes: tuple[str, ...]) -> None:
        path = Path(self.params.expert)
        if ".zip" in suffixes and is_model_source(path):  # a model zip, or a run folder holding one
            return
        if path.suffix not in suffixes or not path.is_file():
            raise ParameterError(
                f"{self.key}: parameter 'expert' must be an existing {' or '.join(suffixes)} file "
                f"{'or a run folder ' if '.zip' in suffixes else ''}(got {self.params.expert!r})"
            )


@dataclass
class BehaviorCloningParams:
    expert: str = param(doc="expert: a saved model (.zip, rolled out) or demonstrations (.npz)")
    episodes: int = param(20, "expert episodes to record when the expert is a model", ge=1, le=MAX_EPISODES)
    epochs: int = param(20, "passes over the demonstrations", ge=1)
    batch_size: int = param(64, "minibatch size", ge=1, le=MAX_BATCH)
    learning_rate: float = param(1e-3, "Adam learning rate of the fit", gt=0.0)
    holdout: float = param(
        0.1, "fraction of the pairs held out to measure imitation accuracy", ge=0.0, lt=1.0
    )
    seed: int = param(0, "seed of the rollouts, the split and the minibatches")


@register(proof="tests/policy/test_imitation.py::test_behavior_cloning_reaches_held_out_accuracy")
class BehaviorCloning(ImitationSurgery):
    """Fit the policy to expert pairs (a .npz, or rollouts of a saved model) before RL."""

    key = "behavior_cloning"
    cost_note = (
        "a one-off phase at build: `episodes` expert episodes rolled out and `epochs` passes of "
        "supervised fitting over them; it does not grow with the RL run"
    )
    Params = BehaviorCloningParams
    params: BehaviorCloningParams

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        self._check_expert_path((".zip", ".npz"))

    def after_build(self, agent: BaseAlgorithm) -> None:
        p = self.params
        if Path(p.expert).suffix == ".npz":
            data, expert_returns = load_demonstrations(p.expert), []
        else:
            env = evaluation_env(agent, self.key)
            data, _, expert_returns = rollouts(env, self.expert_model(agent), p.episodes, p.seed)
            env.close()
        train, held_out = data.split(p.holdout, p.seed)
        losses = fit_policy(agent, train, p.epochs, p.batch_size, p.learning_rate, p.seed)
        self.state(agent).result = {
            "surgery": self.key,
            "pairs": len(data),
            "train_pairs": len(train),
            "held_out_pairs": len(held_out),
            "held_out_accuracy": imitation_accuracy(agent, held_out) if len(held_out) else None,
            "expert_returns": expert_returns,
            "losses": losses,
        }


@dataclass
class DaggerParams:
    expert: str = param(doc="the expert: a saved model (.zip) that labels every visited state")
    iterations: int = param(5, "DAgger iterations (the first rolls out the expert alone)", ge=1, le=1000)
    episodes: int = param(
        5, f"episodes rolled out per iteration (all kept: iterations × episodes <= {MAX_EPISODES})", ge=1
    )
    beta: float = param(0.5, "β: the expert acts with probability β^i at iteration i", ge=0.0, le=1.0)
    epochs: int = param(10, "passes over the aggregated data per iteration", ge=1)
    batch_size: int = param(64, "minibatch size", ge=1, le=MAX_BATCH)
    learning_rate: float = param(1e-3, "Adam learning rate of the fits", gt=0.0)
    seed: int = param(0, "seed of the rollouts and the minibatches")

    def check(self) -> None:
        """The aggregated data set stays a size that fits in memory."""
        if self.iterations * self.episodes > MAX_EPISODES:
            raise ValueError(
                f"iterations × episodes must be <= {MAX_EPISODES} (got {self.iterations} × {self.episodes})"
            )


@dataclass
class DaggerState(ResultState):
    dataset: Demonstrations | None = transient()  # noqa: RUF009
    """the aggregated data set (kept for inspection, not saved)"""
    expert_acted: np.ndarray | None = transient()  # noqa: RUF009
    """per pair of ``dataset``: whether the expert chose the action played (not saved)"""


@register(
    proof="tests/policy/test_imitation.py::test_dagger_aggregates_learner_states_and_matches_the_expert"
)
class Dagger(ImitationSurgery):
    """DAgger: roll out the learner, label with the expert, aggregate, refit."""

    key = "dagger"
    cost_note = (
        "a one-off phase at build: `iterations` rounds of rollouts with the expert labelling every "
        "visited state, each followed by `epochs` passes over all the data gathered so far; it does"
        " not grow with the RL run"
    )
    Params = DaggerParams
    params: DaggerParams
    State = DaggerState

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        self._check_expert_path((".zip",))

    def after_build(self, agent: BaseAlgorithm) -> None:
        p = self.params
        expert = self.expert_model(agent)
        env = evaluation_env(agent, self.key)
        data, acted, expert_returns = rollouts(env, expert, p.episodes, p.seed)
        history = [{"iteration": 0, "pairs": len(data), "expert_probability": 1.0, "returns": expert_returns}]
        fit_policy(agent, data, p.epochs, p.batch_size, p.learning_rate, p.seed)
        for i in range(1, p.iterations):
            probability = p.beta**i
            new, new_acted, returns = rollouts(
                env, expert, p.episodes, p.seed + 1000 * i, learner=agent, expert_probability=probability
            )
            data = Demonstrations(
                np.concatenate([data.observations, new.observations]),
                np.concatenate([data.actions, new.actions]),
            )
            acted = np.concatenate([acted, new_acted])
            fit_policy(agent, data, p.epochs, p.batch_size, p.learning_rate, p.seed + i)
            history.append(
                {"iteration": i, "pairs": len(data), "expert_probability": probability, "returns": returns}
            )
        env.close()
        state = self.state(agent)
        state.result = {"pairs": len(data), "iterations": history}
        state.dataset, state.expert_acted = data, acted
