"""rl-zoo3 run folders are models: trained with ``rl_zoo3.train`` for real, then evaluated, inspected
and operated on by rlsurgery with the env id, env arguments and VecNormalize statistics of the run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageSequence

import rlsurgery as rls
from rlsurgery.core.errors import ModelFileError
from rlsurgery.zoo import find_zoo_run, read_zoo_yaml
from tests.hardening.files import assert_refused, folder_digest, run_cli

pytest.importorskip("rl_zoo3")


def zoo_train(logs: Path, algo: str, env_id: str, steps: int, *params: str) -> Path:
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", algo, "--env", env_id, "-n", str(steps)]
    command += ["--log-folder", str(logs), "--eval-freq", "-1", "--seed", "0", "--device", "cpu"]
    command += ["-params", *params] if params else []
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return logs / algo / f"{env_id}_1"


@pytest.fixture(scope="module")
def dqn_run(tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("zoo")
    return zoo_train(
        logs,
        "dqn",
        "CartPole-v1",
        600,
        "learning_starts:100",
        "buffer_size:1000",
        "policy_kwargs:dict(net_arch=[16])",
    )


@pytest.fixture(scope="module")
def normalized_run(tmp_path_factory) -> Path:
    logs = tmp_path_factory.mktemp("zoo_norm")
    return zoo_train(
        logs, "ppo", "CartPole-v1", 256, "normalize:True", "n_steps:64", "batch_size:64", "n_envs:1"
    )


def test_the_folder_says_its_model_env_and_settings(dqn_run):
    run = find_zoo_run(dqn_run)
    assert run.model == dqn_run / "CartPole-v1.zip" and run.env_id == "CartPole-v1" and run.algo == "dqn"
    assert run.hyperparams["buffer_size"] == 1000 and run.vecnormalize is None
    assert find_zoo_run(dqn_run / "CartPole-v1.zip").env_id == "CartPole-v1"  # the zip in the folder too


def test_evaluate_inspect_and_load_take_the_folder(dqn_run, capsys):
    result = run_cli(capsys, "evaluate", dqn_run, "--episodes", "2", "--trust", "--json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["env_id"] == "CartPole-v1"  # from args.yml: no --env needed
    assert_refused(run_cli(capsys, "evaluate", dqn_run, "--episodes", "2"), "--trust")  # a plain SB3 zip
    info = run_cli(capsys, "inspect", dqn_run, "--json")
    assert info.code == 0
    info = json.loads(info.out)
    assert info["env_id"] == "CartPole-v1" and info["zoo_run"]["algo"] == "dqn"
    assert info["exploration_schedule"].startswith("pickled")  # read without unpickling
    assert rls.load(dqn_run, trust=True).rls_env_id == "CartPole-v1"


def test_operate_on_the_folder_writes_a_model_that_records_the_env(dqn_run, tmp_path, capsys):
    out = tmp_path / "pruned"
    result = run_cli(
        capsys, "operate", dqn_run, "--surgery", "magnitude_pruning:amount=0.5", "-o", out, "--trust"
    )
    assert result.code == 0, result.err
    pruned = rls.load(tmp_path / "pruned.zip")  # ours now: loads without --trust
    assert pruned.rls_env_id == "CartPole-v1" and [r["key"] for r in pruned.surgery_log] == [
        "magnitude_pruning"
    ]
    assert run_cli(capsys, "evaluate", tmp_path / "pruned.zip", "--episodes", "1").code == 0


def test_a_normalized_run_is_evaluated_through_its_vecnormalize(normalized_run, capsys, monkeypatch):
    run = find_zoo_run(normalized_run)
    assert run.vecnormalize is not None and run.vecnormalize.name == "vecnormalize.pkl"
    seen = []
    original = run.load_vecnormalize.__func__

    def spy(self, venv):
        seen.append(wrapped := original(self, venv))
        return wrapped

    monkeypatch.setattr(type(run), "load_vecnormalize", spy)
    assert run_cli(capsys, "evaluate", normalized_run, "--episodes", "1", "--trust").code == 0
    assert type(seen[0]).__name__ == "VecNormalize" and seen[0].training is False
    with pytest.raises(rls.UntrustedModelError, match=r"vecnormalize\.pkl"):
        run.load_vecnormalize(object())


def test_zoo_yaml_is_read_safely(tmp_path):
    hostile = tmp_path / "args.yml"
    hostile.write_text("!!python/object/apply:os.system\n- echo hacked\n")
    with pytest.raises(ModelFileError, match="not an rl-zoo3 settings file"):
        read_zoo_yaml(hostile)


def test_a_run_folder_naming_an_unknown_env_is_one_line(dqn_run, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "Nowhere-v0").mkdir(parents=True)
    (run / "Nowhere-v0" / "args.yml").write_text("env: Nowhere-v0\nalgo: dqn\n")
    (run / "Nowhere-v0.zip").write_bytes((dqn_run / "CartPole-v1.zip").read_bytes())
    before = folder_digest(run)
    assert_refused(run_cli(capsys, "evaluate", run, "--trust"), "Nowhere-v0")
    (run / "Nowhere-v0.zip").unlink()
    assert_refused(run_cli(capsys, "evaluate", run), "without its model")
    assert set(folder_digest(run)) == set(before) - {"Nowhere-v0.zip"}


def zoo_enjoy(logs: Path, algo: str, env_id: str, exp_id: int) -> str:
    command = [sys.executable, "-m", "rl_zoo3.enjoy", "--algo", algo, "--env", env_id, "-f", str(logs)]
    command += ["--exp-id", str(exp_id), "--no-render", "-n", "200", "--device", "cpu"]
    done = subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    return done.stdout


def test_a_run_in_the_zoo_layout_is_played_by_rl_zoo3_enjoy(tmp_path, capsys):
    import numpy as np
    from rl_zoo3 import ALGOS

    logs = tmp_path / "logs"
    args = ("train", "dqn", "CartPole-v1", "--steps", "300", "--zoo-layout", "--out", logs, "--no-progress",
            "--eval-episodes", "1", "--surgery", "double_q_learning", "--hyperparams", "learning_starts:50")  # fmt: skip
    assert run_cli(capsys, *args).code == 0
    run = logs / "dqn" / "CartPole-v1_1"
    assert (run / "CartPole-v1.zip").is_file() and (run / "CartPole-v1" / "config.yml").is_file()
    assert "Mean reward" in zoo_enjoy(logs, "dqn", "CartPole-v1", 1)
    # what enjoy loads (the zoo's DQN class) acts as rlsurgery's model does
    theirs = ALGOS["dqn"].load(run / "CartPole-v1.zip", device="cpu")
    ours = rls.load(run)
    obs = np.stack([ours.observation_space.sample() for _ in range(32)])
    np.testing.assert_array_equal(
        theirs.predict(obs, deterministic=True)[0], ours.predict(obs, deterministic=True)[0]
    )
    assert run_cli(capsys, *args).code == 0  # the next run gets the next number, as the zoo counts
    assert (logs / "dqn" / "CartPole-v1_2" / "CartPole-v1.zip").is_file()
    # rl-zoo3's training plot reads the runs' monitor files: one curve per run
    plotted = subprocess.run(
        [sys.executable, "-c", PLOT_TRAIN, str(logs)], check=True, capture_output=True, text=True, timeout=120
    )
    assert plotted.stdout.split() == ["CartPole-v1_1", "CartPole-v1_2"]


#: run rl-zoo3's plot_train on a log folder (headless) and print the labels of its curves
PLOT_TRAIN = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from rl_zoo3.plots.plot_train import plot_train
sys.argv = ["plot_train", "-a", "dqn", "-e", "CartPole-v1", "-f", sys.argv[1], "-w", "2"]
plot_train()
print(" ".join(sorted(line.get_label() for line in plt.gca().lines)))
"""


def test_operate_writes_the_next_zoo_run_that_enjoy_plays(dqn_run, capsys):
    logs = dqn_run.parent.parent
    result = run_cli(capsys, "operate", dqn_run, "--surgery", "magnitude_pruning:amount=0.5", "-o", logs,
                     "--zoo-layout", "--trust", "--json")  # fmt: skip
    assert result.code == 0, result.err
    written = Path(json.loads(result.out)["output"])
    assert written == logs / "dqn" / "CartPole-v1_2" / "CartPole-v1.zip" and written.is_file()
    assert (written.parent / "CartPole-v1" / "args.yml").is_file()  # the source run's settings
    assert "Mean reward" in zoo_enjoy(logs, "dqn", "CartPole-v1", 2)
    # the pruned model, as enjoy loads it (the zoo's DQN) and as rls.load does, acts the same
    import numpy as np
    from rl_zoo3 import ALGOS

    theirs = ALGOS["dqn"].load(written, device="cpu")
    ours = rls.load(written.parent)
    assert ours.surgery_state is not None and [r["key"] for r in ours.surgery_log] == ["magnitude_pruning"]
    obs = np.stack([ours.observation_space.sample() for _ in range(64)])
    np.testing.assert_array_equal(
        theirs.predict(obs, deterministic=True)[0], ours.predict(obs, deterministic=True)[0]
    )


def test_surgeries_read_a_zoo_run_folder_as_teacher_expert_or_source(dqn_run):
    import torch as th

    with rls.trusted_zips():  # the zoo's zip is a plain SB3 zip
        warm = rls.SurgicalDQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[16]), buffer_size=100,
                               surgeries=[f"pre_training_initialization:source={dqn_run}"])  # fmt: skip
        cloned = rls.SurgicalDQN("MlpPolicy", "CartPole-v1", policy_kwargs=dict(net_arch=[16]), buffer_size=100,
                                 surgeries=[f"behavior_cloning:expert={dqn_run},episodes=1,epochs=1"])  # fmt: skip
    source = rls.load(dqn_run, trust=True)
    for name, value in source.policy.state_dict().items():
        assert th.equal(warm.policy.state_dict()[name], value), name
    assert cloned.surgery_log[0]["params"]["expert"] == str(dqn_run)


def test_a_run_with_stacked_frames_and_an_env_wrapper_is_evaluated_as_it_trained(tmp_path_factory, capsys):
    logs = tmp_path_factory.mktemp("zoo_wrapped")
    run = zoo_train(logs, "ppo", "CartPole-v1", 128, "frame_stack:2", "n_steps:64", "batch_size:64", "n_envs:1",
                    "env_wrapper:'rl_zoo3.wrappers.TimeFeatureWrapper'")  # fmt: skip
    assert rls.load(run, trust=True).observation_space.shape == (10,)  # (4 + a time feature) x 2 frames
    result = run_cli(capsys, "evaluate", run, "--episodes", "1", "--trust", "--json")
    assert result.code == 0, result.err  # without the wrapper and the stack, the shapes would not fit
    assert_refused(run_cli(capsys, "evaluate", run, "--episodes", "1"), "--trust")
    with pytest.raises(rls.UntrustedModelError, match="TimeFeatureWrapper"):
        find_zoo_run(run).env_wrapper()


def test_the_video_of_a_zoo_run_sees_what_its_evaluation_sees(tmp_path_factory, capsys):
    logs = tmp_path_factory.mktemp("zoo_video")
    run = zoo_train(logs, "ppo", "CartPole-v1", 128, "frame_stack:2", "normalize:True", "n_steps:64",
                    "batch_size:64", "n_envs:1", "env_wrapper:'rl_zoo3.wrappers.TimeFeatureWrapper'")  # fmt: skip
    video = logs / "clip.gif"
    result = run_cli(capsys, "evaluate", run, "--episodes", "2", "--video", video, "--video-episodes", "2",
                     "--trust", "--json")  # fmt: skip
    assert result.code == 0, result.err  # a plain env's 4 numbers would not fit the 10 the model takes
    lengths = json.loads(result.out)["lengths"]
    with Image.open(video) as gif:  # Pillow merges equal frames; their durations add up to every frame
        shown = sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif))
    assert shown == min(sum(lengths) + 2, 1000) * 20  # a reset frame per episode, one per step; 50 fps
