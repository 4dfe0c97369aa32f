"""Class 1 of the hardening issue: a model zip runs no code unless the user opts in (``--trust``).

The crafted payload is a pickle whose unpickling writes a marker file; the tests with the opt-in
show that the payload is live (so the refusals without it are not vacuous)."""

from __future__ import annotations

import base64
import json
import pickle
import re
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN, PPO

import rlsurgery as rls
from rlsurgery.core.errors import ModelFileError, UntrustedModelError
from rlsurgery.core.model_zip import PLAIN_DATA_KEY
from rlsurgery.core.plain_data import PlainDataError, decode, encode
from tests.hardening.files import assert_refused, folder_digest, run_cli

KW = dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[8]))


class Payload:
    """Unpickling this writes ``marker`` (as ``os.system`` would run a command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def serialized(obj) -> dict:
    return {":type:": "<class 'object'>", ":serialized:": base64.b64encode(pickle.dumps(obj)).decode()}


def rewrite_data(path: Path, out: Path, change) -> Path:
    """A copy of the zip ``path`` at ``out`` whose ``data`` record went through ``change(data)``."""
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename == "data":
                data = json.loads(content)
                change(data)
                content = json.dumps(data).encode()
            dst.writestr(item, content)
    return out


def replace_file(path: Path, out: Path, name: str, content: bytes) -> Path:
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, content if item.filename == name else src.read(item.filename))
    return out


@pytest.fixture(scope="module")
def ours(tmp_path_factory) -> Path:
    """A small trained surgical DQN zip that records its env."""
    model = rls.SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["dueling_architecture"], **KW)
    model.learn(64)
    path = tmp_path_factory.mktemp("ours") / "ours.zip"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def plain_sb3(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("plain") / "plain.zip"
    DQN("MlpPolicy", "CartPole-v1", seed=0, **KW).save(path)
    return path


def no_unpickling(monkeypatch):
    """Make any unpickling of the data record fail loudly."""
    import stable_baselines3.common.save_util as save_util

    def refuse(*_a, **_k):
        raise AssertionError("unpickled")

    monkeypatch.setattr(save_util.cloudpickle, "loads", refuse)


# ------------------------------------------------------------------ our zips: no unpickling at all
AGENTS = [
    ("SurgicalDQN", "CartPole-v1", dict(KW, learning_rate="lin_0.001")),
    ("SurgicalPPO", "CartPole-v1", dict(n_steps=32, batch_size=16, n_epochs=1)),
    ("SurgicalA2C", "CartPole-v1", dict(n_steps=8)),
    ("SurgicalSAC", "Pendulum-v1", dict(learning_starts=16, batch_size=8, buffer_size=200)),
    ("SurgicalTD3", "Pendulum-v1", dict(learning_starts=16, batch_size=8, buffer_size=200)),
    ("SurgicalTRPO", "CartPole-v1", dict(n_steps=32, batch_size=16)),
]


@pytest.mark.parametrize(("cls", "env_id", "kwargs"), AGENTS, ids=[a[0] for a in AGENTS])
def test_every_agent_loads_its_zip_without_unpickling(cls, env_id, kwargs, tmp_path, monkeypatch):
    if kwargs.get("learning_rate") == "lin_0.001":  # a zoo schedule, as recipes make it
        from rlsurgery.recipes import LinearDecay

        kwargs = dict(kwargs, learning_rate=LinearDecay(1e-3))
    model = getattr(rls, cls)("MlpPolicy", env_id, seed=0, **kwargs)
    model.learn(48)
    model.save(tmp_path / "m.zip")
    no_unpickling(monkeypatch)
    loaded = rls.load(tmp_path / "m.zip")
    obs = np.stack([model.observation_space.sample() for _ in range(5)])
    np.testing.assert_array_equal(
        loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
    )
    assert loaded.observation_space == model.observation_space and loaded.action_space == model.action_space
    assert loaded.lr_schedule(0.5) == model.lr_schedule(0.5)
    np.testing.assert_array_equal(loaded._last_obs, model._last_obs)
    assert list(loaded.ep_info_buffer) == list(model.ep_info_buffer)
    # the proof fails on a no-op: the same zip through SB3's own loading unpickles
    with pytest.raises(AssertionError, match="unpickled"):
        getattr(rls, cls).load(tmp_path / "m.zip", trust=True)


def test_an_image_agent_round_trips_without_unpickling(tmp_path, monkeypatch):
    from tests.helpers import TinyImageEnv

    model = rls.SurgicalPPO("CnnPolicy", TinyImageEnv(), n_steps=16, batch_size=16, n_epochs=1, seed=0)
    model.save(tmp_path / "m.zip")
    no_unpickling(monkeypatch)
    loaded = rls.SurgicalPPO.load(tmp_path / "m.zip")
    assert loaded.observation_space == model.observation_space
    assert loaded.observation_space.dtype == np.uint8


# ------------------------------------------------------------------ the crafted zip, every command
def crafted_commands(model: Path, tmp_path: Path) -> list[list[str]]:
    return [
        ["evaluate", str(model), "--episodes", "1", "--env", "CartPole-v1"],
        ["operate", str(model), "--surgery", "magnitude_pruning:amount=0.5", "-o", str(tmp_path / "out.zip")],
        ["train", "dqn", "CartPole-v1", "--steps", "64", "--no-progress", "--out", str(tmp_path / "run"),
         "--surgery", f"pre_training_initialization:source={model}"],
    ]  # fmt: skip


def test_an_edited_serialized_field_runs_nothing_our_zip_loads_from_its_plain_copy(ours, tmp_path, capsys):
    marker = tmp_path / "marker"
    crafted = rewrite_data(
        ours, tmp_path / "crafted.zip", lambda d: d.update(policy_class=serialized(Payload(marker)))
    )
    assert rls.load(crafted).predict(np.zeros(4, dtype=np.float32))[0] in (0, 1)
    assert run_cli(capsys, "evaluate", crafted, "--episodes", "1").code == 0
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - the payload's return value is not a class
        DQN.load(crafted)
    assert marker.read_text() == "ran"  # the payload is live: plain SB3 loading ran it


@pytest.mark.parametrize("where", ["an added entry", "a plain SB3 zip"])
def test_a_pickled_entry_without_a_plain_copy_is_refused_by_every_command(
    where, ours, plain_sb3, tmp_path, capsys
):
    marker = tmp_path / "marker"
    if where == "an added entry":
        crafted = rewrite_data(
            ours, tmp_path / "crafted.zip", lambda d: d.update(extra=serialized(Payload(marker)))
        )
        named = "extra"
    else:
        crafted = rewrite_data(
            plain_sb3,
            tmp_path / "crafted.zip",
            lambda d: d.update(observation_space=serialized(Payload(marker))),
        )
        named = "observation_space"
    before = folder_digest(tmp_path)
    for command in crafted_commands(crafted, tmp_path):
        result = run_cli(capsys, *command)
        assert_refused(result, named, "--trust")
    with pytest.raises(UntrustedModelError, match="trust=True"):
        rls.load(crafted)
    with pytest.raises(UntrustedModelError, match=named):
        rls.SurgicalDQN.load(crafted)
    assert not marker.exists()
    assert folder_digest(tmp_path) == before  # nothing written: no out.zip, no run folder
    info = run_cli(capsys, "inspect", crafted, "--json")  # inspect reads JSON only, and says so
    assert info.code == 0 and json.loads(info.out)["loads_without_trust"] is False
    assert not marker.exists()
    # with the opt-in, the file is unpickled as SB3 does: the payload runs (proof of the refusal)
    run_cli(capsys, "evaluate", crafted, "--episodes", "1", "--env", "CartPole-v1", "--trust")
    assert marker.read_text() == "ran"


def test_a_plain_sb3_zip_loads_with_trust(plain_sb3, capsys):
    with pytest.raises(UntrustedModelError, match="plain Stable-Baselines3"):
        rls.load(plain_sb3)
    assert type(rls.load(plain_sb3, trust=True)) is DQN
    with rls.trusted_zips():
        assert type(rls.load(plain_sb3)) is DQN
    assert (
        run_cli(capsys, "evaluate", plain_sb3, "--env", "CartPole-v1", "--episodes", "1", "--trust").code == 0
    )


def test_custom_objects_can_stand_in_for_every_pickled_entry(tmp_path, monkeypatch):
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, seed=0)
    model.save(tmp_path / "plain.zip")
    objects = {
        "policy_class": type(model.policy),
        "observation_space": model.observation_space,
        "action_space": model.action_space,
        "rollout_buffer_class": model.rollout_buffer_class,
        "clip_range": model.clip_range,
        "lr_schedule": model.lr_schedule,
        "_last_obs": None,
        "_last_episode_starts": None,
        "ep_info_buffer": None,
        "ep_success_buffer": None,
    }
    no_unpickling(monkeypatch)
    loaded = rls.load(tmp_path / "plain.zip", custom_objects=objects)
    assert type(loaded) is PPO


# ------------------------------------------------------------------ damaged or hostile plain data
@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"__plain__": "class", "path": "os:system"}, "only classes of"),
        ({"__plain__": "class", "path": "subprocess:Popen"}, "only classes of"),
        ({"__plain__": "class", "path": "rlsurgery.cli:main"}, "only classes of"),
        ({"__plain__": "class", "path": "rlsurgery.core.errors:SurgeryError"}, "a model file may name"),
        ({"__plain__": "class", "path": "torch.nn:Module.__subclasses__"}, "does not exist"),
        ({"__plain__": "object", "class": "builtins:eval", "state": {}}, "not a registered"),
        ({"__plain__": "ndarray", "dtype": "|O", "shape": [1], "data": ""}, "dtype object"),
        ({"__plain__": "pickle"}, "unknown plain-data kind"),
    ],
)
def test_plain_data_naming_anything_else_is_refused(entry, message, ours, tmp_path, capsys):
    crafted = rewrite_data(
        ours, tmp_path / "c.zip", lambda d: d[PLAIN_DATA_KEY]["entries"].update(replay_buffer_class=entry)
    )
    with pytest.raises(UntrustedModelError, match="replay_buffer_class"):
        rls.load(crafted)
    assert_refused(run_cli(capsys, "evaluate", crafted), "replay_buffer_class", message)


def test_the_codec_round_trips_what_models_hold():
    from collections import deque

    from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
    from stable_baselines3.common.utils import FloatSchedule, LinearSchedule

    space = gym.spaces.Dict(
        {
            "image": gym.spaces.Box(0, 255, (3, 4, 4), np.uint8),
            "pos": gym.spaces.Tuple([gym.spaces.Discrete(3, start=1), gym.spaces.MultiDiscrete([2, 5])]),
            "bits": gym.spaces.MultiBinary(4),
        }
    )
    value = {
        "space": space,
        "freq": TrainFreq(4, TrainFrequencyUnit.STEP),
        "schedule": FloatSchedule(LinearSchedule(1.0, 0.1, 0.5)),
        "buffer": deque([{"r": 1.0, "l": 3}], maxlen=100),
        "obs": np.arange(6, dtype=np.float32).reshape(2, 3),
        "kwargs": {"activation_fn": th.nn.Tanh, "optimizer_class": th.optim.Adam, "betas": (0.9, 0.99)},
        "scalar": np.float32(0.5),
        "device": th.device("cpu"),
    }
    back = decode(json.loads(json.dumps(encode(value))))
    assert back["space"] == space and back["freq"] == value["freq"] and back["kwargs"] == value["kwargs"]
    assert back["schedule"](0.75) == value["schedule"](0.75) and back["buffer"] == value["buffer"]
    assert back["buffer"].maxlen == 100 and back["scalar"].dtype == np.float32
    np.testing.assert_array_equal(back["obs"], value["obs"])
    for unencodable in (lambda p: p, object(), np.array([object()]), {1: "a"}):
        with pytest.raises(PlainDataError):
            encode(unencodable)


def test_saving_what_plain_data_cannot_hold_warns_and_names_the_opt_in(tmp_path):
    model = rls.SurgicalDQN("MlpPolicy", "CartPole-v1", learning_rate=lambda p: 1e-3 * p, seed=0, **KW)
    with pytest.warns(UserWarning, match="lr_schedule"):
        model.save(tmp_path / "m.zip")
    with pytest.raises(UntrustedModelError, match="lr_schedule"):
        rls.load(tmp_path / "m.zip")
    schedule = {"lr_schedule": lambda p: 1e-3, "learning_rate": 1e-3}
    assert rls.load(tmp_path / "m.zip", custom_objects=schedule).lr_schedule(1) == 1e-3


# ------------------------------------------------------------------ damaged zips: one line, exit 2
def damaged(ours: Path, tmp_path: Path, case: str) -> Path:
    out = tmp_path / f"{case.replace(' ', '_')}.zip"
    if case == "log is a string":
        return rewrite_data(ours, out, lambda d: d.update(surgery_log="dueling_architecture"))
    if case == "record without key":
        return rewrite_data(ours, out, lambda d: d["surgery_log"][0].pop("key"))
    if case == "unknown surgery in log":
        return rewrite_data(ours, out, lambda d: d["surgery_log"][0].update(key="no_such_surgery"))
    if case == "garbage policy.pth":
        return replace_file(ours, out, "policy.pth", b"\x00garbage" * 20)
    if case == "not a zip":
        out.write_bytes(b"PK?? not a zip at all")
        return out
    if case == "data is not json":
        return replace_file(ours, out, "data", b"{not json")
    if case == "a folder":
        out = tmp_path / "folder"
        out.mkdir()
        return out
    raise AssertionError(case)


DAMAGE = {
    "log is a string": "surgery_log must be a list",
    "record without key": "has no 'key'",
    "unknown surgery in log": "no_such_surgery",
    "garbage policy.pth": "parameters cannot be read",
    "not a zip": "not a model zip",
    "data is not json": "'data' record is damaged",
    "a folder": "is a folder",
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_a_damaged_zip_gets_one_line_and_exit_2(case, ours, tmp_path, capsys):
    path = damaged(ours, tmp_path, case)
    with pytest.raises((ModelFileError, rls.SurgeryError), match=re.escape(DAMAGE[case])):
        rls.load(path)
    commands = [
        ["evaluate", str(path), "--episodes", "1", "--env", "CartPole-v1"],
        ["operate", str(path), "--surgery", "magnitude_pruning:amount=0.5", "-o", str(tmp_path / "o.zip")],
    ]
    if case not in ("garbage policy.pth", "unknown surgery in log"):  # inspect reads only the data record
        commands.append(["inspect", str(path)])
    for command in commands:
        assert_refused(run_cli(capsys, *command), DAMAGE[case])
    assert not (tmp_path / "o.zip").exists()


def test_a_surgery_class_instead_of_an_instance_is_named():
    from rlsurgery.value.dueling import DuelingArchitecture

    with pytest.raises(rls.ParameterError, match="class DuelingArchitecture; pass an instance"):
        rls.SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=[DuelingArchitecture], **KW)


def test_a_study_whose_surgery_reads_a_plain_sb3_zip_is_refused_before_any_run_unless_trusted(
    plain_sb3, tmp_path, capsys
):
    from tests.bench.study_helpers import TINY_HYPERPARAMS

    study = tmp_path / "s.yaml"
    study.write_text(
        "name: warm\nenvs: [CartPole-v1]\nseeds: 1\nsteps: 200\neval_freq: 100\nn_eval_episodes: 1\n"
        "device: cpu\nvariants:\n"
        f"  warm: {{recipe: dqn, surgeries: ['pre_training_initialization:source={plain_sb3}'], "
        f"hyperparams: {TINY_HYPERPARAMS}}}\n"
    )
    out = tmp_path / "study"
    args = ("compare", study, "--out", out, "--workers", "1", "--no-progress", "--reps", "10")
    assert_refused(run_cli(capsys, *args), "policy_class", "--trust")
    assert folder_digest(out) == {}
    assert run_cli(capsys, *args, "--trust").code == 0
    from rlsurgery.bench.store import ResultStore

    with ResultStore(out) as store:  # the run itself (in a worker) read the zip under the opt-in
        assert store.status_counts() == {"done": 1}


def test_a_model_saved_to_a_file_object_loads_from_one(tmp_path, monkeypatch):
    import io

    model = rls.SurgicalPPO("MlpPolicy", "CartPole-v1", n_steps=16, batch_size=16, seed=0)
    buffer = io.BytesIO()
    model.save(buffer)
    no_unpickling(monkeypatch)
    for loader in (rls.load, rls.SurgicalPPO.load):
        buffer.seek(0)
        loaded = loader(buffer)
        obs = np.zeros((3, 4), dtype=np.float32)
        np.testing.assert_array_equal(
            loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
        )
