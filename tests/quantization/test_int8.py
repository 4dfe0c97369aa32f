"""post_training_quantization and dynamic_quantization: int8 codes, int8 arithmetic, ranges from calibration."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch as th
import torch.nn.functional as F

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.nets.data import recent_observations
from rlsurgery.nets.size import weight_bytes
from rlsurgery.quantization import base, dynamic, post_training, quantizers
from rlsurgery.quantization.layers import Int8Linear, int8_layer
from tests.breakage import assert_proof_fails_when, replaced
from tests.lowrank import assert_reload_acts_alike
from tests.quantization import keeps_every_layer, observations, trained_dqn, trained_sac


def test_weight_codes_are_symmetric_per_row():
    weight = th.tensor([[0.5, -1.0, 0.25], [0.01, 0.03, -0.04]])
    codes, scales = quantizers.quantize_weight(weight)
    th.testing.assert_close(scales, th.tensor([1.0, 0.04]) / 127)
    assert codes.dtype == th.int8 and codes.abs().max() == 127
    assert codes.tolist() == [[64, -127, 32], [32, 95, -127]]  # round(63.5) = 64, round(31.75) = 32
    error = (quantizers.dequantize_weight(codes, scales) - weight).abs()
    assert bool((error <= scales[:, None] / 2 + 1e-9).all())  # at most half a step off


def test_the_affine_code_holds_zero_and_the_ends_of_the_range():
    scale, zero = quantizers.affine_parameters(th.tensor(0.5), th.tensor(3.0))  # widened to [0, 3]
    x = th.tensor([0.0, 3.0, 1.5])
    q = quantizers.quantize_affine(x, scale, zero)
    assert q[0] == -128 and q[1] == 127
    th.testing.assert_close(
        (q - zero) * scale, th.tensor([0.0, 3.0, 1.5]), atol=float(scale) / 2 + 1e-6, rtol=0
    )


def check_post_training_quantization(tmp_path) -> None:
    model = trained_dqn()
    net = model.q_net.q_net
    calibration = recent_observations(model, 512, "post_training_quantization")
    obs = observations()
    with th.no_grad():
        hidden = net[1](net[0](calibration))  # the float model's inputs of the second layer
        weight, bias = net[2].weight.clone(), net[2].bias.clone()
        first = net[1](net[0](obs))
    before = weight_bytes(model)

    rls.operate(model, "post_training_quantization:keep_heads=False,equalize=False")

    layers = [m for m in model.q_net.modules() if isinstance(m, Int8Linear)]
    assert len(layers) == 3 and all(m.static for m in layers)
    layer = model.q_net.q_net[2]
    assert layer.weight_codes.dtype == th.int8
    codes, scales = quantizers.quantize_weight(weight)
    assert th.equal(layer.weight_codes, codes)
    # the input ranges are the min and max of each layer's input over the agent's own states
    assert (float(model.q_net.q_net[0].input_range.low), float(model.q_net.q_net[0].input_range.high)) == (
        pytest.approx(float(calibration.min())),
        pytest.approx(float(calibration.max())),
    )
    assert float(layer.input_range.high) == pytest.approx(float(hidden.max()))
    # the output is s_x s_r (q_x − z)·q_wᵀ + b: the fake-quantized input times the dequantized weight
    with th.no_grad():
        scale, zero = quantizers.affine_parameters(hidden.min().clamp(max=0), hidden.max())
        expected = F.linear(
            quantizers.fake_quantize_affine(first, scale, zero), codes.float() * scales[:, None], bias
        )
        th.testing.assert_close(layer(first), expected, rtol=1e-5, atol=1e-5)
    result = model.surgery_state["post_training_quantization"].result
    assert result["weight_bytes_before"] == before and result["weight_bytes_after"] == weight_bytes(model)
    assert before / weight_bytes(model) > 2.2  # tiny [32, 32] layers: scales, biases and ranges weigh
    model.learn(100)  # training goes on (the fp32 biases train)
    loaded = assert_reload_acts_alike(model, tmp_path / "ptq.zip", obs)
    with th.no_grad():
        th.testing.assert_close(loaded.q_net(obs), model.q_net(obs))


def test_post_training_quantization_stores_int8_and_calibrates(tmp_path):
    check_post_training_quantization(tmp_path)


def test_the_ptq_proof_fails_when_no_layer_is_replaced(tmp_path):
    breakage = replaced(post_training.PostTrainingQuantization, "replacement", keeps_every_layer)
    assert_proof_fails_when(breakage, check_post_training_quantization, tmp_path)


def test_the_ptq_proof_fails_without_calibration(tmp_path):
    breakage = replaced(post_training, "input_ranges", lambda *args, **kwargs: {})
    assert_proof_fails_when(breakage, check_post_training_quantization, tmp_path)


def test_int8_linear_multiplies_integers_exactly():
    linear = th.nn.Linear(16, 8)
    layer = Int8Linear(linear, static=True)
    layer.input_range.set(-2.0, 3.0)
    x = th.rand(5, 16) * 5 - 2
    scale, zero = layer.input_range.code()
    q = quantizers.quantize_affine(x, scale, zero).long()
    exact = (q - zero.long()) @ layer.weight_codes.long().t()  # the int64 reference of the int32 GEMM
    with th.no_grad():
        y = layer(x)
    th.testing.assert_close(y, exact.float() * scale * layer.weight_scale + linear.bias, rtol=1e-6, atol=1e-6)


def check_dynamic_quantization(tmp_path) -> None:
    model = trained_dqn()
    obs = observations()
    obs[0] *= 50.0  # one large input: a per-sample scale keeps the others' precision
    net = model.q_net.q_net
    with th.no_grad():
        weight, bias = net[0].weight.clone(), net[0].bias.clone()
        fp32 = net[0](obs)

    rls.operate(model, "dynamic_quantization")

    layer = model.q_net.q_net[0]
    assert isinstance(layer, Int8Linear) and not layer.static and layer.input_range is None
    codes, scales = quantizers.quantize_weight(weight)
    s_x = obs.abs().amax(1, keepdim=True) / 127
    q_x = th.round(obs / s_x)
    with th.no_grad():
        y = layer(obs)
    th.testing.assert_close(y, (q_x @ codes.float().t()) * s_x * scales + bias, rtol=1e-5, atol=1e-5)
    # each sample is as close to fp32 as its own scale allows
    error = (y - fp32).abs().amax(1)
    assert float(error[1:].max()) < float(error[0]) / 10
    model.learn(100)
    assert_reload_acts_alike(model, tmp_path / "dynamic.zip", obs)


def test_dynamic_quantization_scales_each_input(tmp_path):
    check_dynamic_quantization(tmp_path)


def test_the_dynamic_proof_fails_with_one_static_range(tmp_path):
    breakage = replaced(dynamic, "int8_layer", lambda layer, static, **kwargs: int8_layer(layer, static=True))
    assert_proof_fails_when(breakage, check_dynamic_quantization, tmp_path)


def test_the_dynamic_proof_fails_when_no_layer_is_replaced(tmp_path):
    breakage = replaced(dynamic.DynamicQuantization, "replacement", keeps_every_layer)
    assert_proof_fails_when(breakage, check_dynamic_quantization, tmp_path)


def test_ptq_quantizes_sac_actor_critic_and_target(tmp_path):
    model = trained_sac(40, buffer_size=200)
    rls.operate(model, "post_training_quantization:observer=percentile,percentile=99,keep_heads=False")
    for net in (model.actor, model.critic, model.critic_target):
        assert not any(type(m) is th.nn.Linear for m in net.modules())
    online = [m for m in model.critic.modules() if isinstance(m, Int8Linear)]
    target = [m for m in model.critic_target.modules() if isinstance(m, Int8Linear)]
    assert all(th.equal(a.weight_codes, b.weight_codes) for a, b in zip(online, target))
    model.learn(20)
    obs = th.randn(8, 3, generator=th.Generator().manual_seed(0))
    assert_reload_acts_alike(model, tmp_path / "sac.zip", obs)


def test_a_layer_is_not_quantized_twice():
    model = trained_dqn(100)
    rls.operate(model, "dynamic_quantization:keep_heads=False")
    with pytest.raises(
        rls.IncompatibleSurgeryError, match=r"post_training_quantization: .*no Linear or Conv2d"
    ):
        rls.operate(model, "post_training_quantization")


def check_heads_kept() -> None:
    model = trained_dqn(100)
    rls.operate(model, "post_training_quantization")
    net = model.q_net.q_net
    assert isinstance(net[0], Int8Linear) and isinstance(net[2], Int8Linear)
    assert type(net[4]) is th.nn.Linear  # the Q-value head
    ppo = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[8])
    )
    rls.operate(ppo, "dynamic_quantization")
    policy = ppo.policy
    assert type(policy.action_net) is th.nn.Linear and type(policy.value_net) is th.nn.Linear
    assert isinstance(policy.mlp_extractor.policy_net[0], Int8Linear)
    assert isinstance(policy.mlp_extractor.value_net[0], Int8Linear)


def test_the_output_layers_stay_fp32_unless_told():
    check_heads_kept()


def test_the_heads_proof_fails_when_every_layer_is_quantized():
    breakage = replaced(base, "network_ends", lambda agent, layers: (set(), set()))
    assert_proof_fails_when(breakage, check_heads_kept)


def test_a_policy_of_heads_only_asks_for_keep_heads_false():
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[]))
    with pytest.raises(rls.IncompatibleSurgeryError, match=r"post_training_quantization: .*keep_heads=False"):
        rls.operate(model, "post_training_quantization")


def test_feature_scales_keep_small_features_precise():
    features = th.tensor([0.05, 1.0, 8.0])  # observation features of different scales (cos θ, θ̇ …)
    weight = th.randn(6, 3, generator=th.Generator().manual_seed(3)) / features  # each feature counts
    linear = th.nn.Linear(3, 6)
    with th.no_grad():
        linear.weight.copy_(weight)
    x = th.randn(256, 3, generator=th.Generator().manual_seed(4)) * features
    plain, equalized = Int8Linear(linear, static=True), Int8Linear(linear, True, x.abs().amax(0))
    plain.input_range.set(x.min(), x.max())
    scaled = x / x.abs().amax(0)
    equalized.input_range.set(scaled.min(), scaled.max())
    with th.no_grad():  # a shared range rounds the small feature to a few steps
        error_plain = float((plain(x) - linear(x)).abs().max())
        error_equalized = float((equalized(x) - linear(x)).abs().max())
    assert error_equalized < error_plain / 10, (error_plain, error_equalized)


def check_equalization() -> None:
    model = trained_sac(200, buffer_size=300)
    calibration = recent_observations(model, 512, "post_training_quantization")
    weight = model.actor.latent_pi[0].weight.detach().clone()
    rls.operate(model, "post_training_quantization")
    layer = model.actor.latent_pi[0]
    scale = calibration.abs().amax(0)
    th.testing.assert_close(layer.input_scale, scale)  # the input layer: one scale per observation feature
    codes, _ = quantizers.quantize_weight(weight * scale)
    assert th.equal(layer.weight_codes, codes)  # folded into the weight's columns
    assert float(layer.input_range.high) <= 1.0 + 1e-6  # the range is of x / e
    assert model.actor.latent_pi[2].input_scale is None  # hidden layers: one range, no scales
    model.learn(20)
    assert_reload_acts_alike(model, Path(tempfile.mkdtemp()) / "sac.zip", calibration[:16])


def test_equalization_folds_feature_scales_into_the_weights():
    check_equalization()


def test_the_equalization_proof_fails_without_the_feature_scales():
    real = base.input_ranges
    breakage = replaced(post_training, "input_ranges", lambda *args: real(*args[:-1], set()))
    assert_proof_fails_when(breakage, check_equalization)


def check_one_scale_per_layer() -> None:
    weight = th.tensor([[0.5, -1.0, 0.25], [0.01, 0.03, -0.04]])
    codes, scales = quantizers.quantize_weight(weight, per_tensor=True)
    th.testing.assert_close(scales, th.tensor([1.0]) / 127)  # max |w| over the whole tensor
    assert codes.tolist() == [[64, -127, 32], [1, 4, -5]]  # the small row shares the large one's step
    model = trained_dqn()
    rls.operate(model, "dynamic_quantization:weight_scales=tensor,keep_heads=False")
    layers = [m for m in model.q_net.modules() if isinstance(m, Int8Linear)]
    assert len(layers) == 3 and all(m.weight_scale.shape == (1,) for m in layers)


def test_weight_scales_tensor_keeps_one_scale_per_layer(tmp_path):
    check_one_scale_per_layer()
    model = trained_dqn()
    rls.operate(model, "post_training_quantization:weight_scales=tensor")
    obs = observations()
    with th.no_grad():
        layer = model.q_net.q_net[0]
        th.testing.assert_close(
            layer.weight(), quantizers.dequantize_weight(layer.weight_codes, layer.weight_scale)
        )
    assert_reload_acts_alike(model, tmp_path / "tensor.zip", obs)


def test_the_tensor_scale_proof_fails_with_row_scales():
    rows_only = quantizers.row_scales

    def ignore_per_tensor(weight: th.Tensor, bits: int = 8, per_tensor: bool = False) -> th.Tensor:
        return rows_only(weight, bits)

    assert_proof_fails_when(replaced(quantizers, "row_scales", ignore_per_tensor), check_one_scale_per_layer)


def test_int8_bytes_are_the_codes_scales_and_bias():
    """The deployed size counts the stored tensors only: not the zero-point cache Σ_j q_rj."""
    model = trained_dqn()
    rls.operate(model, "dynamic_quantization:keep_heads=False")
    expected = 0
    for layer in model.q_net.modules():
        if isinstance(layer, Int8Linear):
            rows, columns = layer.weight_codes.shape
            expected += rows * columns + 4 * rows + 4 * rows  # int8 codes, fp32 row scales, fp32 bias
    assert weight_bytes(model) == expected
