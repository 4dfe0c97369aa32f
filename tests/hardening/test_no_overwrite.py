"""Nothing on disk is overwritten without ``--force``: each refusal leaves every byte of its
target as it was and names the path; reruns of the same study still resume."""

from __future__ import annotations

import json
import shutil

import pytest

from rlsurgery.bench.store import check_study_folder
from rlsurgery.bench.study import load_study, select_envs
from rlsurgery.core.errors import StudyError
from rlsurgery.operate import operate_file, saved_path
from tests.bench.study_helpers import write_tiny_study
from tests.hardening.cli_cases import broken_store, other_sqlite, register_study, train_tiny_model
from tests.hardening.files import assert_refused, folder_digest, run_cli

PRUNE = "magnitude_pruning:amount=0.5"
STUDY = ["--seeds", "1", "--steps", "64", "--eval-episodes", "1", "--workers", "1", "--no-progress"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("model") / "run")


# -- operate -o ---------------------------------------------------------------------------------


@pytest.mark.parametrize("given", ["small", "small.zip"])
def test_operate_refuses_the_zip_sb3_would_replace(tmp_path, capsys, model, given):
    (tmp_path / "small.zip").write_bytes(b"my own model")
    before = folder_digest(tmp_path)
    result = run_cli(capsys, "operate", model, "--surgery", PRUNE, "-o", tmp_path / given)
    assert_refused(result, str(tmp_path / "small.zip"), "--force")
    assert folder_digest(tmp_path) == before


def test_operate_force_writes_and_reports_the_path_written(tmp_path, capsys, model):
    (tmp_path / "small.zip").write_bytes(b"my own model")
    result = run_cli(
        capsys, "operate", model, "--surgery", PRUNE, "-o", tmp_path / "small", "--force", "--json"
    )
    assert result.code == 0, result.err
    assert json.loads(result.out)["output"] == str(tmp_path / "small.zip")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.zip"]
    assert (tmp_path / "small.zip").read_bytes() != b"my own model"
    result = run_cli(capsys, "operate", model, "--surgery", PRUNE, "-o", tmp_path / "new")
    assert result.code == 0 and f"-> {tmp_path / 'new.zip'} " in result.out


def test_operate_refuses_a_folder_where_the_zip_would_go_even_with_force(tmp_path, capsys, model):
    (tmp_path / "small.zip").mkdir()  # SB3 would save to small.zip_2 instead
    before = folder_digest(tmp_path)
    result = run_cli(capsys, "operate", model, "--surgery", PRUNE, "-o", tmp_path / "small", "--force")
    assert_refused(result, str(tmp_path / "small.zip"), "is a folder")
    assert folder_digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["small.zip"]


def test_operate_file_checks_the_path_it_saves(tmp_path, model):
    (tmp_path / "small.zip").write_bytes(b"my own model")
    with pytest.raises(FileExistsError, match=r"small\.zip exists"):
        operate_file(model, PRUNE, tmp_path / "small")
    assert (tmp_path / "small.zip").read_bytes() == b"my own model"
    assert saved_path(tmp_path / "a.b") == tmp_path / "a.b"


# -- compare / ablate --out ---------------------------------------------------------------------


def _other_study(folder):
    register_study(folder, "ppo", agents=("ppo",), envs=("Acrobot-v1",))
    (folder / "summary.txt").write_text("the ppo study's summary\n")
    return folder


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["compare", "--agents", "dqn", "--env", "CartPole-v1"], ["'ppo'", "choose another --out"]),
        (["compare", "--agents", "ppo", "--env", "CartPole-v1"], ["on Acrobot-v1, not CartPole-v1"]),
        (
            ["compare", "--agents", "ppo,dqn", "--env", "Acrobot-v1", "--name", "ppo"],
            ["of ppo, not ppo, dqn"],
        ),
        (["ablate", "rainbow", "--env", "CartPole-v1"], ["'ppo', not 'ablate-rainbow'"]),
    ],
)
def test_a_study_never_merges_into_another_studys_folder(tmp_path, capsys, args, names):
    folder = _other_study(tmp_path / "study")
    before = folder_digest(folder)
    result = run_cli(capsys, *args, *STUDY, "--out", folder)
    assert_refused(result, str(folder), *names)
    assert folder_digest(folder) == before


@pytest.mark.parametrize("command", [["compare", "--agents", "dqn"], ["ablate", "rainbow"]])
def test_a_study_never_writes_into_a_folder_of_other_files(tmp_path, capsys, command):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "summary.txt").write_text("my summary\n")
    (folder / "report.html").write_text("<p>my report</p>\n")
    before = folder_digest(folder)
    result = run_cli(capsys, *command, "--env", "CartPole-v1", *STUDY, "--out", folder)
    assert_refused(result, str(folder), "no study", "--out")
    assert folder_digest(folder) == before
    (tmp_path / "file").write_text("a file\n")
    result = run_cli(capsys, *command, "--env", "CartPole-v1", *STUDY, "--out", tmp_path / "file")
    assert_refused(result, str(tmp_path / "file"), "is a file")
    assert (tmp_path / "file").read_text() == "a file\n"


@pytest.mark.parametrize("kind", ["random", "truncated", "damaged", "empty", "other sqlite"])
@pytest.mark.parametrize("command", ["compare", "report"])
def test_a_broken_study_db_is_refused_untouched(tmp_path, capsys, kind, command):
    folder = tmp_path / "study"
    register_study(folder, "dqn")
    if kind == "other sqlite":
        (folder / "study.db").unlink()
        other_sqlite(folder / "study.db")
    else:
        (folder / "study.db").write_bytes(broken_store(kind, (folder / "study.db").read_bytes()))
    before = folder_digest(folder)
    if command == "report":
        result = run_cli(capsys, "report", folder)
    else:
        result = run_cli(
            capsys, "compare", "--agents", "dqn", "--env", "CartPole-v1", *STUDY, "--out", folder
        )
    assert_refused(result, str(folder / "study.db"))
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert folder_digest(folder) == before


def test_report_refuses_a_folder_without_a_store(tmp_path, capsys):
    (tmp_path / "summary.txt").write_text("mine\n")
    before = folder_digest(tmp_path)
    assert_refused(run_cli(capsys, "report", tmp_path), str(tmp_path), "not a study folder")
    assert folder_digest(tmp_path) == before


def test_the_same_study_and_parts_of_a_study_file_are_accepted(tmp_path):
    study = write_tiny_study(tmp_path, variants=("plain", "double"))
    full = load_study(study)
    folder = tmp_path / "study"
    register_study(folder, "tiny", agents=("plain",), command_line=False)  # a --variant part ran
    check_study_folder(folder, full)  # the whole file
    full.envs = select_envs(None, ["Acrobot-v1"])  # an --env part
    check_study_folder(folder, full)
    shutil.rmtree(folder)
    spec = register_study(folder, "dqn", seeds=1)
    spec.seeds = [0, 1, 2]  # more seeds: the same study, grown
    check_study_folder(folder, spec)
    spec.command_line = False
    with pytest.raises(StudyError, match="defined on the command line"):
        check_study_folder(folder, spec)
    shutil.rmtree(folder)
    spec = register_study(folder, "dqn", command_line=None)  # stored before stores recorded it
    spec.command_line, spec.envs = True, select_envs(None, ["Acrobot-v1"])
    check_study_folder(folder, spec)  # known by its name only, as before


def test_rerunning_the_same_compare_resumes_it(tmp_path, capsys):
    folder = tmp_path / "study"
    args = ["compare", "--agents", "dqn", "--env", "CartPole-v1", *STUDY, "--reps", "20", "--json"]
    first = run_cli(capsys, *args, "--out", folder)
    assert first.code == 0, first.err
    db = (folder / "study.db").read_bytes()
    again = run_cli(capsys, *args, "--out", folder)
    assert again.code == 0, again.err
    assert "1 of 1 runs already done" in again.err
    assert json.loads(again.out)["counts"] == json.loads(first.out)["counts"]
    assert (folder / "study.db").read_bytes() == db  # nothing re-run


# -- train --out --------------------------------------------------------------------------------


def test_train_refuses_an_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "run").write_text("not a folder\n")
    before = folder_digest(tmp_path)
    for extra in ([], ["--force"]):
        result = run_cli(
            capsys, "train", "dqn", "CartPole-v1", "--steps", "64", "--out", tmp_path / "run", *extra
        )
        assert_refused(result, str(tmp_path / "run"), "is a file")
        assert folder_digest(tmp_path) == before


def test_train_refuses_an_occupied_run_folder_untouched(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("precious\n")
    before = folder_digest(tmp_path)
    result = run_cli(capsys, "train", "dqn", "CartPole-v1", "--steps", "64", "--out", tmp_path)
    assert_refused(result, str(tmp_path), "--force")
    assert folder_digest(tmp_path) == before
