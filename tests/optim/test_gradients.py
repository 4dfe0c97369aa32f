"""Gradient surgeries: clipped norms, AGC ratios and weight decay, measured right at the optimizer step."""

from __future__ import annotations

import pytest
import torch as th

from rlsurgery import SurgicalDQN, SurgicalSAC, SurgicalTRPO, catalog
from rlsurgery.cli import main
from rlsurgery.docs import surgeries_markdown
from rlsurgery.nets.optimizer_surgery import OptimizerSurgery
from rlsurgery.optim.gradients import adaptive_clip, clip_by_global_norm, unitwise_norm

KW = dict(
    learning_rate=1e-3,
    learning_starts=20,
    batch_size=16,
    buffer_size=500,
    train_freq=1,
    max_grad_norm=1e9,
    policy_kwargs=dict(net_arch=[16, 16]),
)


def grads_at_step(model, optimizer):
    """The gradients as the optimizer sees them when it steps (after every pre-step hook)."""
    seen = []
    handle = optimizer.register_step_pre_hook(
        lambda opt, _a, _k: seen.append([p.grad.clone() for g in opt.param_groups for p in g["params"]])
    )
    return seen, handle


def test_clipped_norms_agc_ratios_and_weight_decay():
    # the pure functions on hand-made tensors
    a, b = th.nn.Parameter(th.zeros(2)), th.nn.Parameter(th.zeros(2))
    a.grad, b.grad = th.tensor([3.0, 0.0]), th.tensor([0.0, 4.0])
    assert clip_by_global_norm([a, b], 1.0) == pytest.approx(5.0)
    th.testing.assert_close(a.grad, th.tensor([0.6, 0.0]))
    th.testing.assert_close(b.grad, th.tensor([0.0, 0.8]))
    weight = th.tensor([[3.0, 4.0], [0.0, 0.0]])  # row norms 5 and 0 (floored at ε)
    grad = th.tensor([[0.3, 0.4], [1.0, 0.0]])  # ratios 0.1 and 1/ε
    clipped = adaptive_clip(weight, grad, clipping=0.05, eps=0.1)
    th.testing.assert_close(clipped[0], grad[0] * 0.05 * 5 / 0.5)  # scaled so ‖g‖/‖w‖ = λ
    th.testing.assert_close(unitwise_norm(clipped[1:]), th.tensor([[0.05 * 0.1]]))
    th.testing.assert_close(adaptive_clip(weight, grad * 0.01, 0.05, 0.1)[0], grad[0] * 0.01)  # under λ: kept
    # global-norm clipping inside DQN's updates: every step sees a norm ≤ c, and the unclipped norm is recorded
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["gradient_clipping:max_norm=0.01"], **KW
    )
    seen, handle = grads_at_step(model, model.policy.optimizer)
    model.learn(60)
    handle.remove()
    assert seen and all(
        th.linalg.vector_norm(th.stack([g.norm() for g in step])) <= 0.01 + 1e-6 for step in seen
    )
    assert model.surgery_state["gradient_clipping"].result["policy"] > 0.01
    # AGC in SAC's two optimizers: every unit's ratio ‖g_i‖ / max(‖w_i‖, ε) ≤ λ at the step
    sac = SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        buffer_size=300,
        learning_starts=20,
        batch_size=16,
        surgeries=["adaptive_gradient_clipping:clipping=0.001"],
        policy_kwargs=dict(net_arch=[16]),
    )
    ratios = []

    def check(opt, _args, _kwargs):
        for p in (p for g in opt.param_groups for p in g["params"] if p.grad is not None):
            ratios.append(float((unitwise_norm(p.grad) / unitwise_norm(p.detach()).clamp(min=1e-3)).max()))

    handles = [
        sac.actor.optimizer.register_step_pre_hook(check),
        sac.critic.optimizer.register_step_pre_hook(check),
    ]
    sac.learn(40)
    for h in handles:
        h.remove()
    assert ratios and max(ratios) <= 0.001 * (1 + 1e-4)
    # decoupled weight decay: w shrinks by (1 − ηλ) before the step; L2 adds λw to the gradient
    decay = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["weight_decay_modification:mode=decoupled,initial=0.5,final=0.5"],
        **KW,
    )
    optimizer = decay.policy.optimizer
    weight = decay.q_net.q_net[0].weight
    weight.grad = th.zeros_like(weight)
    before = weight.detach().clone()
    with th.no_grad():
        for h in optimizer._optimizer_step_pre_hooks.values():
            h(optimizer, (), {})
    th.testing.assert_close(weight.detach(), before * (1 - 1e-3 * 0.5))
    l2 = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        surgeries=["weight_decay_modification:mode=l2,initial=0.0,final=1.0,start_step=0,end_step=100"],
        **KW,
    )
    optimizer = l2.policy.optimizer
    weight = l2.q_net.q_net[0].weight
    weight.grad = th.zeros_like(weight)
    l2.num_timesteps = 25  # λ(25) = 0.25
    for h in optimizer._optimizer_step_pre_hooks.values():
        h(optimizer, (), {})
    th.testing.assert_close(weight.grad, 0.25 * weight.detach())


def test_on_trpo_the_optimizer_surgeries_touch_only_the_critic(capsys):
    """TRPO's policy step is conjugate gradient + line search, not an optimizer step: a clip to a tiny
    norm freezes the value function and leaves the actor moving; the catalog says 'critic only'."""
    kw = dict(n_steps=64, batch_size=32, n_critic_updates=5, policy_kwargs=dict(net_arch=[16]))

    def moves(surgeries):
        model = SurgicalTRPO("MlpPolicy", "CartPole-v1", seed=0, surgeries=surgeries, **kw)
        parts = {
            "actor": [model.policy.mlp_extractor.policy_net, model.policy.action_net],
            "critic": [model.policy.mlp_extractor.value_net, model.policy.value_net],
        }
        before = {
            k: th.cat([p.detach().flatten().clone() for m in v for p in m.parameters()])
            for k, v in parts.items()
        }
        model.learn(128)
        after = {
            k: th.cat([p.detach().flatten() for m in v for p in m.parameters()]) for k, v in parts.items()
        }
        return {k: float((after[k] - before[k]).norm()) for k in parts}

    plain, clipped = moves([]), moves(["gradient_clipping:max_norm=1e-12"])
    assert clipped["critic"] < 1e-3 * plain["critic"]  # the value function is nearly frozen
    assert clipped["actor"] > 0.1 * plain["actor"] > 0  # the actor moves as much as ever
    entry = catalog.get("gradient_clipping").as_dict()
    assert entry["family_notes"]["trpo"].startswith("critic only")
    section = surgeries_markdown().split("### `gradient_clipping`")[1].split("###")[0]
    assert "- on trpo: critic only: acts on the value-function optimizer step" in section
    assert main(["catalog", "--section", "30"]) == 0
    assert "on trpo: critic only" in capsys.readouterr().out
    # every optimizer surgery that lists TRPO says so; the diagnostics that only read the networks do not
    for e in catalog.entries(status="implemented"):
        if issubclass(e.surgery, OptimizerSurgery) and "trpo" in e.surgery.families:
            noted = "trpo" in e.as_dict()["family_notes"]
            assert noted == (e.key not in ("activation_statistics", "weight_histograms")), e.key
