"""quantization_aware_training, binary_networks, ternary_networks: fake-quantized weights in the forward
pass, straight-through gradients to latent fp32 weights, packed sizes."""

from __future__ import annotations

import pytest
import torch as th
import torch.nn.functional as F

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.nets.size import weight_bytes
from rlsurgery.quantization import aware_training, quantizers
from rlsurgery.quantization import layers as quantized_layers
from rlsurgery.quantization.fake import FakeQuantization
from rlsurgery.quantization.layers import FakeQuantized, Int8Linear
from tests.breakage import assert_proof_fails_when, replaced
from tests.lowrank import assert_reload_acts_alike
from tests.quantization import DQN_KW, keeps_every_layer, observations, trained_dqn

no_straight_through = replaced(quantizers, "straight_through", lambda x, quantized: quantized.detach())


def latent_weights(model) -> list[th.Tensor]:
    return [m.layer.weight.detach().clone() for m in model.q_net.modules() if isinstance(m, FakeQuantized)]


def check_quantization_aware_training(tmp_path) -> None:
    model = trained_dqn()
    rls.operate(model, "quantization_aware_training:keep_heads=False")
    layers = [m for m in model.q_net.modules() if isinstance(m, FakeQuantized)]
    assert len(layers) == 3 and all(m.code == "int8" for m in layers)
    obs = observations()
    hidden = model.q_net.q_net[2]
    with th.no_grad():
        x = model.q_net.q_net[1](model.q_net.q_net[0](obs))
        scale, zero = hidden.input_range.code()
        codes, scales = quantizers.quantize_weight(hidden.layer.weight)
        expected = F.linear(quantizers.fake_quantize_affine(x, scale, zero), codes.float() * scales[:, None])
        th.testing.assert_close(hidden.eval()(x), expected + hidden.layer.bias)
    before, low = latent_weights(model), float(hidden.input_range.low)
    high = float(hidden.input_range.high)

    model.learn(300)

    after = latent_weights(model)
    assert all(not th.equal(a, b) for a, b in zip(before, after))  # the latent fp32 weights train
    grid = after[1] / quantizers.row_scales(after[1])[:, None]
    assert float((grid - grid.round()).abs().max()) > 0.1  # ... off the int8 grid: they are not the codes
    assert (float(hidden.input_range.low), float(hidden.input_range.high)) != (low, high)  # the EMA follows
    learnt = [m.input_range.state_dict() for m in model.q_net.modules() if isinstance(m, FakeQuantized)]
    with th.no_grad():
        fake = model.q_net(obs)

    rls.operate(model, "post_training_quantization")  # conversion to the int8 model keeps the learnt ranges

    int8 = [m for m in model.q_net.modules() if isinstance(m, Int8Linear)]
    assert len(int8) == 3 and all(
        th.equal(m.input_range.high, r["running_high"]) and th.equal(m.input_range.low, r["running_low"])
        for m, r in zip(int8, learnt)
    )
    with th.no_grad():
        th.testing.assert_close(model.q_net(obs), fake, rtol=1e-4, atol=1e-4)  # same arithmetic, real int8
    assert_reload_acts_alike(model, tmp_path / "qat.zip", obs)


def test_quantization_aware_training_trains_latent_weights_on_int8(tmp_path):
    check_quantization_aware_training(tmp_path)


def test_the_qat_proof_fails_when_no_layer_is_wrapped(tmp_path):
    breakage = replaced(aware_training.QuantizationAwareTraining, "replacement", keeps_every_layer)
    assert_proof_fails_when(breakage, check_quantization_aware_training, tmp_path)


def test_the_qat_proof_fails_without_straight_through_gradients(tmp_path):
    assert_proof_fails_when(no_straight_through, check_quantization_aware_training, tmp_path)


def check_low_bit(key: str, code: str) -> None:
    model = trained_dqn()
    rls.operate(model, f"{key}:keep_ends=False")
    layers = [m for m in model.q_net.modules() if isinstance(m, FakeQuantized)]
    assert len(layers) == 3 and all(m.code == code for m in layers)
    for layer in layers:
        w = layer.layer.weight.detach()
        magnitude = w.abs()
        if code == "binary":
            alpha = magnitude.mean(1, keepdim=True)
            expected = alpha * th.where(w >= 0, 1.0, -1.0)
        else:
            kept = magnitude > 0.7 * magnitude.mean(1, keepdim=True)
            alpha = (magnitude * kept).sum(1, keepdim=True) / kept.sum(1, keepdim=True)
            expected = alpha * th.sign(w) * kept
            assert 0 < int((~kept).sum()) < w.numel()  # some weights are zero
        th.testing.assert_close(layer.quantized_weight(), expected)
        x = th.randn(5, w.shape[1])
        with th.no_grad():
            th.testing.assert_close(layer(x), F.linear(x, expected, layer.layer.bias))
        bits = 1 if code == "binary" else 2
        rows = w.shape[0]
        assert layer.weight_bytes() == -(-w.numel() * bits // 8) + 4 * rows + 4 * rows
    before = latent_weights(model)
    model.learn(200)
    assert all(not th.equal(a, b) for a, b in zip(before, latent_weights(model)))  # straight-through


def test_binary_networks_use_alpha_sign_weights():
    check_low_bit("binary_networks", "binary")


def test_ternary_networks_use_twn_threshold():
    check_low_bit("ternary_networks", "ternary")


def test_the_binary_proof_fails_on_plain_weights():
    def breakage(monkeypatch):  # the layer reads its fake-quantizer from the table of weight codes
        monkeypatch.setitem(quantized_layers.WEIGHT_CODES, "binary", (1, lambda w: w))

    assert_proof_fails_when(breakage, check_low_bit, "binary_networks", "binary")


def test_the_binary_proof_fails_without_straight_through_gradients():
    assert_proof_fails_when(no_straight_through, check_low_bit, "binary_networks", "binary")


def test_the_ternary_proof_fails_without_the_threshold():
    breakage = replaced(quantizers, "TERNARY_THRESHOLD", 0.0)
    assert_proof_fails_when(breakage, check_low_bit, "ternary_networks", "ternary")


def test_the_ternary_proof_fails_when_no_layer_is_wrapped():
    breakage = replaced(FakeQuantization, "replacement", keeps_every_layer)
    assert_proof_fails_when(breakage, check_low_bit, "ternary_networks", "ternary")


def test_keep_ends_leaves_first_and_last_layer_fp32(tmp_path):
    model = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[16, 16])
    )
    before = weight_bytes(model)
    rls.operate(model, "ternary_networks")
    wrapped = {n for n, m in model.policy.named_modules() if isinstance(m, FakeQuantized)}
    assert wrapped == {"mlp_extractor.policy_net.2", "mlp_extractor.value_net.2"}
    assert weight_bytes(model) < before
    model.learn(64)
    assert_reload_acts_alike(model, tmp_path / "ppo.zip", th.randn(8, 4))


def test_low_bit_on_a_single_layer_network_asks_for_keep_ends_false():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **{**DQN_KW, "policy_kwargs": dict(net_arch=[])})
    with pytest.raises(rls.IncompatibleSurgeryError, match=r"binary_networks: .*keep_ends=False"):
        rls.operate(model, "binary_networks")


def test_fake_quantization_is_not_applied_twice():
    model = trained_dqn(100)
    rls.operate(model, "quantization_aware_training")
    with pytest.raises(rls.SurgeryError, match="quantization_aware_training"):
        rls.operate(model, "quantization_aware_training")


def test_binary_networks_from_a_recipe_step():
    model = SurgicalDQN(
        "MlpPolicy", "CartPole-v1", seed=0, surgeries=["binary_networks:at_step=150"], **DQN_KW
    )
    model.learn(100)
    assert not any(isinstance(m, FakeQuantized) for m in model.q_net.modules())
    model.learn(100, reset_num_timesteps=False)
    assert isinstance(model.q_net.q_net[2], FakeQuantized)
    assert isinstance(model.q_net_target.q_net[2], FakeQuantized)


def test_dqn_target_updates_copy_the_learnt_input_ranges():
    from stable_baselines3.common.utils import polyak_update

    model = trained_dqn(100)
    rls.operate(model, "quantization_aware_training:keep_heads=False")
    model.learn(200, reset_num_timesteps=False)  # the online ranges follow the batches
    online = [m.input_range for m in model.q_net.modules() if isinstance(m, FakeQuantized)]
    target = [m.input_range for m in model.q_net_target.modules() if isinstance(m, FakeQuantized)]
    assert any(not th.equal(a.high, b.high) for a, b in zip(online, target))
    synced = {t.data_ptr() for t in model.batch_norm_stats}  # what SB3's target update copies (views)
    assert all(r.running_low.data_ptr() in synced and r.running_high.data_ptr() in synced for r in online)
    polyak_update(model.batch_norm_stats, model.batch_norm_stats_target, 1.0)  # as DQN._on_step does
    assert all(th.equal(a.high, b.high) and th.equal(a.low, b.low) for a, b in zip(online, target))
