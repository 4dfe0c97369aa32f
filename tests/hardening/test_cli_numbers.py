"""Every numeric value is checked before any work: each command refuses each of its numeric
flags out of range (argparse's exit 2, the flag and the range named, nothing written), and the
Python API refuses the same values with a SettingError/StudyError that names them."""

from __future__ import annotations

import pytest

from rlsurgery.bench.runner import make_backend, run_study, write_study_report
from rlsurgery.bench.study import StudySpec, Variant
from rlsurgery.bench.suites import EnvSettings
from rlsurgery.cli import int_type, name_list
from rlsurgery.core.errors import SettingError, StudyError
from rlsurgery.training import evaluate_model, train_run
from tests.hardening.files import assert_refused, run_cli

COMMANDS = {
    "train": ["train", "dqn", "CartPole-v1"],
    "evaluate": ["evaluate", "model.zip"],
    "operate": ["operate", "model.zip", "--surgery", "magnitude_pruning", "-o", "out.zip", "--report"],
    "compare": ["compare", "--agents", "dqn", "--env", "CartPole-v1"],
    "ablate": ["ablate", "rainbow", "--env", "CartPole-v1"],
    "report": ["report", "study"],
    "catalog": ["catalog"],
}
POSITIVE = ["0", "-10", "1.5", "x"]
STUDY_FLAGS = {
    f: POSITIVE for f in ("--seeds", "--steps", "--eval-freq", "--eval-episodes", "--workers", "--reps")
}
FLAGS = {
    "train": {
        "--steps": POSITIVE,
        "--seed": ["-1", "2147483648"],
        "--eval-episodes": POSITIVE,
        "--verbose": ["3", "-1"],
    },
    "evaluate": {"--episodes": POSITIVE, "--seed": ["-1"]},
    "operate": {"--episodes": POSITIVE, "--eval-seed": ["-1"]},
    "compare": {**STUDY_FLAGS, "--agents": [",", "", " , "]},
    "ablate": STUDY_FLAGS,
    "report": {"--reps": POSITIVE},
    "catalog": {"--section": ["0", "33"]},
}
CASES = [(c, flag, value) for c, flags in FLAGS.items() for flag, values in flags.items() for value in values]


@pytest.mark.parametrize(("command", "flag", "value"), CASES, ids=[" ".join(c) for c in CASES])
def test_each_bad_number_is_refused_by_name_before_any_work(
    tmp_path, monkeypatch, capsys, command, flag, value
):
    monkeypatch.chdir(tmp_path)
    result = run_cli(capsys, *COMMANDS[command], flag, value)
    assert_refused(result, f"argument {flag}: must ")
    assert f"got {value}" in result.err or f"got {value!r}" in result.err
    assert list(tmp_path.iterdir()) == []  # no run folder, no study folder


def test_the_types_take_good_values():
    assert int_type(1)("64") == 64 and int_type(0, 2)("2") == 2 and int_type(0)("0") == 0
    assert name_list(" dqn, rainbow ,") == ["dqn", "rainbow"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"steps": 0}, "steps must be an integer >= 1 (got 0)"),
        ({"steps": -10}, "steps must be an integer >= 1 (got -10)"),
        ({"steps": 64.5}, "steps must be an integer >= 1 (got 64.5)"),
        ({"steps": True}, "steps must be an integer >= 1 (got True)"),
        ({"seed": -1}, "seed must be an integer from 0 to 2147483647 (got -1)"),
        ({"eval_episodes": 0}, "eval_episodes must be an integer >= 1 (got 0)"),
        ({"verbose": 5}, "verbose must be an integer from 0 to 2 (got 5)"),
    ],
)
def test_train_run_refuses_bad_numbers_before_the_run_folder(tmp_path, settings, message):
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        train_run("dqn", "CartPole-v1", out=tmp_path / "run", **settings)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("settings", "name"), [({"episodes": 0}, "episodes"), ({"seed": -1}, "seed")])
def test_evaluate_model_refuses_bad_numbers(settings, name):
    with pytest.raises(SettingError, match=f"^{name} must be an integer"):
        evaluate_model(None, "CartPole-v1", **settings)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"steps": 0}, "CartPole-v1: steps must be an integer >= 1 (got 0)"),
        ({"eval_freq": -5}, "CartPole-v1: eval_freq must be an integer >= 1 (got -5)"),
        ({"n_eval_episodes": 0}, "CartPole-v1: n_eval_episodes must be an integer >= 1 (got 0)"),
    ],
)
def test_env_settings_refuse_bad_numbers(settings, message):
    with pytest.raises(StudyError) as error:
        EnvSettings("CartPole-v1", **settings)
    assert str(error.value) == message
    with pytest.raises(StudyError) as error:
        EnvSettings("CartPole-v1").with_overrides(**settings)
    assert str(error.value) == message


def _spec(seeds: list) -> StudySpec:
    return StudySpec("tiny", [Variant("dqn", "dqn")], [EnvSettings("CartPole-v1", steps=64)], seeds)


@pytest.mark.parametrize("seeds", [[-1], [0, 1.5], [True]])
def test_a_study_refuses_bad_seeds(seeds):
    with pytest.raises(StudyError, match="seeds: each seed must be an integer from 0 to"):
        _spec(seeds)


@pytest.mark.parametrize(("settings", "name"), [({"workers": 0}, "workers"), ({"reps": 0}, "reps")])
def test_run_study_refuses_bad_numbers_before_the_folder(tmp_path, settings, name):
    with pytest.raises(StudyError, match=f"^{name} must be an integer >= 1 \\(got 0\\)"):
        run_study(_spec([0]), tmp_path / "study", progress=False, **settings)
    assert not (tmp_path / "study").exists()
    with pytest.raises(StudyError, match="workers must be an integer >= 1"):
        make_backend("local", workers=-2)
    with pytest.raises(StudyError, match="reps must be an integer >= 1"):
        write_study_report(tmp_path / "study", reps=0)
