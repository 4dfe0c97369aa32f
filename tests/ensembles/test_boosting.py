from __future__ import annotations

import pytest
import torch as th
from torch.nn import functional as F

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import SurgeryError
from rlsurgery.ensembles import boosting
from rlsurgery.ensembles.members import member_values
from tests.breakage import assert_proof_fails_when, replaced


def boosted(spec: str, steps: int) -> SurgicalDQN:
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", surgeries=[spec], seed=0, learning_starts=0, train_freq=1,
        batch_size=16, target_update_interval=50, policy_kwargs=dict(net_arch=[16]),
    )  # fmt: skip
    model.learn(steps)
    return model


def grad_norm(module: th.nn.Module) -> float:
    return float(sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None))


def check_the_new_member_fits_the_transitions_the_ensemble_gets_wrong():
    # stage 2 of 0 … 3 (from step 120); 130 steps: the target (synced every 50) lags the online net
    model = boosted("boosting:n_members=4,stage_steps=60,focus=1.0", steps=130)
    surgery = model._surgeries[0]
    assert surgery.state(model).stage == 2
    obs = th.randn(64, 4)
    members = member_values(model.q_net, obs).detach()
    th.testing.assert_close(model.q_net(obs).detach(), members[:, :3].mean(dim=1))  # F_2: members 0, 1, 2
    th.manual_seed(0)
    batch = model.sample_batch(256)
    before = [[p.detach().clone() for p in m.parameters()] for m in model.q_net.q_net.members]
    loss = model.compute_loss(batch)
    # reference, by hand: y from the target ensemble F_2', weights from F_1 = (Q_0 + Q_1) / 2
    with th.no_grad():
        next_values = member_values(model.q_net_target, batch.next_observations)[:, :3].mean(dim=1)
        y = batch.rewards.view(-1) + (1 - batch.dones.view(-1)) * model.gamma * next_values.max(dim=1).values
        values = member_values(model.q_net, batch.observations)
        taken = values.gather(2, batch.actions.long().view(-1, 1, 1).expand(-1, 4, 1)).squeeze(2)
        hardness = ((taken[:, 0] + taken[:, 1]) / 2 - y).abs()
        weights = hardness / hardness.mean()
    assert float(weights.std()) > 0.05  # the ensemble errs more on some transitions than on others
    th.testing.assert_close(batch.weights.view(-1), weights, rtol=1e-5, atol=1e-6)
    ensemble = taken[:, :3].mean(dim=1)
    th.testing.assert_close(loss.detach(), (weights * F.smooth_l1_loss(ensemble, y, reduction="none")).mean())
    # only the new member learns, and an optimizer step leaves the earlier ones where they were
    model.policy.optimizer.zero_grad()
    loss.backward()
    heads = model.q_net.q_net.members
    assert grad_norm(heads[0]) == 0.0 and grad_norm(heads[1]) == 0.0 and grad_norm(heads[3]) == 0.0
    assert grad_norm(heads[2]) > 0.0
    model.policy.optimizer.step()
    for k in (0, 1, 3):
        for old, new in zip(before[k], heads[k].parameters()):
            th.testing.assert_close(new.detach(), old)
    assert any(not th.equal(old, new.detach()) for old, new in zip(before[2], heads[2].parameters()))


def test_the_new_member_fits_the_transitions_the_ensemble_gets_wrong():
    check_the_new_member_fits_the_transitions_the_ensemble_gets_wrong()


@pytest.mark.parametrize(
    "breakage",
    [
        replaced(boosting, "boosting_weights", lambda previous, target, focus: th.ones_like(previous)),
        lambda mp: (  # the earlier members keep training (no freezing, no stop-gradient)
            mp.setattr(boosting.Boosting, "train_only", staticmethod(lambda agent, stage: None)),
            mp.setattr(
                boosting,
                "staged_estimate",
                lambda est, stage: (
                    est[:, : stage + 1].mean(dim=1),
                    est[:, :stage].mean(dim=1) if stage else None,
                ),
            ),
        ),
        replaced(  # the previous ensemble is the latest member only
            boosting,
            "staged_estimate",
            lambda est, stage: (
                (est[:, :stage].detach().sum(dim=1) + est[:, stage]) / (stage + 1),
                est[:, stage - 1].detach() if stage else None,
            ),
        ),
        replaced(boosting.Boosting, "show_stage", staticmethod(lambda agent, stage: None)),  # all members act
    ],
    ids=["uniform-weights", "nothing-frozen", "previous-is-one-member", "every-member-in-the-ensemble"],
)
def test_the_boosting_proof_fails_when_broken(breakage):
    assert_proof_fails_when(breakage, check_the_new_member_fits_the_transitions_the_ensemble_gets_wrong)


def test_a_new_member_starts_from_its_predecessor():
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", surgeries=["boosting:n_members=3,stage_steps=40"], seed=0,
        learning_starts=1000, policy_kwargs=dict(net_arch=[16]),
    )  # fmt: skip
    model.learn(45)  # no update yet: stage 1 began at step 40
    obs = th.randn(32, 4)
    values = member_values(model.q_net, obs).detach()
    th.testing.assert_close(values[:, 1], values[:, 0])
    assert not th.allclose(values[:, 2], values[:, 0])
    th.testing.assert_close(model.q_net(obs).detach(), values[:, 0])  # adding it left the ensemble as it was
    assert model.q_net_target.q_net.combiner.weights.tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["boosting"]), "boosting"),
        (lambda: SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["boosting", "bagging"]), "estimate"),
    ],
    ids=["ppo", "with-bagging"],
)
def test_refusals(make, match):
    with pytest.raises(SurgeryError, match=match):
        make()
