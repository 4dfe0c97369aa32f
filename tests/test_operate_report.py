"""One ``operate`` template for every surgery on a trained model, and the report of an operation.

``Surgery.operate`` checks, calls the surgery's ``transform``, records the operation in the
provenance log and, with ``report=True``, measures the model before and after: parameters,
non-zero parameters, zip bytes, predict latency, greedy return. The numbers are checked against
independent measurements (a mask count, a saved file, ``evaluate_model``), so a report that
copies one field into another, or measures the same model twice, fails here.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO, SurgicalSAC, measure
from rlsurgery.core.report import SIZE_AND_LATENCY, ModelCost, OperationReport
from rlsurgery.core.surgery import Surgery
from rlsurgery.measure import parameter_counts, zip_bytes
from rlsurgery.nets.masks import prunable_layers
from rlsurgery.operate import operable_keys
from rlsurgery.training import evaluate_model
from tests.breakage import assert_proof_fails_when, replaced, wrapped
from tests.helpers import TINY
from tests.test_roundtrip import IMAGE_KEYS, env_for

#: the field names of a report, as ``--json`` and the provenance record spell them
FIELDS = {
    "params",
    "nonzero_params",
    "bytes",
    "latency_ms_b1",
    "latency_ms_b256",
    "return_before",
    "return_after",
}
DISTILLATION = (
    "policy_distillation",
    "teacher_student_distillation",
    "soft_target_training",
    "feature_matching",
    "online_distillation",
    "self_distillation",
    "attention_transfer",
)
#: cheap parameters for the surgeries whose defaults take long (or that need a source model)
OPERATE_SPECS = {
    "pre_training_initialization": "pre_training_initialization:source={checkpoint}",
    "layer_sequential_initialization": "layer_sequential_initialization:samples=64",
    "learning_rate_finder": "learning_rate_finder:steps=5,batch_size=16",
    "loss_landscape_visualization": "loss_landscape_visualization:resolution=3,batch_size=16",
    "batch_norm_re_calibration": "batch_norm_re_calibration:batches=2,batch_size=16",
    "tensor_train": "tensor_train:rank=1",  # the tiny 4 → 16 → 2 layers shrink only at TT-rank 1
    **{key: f"{key}:steps=100,rounds=1,epochs=1" for key in DISTILLATION},
}
#: surgeries that work on what another surgery built: the model is built with it
BUILT_WITH = {
    "batch_norm_re_calibration": ["batch_normalization"],
    "stochastic_depth": ["skip_connection_addition"],
}


def tiny_dqn(key: str, seed: int = 0, steps: int = 100) -> SurgicalDQN:
    """A small DQN, trained ``steps`` steps on an env ``key`` works on."""
    kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in TINY.items()}
    if key in IMAGE_KEYS:
        kwargs["policy_kwargs"] = dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[16])
    policy, env = env_for([key])
    return SurgicalDQN(policy, env, seed=seed, surgeries=BUILT_WITH.get(key, []), **kwargs).learn(steps)


def operate_spec(key: str, model) -> str:
    spec = OPERATE_SPECS.get(key, key)
    if "{checkpoint}" in spec:  # another agent of the same network
        path = Path(tempfile.mkdtemp()) / "checkpoint.zip"
        type(model)(type(model.policy), model.rls_env_id, seed=1, policy_kwargs=model.policy_kwargs).save(
            path
        )
        spec = spec.format(checkpoint=path)
    return spec


def check_report(data: dict, env_id: str, episodes: int) -> OperationReport:
    """The report's fields are there, with plausible values."""
    assert set(data) >= FIELDS, sorted(FIELDS - set(data))
    report = OperationReport.from_dict(data)
    assert report.params > 0 and 0 < report.nonzero_params <= report.params
    assert report.bytes > 0 and report.latency_ms_b1 > 0 and report.latency_ms_b256 > 0
    for measured in (report.return_before, report.return_after):
        assert set(measured) == {"mean", "std"} and all(math.isfinite(v) for v in measured.values())
    assert set(report.before) == set(SIZE_AND_LATENCY)
    measured_here = {k: v for k, v in report.before.items() if not k.startswith("ort_")}  # ONNX: onnx=True
    assert all(v > 0 for v in measured_here.values()) and report.weight_bytes > 0
    assert report.ort_latency_ms_b1 is None and report.before["ort_latency_ms_b1"] is None
    assert (report.env_id, report.episodes) == (env_id, episodes)
    json.dumps(data)  # plain data, as the zip keeps it
    return report


def test_no_surgery_writes_its_own_operate():
    """Every operable surgery inherits ``Surgery.operate`` and writes only ``transform``."""
    keys = operable_keys()
    assert len(keys) >= 50
    for key in keys:
        cls = rls.catalog.get(key).surgery
        assert cls.operate is Surgery.operate, key
        assert cls.transform is not Surgery.transform, key
    # a surgery without transform is not operable, and says so
    model = tiny_dqn("double_q_learning", steps=1)
    with pytest.raises(
        rls.IncompatibleSurgeryError, match="double_q_learning: cannot be applied to an existing"
    ):
        rls.operate(model, "double_q_learning")


@pytest.mark.parametrize("key", operable_keys())
def test_every_operable_surgery_records_its_report(key):
    model = tiny_dqn(key)
    env_id = model.rls_env_id
    result = rls.operate(model, operate_spec(key, model), report=True, episodes=1)
    record = result.surgery_log[-1]
    assert record["key"] == key
    if key in DISTILLATION:  # a new student, built with the surgery
        assert result is not model and record["applied"] == "build"
    else:
        assert result is model and record["applied"] == "operate"
        assert result.surgeries[-1].key == key  # as after load, where surgeries come from the log
    report = check_report(record["report"], env_id, episodes=1)
    assert rls.last_report(result) == report


FAMILY_CASES = [
    (SurgicalPPO, "magnitude_pruning:amount=0.5"),
    (SurgicalPPO, "xavier_initialization"),
    (SurgicalPPO, "shrink_and_perturb"),
    (SurgicalPPO, "learning_rate_finder:steps=5,batch_size=16"),
    (SurgicalPPO, "policy_distillation:steps=100,rounds=1,epochs=1,net_arch=[8]"),
    (SurgicalSAC, "magnitude_pruning:amount=0.5"),
    (SurgicalSAC, "periodic_reset"),
    (SurgicalSAC, "learning_rate_finder:steps=5,batch_size=16"),
    (SurgicalSAC, "policy_distillation:steps=100,rounds=1,epochs=1,net_arch=[8]"),
]


@pytest.mark.parametrize(
    ("cls", "spec"), FAMILY_CASES, ids=[f"{c.algorithm_family}-{s.split(':')[0]}" for c, s in FAMILY_CASES]
)
def test_the_template_on_other_families(cls, spec):
    if cls is SurgicalPPO:
        model = cls(
            "MlpPolicy",
            "CartPole-v1",
            seed=0,
            n_steps=64,
            batch_size=32,
            n_epochs=1,
            policy_kwargs=dict(net_arch=[16]),
        )
    else:
        model = cls(
            "MlpPolicy",
            "Pendulum-v1",
            seed=0,
            buffer_size=300,
            learning_starts=50,
            batch_size=16,
            policy_kwargs=dict(net_arch=[16]),
        )
    model.learn(64 if cls is SurgicalPPO else 80)
    result = rls.operate(model, spec, report=True, episodes=1)
    report = check_report(result.surgery_log[-1]["report"], model.rls_env_id, episodes=1)
    if spec.startswith("policy_distillation"):  # a smaller student
        assert report.params < report.before["params"]


def check_pruning_report(folder: Path) -> None:
    """After magnitude_pruning:amount=0.5, the non-zero parameters drop by the pruned weights, and the
    bytes are those of the zip ``save`` writes."""
    folder.mkdir(exist_ok=True)
    model = tiny_dqn("magnitude_pruning", steps=200)
    model.save(folder / "before.zip")
    weights = sum(layer.weight.numel() for _, layer in prunable_layers(model))
    online = sum(p.numel() for p in model.q_net.parameters())
    rls.operate(model, "magnitude_pruning:amount=0.5", report=True, episodes=2)
    report = rls.last_report(model)
    pruned = sum(int((layer.weight_mask == 0).sum()) for _, layer in prunable_layers(model))
    assert pruned == round(0.5 * weights)  # magnitude_pruning's exact sparsity over all the weights
    # the parameters are all still there; the non-zero ones drop by exactly the pruned weights
    assert report.params == report.before["params"] == online
    assert report.before["nonzero_params"] == online  # trained weights: none exactly zero
    assert report.nonzero_params == online - pruned, "non-zero parameters"
    # bytes: the zip ``save`` writes, before and after (without the report's own JSON)
    assert report.before["bytes"] == (folder / "before.zip").stat().st_size
    del model.surgery_log[-1]["report"]
    model.save(folder / "after.zip")
    assert report.bytes == (folder / "after.zip").stat().st_size, "bytes"
    assert report.bytes == zip_bytes(model) != report.before["bytes"]  # masks are saved too
    assert parameter_counts(model) == (report.params, report.nonzero_params)


def test_report_counts_pruned_weights_and_measures_the_saved_zip(tmp_path):
    check_pruning_report(tmp_path)


def measured_once(measure_model):
    """A broken meter: every measurement is the first one (the model before the surgery)."""

    def first(self, model):
        if not hasattr(self, "_first"):
            self._first = measure_model(self, model)
        return self._first

    return first


def test_the_pruning_report_proof_fails_on_copied_counts_estimated_bytes_or_one_measurement(tmp_path):
    def nonzero_is_params(counts):
        return lambda model: (counts(model)[0], counts(model)[0])

    def estimated(model):  # 4 bytes a parameter, not the file
        return 4 * sum(p.numel() for p in model.policy.parameters())

    assert_proof_fails_when(
        wrapped(measure, "parameter_counts", nonzero_is_params), check_pruning_report, tmp_path / "a"
    )
    assert_proof_fails_when(replaced(measure, "zip_bytes", estimated), check_pruning_report, tmp_path / "b")
    assert_proof_fails_when(
        wrapped(measure.ReportMeter, "measure", measured_once), check_pruning_report, tmp_path / "c"
    )


def check_returns_match_evaluation() -> None:
    """A balancing controller (return 500), its weights re-drawn: both returns as ``evaluate_model``
    gives them on the same seed."""
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, policy_kwargs=dict(net_arch=[]))
    with th.no_grad():
        model.policy.action_net.weight.copy_(th.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 100.0, 50.0]]))
    before = evaluate_model(model, "CartPole-v1", episodes=2, seed=3)
    th.manual_seed(0)
    rls.operate(model, "xavier_initialization", report=True, episodes=2, eval_seed=3)
    after = evaluate_model(model, "CartPole-v1", episodes=2, seed=3)
    report = rls.last_report(model)
    assert report.return_before == {"mean": before["mean_return"], "std": before["std_return"]}
    assert report.return_after == {"mean": after["mean_return"], "std": after["std_return"]}
    assert report.return_before["mean"] == 500.0 > report.return_after["mean"]
    assert report.eval_seed == 3 and report.episodes == 2


def test_report_returns_equal_an_independent_evaluation():
    check_returns_match_evaluation()


def test_the_returns_proof_fails_on_one_measurement_or_another_seed():
    def next_seed(evaluate):
        return lambda model, env_id, **kw: evaluate(model, env_id, **{**kw, "seed": kw["seed"] + 1})

    assert_proof_fails_when(
        wrapped(measure.ReportMeter, "measure", measured_once), check_returns_match_evaluation
    )
    assert_proof_fails_when(wrapped(measure, "evaluate_model", next_seed), check_returns_match_evaluation)


def check_report_leaves_the_operation_unchanged() -> None:
    """Measuring restores the random states: the re-drawn weights are the same with and without a report,
    even when the evaluation draws from the global generators (a stochastic act stage would)."""

    def drawing(evaluate):
        def evaluate_and_draw(*args, **kwargs):
            th.rand(1), np.random.rand(), random.random()
            return evaluate(*args, **kwargs)

        return evaluate_and_draw

    plain, measured = tiny_dqn("xavier_initialization", steps=1), tiny_dqn("xavier_initialization", steps=1)
    th.manual_seed(0)
    rls.operate(plain, "xavier_initialization")
    th.manual_seed(0)
    with pytest.MonkeyPatch.context() as monkeypatch:
        wrapped(measure, "evaluate_model", drawing)(monkeypatch)
        rls.operate(measured, "xavier_initialization", report=True, episodes=1)
    for a, b in zip(plain.policy.parameters(), measured.policy.parameters()):
        assert th.equal(a, b)
    assert "report" not in plain.surgery_log[-1] and "report" in measured.surgery_log[-1]


def test_a_report_leaves_the_operation_as_it_would_be_without():
    check_report_leaves_the_operation_unchanged()
    kept_nothing = replaced(measure, "random_states_kept", contextlib.nullcontext)
    assert_proof_fails_when(kept_nothing, check_report_leaves_the_operation_unchanged)


class Halve(Surgery):
    """Halves every weight of the policy, in place (a custom surgery: it writes only ``transform``)."""

    key, families, operates_in_place = "halve", ("dqn",), True

    def transform(self, model, env_id):
        with th.no_grad():
            for p in model.policy.parameters():
                p.mul_(0.5)
        return model


class WeightMeter:
    """Measures Σ|w| as the "return", to see which model each measurement saw."""

    env_id, episodes, eval_seed = "CartPole-v1", 1, 0

    def measure(self, model):
        total = float(sum(p.detach().abs().sum() for p in model.q_net.parameters()))
        return ModelCost(1, 1, 1, 1.0, 1.0, return_mean=total, return_std=0.0)


def test_the_template_measures_before_transforms_then_records_and_reports():
    model = tiny_dqn("halve", steps=1)
    total = float(sum(p.detach().abs().sum() for p in model.q_net.parameters()))
    assert Halve().operate(model, meter=WeightMeter()) is model
    record = model.surgery_log[-1]
    assert (
        record["key"] == "halve" and record["applied"] == "operate" and record["step"] == model.num_timesteps
    )
    report = OperationReport.from_dict(record["report"])
    assert report.return_before["mean"] == pytest.approx(total)
    assert report.return_after["mean"] == pytest.approx(total / 2)
    assert model.surgeries[-1].key == "halve"


def test_a_report_needs_a_provenance_log_and_episodes_need_a_report():
    from stable_baselines3 import DQN

    plain = DQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[8]))
    rls.operate(plain, "xavier_initialization")  # a plain model is re-drawn, unrecorded, as before
    weights = [p.detach().clone() for p in plain.policy.parameters()]
    with pytest.raises(
        rls.IncompatibleSurgeryError, match="xavier_initialization: a report is kept in the provenance log"
    ):
        rls.operate(plain, "xavier_initialization", "CartPole-v1", report=True, episodes=1)
    assert all(th.equal(a, b) for a, b in zip(weights, plain.policy.parameters()))  # refused before anything
    model = tiny_dqn("magnitude_pruning", steps=1)
    with pytest.raises(rls.ParameterError, match="'episodes' is the number of episodes of the report"):
        rls.operate(model, "magnitude_pruning", episodes=2)
    with pytest.raises(rls.ParameterError, match="the report's 'episodes' must be an integer >= 1"):
        rls.operate(model, "magnitude_pruning", report=True, episodes=0)
    model.rls_env_id = None
    with pytest.raises(rls.IncompatibleSurgeryError, match="does not record its environment"):
        rls.operate(model, "magnitude_pruning", report=True)
    assert [r["key"] for r in model.surgery_log] == []


def test_cli_operate_prints_the_report_and_inspect_shows_it_after_load(tmp_path, capsys):
    from rlsurgery.cli import main

    tiny_dqn("magnitude_pruning", steps=200).save(tmp_path / "model.zip")
    out = tmp_path / "pruned.zip"
    argv = [
        "operate",
        str(tmp_path / "model.zip"),
        "--surgery",
        "magnitude_pruning:amount=0.5",
        "-o",
        str(out),
    ]
    assert main([*argv, "--report", "--episodes", "2", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    report = check_report(printed["report"], "CartPole-v1", episodes=2)
    assert report.nonzero_params < report.before["nonzero_params"] == report.params
    # the report is saved in the provenance log: inspect shows it, as JSON and as a table
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["surgery_log"][-1]["report"] == printed["report"]
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "report of magnitude_pruning on CartPole-v1" in text
    assert f"{'nonzero_params':<16} {report.before['nonzero_params']:>14} {report.nonzero_params:>14}" in text
    assert rls.last_report(rls.load(out)) == report
    # without --json: a readable table; --episodes alone is refused before anything is written
    assert main([*argv[:-1], str(tmp_path / "again.zip"), "--report", "--episodes", "1"]) == 0
    assert "latency_ms_b256" in capsys.readouterr().out
    assert main([*argv[:-1], str(tmp_path / "refused.zip"), "--episodes", "1"]) == 2
    assert "add --report" in capsys.readouterr().err and not (tmp_path / "refused.zip").exists()
    # no report asked: none stored
    assert main([*argv[:-1], str(tmp_path / "plain.zip"), "--json"]) == 0
    assert "report" not in json.loads(capsys.readouterr().out)
    assert rls.last_report(rls.load(tmp_path / "plain.zip")) is None
