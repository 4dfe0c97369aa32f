"""Zips stay SB3 zips (issue 27): a model whose networks are SB3's own opens in plain ``ALGO.load``
and acts the same; ``rls.load`` gets back the masks and reparametrizations exactly; a model that
needs rlsurgery says so (``inspect``) and plain SB3 stops with one line naming the surgeries.

See :mod:`rlsurgery.agents.sb3_zip` for the design.
"""

from __future__ import annotations

import copy
import io
import json
import zipfile

import numpy as np
import pytest
import sb3_contrib
import stable_baselines3 as sb3
import torch as th
from stable_baselines3.common.logger import configure

import rlsurgery as rls
from rlsurgery import catalog
from rlsurgery.agents import sb3_zip
from rlsurgery.core.model_zip import NeedsRlsurgeryError
from rlsurgery.examples import save_cartpole_expert
from rlsurgery.nets.masks import is_masked
from tests.hardening.files import run_cli

#: small settings per algorithm: (surgical class, plain SB3 class, env, keyword arguments)
ALGOS = {
    "dqn": (
        rls.SurgicalDQN,
        sb3.DQN,
        "CartPole-v1",
        dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[16, 16])),
    ),
    "ppo": (rls.SurgicalPPO, sb3.PPO, "CartPole-v1", dict(n_steps=64, batch_size=32, n_epochs=1)),
    "a2c": (rls.SurgicalA2C, sb3.A2C, "CartPole-v1", dict(n_steps=8)),
    "trpo": (rls.SurgicalTRPO, sb3_contrib.TRPO, "CartPole-v1", dict(n_steps=64, batch_size=32)),
    "sac": (
        rls.SurgicalSAC,
        sb3.SAC,
        "Pendulum-v1",
        dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[16])),
    ),
    "td3": (
        rls.SurgicalTD3,
        sb3.TD3,
        "Pendulum-v1",
        dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[16])),
    ),
}
STEPS = 64

#: (algo, surgeries at build, surgery by rls.operate after training): networks that stay SB3's
REPRESENTABLE = [
    ("dqn", [], "magnitude_pruning:amount=0.5"),
    ("dqn", [], "n_m_sparsity"),
    ("dqn", ["gradual_magnitude_pruning:start_step=0,end_step=128,frequency=16,final_sparsity=0.8"], None),
    ("dqn", [], "xavier_initialization"),
    ("dqn", ["weight_normalization"], None),
    ("dqn", ["spectral_normalization"], None),
    ("dqn", ["dropconnect:p=0.2"], None),
    ("dqn", ["variational_dropout"], None),
    ("dqn", ["prioritized_replay", "double_q_learning"], "magnitude_pruning:amount=0.3"),
    ("ppo", [], "magnitude_pruning:amount=0.5"),
    ("ppo", ["weight_normalization"], None),
    ("ppo", [], "n_m_sparsity"),
    ("a2c", [], "magnitude_pruning:amount=0.5"),
    ("trpo", [], "magnitude_pruning:amount=0.5"),
    ("sac", [], "magnitude_pruning:amount=0.5"),
    ("sac", ["spectral_normalization"], None),
    ("sac", [], "orthogonal_initialization"),
    ("td3", [], "magnitude_pruning:amount=0.5"),
]
#: (algo, surgeries at build): networks that only rlsurgery can build
NEEDS_RLSURGERY = [
    ("dqn", ["dueling_architecture"]),
    ("dqn", ["noisy_nets"]),
    ("dqn", ["distributional_rl:n_atoms=11"]),
    ("dqn", ["layer_addition"]),
    ("dqn", ["batch_normalization", "magnitude_pruning"]),
    ("ppo", ["layer_normalization"]),
    ("sac", ["activation_replacement:to=tanh"]),
]


def case_id(case) -> str:
    algo, built, *operated = case
    return "-".join([algo, *(s.split(":")[0] for s in [*built, *filter(None, operated)])]) or algo


def make(algo: str, surgeries: list[str], operated: str | None = None):
    cls, _, env, kwargs = ALGOS[algo]
    model = cls("MlpPolicy", env, seed=0, surgeries=surgeries, **copy.deepcopy(kwargs)).learn(STEPS)
    return rls.operate(model, operated) if operated else model


def observations(model, n: int = 64) -> np.ndarray:
    return sb3_zip.check_observations(model.observation_space, n)


def greedy(model, obs) -> np.ndarray:
    return model.predict(obs, deterministic=True)[0]


def record_of(path) -> dict:
    return json.loads(zipfile.ZipFile(path).read("data"))[sb3_zip.RECORD_KEY]


def assert_same(a, b, where: str) -> None:
    """``a`` and ``b`` are equal, tensors exactly (nested dicts and lists of them)."""
    if isinstance(a, dict):
        assert list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, th.Tensor):
        assert th.equal(a, b), where
    else:
        assert a == b, where


def masked_layers(model) -> dict[str, th.nn.Module]:
    return {n: m for n, m in model.policy.named_modules() if is_masked(m)}


# ------------------------------------------------------------------------------ SB3's architecture
@pytest.mark.parametrize("case", REPRESENTABLE, ids=case_id)
def test_plain_sb3_loads_and_acts_the_same(case, tmp_path):
    algo, built, operated = case
    model = make(algo, built, operated)
    model.save(tmp_path / "m.zip")
    assert record_of(tmp_path / "m.zip") == {"loads_in_sb3": True, "needs_rlsurgery": [], "reason": None}
    plain = ALGOS[algo][1].load(tmp_path / "m.zip")
    assert type(plain) is ALGOS[algo][1]
    classes = [type(plain.policy), getattr(plain, "replay_buffer_class", None) or object]
    assert not any(sb3_zip.from_rlsurgery(c) for c in classes), classes  # SB3's own, nothing of ours
    obs = observations(model)
    np.testing.assert_array_equal(greedy(plain, obs), greedy(model, obs))
    # the plain model's weights are SB3's: no mask, no parametrization, the effective values
    names = set(plain.policy.state_dict())
    assert not any(k.endswith(("_orig", "_mask")) or "parametrizations" in k for k in names)
    for name, layer in masked_layers(model).items():
        effective = (layer.weight_orig * layer.weight_mask).detach()
        th.testing.assert_close(plain.policy.get_submodule(name).weight, effective, rtol=0, atol=0)


#: plain SB3 in a process where importing rlsurgery fails: load, act, train on
WITHOUT_RLSURGERY = """
import sys
class NoRlsurgery:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "rlsurgery":
            raise ImportError(f"{name}: rlsurgery is not installed here")
sys.meta_path.insert(0, NoRlsurgery())
import numpy as np
from stable_baselines3 import DQN
import gymnasium as gym
model = DQN.load(sys.argv[1], env=gym.make("CartPole-v1"))
actions = model.predict(np.load(sys.argv[2]), deterministic=True)[0]
np.save(sys.argv[3], actions)
model.learn(64)
print(type(model.policy).__name__, type(model.replay_buffer).__name__)
"""


def test_plain_sb3_without_rlsurgery_installed_opens_a_pruned_prioritized_dqn(tmp_path):
    import subprocess
    import sys

    model = make("dqn", ["prioritized_replay"], "magnitude_pruning:amount=0.5")
    model.save(tmp_path / "m.zip")
    obs = observations(model)
    np.save(tmp_path / "obs.npy", obs)
    script = tmp_path / "plain.py"
    script.write_text(WITHOUT_RLSURGERY)
    args = [tmp_path / "m.zip", tmp_path / "obs.npy", tmp_path / "actions.npy"]
    done = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["DQNPolicy", "ReplayBuffer"]  # SB3's classes, not rlsurgery's
    np.testing.assert_array_equal(np.load(tmp_path / "actions.npy"), greedy(model, obs))
    again = rls.load(tmp_path / "m.zip")  # rlsurgery still reads its own classes from the zip
    assert type(again.policy) is type(model.policy) and again.replay_buffer_class is model.replay_buffer_class
    assert again.replay_buffer_kwargs == model.replay_buffer_kwargs


@pytest.mark.parametrize("case", REPRESENTABLE, ids=case_id)
def test_rls_load_restores_masks_and_reparametrizations_exactly(case, tmp_path):
    algo, built, operated = case
    model = make(algo, built, operated)
    model.save(tmp_path / "m.zip")
    loaded = rls.load(tmp_path / "m.zip")
    assert type(loaded) is type(model) and loaded.surgery_log == model.surgery_log
    original, restored = model.policy.state_dict(), loaded.policy.state_dict()
    assert list(restored) == list(original)  # weight_orig, weight_mask, original0/1 ... by their names
    for key in original:
        assert th.equal(original[key], restored[key]), key
    saved = model.get_parameters()
    for name, state in loaded.get_parameters().items():  # optimizer moments and steps as they were
        assert_same(state, saved[name], name)
    obs = observations(model)
    np.testing.assert_array_equal(greedy(loaded, obs), greedy(model, obs))
    # training goes on under the same masks: pruned weights stay zero, the masks are the same tensors
    masks = {n: m.weight_mask.clone() for n, m in masked_layers(model).items()}
    assert masks.keys() == masked_layers(loaded).keys()
    loaded.set_env(model.get_env())
    loaded.learn(STEPS, reset_num_timesteps=False)
    for name, layer in masked_layers(loaded).items():
        if not any(s.startswith("gradual") for s in built):  # a schedule prunes further as it goes
            assert th.equal(layer.weight_mask, masks[name]), name
        assert (layer.weight_orig * layer.weight_mask)[layer.weight_mask == 0].abs().sum() == 0
        assert (layer.weight[layer.weight_mask == 0] == 0).all()


def test_continued_training_is_identical_after_rls_load(tmp_path):
    """Save and load, then train both copies the same way: same parameters, masks and moments."""
    model = make("dqn", [], "magnitude_pruning:amount=0.5")
    model.save(tmp_path / "m.zip")
    runs = []
    for candidate in (model, rls.load(tmp_path / "m.zip", env=model.get_env())):
        candidate.set_random_seed(3)
        candidate.set_env(model.get_env())
        candidate.replay_buffer = copy.deepcopy(model.replay_buffer)
        candidate.set_logger(configure(None, []))
        candidate.train(gradient_steps=5, batch_size=16)
        runs.append(candidate.policy.state_dict())
    assert list(runs[0]) == list(runs[1])
    for key in runs[0]:
        assert th.equal(runs[0][key], runs[1][key]), key


def test_gradual_pruning_saved_mid_schedule_goes_on_from_where_it_was(tmp_path):
    spec = "gradual_magnitude_pruning:start_step=0,end_step=1000,frequency=16,final_sparsity=0.8"
    model = make("dqn", [spec])
    sparsity = [float((m.weight_mask == 0).float().mean()) for m in masked_layers(model).values()]
    assert 0 < np.mean(sparsity) < 0.8  # mid-schedule
    model.save(tmp_path / "m.zip")
    plain = sb3.DQN.load(tmp_path / "m.zip")
    obs = observations(model)
    np.testing.assert_array_equal(greedy(plain, obs), greedy(model, obs))
    loaded = rls.load(tmp_path / "m.zip", env=model.get_env())
    for name, layer in masked_layers(model).items():
        assert th.equal(masked_layers(loaded)[name].weight_mask, layer.weight_mask)


def test_distilled_student_with_an_sb3_net_arch_loads_in_sb3(tmp_path):
    teacher = make("dqn", [])
    student = rls.operate(teacher, "policy_distillation", net_arch=[8], steps=200, rounds=1, epochs=2)
    assert student.policy_kwargs["net_arch"] == [8]
    student.save(tmp_path / "student.zip")
    plain = sb3.DQN.load(tmp_path / "student.zip")
    obs = observations(student)
    np.testing.assert_array_equal(greedy(plain, obs), greedy(student, obs))


def test_a_zip_written_to_a_file_object_keeps_both_forms(tmp_path):
    model = make("dqn", [], "magnitude_pruning:amount=0.5")
    buffer = io.BytesIO()
    model.save(buffer)
    (tmp_path / "m.zip").write_bytes(buffer.getvalue())
    assert sb3_zip.EXTRAS_FILE in zipfile.ZipFile(tmp_path / "m.zip").namelist()
    obs = observations(model)
    np.testing.assert_array_equal(greedy(sb3.DQN.load(tmp_path / "m.zip"), obs), greedy(model, obs))
    loaded = rls.SurgicalDQN.load(tmp_path / "m.zip")
    assert masked_layers(loaded).keys() == masked_layers(model).keys()
    for name, layer in masked_layers(model).items():
        assert th.equal(masked_layers(loaded)[name].weight_orig, layer.weight_orig)


def test_saving_changes_no_random_stream_and_leaves_the_model_as_it_was(tmp_path):
    model = make("dqn", ["weight_normalization"])
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    th.manual_seed(5)
    model.save(tmp_path / "m.zip")
    drawn = th.rand(3)
    th.manual_seed(5)
    assert th.equal(drawn, th.rand(3))
    after = model.policy.state_dict()
    assert list(after) == list(before) and all(th.equal(before[k], after[k]) for k in before)
    assert sb3_zip.RECORD_KEY not in vars(model) and "_rls_params_to_save" not in vars(model)
    model.save(tmp_path / "again.zip")  # the deployment copy did not touch the live network
    assert record_of(tmp_path / "again.zip")["loads_in_sb3"] is True


# ------------------------------------------------------------------------------ rlsurgery's architecture
@pytest.mark.parametrize("case", NEEDS_RLSURGERY, ids=case_id)
def test_plain_sb3_is_told_to_use_rls_load(case, tmp_path, capsys):
    algo, built = case
    model = make(algo, built)
    path = tmp_path / "m.zip"
    model.save(path)
    blockers = [s.split(":")[0] for s in built if not catalog.get(s.split(":")[0]).surgery.sb3_representable]
    info = run_cli(capsys, "inspect", path, "--json")
    assert info.code == 0
    report = json.loads(info.out)
    assert report["loads_in_sb3"] is False and report["needs_rlsurgery"] == blockers
    with pytest.raises(NeedsRlsurgeryError) as raised:
        ALGOS[algo][1].load(path)
    message = str(raised.value)
    assert "\n" not in message and "rls.load(path)" in message and len(message) < 300
    assert all(key in message for key in blockers) and "state_dict" not in message
    for loaded in (rls.load(path), rls.load(path, trust=True)):  # the guard is never unpickled here
        obs = observations(model)
        np.testing.assert_array_equal(greedy(loaded, obs), greedy(model, obs))
        assert sb3_zip.RECORD_KEY not in vars(loaded)


def test_inspect_says_an_sb3_form_zip_loads_in_sb3(tmp_path, capsys):
    model = make("dqn", [], "magnitude_pruning:amount=0.5")
    model.save(tmp_path / "m.zip")
    report = json.loads(run_cli(capsys, "inspect", tmp_path / "m.zip", "--json").out)
    assert report["loads_in_sb3"] is True and "needs_rlsurgery" not in report
    sb3.DQN("MlpPolicy", "CartPole-v1").save(tmp_path / "plain.zip")
    assert json.loads(run_cli(capsys, "inspect", tmp_path / "plain.zip", "--json").out)["loads_in_sb3"]


# ------------------------------------------------------------------------------ the check behind the claim
def test_a_wrong_declaration_is_caught_by_the_check(tmp_path, monkeypatch):
    """A surgery that claims SB3's architecture but computes otherwise (an activation swap keeps
    every key and shape) is saved as needing rlsurgery: the check compares outputs."""
    from rlsurgery.activations.surgeries import ActivationReplacement

    monkeypatch.setattr(ActivationReplacement, "sb3_representable", True)
    model = make("dqn", ["activation_replacement:to=tanh"])
    model.save(tmp_path / "m.zip")
    record = record_of(tmp_path / "m.zip")
    assert record["loads_in_sb3"] is False and record["needs_rlsurgery"] == ["activation_replacement"]
    assert "other outputs" in record["reason"]
    with pytest.raises(NeedsRlsurgeryError, match="activation_replacement"):
        sb3.DQN.load(tmp_path / "m.zip")


def test_without_folding_the_masks_the_zip_would_not_be_sb3s(tmp_path, monkeypatch):
    """The folding is what makes a pruned zip SB3's: a deployment copy that keeps the masks fails
    the check (and, without the check, plain SB3's exact-match load)."""
    monkeypatch.setattr(sb3_zip.prune, "remove", lambda module, name: module)  # masks kept in the copy
    model = make("dqn", [], "magnitude_pruning:amount=0.5")
    model.save(tmp_path / "m.zip")
    record = record_of(tmp_path / "m.zip")
    assert record["loads_in_sb3"] is False and "weight_orig" in record["reason"]


@pytest.mark.parametrize(
    "key",
    sorted(
        e.key
        for e in catalog.entries(status="implemented")
        if "dqn" in e.surgery.families and not e.surgery.sb3_representable
    ),
)
def test_every_declared_architecture_change_fails_the_check(key, tmp_path, monkeypatch):
    """Each surgery that declares it leaves a network SB3 cannot build really does (its declaration
    is not needlessly strict): claiming otherwise, the check still refuses the zip."""
    from tests.test_roundtrip import trained, with_required

    monkeypatch.setattr(catalog.get(key).surgery, "sb3_representable", True)
    model = trained(with_required([key], tmp_path / "unused.zip"), dict(ALGOS["dqn"][3]), steps=64)
    plan = sb3_zip.plan_save(model, model.get_parameters())
    assert plan.record["loads_in_sb3"] is False, plan.record


@pytest.fixture(scope="module")
def expert(tmp_path_factory):
    """A CartPole PPO expert (hand-set linear controller) for the imitation surgeries."""
    return save_cartpole_expert(tmp_path_factory.mktemp("expert"))


def _roundtrip_cases():
    from tests.test_roundtrip import CASES

    return CASES


@pytest.mark.parametrize("surgeries", _roundtrip_cases(), ids=lambda s: "+".join(x.split(":")[0] for x in s))
def test_every_dqn_surgery_declares_what_the_check_finds(surgeries, tiny_kwargs, tmp_path, expert):
    """Over the catalog: the declarations agree with the check (it never has to overrule one), and a
    zip said to load in SB3 does, acting as the rlsurgery model does."""
    from tests.test_roundtrip import GOAL_KEYS, observation_batch, trained, with_required

    model = trained(with_required(surgeries, expert), tiny_kwargs, steps=64)
    model.save(tmp_path / "m.zip")
    record = record_of(tmp_path / "m.zip")
    declared = sb3_zip.declared_blockers(model)
    assert record["reason"] is None and record["needs_rlsurgery"] == declared
    env = {"env": model.get_env()} if any(s.split(":")[0] in GOAL_KEYS for s in surgeries) else {}
    if declared:
        with pytest.raises(NeedsRlsurgeryError, match=r"rls\.load\(path\)"):
            sb3.DQN.load(tmp_path / "m.zip", **env)
        return
    plain = sb3.DQN.load(tmp_path / "m.zip", **env)
    obs = observation_batch(model)
    np.testing.assert_array_equal(greedy(plain, obs), greedy(model, obs))


def test_an_optimizer_over_online_and_target_parameters_loads_with_a_warning(tmp_path):
    """SB3 < 2.4's layout (found by SB3's test_save_load_no_target_params): the kept optimizer
    state fits no optimizer of the loaded agent, so the SB3-form one is used, with a warning."""
    import torch as th

    import rlsurgery as rls

    model = rls.SurgicalDQN("MlpPolicy", "CartPole-v1", learning_starts=0, buffer_size=100, seed=0)
    model.policy.optimizer = th.optim.Adam(model.policy.parameters(), lr=1e-3)
    model.learn(64)
    model.save(tmp_path / "m.zip")
    with pytest.warns(UserWarning, match="optimizer state does not fit"):
        loaded = rls.SurgicalDQN.load(tmp_path / "m.zip")
    for name, value in model.policy.state_dict().items():
        assert th.equal(loaded.policy.state_dict()[name], value), name
