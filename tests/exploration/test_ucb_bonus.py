from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.env_util import make_vec_env

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.exploration import ucb_bonus
from rlsurgery.exploration.counts import StateHasher, VisitCounts
from rlsurgery.exploration.intrinsic import IntrinsicRewardVecEnv
from rlsurgery.exploration.ucb_bonus import CountModel, UCBBonus, count_bonus, ucb_scores
from tests.breakage import assert_proof_fails_when, replaced


def check_agent_acts_on_q_plus_the_ucb_bonus(tiny_kwargs):
    """The agent's exploratory actions, step by step: untried actions first, then
    argmax_a Q(s, a) + c·sqrt(ln N(s) / N(s, a)) with the counts of its own earlier choices (computed
    here by hand); deterministic predictions stay greedy and are not counted."""
    c = 2.0
    model = SurgicalDQN(
        "MlpPolicy", "rlsurgery/Chain-v0", seed=0, surgeries=[f"ucb_bonus:c={c},beta=0"], **tiny_kwargs
    )
    with th.no_grad():  # Q(s, ·) = (1, 0) everywhere: greedy would always take action 0
        head = model.q_net.q_net[-1]
        head.weight.zero_()
        head.bias.copy_(th.tensor([1.0, 0.0]))
    obs = np.eye(6, dtype=np.float32)[2]
    assert model.predict(obs, deterministic=True)[0] == 0
    tries = [0, 0]
    for step in range(40):
        action = int(model.predict(obs, deterministic=False)[0])
        if 0 in tries:
            assert tries[action] == 0, f"step {step}: action {action} again before the untried one"
        else:
            scores = [q + c * math.sqrt(math.log(sum(tries)) / n) for q, n in zip((1.0, 0.0), tries)]
            assert action == int(np.argmax(scores)), f"step {step}: {action} with counts {tries}"
        tries[action] += 1
    assert min(tries) >= 5, tries  # the bonus keeps sending the agent to the worse-looking action
    model.predict(obs, deterministic=True)
    counts = model.rls_modules["ucb_bonus"]
    assert counts.tries.action_counts(counts.hasher.codes(obs[None])).tolist() == [tries]


def test_ucb_scores_counts_and_bonus_values(tiny_kwargs):
    check_agent_acts_on_q_plus_the_ucb_bonus(tiny_kwargs)
    # Q + c·sqrt(log N(s) / N(s,a)), +inf for untried actions
    q = th.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    counts = np.array([[4, 2, 2], [3, 0, 1]])
    scores = ucb_scores(q, counts, c=2.0)
    n_s = 8
    expected = [
        1 + 2 * math.sqrt(math.log(n_s) / 4),
        0.5 + 2 * math.sqrt(math.log(n_s) / 2),
        2 * math.sqrt(math.log(n_s) / 2),
    ]
    np.testing.assert_allclose(scores[0].numpy(), expected)
    assert scores[1, 1] == math.inf and scores[1, 0] == pytest.approx(2 * math.sqrt(math.log(4) / 3))
    # visit counts and the β/sqrt(N) bonus
    space = gym.spaces.Discrete(5)
    model = CountModel(space, gym.spaces.Discrete(2), beta=0.5)
    obs = np.array([3, 3, 1])
    bonuses = []
    for _ in range(4):
        bonuses.append(model.bonus(obs, None, obs))
        model.observe(obs, None, obs)
    # state 3 appears twice per batch: counts 2, 4, 6, 8 after each batch
    assert model.visits.state_counts(model.hasher.codes(np.array([3, 1, 0]))).tolist() == [8, 4, 0]
    np.testing.assert_allclose(bonuses[0][2], 0.5)  # first visit of state 1: β/sqrt(1)
    np.testing.assert_allclose(bonuses[3][2], 0.5 / math.sqrt(4))
    np.testing.assert_allclose(count_bonus(np.array([1, 4, 100]), 0.3), [0.3, 0.15, 0.03])


def test_ucb_proof_fails_on_greedy_actions_without_the_bonus(tiny_kwargs):
    def greedy(q_values, action_counts, c):  # the bonus (and the untried-first rule) dropped
        return q_values.double()

    assert_proof_fails_when(
        replaced(ucb_bonus, "ucb_scores", greedy), check_agent_acts_on_q_plus_the_ucb_bonus, dict(tiny_kwargs)
    )

    def greedy_choice(self, agent, observation, q_values):  # counts its choices, but never explores
        actions = q_values.argmax(dim=1).cpu().numpy()
        model = self.model(agent)
        model.tries.add(model.hasher.codes(ucb_bonus.observation_batch(agent, observation)), actions)
        return actions

    assert_proof_fails_when(
        replaced(UCBBonus, "choose", greedy_choice),
        check_agent_acts_on_q_plus_the_ucb_bonus,
        dict(tiny_kwargs),
    )


def test_hashes_group_states_as_documented():
    box = gym.spaces.Box(
        np.array([-1.2, -0.07], np.float32), np.array([0.6, 0.07], np.float32), dtype=np.float32
    )
    grid = StateHasher(box, bins=10)
    assert grid.kind == "grid"
    codes = grid.codes(np.array([[-1.2, -0.07], [-1.15, -0.065], [0.6, 0.07], [0.0, 0.0]]))
    assert codes[0] == codes[1] and len(set(codes.tolist())) == 3  # same cell, then two others
    onehot = gym.spaces.Box(0, 1, (100,), np.float32)
    sim = StateHasher(onehot, bits=32)
    assert sim.kind == "simhash"
    eye = np.eye(100, dtype=np.float32)
    assert len(set(sim.codes(eye).tolist())) == 100  # one-hot states get distinct codes
    assert StateHasher(gym.spaces.Discrete(4)).kind == "exact"


def test_count_bonus_reward_in_the_wrapper_and_ucb_action_counts(tiny_kwargs):
    model = SurgicalDQN(
        "MlpPolicy", "rlsurgery/Chain-v0", seed=0, surgeries=["ucb_bonus:c=1.0,beta=0.2"], **tiny_kwargs
    )
    assert isinstance(model.env, IntrinsicRewardVecEnv)
    model.learn(300)
    counts = model.rls_modules["ucb_bonus"]
    total_visits = sum(row[0] for row in counts.visits.table.values())
    assert total_visits == 300
    tried = sum(row[0] for row in counts.tries.table.values())
    assert tried == 300 - tiny_kwargs["learning_starts"]  # UCB chose every action after the warm-up
    # every env reward carries its bonus: r_total − r_env = β / sqrt(N(s')), this visit counted
    env = model.env
    env.reset()
    env.step_async(np.array([0]))
    next_obs, _, dones, infos = env.step_wait()
    assert not dones[0]
    visits = counts.visits.state_counts(counts.hasher.codes(next_obs))[0]
    assert infos[0]["intrinsic_reward"] == pytest.approx(0.2 / math.sqrt(visits))
    assert infos[0]["intrinsic/ucb_bonus"] == pytest.approx(infos[0]["intrinsic_reward"] / 1.0)


def test_works_on_ppo_as_a_reward_and_refuses_ucb_actions_there():
    model = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, surgeries=["ucb_bonus:beta=0.1"]
    )
    model.learn(64)
    assert len(model.rls_modules["ucb_bonus"].visits) > 1
    with pytest.raises(IncompatibleSurgeryError, match=r"UCB action selection \(c > 0\) needs a Q-function"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["ucb_bonus:c=1"])
    with pytest.raises(ParameterError, match="c and beta are both 0"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["ucb_bonus:c=0,beta=0"])


def test_wrapper_works_around_any_sb3_env():
    venv = IntrinsicRewardVecEnv(
        make_vec_env("CartPole-v1", n_envs=2, seed=0),
        CountModel(gym.spaces.Box(-5, 5, (4,)), beta=1.0, hash="exact"),
    )
    venv.reset()
    venv.step_async(np.array([0, 1]))
    _, rewards, _, _ = venv.step_wait()
    np.testing.assert_allclose(rewards, [2.0, 2.0])  # 1 (CartPole) + 1/sqrt(1)
    assert isinstance(VisitCounts().get_extra_state()["codes"], th.Tensor)
