"""``rlsurgery evaluate --video``: each bad video one line and exit 2, before the model is evaluated,
nothing written; a good one printed (and in --json)."""

from __future__ import annotations

import json

import imageio.v3 as imageio
import pytest

import rlsurgery.training
from tests.hardening.cli_cases import TEXT_ONLY_ENV, train_tiny_model
from tests.hardening.files import assert_refused, folder_digest, run_cli


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return train_tiny_model(tmp_path_factory.mktemp("model") / "run")


@pytest.fixture
def no_evaluation(monkeypatch):
    """A refusal must come before the evaluation: evaluating fails the test."""

    def evaluated(*args, **kwargs):
        raise AssertionError("the model was evaluated before the video was refused")

    monkeypatch.setattr(rlsurgery.training, "evaluate_model", evaluated)


# (arguments after MODEL, with {tmp} filled in; what the one line on stderr names)
CASES = {
    "a missing folder": (["--video", "{tmp}/missing/clip.mp4"], ["the folder {tmp}/missing does not exist"]),
    "another suffix": (["--video", "{tmp}/clip.avi"], ["a video is .mp4 or .gif, not .avi"]),
    "no suffix": (["--video", "{tmp}/clip"], [".mp4 or .gif", "no suffix"]),
    "an existing file": (["--video", "{tmp}/old.mp4"], ["{tmp}/old.mp4 exists", "--force"]),
    "a folder": (["--video", "{tmp}/folder.gif"], ["{tmp}/folder.gif is a folder"]),
    "an env without rgb_array": (
        ["--video", "{tmp}/clip.gif", "--env", TEXT_ONLY_ENV],
        [f"{TEXT_ONLY_ENV} cannot render rgb_array frames (its render modes: ansi)"],
    ),
    "--video-length without --video": (["--video-length", "10"], ["--video-length", "add --video"]),
    "--video-episodes without --video": (["--video-episodes", "2"], ["--video-episodes", "add --video"]),
    "--force without --video": (["--force"], ["--force", "add --video"]),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_video_is_refused_before_the_evaluation(case, model, tmp_path, capsys, no_evaluation):
    (tmp_path / "old.mp4").write_bytes(b"an earlier video")
    (tmp_path / "folder.gif").mkdir()
    before = folder_digest(tmp_path)
    args, names = CASES[case]
    result = run_cli(capsys, "evaluate", model, "--episodes", "1", *(a.format(tmp=tmp_path) for a in args))
    assert_refused(result, *(n.format(tmp=tmp_path) for n in names))
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert result.err.startswith("rlsurgery evaluate: error: ")
    assert folder_digest(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == [
        "folder.gif",
        "old.mp4",
    ]


def test_a_bad_video_length_is_refused_by_argparse(model, tmp_path, capsys):
    result = run_cli(capsys, "evaluate", model, "--video", tmp_path / "clip.gif", "--video-length", "0")
    assert_refused(result, "--video-length", "must be an integer >= 1, got 0")
    assert list(tmp_path.iterdir()) == []


def test_the_video_is_written_and_reported(model, tmp_path, capsys):
    video = tmp_path / "clip.gif"
    result = run_cli(
        capsys, "evaluate", model, "--episodes", "2", "--video", video, "--video-episodes", "2",
        "--video-length", "12", "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    printed = json.loads(result.out)  # stdout is JSON only (no greeting of the renderer)
    assert printed["video"] == str(video) and printed["episodes"] == 2
    assert 1 < imageio.imread(video, index=None).shape[0] <= 12
    old = video.read_bytes()
    assert_refused(run_cli(capsys, "evaluate", model, "--episodes", "1", "--video", video), "--force")
    assert video.read_bytes() == old
    result = run_cli(capsys, "evaluate", model, "--episodes", "1", "--video", video, "--force")
    assert result.code == 0 and f"video: {video}" in result.out.splitlines()
    assert result.err == ""  # nor a complaint of pygame's display driver
