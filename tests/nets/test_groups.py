"""Parameter groups and freezing: by role and layer; scales that survive SB3's learning-rate schedule."""

from __future__ import annotations

import pytest
import torch as th

from rlsurgery import SurgicalDQN, SurgicalSAC
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.groups import freeze, regroup, select_parameters, unfreeze
from rlsurgery.nets.step_hooks import optimizers_by_role


def kw(**extra):
    """Small settings (a fresh policy_kwargs each time: SB3 writes into it)."""
    return dict(
        learning_starts=20,
        batch_size=8,
        buffer_size=300,
        train_freq=1,
        policy_kwargs=dict(net_arch=[8, 8]),
        **extra,
    )


def snapshot(net):
    return {k: v.clone() for k, v in net.state_dict().items()}


def test_frozen_layers_do_not_move_and_the_rest_does():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **kw())
    assert freeze(model, "q", ["q_net.0.*"]) == 2
    before = snapshot(model.q_net)
    model.learn(60)
    after = snapshot(model.q_net)
    assert th.equal(after["q_net.0.weight"], before["q_net.0.weight"])  # frozen
    assert not th.equal(after["q_net.4.weight"], before["q_net.4.weight"])  # trained
    assert unfreeze(model, "q", ["q_net.0.*"]) == 2
    model.learn(30, reset_num_timesteps=False)
    assert not th.equal(snapshot(model.q_net)["q_net.0.weight"], before["q_net.0.weight"])


def test_freeze_by_role_on_sac_leaves_the_other_role_training():
    model = SurgicalSAC("MlpPolicy", "Pendulum-v1", seed=0, **{**kw(), "batch_size": 16})
    freeze(model, "actor")
    actor, critic = snapshot(model.actor), snapshot(model.critic)
    model.learn(50)
    assert all(th.equal(v, actor[k]) for k, v in snapshot(model.actor).items())
    assert any(not th.equal(v, critic[k]) for k, v in snapshot(model.critic).items())
    with pytest.raises(IncompatibleSurgeryError, match="no network role 'q'"):
        freeze(model, "q")
    with pytest.raises(IncompatibleSurgeryError, match="no parameter of critic matches"):
        freeze(model, "critic", ["nothing.*"])


def test_group_scales_survive_the_schedule_and_save_load(tmp_path):
    import rlsurgery as rls

    lr = 1e-3
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, learning_rate=lambda p: lr * p, **kw())
    first = [p for _, p in select_parameters(model, "q", ["q_net.0.*"])]
    regroup(model, "policy", [(first, 0.1)])
    model.learn(60)  # SB3 writes schedule(t) into every group at each train(); the step hooks rescale it
    groups = optimizers_by_role(model)["policy"].param_groups
    assert [g["lr_scale"] for g in groups] == [0.1, 1.0]
    base = lr * model._current_progress_remaining
    assert groups[0]["lr"] == pytest.approx(0.1 * groups[1]["lr"]) and groups[1]["lr"] == pytest.approx(
        base, rel=0.05
    )
    # a scale of 0 stops a group exactly like freezing does
    frozen = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **kw())
    regroup(frozen, "policy", [([p for _, p in select_parameters(frozen, "q", ["q_net.0.*"])], 0.0)])
    before = snapshot(frozen.q_net)
    frozen.learn(60)
    assert th.equal(snapshot(frozen.q_net)["q_net.0.weight"], before["q_net.0.weight"])
    assert not th.equal(snapshot(frozen.q_net)["q_net.4.weight"], before["q_net.4.weight"])
    # the scale lives in the optimizer's state: saved and loaded with it
    rls_model = rls.make("dqn", "CartPole-v1", seed=0, surgeries=["layer_wise_learning_rates:decay=0.5"])
    rls_model.save(tmp_path / "lw.zip")
    loaded = rls.load(tmp_path / "lw.zip")
    scales = [g["lr_scale"] for g in optimizers_by_role(loaded)["policy"].param_groups]
    assert scales == [0.25, 0.5, 1.0]
