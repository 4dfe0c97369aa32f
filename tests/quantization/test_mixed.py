"""mixed_precision: fp16 / bf16 where a layer tolerates it, fp32 where its error is too large."""

from __future__ import annotations

import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalPPO
from rlsurgery.nets.size import weight_bytes
from rlsurgery.quantization import mixed_precision
from rlsurgery.quantization.layers import LowPrecision
from tests.breakage import assert_proof_fails_when, replaced
from tests.lowrank import assert_reload_acts_alike
from tests.quantization import observations, trained_dqn


def test_relative_change():
    a = th.tensor([3.0, 4.0])
    assert mixed_precision.relative_change(a, a + th.tensor([0.3, 0.4])) == pytest.approx(0.1)
    assert mixed_precision.relative_change(a, th.tensor([float("inf"), 0.0])) == float("inf")


def check_mixed_precision(tmp_path) -> None:
    model = trained_dqn()
    net = model.q_net.q_net
    with th.no_grad():  # the same function (ReLU is positively homogeneous), weights beyond fp16's 65504
        net[2].weight.mul_(1e5)
        net[2].bias.mul_(1e5)
        net[4].weight.mul_(1e-5)
        model.q_net_target.load_state_dict(model.q_net.state_dict())
    obs = observations()
    with th.no_grad():
        fp32 = model.q_net(obs)
        first = net[0].weight.clone()
    before = weight_bytes(model)

    rls.operate(model, "mixed_precision")

    result = model.surgery_state["mixed_precision"].result
    assert result["precision"] == {"0:q_net.0": "float16", "0:q_net.2": "float32", "0:q_net.4": "float32"}
    sensitivity = result["sensitivity"]
    assert 0 < sensitivity["0:q_net.0"]["layer_error"] <= 1e-3 and sensitivity["0:q_net.2"]["layer_error"] > 1
    assert model.surgery_log[-1]["params"]["chosen"] == ["float16", "float32", "float32"]
    layer = model.q_net.q_net[0]
    assert isinstance(layer, LowPrecision) and layer.weight.dtype == th.float16
    assert th.equal(layer.weight, first.half())
    assert isinstance(model.q_net_target.q_net[0], LowPrecision)
    assert type(model.q_net.q_net[2]) is th.nn.Linear
    assert before - weight_bytes(model) == first.numel() * 2  # 4 → 2 bytes a weight in the lowered layer
    with th.no_grad():
        th.testing.assert_close(model.q_net(obs), fp32, rtol=1e-3, atol=1e-3)
    model.learn(100)
    loaded = assert_reload_acts_alike(model, tmp_path / "mixed.zip", obs)
    assert loaded.q_net.q_net[0].weight.dtype == th.float16 and type(loaded.q_net.q_net[2]) is th.nn.Linear


def test_mixed_precision_keeps_the_sensitive_layer_fp32(tmp_path):
    check_mixed_precision(tmp_path)


def test_the_mixed_proof_fails_when_every_layer_looks_tolerant(tmp_path):
    breakage = replaced(mixed_precision, "relative_change", lambda reference, changed: 0.0)
    assert_proof_fails_when(breakage, check_mixed_precision, tmp_path)


def test_the_mixed_proof_fails_when_nothing_is_lowered(tmp_path):
    breakage = replaced(mixed_precision, "relative_change", lambda reference, changed: float("inf"))
    assert_proof_fails_when(breakage, check_mixed_precision, tmp_path)


def test_bfloat16_on_ppo_reports_every_layer(tmp_path):
    model = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[16, 16])
    ).learn(64)
    rls.operate(model, "mixed_precision:dtype=bfloat16,tolerance=0.05")
    precision = model.surgery_state["mixed_precision"].result["precision"]
    assert len(precision) == 6 and set(precision.values()) == {"bfloat16"}
    assert all(m.weight.dtype == th.bfloat16 for m in model.policy.modules() if isinstance(m, LowPrecision))
    model.learn(64)
    assert_reload_acts_alike(model, tmp_path / "ppo.zip", th.randn(8, 4))


def test_a_tight_tolerance_keeps_every_layer_fp32():
    model = trained_dqn(100)
    rls.operate(model, "mixed_precision:tolerance=1e-9")
    assert set(model.surgery_state["mixed_precision"].result["precision"].values()) == {"float32"}
    assert not any(isinstance(m, LowPrecision) for m in model.q_net.modules())
