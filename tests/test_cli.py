from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch as th

import rlsurgery as rls
from rlsurgery.cli import main


def run_cli(*args):
    return main([*args])


def test_train_writes_run_folder_evaluate_and_inspect(tmp_path, capsys):
    out = tmp_path / "run"
    code = run_cli(
        "train",
        "rainbow",
        "CartPole-v1",
        "--steps",
        "300",
        "--seed",
        "1",
        "--out",
        str(out),
        "--surgery",
        "prioritized_replay:alpha=0.7",
        "--eval-episodes",
        "2",
        "--no-progress",
        "--json",
    )
    assert code == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["episodes"] == 2 and len(evaluation["returns"]) == 2
    assert evaluation["n_timesteps"] >= 300
    files = {p.name for p in out.iterdir()}
    assert {"model.zip", "config.json", "evaluation.json", "0.monitor.csv", "tb"} <= files
    assert any((out / "tb").rglob("events.out.tfevents.*"))
    assert json.loads((out / "config.json").read_text())["surgeries"][3] == {
        "key": "prioritized_replay",
        "alpha": 0.7,
        "beta": 0.4,
    }

    assert run_cli("inspect", str(out / "model.zip"), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert (
        info["algorithm"] == "SurgicalDQN" and info["env_id"] == "CartPole-v1" and info["recipe"] == "rainbow"
    )
    per = next(r for r in info["surgery_log"] if r["key"] == "prioritized_replay")
    assert per["params"]["alpha"] == 0.7 and per["step"] == 0

    assert run_cli("inspect", str(out / "model.zip")) == 0
    assert "4. prioritized_replay (step 0, build) alpha=0.7" in capsys.readouterr().out

    assert run_cli("evaluate", str(out / "model.zip"), "--episodes", "2", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["env_id"] == "CartPole-v1" and len(result["returns"]) == 2


def test_train_refuses_an_occupied_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert run_cli("train", "dqn", "CartPole-v1", "--steps", "50", "--out", str(out)) == 2
    assert "already holds files; pass --force" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    ("surgery", "message"),
    [
        ("dueling_archtecture", "unknown surgery 'dueling_archtecture'; did you mean 'dueling_architecture'"),
        ("prioritized_replay:alpha=3", "prioritized_replay: parameter 'alpha' must be <= 1.0 (got 3)"),
        ("vq_vae", "planned, not implemented yet"),
    ],
)
def test_bad_surgery_fails_before_the_run_folder_is_made(tmp_path, capsys, surgery, message):
    out = tmp_path / "run"
    assert run_cli("train", "dqn", "CartPole-v1", "--surgery", surgery, "--out", str(out)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_incompatible_agent_fails_before_training_and_cleans_up(tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("train", "rainbow", "Pendulum-v1", "--out", str(out), "--steps", "10") == 2
    assert "dueling_architecture: needs a discrete action space, got Box" in capsys.readouterr().err
    assert not out.exists()
    out.mkdir()  # an existing, empty folder stays empty
    assert run_cli("train", "dqn", "Pendulum-v1", "--out", str(out), "--steps", "10") == 2
    assert "SurgicalDQN cannot be built" in capsys.readouterr().err
    assert list(out.iterdir()) == []


def test_env_kwargs_reach_training_and_evaluation(tmp_path, capsys):
    recipe = tmp_path / "sutton.yaml"
    recipe.write_text(
        "algo: dqn\ndefaults:\n  learning_starts: 10\n  buffer_size: 500\n"
        "  env_kwargs: {sutton_barto_reward: true}\n  policy_kwargs: {net_arch: [8]}\n"
    )
    out = tmp_path / "run"
    args = ["train", str(recipe), "CartPole-v1", "--steps", "100", "--out", str(out), "--eval-episodes", "2"]
    assert run_cli(*args, "--no-progress", "--json") == 0
    # Sutton & Barto's CartPole reward: 0 per step, -1 when the pole falls
    assert set(json.loads(capsys.readouterr().out)["returns"]) <= {0.0, -1.0}
    assert run_cli("evaluate", str(out / "model.zip"), "--episodes", "2", "--json") == 0
    assert set(json.loads(capsys.readouterr().out)["returns"]) <= {0.0, -1.0}


def test_python_dash_m_and_help():
    result = subprocess.run(
        [sys.executable, "-m", "rlsurgery", "--help"], capture_output=True, text=True, check=True
    )
    for command in ("catalog", "train", "evaluate", "inspect"):
        assert command in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "rlsurgery", "recipes", "--json"], capture_output=True, text=True, check=True
    )
    assert {r["name"] for r in json.loads(result.stdout)} >= {"dqn", "rainbow"}


def test_train_explore_flag_swaps_the_exploration(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "dqn", "rlsurgery/DeepSea-v0", "--steps", "1200", "--out", str(out)]
    args += ["--explore", "ucb_bonus:c=1.0,beta=0.1", "--eval-episodes", "1", "--no-progress", "--json"]
    assert run_cli(*args) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["surgeries"] == ["ucb_bonus"]
    config = json.loads((out / "config.json").read_text())
    assert config["surgeries"] == [{"key": "ucb_bonus", "c": 1.0, "beta": 0.1}]
    bad = tmp_path / "bad"
    assert run_cli("train", "ppo", "CartPole-v1", "--explore", "ucb_bonus:c=1", "--out", str(bad)) == 2
    assert "UCB action selection (c > 0) needs a Q-function" in capsys.readouterr().err
    assert not bad.exists()


def test_training_procedure_surgeries_from_the_command_line_and_a_recipe(tmp_path, capsys):
    # the command line: rate schedule + repair + diagnostic on the dqn recipe
    out = tmp_path / "run"
    args = ["train", "dqn", "CartPole-v1", "--steps", "1500", "--out", str(out), "--eval-episodes", "1"]
    args += [
        "--surgery",
        "learning_rate_warmup:warmup_steps=5000",
        "--surgery",
        "checkpoint_rollback:every=500",
    ]
    args += ["--surgery", "gradient_monitoring:log_every=10", "--no-progress", "--json"]
    assert run_cli(*args) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["surgeries"] == ["learning_rate_warmup", "checkpoint_rollback", "gradient_monitoring"]
    model = rls.load(out / "model.zip")
    assert [r["key"] for r in model.surgery_log] == evaluation["surgeries"]
    # a recipe: a pruning schedule at a step and an optimizer switch, from YAML
    recipe = tmp_path / "sparse-dqn.yaml"
    recipe.write_text(
        "algo: dqn\n"
        "surgeries:\n"
        "  - {key: magnitude_pruning, amount: 0.5, at_step: 600}\n"
        "  - {key: optimizer_switching, to: sgd, step: 800, lr: 0.001}\n"
        "defaults: {policy: MlpPolicy, learning_starts: 100, policy_kwargs: {net_arch: [32]}}\n"
    )
    out2 = tmp_path / "run2"
    assert (
        run_cli(
            "train",
            str(recipe),
            "CartPole-v1",
            "--steps",
            "1000",
            "--out",
            str(out2),
            "--eval-episodes",
            "1",
            "--no-progress",
        )
        == 0
    )
    model = rls.load(out2 / "model.zip")
    assert type(model.policy.optimizer) is th.optim.SGD
    assert [r["applied"] for r in model.surgery_log] == ["build", "at_step"]
