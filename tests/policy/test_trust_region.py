from __future__ import annotations

import copy

import pytest
import torch as th
from sb3_contrib import TRPO
from stable_baselines3.common.distributions import kl_divergence

import rlsurgery as rls
from rlsurgery import SurgicalPPO, SurgicalTRPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.policy.trust_region import adapt_beta, kl_penalty_loss

SMALL = dict(n_steps=128, batch_size=32, policy_kwargs=dict(net_arch=[16]))


def mean_kl_new_old(model, old_policy) -> float:
    """Exact mean KL(π_new ‖ π_old) over the last rollout's observations."""
    obs = th.as_tensor(model.rollout_buffer.observations.reshape(-1, *model.observation_space.shape))
    with th.no_grad():
        new, old = model.policy.get_distribution(obs), old_policy.get_distribution(obs)
        return float(kl_divergence(new, old).mean())


class SnapshotBeforeUpdate:
    """Keeps a copy of the policy from just before each update (wraps ``train``)."""

    def __init__(self, model):
        self.model, self.snapshots, self.kls = model, [], []
        original = model.train

        def train():
            before = copy.deepcopy(model.policy)
            original()
            self.kls.append(mean_kl_new_old(model, before))

        model.train = train


def test_measured_kl_respects_delta_after_updates():
    delta = 0.005
    # TRPO: the line search accepts a step only with exact mean KL < δ
    trpo = SurgicalTRPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=[f"trust_region:variant=trpo,target_kl={delta}"],
        **SMALL,
    )
    assert trpo.target_kl == delta
    watch = SnapshotBeforeUpdate(trpo)
    trpo.learn(128 * 4)
    assert len(watch.kls) == 4 and max(watch.kls) <= delta and max(watch.kls) > 0
    # PPO early stop: no optimizer step is taken on a minibatch whose measured KL exceeds δ
    ppo = SurgicalPPO(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        n_epochs=10,
        learning_rate=3e-3,
        surgeries=[f"trust_region:variant=early_stop,target_kl={delta}"],
        **SMALL,
    )
    stepped = []
    original = ppo._pipeline.run

    def run(stage, default, *args):
        result = original(stage, default, *args)
        if stage == "kl_stop" and not result:
            stepped.append(float(args[1].approx_kl))
        return result

    ppo._pipeline.run = run
    plain = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, n_epochs=10, learning_rate=3e-3, **SMALL)
    plain_watch, ppo_watch = SnapshotBeforeUpdate(plain), SnapshotBeforeUpdate(ppo)
    ppo.learn(128 * 3)
    plain.learn(128 * 3)
    assert stepped and max(stepped) <= delta
    assert ppo._n_updates < plain._n_updates  # some epoch loops were cut short
    assert max(ppo_watch.kls) < max(plain_watch.kls)  # and the updates moved the policy less


def test_adaptive_kl_penalty_formula_and_beta_schedule(tmp_path):
    ratio, adv = th.tensor([1.2, 0.9]), th.tensor([1.0, -2.0])
    log_ratio = ratio.log()
    expected = -(1.2 * 1.0 + 0.9 * -2.0) / 2 + 0.5 * ((ratio - 1 - log_ratio).mean())
    th.testing.assert_close(kl_penalty_loss(ratio, adv, log_ratio, beta=0.5), expected)
    assert adapt_beta(1.0, 0.02, 0.01) == 2.0  # above 1.5 δ
    assert adapt_beta(1.0, 0.005, 0.01) == 0.5  # below δ / 1.5
    assert adapt_beta(1.0, 0.01, 0.01) == 1.0
    model = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["trust_region:target_kl=1e-6,beta=1.0"], **SMALL
    )
    model.learn(128 * 3)
    state = model.surgery_state["trust_region"]
    assert state.beta == 4.0  # KL far above a tiny δ: doubled after each of the first two updates
    assert (
        len(state.kls) == 10 * 128 // 32
    )  # the third update (10 epochs × 4 minibatches), for the next rollout
    # β and the pending KLs are saved: a loaded model goes on with them instead of the initial β
    model.save(tmp_path / "kl.zip")
    loaded = rls.load(tmp_path / "kl.zip")
    assert loaded.surgeries[0].state(loaded) == state


def test_trpo_equivalence_save_load_and_refusals(tmp_path):
    sb3 = TRPO("MlpPolicy", "CartPole-v1", seed=1, **SMALL).learn(256)
    ours = SurgicalTRPO("MlpPolicy", "CartPole-v1", seed=1, **SMALL).learn(256)
    for (k, a), b in zip(sb3.policy.state_dict().items(), ours.policy.state_dict().values()):
        assert th.equal(a, b), k
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, surgeries=["trust_region"], **SMALL).learn(128)
    model.save(tmp_path / "m.zip")
    assert rls.load(tmp_path / "m.zip").surgery_log == model.surgery_log
    with pytest.raises(IncompatibleSurgeryError, match="variant trpo is sb3-contrib's TRPO"):
        SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["trust_region:variant=trpo"])
    with pytest.raises(IncompatibleSurgeryError, match="on TRPO only variant trpo applies"):
        SurgicalTRPO("MlpPolicy", "CartPole-v1", surgeries=["trust_region"])
