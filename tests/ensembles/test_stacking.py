from __future__ import annotations

import pytest
import torch as th
from torch.nn import functional as F

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import SurgeryError
from rlsurgery.ensembles import stacking
from rlsurgery.ensembles.members import member_values
from rlsurgery.nets import mixture
from tests.breakage import assert_proof_fails_when, replaced


def stacked(spec: str = "stacking:n_members=3", steps: int = 250) -> SurgicalDQN:  # target lags (sync: 100)
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", surgeries=[spec], seed=0, learning_starts=0, train_freq=1,
        batch_size=32, target_update_interval=100, policy_kwargs=dict(net_arch=[16]),
    )  # fmt: skip
    model.learn(steps)
    return model


def grads(module: th.nn.Module) -> th.Tensor:
    return th.cat(
        [(p.grad if p.grad is not None else th.zeros_like(p)).flatten() for p in module.parameters()]
    )


def check_the_meta_model_learns_to_combine_the_members():
    model = stacked("stacking:n_members=3,meta_weight=0.5")
    head = model.q_net.q_net
    gate = head.combiner.gate
    assert float(gate.weight.detach().abs().sum()) > 0  # it learnt (it started at zero: the mean)
    obs = th.randn(64, 4)
    with th.no_grad():
        values = member_values(model.q_net, obs)
        gates = th.softmax(obs @ gate.weight.T + gate.bias, dim=1)  # by hand
        th.testing.assert_close(model.q_net(obs), (gates.unsqueeze(2) * values).sum(dim=1))
    assert float(gates.std(dim=1).mean()) > 1e-4  # not the plain mean
    # the loss: each member on its own target, the gate on Q_stack's, the members constant in it
    th.manual_seed(0)
    batch = model.sample_batch(128)
    model.policy.optimizer.zero_grad()
    model.compute_loss(batch).backward()
    got_members, got_gate = [grads(m) for m in head.members], grads(gate)
    with th.no_grad():
        next_values = member_values(model.q_net_target, batch.next_observations)
        target_gate = model.q_net_target.q_net.combiner.gate
        next_gates = th.softmax(target_gate(batch.next_observations), dim=1)
        next_stack = (next_gates.unsqueeze(2) * next_values).sum(dim=1)
        r, d = batch.rewards.view(-1, 1), batch.dones.view(-1, 1)
        y_members = r + (1 - d) * model.gamma * next_values.max(dim=2).values
        y_stack = r.view(-1) + (1 - d.view(-1)) * model.gamma * next_stack.max(dim=1).values
    model.policy.optimizer.zero_grad()
    values = member_values(model.q_net, batch.observations)
    taken = values.gather(2, batch.actions.long().view(-1, 1, 1).expand(-1, 3, 1)).squeeze(2)
    F.smooth_l1_loss(taken, y_members, reduction="none").mean(dim=1).mean().backward()
    for k, member in enumerate(head.members):
        th.testing.assert_close(got_members[k], grads(member), rtol=1e-4, atol=1e-7)
    model.policy.optimizer.zero_grad()
    mix = (th.softmax(gate(batch.observations), dim=1) * taken.detach()).sum(dim=1)
    (0.5 * F.smooth_l1_loss(mix, y_stack, reduction="none")).mean().backward()
    assert float(got_gate.abs().sum()) > 0
    th.testing.assert_close(got_gate, grads(gate), rtol=1e-4, atol=1e-7)


def test_the_meta_model_learns_to_combine_the_members():
    check_the_meta_model_learns_to_combine_the_members()


@pytest.mark.parametrize(
    "breakage",
    [
        replaced(mixture.GatedCombiner, "forward", lambda self, outputs, features: outputs.mean(dim=1)),
        replaced(  # the meta term dropped
            stacking,
            "stacking_loss",
            lambda current, target, w: (
                F.smooth_l1_loss(current[:, :-1], target[:, :-1], reduction="none").mean(dim=1),
                (target[:, -1] - current[:, -1]).abs().detach(),
            ),
        ),
        replaced(  # the meta term also moves the members
            stacking,
            "members_and_stack",
            lambda net, obs: (lambda f, h: (h.member_outputs(f), h.combine(h.member_outputs(f), f)))(
                net.extract_features(obs, net.features_extractor), net.q_net
            ),
        ),
    ],
    ids=["mean-instead-of-gates", "no-meta-loss", "members-not-constant"],
)
def test_the_stacking_proof_fails_when_broken(breakage):
    assert_proof_fails_when(breakage, check_the_meta_model_learns_to_combine_the_members)


def test_a_fresh_stack_is_the_members_mean():
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        surgeries=["stacking:n_members=4"],
        seed=0,
        policy_kwargs=dict(net_arch=[16]),
    )
    obs = th.randn(16, 4)
    with th.no_grad():
        th.testing.assert_close(model.q_net(obs), member_values(model.q_net, obs).mean(dim=1))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: SurgicalPPO("MlpPolicy", "CartPole-v1", surgeries=["stacking"]), "stacking"),
        (lambda: SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["stacking", "boosting"]), "estimate"),
        (
            lambda: SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=["stacking:shared_layers=3"]),
            "hidden layers",
        ),
    ],
    ids=["ppo", "with-boosting", "too-many-shared-layers"],
)
def test_refusals(make, match):
    with pytest.raises(SurgeryError, match=match):
        make()
