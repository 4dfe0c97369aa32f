"""No raw traceback for a user's mistake: each gets one line on stderr and exit status 2; any
other exception is an internal error (one line, the --debug hint, exit status 1), and --debug
shows its traceback; a closed pipe ends the command quietly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import rlsurgery.bench.suites
from rlsurgery.cli import main
from rlsurgery.core.errors import ModelFileError
from tests.hardening.cli_cases import train_tiny_model, with_data
from tests.hardening.files import assert_refused, run_cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("model") / "run")


def _folder(tmp: Path) -> Path:
    (tmp / "run").mkdir()
    return tmp / "run"


def _run_folder(tmp: Path, model: Path) -> Path:
    (tmp / "run").mkdir()
    (tmp / "run" / "model.zip").write_bytes(model.read_bytes())
    return tmp / "run"


def _file(tmp: Path) -> Path:
    (tmp / "file").write_text("a file\n")
    return tmp / "file"


# (args with {tmp}/{model}/{folder}/{run}/{file}/{nowhere}/{noenv} filled in, what stderr names)
CASES = {
    "train: unknown env id": (
        ["train", "dqn", "CartPol-v1", "--out", "{tmp}/new"],
        ["unknown environment id 'CartPol-v1'", "did you mean 'CartPole-v1'"],
    ),
    "train: --out is a file": (["train", "dqn", "CartPole-v1", "--out", "{file}"], ["{file}", "is a file"]),
    "evaluate: a folder": (["evaluate", "{folder}"], ["{folder} is a folder, not a model zip"]),
    "inspect: a folder": (["inspect", "{folder}"], ["{folder} is a folder, not a model zip"]),
    "operate: a folder": (
        ["operate", "{folder}", "--surgery", "magnitude_pruning", "-o", "{tmp}/out.zip"],
        ["{folder} is a folder, not a model zip"],
    ),
    "evaluate: unknown recorded env": (
        ["evaluate", "{nowhere}", "--episodes", "1"],
        ["the environment the model records", "unknown environment id 'Nowhere-v0'"],
    ),
    "evaluate: unknown --env": (
        ["evaluate", "{model}", "--env", "Nowhere-v0", "--episodes", "1"],
        ["--env: unknown environment id 'Nowhere-v0'"],
    ),
    "evaluate: no recorded env": (["evaluate", "{noenv}", "--episodes", "1"], ["pass --env ID"]),
    "evaluate: no such file": (["evaluate", "{tmp}/missing.zip"], ["missing.zip"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_users_mistake_gets_one_line_and_exit_2(tmp_path, capsys, model, case):
    args, names = CASES[case]
    paths = {"tmp": tmp_path, "model": model}
    fill = {
        "folder": lambda: _folder(tmp_path),
        "run": lambda: _run_folder(tmp_path, model),
        "file": lambda: _file(tmp_path),
        "nowhere": lambda: with_data(model, tmp_path / "nowhere.zip", rls_env_id="Nowhere-v0"),
        "noenv": lambda: with_data(model, tmp_path / "noenv.zip", rls_env_id=None),
    }
    for key, make in fill.items():
        if any(f"{{{key}}}" in a for a in [*args, *names]):
            paths[key] = make()
    result = run_cli(capsys, *(a.format(**paths) for a in args))
    assert_refused(result, *(n.format(**paths) for n in names))
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert result.err.startswith(f"rlsurgery {args[0]}: error: ")
    assert not (tmp_path / "new").exists() and not (tmp_path / "out.zip").exists()


def _crash(*args, **kwargs):
    raise TypeError("boom")


def test_an_internal_error_is_one_line_and_the_debug_hint(capsys, monkeypatch):
    monkeypatch.setattr(rlsurgery.bench.suites, "available_suites", _crash)
    result = run_cli(capsys, "suites")
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.splitlines() == [
        "rlsurgery suites: internal error: TypeError: boom",
        "rlsurgery suites: rerun with --debug to see the traceback",
    ]


@pytest.mark.parametrize("args", [["--debug", "suites"], ["suites", "--debug"]])
def test_debug_raises_with_the_traceback(monkeypatch, args):
    monkeypatch.setattr(rlsurgery.bench.suites, "available_suites", _crash)
    with pytest.raises(TypeError, match="boom"):
        main(args)


def test_a_run_folder_is_its_model(tmp_path, capsys):
    from tests.hardening.files import run_cli

    model = tmp_path / "run" / "model.zip"
    model.parent.mkdir()
    rlsurgery.SurgicalDQN("MlpPolicy", "CartPole-v1", buffer_size=100).save(model)
    result = run_cli(capsys, "evaluate", tmp_path / "run", "--env", "CartPole-v1", "--episodes", "1")
    assert result.code == 0, result.err


def test_debug_also_shows_a_users_mistake(tmp_path):
    with pytest.raises(ModelFileError, match="is a folder, not a model zip"):
        main(["--debug", "inspect", str(tmp_path)])


class _ClosedPipe:
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_pipe_ends_quietly(capsys, monkeypatch, model):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["inspect", str(model)]) == 1
    assert capsys.readouterr().err == ""


def test_a_closed_pipe_in_a_real_pipeline(tmp_path):
    """``rlsurgery catalog --json | head -c 1``: 190 kB, more than a pipe holds, so the writer
    meets the closed pipe; no traceback, no "Exception ignored" at exit."""
    child = subprocess.Popen(
        [sys.executable, "-m", "rlsurgery", "catalog", "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout.read(1) == b"["
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=60) == 1
    assert err == ""
