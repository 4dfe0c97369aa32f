"""low_rank_adaptation: outputs unchanged at insertion, only A and B train, the merge is exact."""

from __future__ import annotations

import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.nets.blocks import LoRALinear
from tests.breakage import assert_proof_fails_when, replaced
from tests.lowrank import assert_reload_acts_alike, freezes_nothing

DQN_KW = dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[32, 32]))


def check_lora(tmp_path) -> None:
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW).learn(300)
    observations = th.randn(64, 4, generator=th.Generator().manual_seed(1))
    with th.no_grad():
        before = model.q_net(observations)
    weights = {n: p.detach().clone() for n, p in model.q_net.named_parameters()}

    rls.operate(model, "low_rank_adaptation:rank=2,alpha=4")

    layers = [m for m in model.q_net.modules() if isinstance(m, LoRALinear)]
    assert len(layers) == 3 and all(m.rank == 2 and m.scale == 2.0 for m in layers)
    with th.no_grad():  # B = 0: the adapted network is the model it was
        th.testing.assert_close(model.q_net(observations), before, rtol=0, atol=0)
    trainable = {n for n, p in model.q_net.named_parameters() if p.requires_grad}
    assert trainable == {f"q_net.{i}.lora_{f}" for i in (0, 2, 4) for f in "ab"}
    result = model.surgery_state["low_rank_adaptation"].result
    assert result["trainable_parameters"] == 2 * (4 + 32) + 2 * (32 + 32) + 2 * (32 + 2)

    model.learn(300)
    for name, parameter in model.q_net.named_parameters():
        if not parameter.requires_grad:  # W₀ and the biases: bit for bit what they were
            assert th.equal(parameter, weights[name.replace(".base", "")]), name
    assert any(m.lora_b.abs().sum() > 0 for m in layers)  # the update did train
    with th.no_grad():
        after = model.q_net(observations)
        assert not th.allclose(after, before)
        # merged: one Linear per layer, W = W₀ + (α/r)·B·A, the same outputs
        x = observations
        for module in model.q_net.q_net:
            x = module.merged()(x) if isinstance(module, LoRALinear) else module(x)
        th.testing.assert_close(x, after, rtol=1e-5, atol=1e-5)
    loaded = assert_reload_acts_alike(model, tmp_path / "lora.zip", observations)

    def trainable_of(m):
        return [n for n, p in m.q_net.named_parameters() if p.requires_grad]

    assert trainable_of(loaded) == trainable_of(model)  # load replays the freezing


def test_lora_starts_as_the_model_and_trains_only_its_factors(tmp_path):
    check_lora(tmp_path)


class _RandomB(LoRALinear):
    def __init__(self, base, rank, alpha):
        super().__init__(base, rank, alpha)
        th.nn.init.normal_(self.lora_b)


def test_the_lora_proof_fails_when_b_starts_random(tmp_path):
    import rlsurgery.lowrank.lora as lora

    assert_proof_fails_when(replaced(lora, "LoRALinear", _RandomB), check_lora, tmp_path)


def test_the_lora_proof_fails_when_the_base_trains(tmp_path):
    import rlsurgery.lowrank.lora as lora

    assert_proof_fails_when(replaced(lora, "train_only", freezes_nothing), check_lora, tmp_path)


def test_lora_on_ppo_freezes_log_std_and_keeps_outputs():
    model = SurgicalPPO(
        "MlpPolicy", "Pendulum-v1", seed=0, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[16])
    )
    obs = th.randn(8, 3)
    with th.no_grad():
        before = model.policy.get_distribution(obs).distribution.mean
    rls.operate(model, "low_rank_adaptation")
    with th.no_grad():
        th.testing.assert_close(model.policy.get_distribution(obs).distribution.mean, before, rtol=0, atol=0)
    assert not model.policy.log_std.requires_grad
    assert all(
        n.rpartition(".")[2] in ("lora_a", "lora_b")
        for n, p in model.policy.named_parameters()
        if p.requires_grad
    )
    model.learn(64)
