from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from torch.nn import functional as F

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.ensembles import bagging
from rlsurgery.ensembles.bagging import bootstrap_masks, member_values
from rlsurgery.nets import ensemble
from rlsurgery.nets.ensemble import EnsembleHead
from rlsurgery.replay.indices import sample_with_indices
from tests.breakage import assert_proof_fails_when, replaced


def bootstrapped(spec: str = "bagging:n_members=4", **kwargs) -> SurgicalDQN:
    args = dict(seed=0, learning_starts=0, buffer_size=5000, policy_kwargs=dict(net_arch=[16]))
    return SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=[spec], **{**args, **kwargs})


# --------------------------------------------------------------------------- masks
def test_bootstrap_masks_follow_the_bernoulli_rate():
    masks = bootstrap_masks(np.arange(100_000), n_members=5, probability=0.3, salt=11)
    assert masks.shape == (100_000, 5)
    assert np.all(np.abs(masks.mean(axis=0) - 0.3) < 0.01)  # every head keeps ~p of the transitions
    correlation = np.corrcoef(masks.T)[np.triu_indices(5, 1)]
    assert np.all(np.abs(correlation) < 0.02)  # heads draw independently
    assert np.array_equal(masks[123], bootstrap_masks(np.array([123]), 5, 0.3, salt=11)[0])  # fixed
    assert not np.array_equal(masks, bootstrap_masks(np.arange(100_000), 5, 0.3, salt=12))  # salted


def test_samples_know_their_buffer_indices_and_draw_what_plain_sampling_draws():
    env = make_vec_env("CartPole-v1", n_envs=3, seed=0)
    buffer = ReplayBuffer(50, env.observation_space, env.action_space, n_envs=3)
    obs = env.reset()
    for _ in range(20):
        actions = np.array([env.action_space.sample() for _ in range(3)])
        next_obs, rewards, dones, infos = env.step(actions)
        buffer.add(obs, next_obs, actions, rewards, dones, infos)
        obs = next_obs
    np.random.seed(5)
    plain = buffer.sample(64)
    after_plain = np.random.rand()
    np.random.seed(5)
    data, indices = sample_with_indices(buffer, 64)
    assert np.random.rand() == after_plain  # the same random numbers were drawn
    th.testing.assert_close(data.observations, plain.observations)
    stored = buffer.observations.reshape(-1, *buffer.obs_shape)[indices]  # flat index pos * n_envs + env
    th.testing.assert_close(data.observations, th.as_tensor(stored))
    assert "_get_samples" not in vars(buffer)


def filled(model: SurgicalDQN, steps: int = 600) -> SurgicalDQN:
    from stable_baselines3.common.callbacks import BaseCallback

    class Stop(BaseCallback):  # collect only: no gradient step changes the heads
        def _on_step(self) -> bool:
            return self.num_timesteps < steps

    model.learning_starts = 10**9
    model.learn(steps + 1, callback=Stop())
    return model


# --------------------------------------------------------------------------- the loss (the proof)
def check_each_head_learns_only_from_its_bootstrap_sample():
    model = filled(bootstrapped("bagging:n_members=4,mask_probability=0.5"))
    th.manual_seed(0)
    batch = model.sample_batch(512)
    loss = model.compute_loss(batch)
    masks = batch.extras["bootstrap_masks"]
    assert masks.shape == (512, 4)
    assert abs(float(masks.mean()) - 0.5) < 0.05  # Bernoulli(0.5) masks, not all ones
    model.policy.optimizer.zero_grad()
    loss.backward()
    heads = model.q_net.q_net.members
    got = [th.cat([p.grad.flatten() for p in head.parameters()]) for head in heads]
    # reference: head k's loss is 1/K Σ_i m_ik Huber(Q_k(s_i, a_i) − y_ik), averaged over the batch
    with th.no_grad():
        next_q = member_values(model.q_net_target, batch.next_observations).max(dim=2).values
        target = batch.rewards + (1 - batch.dones) * model.gamma * next_q
    for k, head in enumerate(heads):
        head.zero_grad()
        features = model.q_net.extract_features(batch.observations, model.q_net.features_extractor)
        q_k = head(features).gather(1, batch.actions.long()).squeeze(1)
        huber = F.smooth_l1_loss(q_k, target[:, k], reduction="none")
        (masks[:, k] * huber).mean().div(4).backward()
        want = th.cat([p.grad.flatten() for p in head.parameters()])
        th.testing.assert_close(got[k], want, rtol=1e-4, atol=1e-7)
    # the same transition always carries the same mask
    again = model.sample_batch(512)
    model.compute_loss(again)
    for i, j in zip(*np.nonzero(batch.indices[:, None] == again.indices[None, :])):
        assert th.equal(masks[i], again.extras["bootstrap_masks"][j])


def test_each_head_learns_only_from_its_bootstrap_sample():
    check_each_head_learns_only_from_its_bootstrap_sample()


def test_the_mask_proof_fails_when_every_head_sees_every_transition():
    every = lambda indices, n, p, salt: np.ones((len(indices), n), dtype=np.float32)  # noqa: E731
    assert_proof_fails_when(
        replaced(bagging, "bootstrap_masks", every), check_each_head_learns_only_from_its_bootstrap_sample
    )


def test_the_mask_proof_fails_when_the_loss_drops_the_masks():
    masked = bagging.masked_ensemble_loss
    unmasked = lambda current, target, masks: masked(current, target, th.ones_like(masks))  # noqa: E731
    assert_proof_fails_when(
        replaced(bagging, "masked_ensemble_loss", unmasked),
        check_each_head_learns_only_from_its_bootstrap_sample,
    )


# --------------------------------------------------------------------------- acting and evaluation
def check_one_head_acts_per_episode():
    model = filled(bootstrapped("bagging:n_members=5"), steps=300)
    surgery = model._surgeries[0]
    active = surgery.state(model).active
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    values = member_values(model.q_net, th.as_tensor(obs)).detach()
    acted = np.array([model.predict(o, deterministic=False)[0] for o in obs])
    assert np.array_equal(acted, values[:, active[0]].argmax(dim=1).numpy())  # greedy in the acting head
    # the acting head is redrawn exactly when an episode ends
    heads = []  # the head acting at each step of 40 episodes of 10 steps
    for step in range(400):
        heads.append(surgery.state(model).active[0])
        done = np.array([step % 10 == 9])
        model.replay_buffer.add(obs[:1], obs[:1], np.array([0]), np.array([1.0]), done, [{}])
        surgery.on_step(model)
    episodes = np.array(heads).reshape(40, 10)
    assert all(len(set(e)) == 1 for e in episodes)  # one head for a whole episode
    assert len({int(e[0]) for e in episodes}) == 5  # every head gets episodes


def test_one_head_acts_per_episode():
    check_one_head_acts_per_episode()


def test_the_acting_proof_fails_when_the_heads_act_together():
    def mean_acting(self, agent, observation, state, episode_start, deterministic):
        return agent.policy.predict(observation, state, episode_start, deterministic=True)

    assert_proof_fails_when(replaced(bagging.Bagging, "act", mean_acting), check_one_head_acts_per_episode)


def check_deterministic_actions_are_the_stated_combination():
    obs = th.as_tensor(np.random.default_rng(1).normal(size=(512, 4)).astype(np.float32))
    for evaluation in ("mean", "vote"):
        model = bootstrapped(f"bagging:n_members=5,evaluation={evaluation}")
        values = member_values(model.q_net, obs).detach().numpy()  # (B, K, A)
        actions = model.predict(obs.numpy(), deterministic=True)[0]
        th.testing.assert_close(model.q_net(obs), th.as_tensor(values.mean(axis=1)))  # forward: the mean
        by_mean = values.mean(axis=1).argmax(axis=1)
        votes = np.stack([(values.argmax(axis=2) == a).sum(axis=1) for a in range(2)], axis=1)
        majority = np.where(votes[:, 0] == votes[:, 1], by_mean, votes.argmax(axis=1))
        assert (by_mean != majority).any(), "the test needs states where the vote and the mean disagree"
        assert np.array_equal(actions, by_mean if evaluation == "mean" else majority), evaluation


def test_deterministic_actions_are_the_stated_combination():
    check_deterministic_actions_are_the_stated_combination()


def test_the_combination_proof_fails_when_the_vote_is_the_mean():
    assert_proof_fails_when(
        replaced(bagging, "vote", lambda values: values.mean(dim=1).argmax(dim=1)),
        check_deterministic_actions_are_the_stated_combination,
    )


# --------------------------------------------------------------------------- priors and layout
def check_priors_are_fixed_and_added_with_their_scale():
    model = bootstrapped("bagging:n_members=3,prior_scale=3.0")
    head = model.q_net.q_net
    assert isinstance(head, EnsembleHead) and head.priors is not None
    before = [p.clone() for p in head.priors.parameters()]
    obs = th.randn(32, 4)
    features = model.q_net.extract_features(obs, model.q_net.features_extractor)
    expected = th.stack(
        [m(head.trunk(features)) + 3.0 * p(features) for m, p in zip(head.members, head.priors)], 1
    )
    th.testing.assert_close(head.member_outputs(features), expected)
    model.learning_starts = 0
    model.learn(300)
    assert all(th.equal(a, b) for a, b in zip(before, head.priors.parameters()))  # untrained
    target = model.q_net_target.q_net
    assert all(th.equal(a, b) for a, b in zip(head.priors.parameters(), target.priors.parameters()))


def test_priors_are_fixed_and_added_with_their_scale():
    check_priors_are_fixed_and_added_with_their_scale()


def test_the_prior_proof_fails_when_the_prior_is_left_out():
    assert_proof_fails_when(
        replaced(
            EnsembleHead,
            "member_outputs",
            lambda self, f: th.stack([m(self.trunk(f)) for m in self.members], 1),
        ),
        check_priors_are_fixed_and_added_with_their_scale,
    )


def test_heads_share_the_stated_layers_and_start_apart():
    model = bootstrapped("bagging:n_members=3,shared_layers=1", policy_kwargs=dict(net_arch=[16, 8]))
    head = model.q_net.q_net
    assert [m.out_features for m in head.trunk.modules() if isinstance(m, th.nn.Linear)] == [16]
    for member in head.members:
        assert [m.out_features for m in member.modules() if isinstance(m, th.nn.Linear)] == [8, 2]
    first, second = (next(iter(m.parameters())) for m in head.members[:2])
    assert not th.equal(first, second)  # fresh initial weights per head
    optimized = {id(p) for group in model.policy.optimizer.param_groups for p in group["params"]}
    assert {id(p) for p in head.members.parameters()} <= optimized


def test_bagging_reloads_every_head_and_its_state(tmp_path):
    model = bootstrapped("bagging:n_members=3,prior_scale=1.0")
    model.learn(200)
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    obs = th.randn(16, 4)
    th.testing.assert_close(member_values(loaded.q_net, obs), member_values(model.q_net, obs))
    state, restored = model._surgeries[0].state(model), loaded._surgeries[0].state(loaded)
    assert (restored.salt, restored.active) == (state.salt, state.active)


def test_bagging_refusals_name_the_surgery_and_the_reason():
    with pytest.raises(IncompatibleSurgeryError, match="bagging: not available for SurgicalPPO"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["bagging"])
    with pytest.raises(IncompatibleSurgeryError, match="bagging"):
        SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["bagging", "distributional_rl"])
    with pytest.raises(
        IncompatibleSurgeryError, match=r"bagging: cannot build the members: .*fewer than shared_layers"
    ):
        bootstrapped("bagging:shared_layers=2")
    with pytest.raises(IncompatibleSurgeryError, match="bagging: needs a discrete action space"):
        SurgicalDQN("MlpPolicy", "Pendulum-v1", surgeries=["bagging"])


def test_stacked_members_compute_what_the_members_compute_one_by_one():
    th.manual_seed(0)
    members = [th.nn.Sequential(th.nn.Linear(4, 8), th.nn.Tanh(), th.nn.Linear(8, 3)) for _ in range(5)]
    head = EnsembleHead(th.nn.Sequential(), members)
    x = th.randn(16, 4)
    assert ensemble.stack_plan(head.members) is not None  # the batched path runs
    stacked = head.member_outputs(x)
    stacked.square().sum().backward()
    grads = [p.grad.clone() for p in head.parameters()]
    head.zero_grad()
    one_by_one = th.stack([m(x) for m in members], dim=1)
    th.testing.assert_close(stacked, one_by_one)
    one_by_one.square().sum().backward()
    for got, want in zip(grads, (p.grad for p in head.parameters())):
        th.testing.assert_close(got, want)
    members[2][1] = th.nn.Dropout(0.0)  # no longer one shape of plain MLPs: one by one
    assert ensemble.stack_plan(head.members) is None
    th.testing.assert_close(head.member_outputs(x)[:, 2], members[2](x))
