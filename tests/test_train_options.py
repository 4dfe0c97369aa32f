"""rl-zoo3's command-line habits on ``rlsurgery train``: env arguments, going on from a trained agent,
checkpoints, a TensorBoard folder, and the policy class following the observation space."""

from __future__ import annotations

import json

import pytest

import rlsurgery as rls
from tests.hardening.files import assert_refused, folder_digest, run_cli

FAST = ("--no-progress", "--eval-episodes", "1", "--hyperparams", "learning_starts:50", "buffer_size:500")


def test_env_kwargs_checkpoints_and_tensorboard_folder(tmp_path, capsys):
    out, tb = tmp_path / "run", tmp_path / "tb"
    result = run_cli(
        capsys, "train", "dqn", "CartPole-v1", "--steps", "512", "--out", out, "--save-freq", "256",
        "--env-kwargs", "sutton_barto_reward:True", "--tensorboard-log", tb, "--json", *FAST,
    )  # fmt: skip
    assert result.code == 0, result.err
    evaluation = json.loads(result.out)
    assert evaluation["returns"] == [-1.0]  # Sutton & Barto's reward: 0 per step, -1 when the pole falls
    assert json.loads((out / "config.json").read_text())["env_kwargs"] == {"sutton_barto_reward": True}
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "rl_model_256_steps.zip",
        "rl_model_512_steps.zip",
    ]
    assert rls.load(out / "checkpoints" / "rl_model_256_steps.zip").num_timesteps == 256
    assert [p.name for p in tb.iterdir()] == ["dqn_1"] and not (out / "tb").exists()


def test_a_trained_agent_goes_on_with_its_surgeries_and_counters(tmp_path, capsys):
    first = tmp_path / "first"
    args = ("train", "dqn", "CartPole-v1", "--steps", "256", "--surgery", "double_q_learning", *FAST)
    assert run_cli(capsys, *args, "--out", first).code == 0
    result = run_cli(capsys, "train", "dqn", "CartPole-v1", "--steps", "256", "--trained-agent", first,
                     "--out", tmp_path / "second", "--json", *FAST)  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads(result.out)["n_timesteps"] == 512  # 256 more, counted on
    model = rls.load(tmp_path / "second" / "model.zip")
    assert [r["key"] for r in model.surgery_log] == ["double_q_learning"]


def test_a_trained_agent_of_another_algorithm_is_refused_before_training(tmp_path, capsys):
    first = tmp_path / "first"
    assert run_cli(capsys, "train", "dqn", "CartPole-v1", "--steps", "64", "--out", first, *FAST).code == 0
    out = tmp_path / "ppo"
    result = run_cli(capsys, "train", "ppo", "CartPole-v1", "--trained-agent", first, "--out", out,
                     "--no-progress")  # fmt: skip
    assert_refused(result, "--trained-agent", "SurgicalDQN", "SurgicalPPO")
    assert folder_digest(out) == {}
    assert_refused(
        run_cli(capsys, "train", "dqn", "CartPole-v1", "--trained-agent", tmp_path / "none"), "none"
    )
    assert_refused(run_cli(capsys, "train", "dqn", "CartPole-v1", "--save-freq", "0"), "--save-freq")
    assert_refused(run_cli(capsys, "train", "dqn", "CartPole-v1", "--env-kwargs", "oops"), "--env-kwargs")


@pytest.mark.parametrize(
    ("env_id", "policy"),
    [("CartPole-v1", "MlpPolicy"), ("rlsurgery/BitFlip-v0", "MultiInputPolicy")],
)
def test_the_policy_follows_the_observation_space(env_id, policy):
    assert rls.load_recipe("dqn").resolve(env_id).policy == policy


def test_her_trains_from_the_command_line_with_no_policy_given(tmp_path, capsys):
    out = tmp_path / "her"
    result = run_cli(capsys, "train", "dqn", "rlsurgery/BitFlip-v0", "--surgery", "hindsight_experience_replay",
                     "--steps", "200", "--out", out, *FAST)  # fmt: skip
    assert result.code == 0, result.err
    assert json.loads((out / "config.json").read_text())["policy"] == "MultiInputPolicy"


def test_compare_takes_hyperparams_and_env_kwargs_for_every_variant_and_env(tmp_path, capsys):
    from rlsurgery.bench.store import ResultStore

    out = tmp_path / "study"
    args = ("compare", "--agents", "dqn,rainbow", "--env", "CartPole-v1", "--seeds", "1", "--steps", "200",
            "--eval-freq", "100", "--eval-episodes", "1", "--workers", "1", "--no-progress", "--reps", "10",
            "--out", out)  # fmt: skip
    bad = run_cli(capsys, *args, "--hyperparams", "gamma:2.5")
    assert_refused(bad, "--hyperparams", "gamma", "variant dqn")
    assert folder_digest(out) == {}
    result = run_cli(capsys, *args, "--hyperparams", "learning_starts:50", "buffer_size:500",
                     "--env-kwargs", "sutton_barto_reward:True")  # fmt: skip
    assert result.code == 0, result.err
    with ResultStore(out) as store:
        assert store.status_counts() == {"done": 2}
        configs = store.run_configs()
    assert all(c["variant"]["hyperparams"]["buffer_size"] == 500 for c in configs.values())
    assert all(c["env"]["env_kwargs"] == {"sutton_barto_reward": True} for c in configs.values())
