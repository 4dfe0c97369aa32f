"""rls.export / rlsurgery export: the greedy policy as ONNX, checked against model.predict in ONNX Runtime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch as th
from stable_baselines3 import DQN

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO, SurgicalSAC, SurgicalTD3
from rlsurgery.cli import main
from rlsurgery.export import OnnxPolicy, export, merged_policy, parity
from rlsurgery.nets.blocks import LoRALinear, LowRankLinear
from rlsurgery.nets.data import space_samples


def off_policy() -> dict:
    return dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[32, 32]))


def on_policy() -> dict:
    return dict(n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[32, 32]))


def assert_parity(model, path, n: int = 200, values_tol: float = 1e-4):
    """The file's actions are model.predict's (equal, or within 1e-5), its values the networks'."""
    result = parity(model, path, n=n, seed=3)
    if "action_agreement" in result:
        assert result["action_agreement"] == 1.0, result
    else:
        assert result["action_max_abs_diff"] < 1e-5, result
    assert result["values_max_abs_diff"] < values_tol, result
    obs = space_samples(model.observation_space, 5, seed=4)
    single = OnnxPolicy(path).predict(obs[0])[0]  # one observation, as model.predict takes it
    np.testing.assert_allclose(single, model.predict(obs[0], deterministic=True)[0], atol=1e-5)
    return result


@pytest.mark.parametrize(
    ("cls", "env_id", "kwargs", "values"),
    [
        (SurgicalDQN, "CartPole-v1", off_policy(), "q_values"),
        (SurgicalPPO, "CartPole-v1", on_policy(), "logits"),
        (SurgicalPPO, "Pendulum-v1", on_policy(), "mean_action"),
        (SurgicalSAC, "Pendulum-v1", off_policy(), "mean_action"),
        (SurgicalTD3, "Pendulum-v1", off_policy(), "mean_action"),
    ],
)
def test_export_matches_predict(cls, env_id, kwargs, values, tmp_path):
    model = cls("MlpPolicy", env_id, seed=0, **kwargs).learn(100)
    path = rls.export(model, tmp_path / "policy.onnx")
    graph = onnx.load(path).graph
    assert [i.name for i in graph.input] == ["obs"] and [o.name for o in graph.output] == ["action", values]
    assert_parity(model, path)


def test_a_plain_sb3_model_exports(tmp_path):
    model = DQN("MlpPolicy", "CartPole-v1", seed=0, **off_policy()).learn(100)
    assert_parity(model, export(model, tmp_path / "dqn.onnx"))


def initializer_bytes(path, dtype=None) -> int:
    """Bytes of the file's initializers (of one ONNX dtype, or all)."""
    tensors = onnx.load(path).graph.initializer
    return sum(len(t.raw_data) for t in tensors if dtype is None or t.data_type == dtype)


@pytest.mark.parametrize(
    "key",
    ["post_training_quantization", "dynamic_quantization", "post_training_quantization:weight_scales=tensor"],
)
def test_a_quantized_model_exports_its_int8_weights(key, tmp_path):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **off_policy()).learn(300)
    fp32 = export(model, tmp_path / "fp32.onnx")
    rls.operate(model, key)
    int8 = export(model, tmp_path / "int8.onnx")
    assert initializer_bytes(int8, onnx.TensorProto.INT8) == 4 * 32 + 32 * 32  # all but the head's weights
    assert initializer_bytes(int8) < initializer_bytes(fp32) / 2  # 32-unit rows: scales, biases stay fp32
    assert_parity(model, int8)


def test_a_sac_model_with_int8_layers_exports(tmp_path):
    model = SurgicalSAC("MlpPolicy", "Pendulum-v1", seed=0, **off_policy()).learn(100)
    rls.operate(model, "post_training_quantization")
    assert_parity(model, export(model, tmp_path / "sac.onnx"))


def test_lora_is_merged_into_one_matrix_on_export(tmp_path):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **off_policy()).learn(100)
    rls.operate(model, "low_rank_adaptation:rank=2")
    model.learn(200)  # B moves off zero: the merged matrix differs from W0
    lora = [m for m in model.q_net.modules() if isinstance(m, LoRALinear)]
    assert lora and any(float(m.lora_b.detach().abs().max()) > 0 for m in lora)
    merged = merged_policy(model)
    assert merged is not model.policy and not any(isinstance(m, LoRALinear) for m in merged.modules())
    assert any(isinstance(m, LoRALinear) for m in model.q_net.modules())  # the model keeps its layers
    path = export(model, tmp_path / "lora.onnx")
    names = {t.name for t in onnx.load(path).graph.initializer}
    assert not any("lora" in n for n in names)
    assert_parity(model, path)
    factors = export(model, tmp_path / "factors.onnx", merge=False)
    assert any("lora" in t.name for t in onnx.load(factors).graph.initializer)


def test_an_svd_factorised_model_exports_its_factors(tmp_path):
    model = SurgicalPPO("MlpPolicy", "Pendulum-v1", seed=0, **on_policy()).learn(64)
    rls.operate(model, "svd_decomposition:rank=2")
    assert any(isinstance(m, LowRankLinear) for m in model.policy.modules())
    path = export(model, tmp_path / "svd.onnx")
    assert_parity(model, path)


@pytest.mark.parametrize(
    ("dtype", "kind"), [("float16", onnx.TensorProto.FLOAT16), ("bfloat16", onnx.TensorProto.BFLOAT16)]
)
def test_mixed_precision_exports_low_precision_weights(dtype, kind, tmp_path):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **off_policy()).learn(300)
    rls.operate(model, f"mixed_precision:dtype={dtype},tolerance=0.05")
    path = export(model, tmp_path / "low.onnx")
    kinds = {t.data_type for t in onnx.load(path).graph.initializer if len(t.dims) == 2}
    assert kind in kinds
    assert_parity(model, path, values_tol=2e-2)  # low-precision products, summed in another order by ORT


def test_export_leaves_the_model_as_it_was(tmp_path):
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, **on_policy())
    model.policy.set_training_mode(True)
    space_state = json.dumps(str(model.observation_space.np_random.bit_generator.state), default=str)
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    export(model, tmp_path / "p.onnx")
    assert model.policy.training
    assert json.dumps(str(model.observation_space.np_random.bit_generator.state), default=str) == space_state
    assert all(th.equal(v, model.policy.state_dict()[k]) for k, v in before.items())


def test_a_dict_observation_space_is_refused_and_the_old_file_kept(tmp_path):
    model = SurgicalDQN(
        "MultiInputPolicy", "rlsurgery/BitFlip-v0", seed=0, **{**off_policy(), "policy_kwargs": {}}
    )
    target = tmp_path / "policy.onnx"
    target.write_bytes(b"kept")
    with pytest.raises(rls.IncompatibleSurgeryError, match="export: observations must be a Box"):
        export(model, target)
    assert target.read_bytes() == b"kept"


def test_cli_export_checks_parity_and_keeps_an_existing_file(tmp_path, capsys):
    model = SurgicalSAC("MlpPolicy", "Pendulum-v1", seed=0, **off_policy()).learn(100)
    model.save(tmp_path / "sac.zip")
    out = tmp_path / "sac.onnx"
    assert main(["export", str(tmp_path / "sac.zip"), "-o", str(out), "--check", "50", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["parity"]["observations"] == 50 and summary["parity"]["action_max_abs_diff"] < 1e-5
    size = out.stat().st_size
    assert main(["export", str(tmp_path / "sac.zip"), "-o", str(out)]) != 0
    assert "exists; pass --force" in capsys.readouterr().err and out.stat().st_size == size


def test_the_report_times_onnx_runtime_when_asked(tmp_path):
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **off_policy()).learn(300)
    rls.operate(model, "dynamic_quantization:keep_heads=False", report=True, episodes=1, onnx=True)
    report = rls.last_report(model)
    assert report.ort_latency_ms_b1 > 0 and report.ort_latency_ms_b256 > 0
    assert report.before["ort_latency_ms_b256"] > 0
    assert report.weight_bytes < report.before["weight_bytes"] / 2.2
    assert "ort_latency_ms_b256" in report.table()


@pytest.mark.parametrize(
    "spec", [None, "tucker_decomposition", "cp_decomposition:rank=4", "post_training_quantization"]
)
def test_an_image_policy_exports_with_its_preprocessing(spec, tmp_path):
    import gymnasium as gym

    from tests.helpers import TinyImageEnv

    if "rlsurgery-test/TinyImage-export-v0" not in gym.registry:
        gym.register("rlsurgery-test/TinyImage-export-v0", entry_point=TinyImageEnv)
    kwargs = dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[16])
    model = SurgicalDQN(
        "CnnPolicy",
        "rlsurgery-test/TinyImage-export-v0",
        seed=0,
        learning_starts=16,
        batch_size=8,
        buffer_size=200,
        policy_kwargs=kwargs,
    ).learn(40)
    if spec:
        rls.operate(model, spec)
    path = export(model, tmp_path / "cnn.onnx")
    assert (
        onnx.load(path).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    )  # raw frames in
    assert_parity(model, path, n=32)


def test_a_tensor_train_model_exports(tmp_path):
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, **on_policy()).learn(64)
    rls.operate(model, "tensor_train:rank=2")
    assert_parity(model, export(model, tmp_path / "tt.onnx"))
