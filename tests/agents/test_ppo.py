"""SurgicalPPO: equivalence with SB3's PPO, stages, save/load, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env

import rlsurgery as rls
from rlsurgery import SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.surgery import Surgery

SMALL = dict(n_steps=64, batch_size=32, n_epochs=3, policy_kwargs=dict(net_arch=[16, 16]))


def assert_same_parameters(a, b):
    sa, sb = a.policy.state_dict(), b.policy.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert th.equal(sa[key], sb[key]), key


@pytest.mark.parametrize(
    ("env_factory", "kwargs"),
    [
        (lambda: "CartPole-v1", SMALL),
        (
            lambda: make_vec_env("CartPole-v1", n_envs=2, seed=4),
            dict(SMALL, clip_range_vf=0.2, target_kl=0.01),
        ),
        (lambda: "Pendulum-v1", dict(SMALL, use_sde=True, sde_sample_freq=8)),
    ],
    ids=["discrete", "vec-env-vf-clip-target-kl", "continuous-gsde"],
)
def test_no_surgeries_reproduces_sb3_ppo_exactly(env_factory, kwargs):
    sb3 = PPO("MlpPolicy", env_factory(), seed=3, **kwargs).learn(384)
    ours = SurgicalPPO("MlpPolicy", env_factory(), seed=3, **kwargs).learn(384)
    assert ours._n_updates == sb3._n_updates > 0
    assert_same_parameters(sb3, ours)
    obs = np.stack([ours.observation_space.sample() for _ in range(8)])
    np.testing.assert_array_equal(
        sb3.predict(obs, deterministic=True)[0], ours.predict(obs, deterministic=True)[0]
    )


def test_stages_fill_the_batch_and_compose_the_sb3_loss():
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, ent_coef=0.05, **SMALL).learn(64)
    data = next(model.rollout_buffer.get(16))
    from rlsurgery.core.batch import PolicyBatch

    batch = PolicyBatch.from_rollout(data, 0.2)
    loss = model.compute_loss(batch)
    assert batch.ratio.shape == (16,) and batch.entropy.shape == (16,)
    expected = batch.policy_loss + 0.05 * (-batch.entropy.mean()) + 0.5 * batch.value_loss
    th.testing.assert_close(loss, expected)
    ratio = batch.ratio.detach()
    adv = batch.advantages
    clipped = -th.min(adv * ratio, adv * ratio.clamp(0.8, 1.2)).mean()
    th.testing.assert_close(batch.policy_loss.detach(), clipped)


def test_custom_surgery_adds_an_auxiliary_loss_and_counts_updates():
    class L2Penalty(Surgery):
        key = "l2_penalty_demo"
        families = ("ppo",)
        stages = ("aux_loss", "after_update")

        def __init__(self):
            super().__init__()
            self.updates = 0

        def aux_loss(self, agent, role, batch):
            if role == "policy":
                return 1e-3 * sum(p.pow(2).sum() for p in agent.policy.parameters())
            return None

        def after_update(self, agent, batch):
            self.updates += 1

    surgery = L2Penalty()
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, surgeries=[surgery], **SMALL).learn(128)
    assert surgery.updates == 2 * SMALL["n_epochs"] * 2  # 2 rollouts × epochs × 2 minibatches
    from rlsurgery.core.batch import PolicyBatch

    data = next(model.rollout_buffer.get(16))
    batch = PolicyBatch.from_rollout(data, 0.2)
    loss = model.compute_loss(batch)
    penalty = 1e-3 * sum(p.pow(2).sum() for p in model.policy.parameters())
    th.testing.assert_close(
        loss, batch.policy_loss + 0.0 * batch.entropy_loss + 0.5 * batch.value_loss + penalty
    )


def test_save_load_restores_surgeries_and_predictions(tmp_path):
    model = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["noisy_nets", "curiosity_driven"], **SMALL
    ).learn(128)
    model.save(tmp_path / "ppo.zip")
    loaded = rls.load(tmp_path / "ppo.zip")
    assert type(loaded) is SurgicalPPO and loaded.surgery_log == model.surgery_log
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0]
    )
    saved, restored = model.rls_modules.state_dict(), loaded.rls_modules.state_dict()
    assert list(saved) == list(restored)
    for key, value in saved.items():
        if key.endswith("_extra_state"):  # optimizer state and step count of the novelty model
            assert value["steps"] == restored[key]["steps"] == 128
            assert value["optimizer"]["state"].keys() == restored[key]["optimizer"]["state"].keys()
        else:
            assert th.equal(value, restored[key]), key


def test_dqn_only_surgeries_are_refused_before_training():
    with pytest.raises(IncompatibleSurgeryError, match="double_q_learning: not available for SurgicalPPO"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["double_q_learning"])
