"""Videos of an agent (rlsurgery.video): what the files hold, decoded back with imageio.

The proof of content: the MP4 holds one frame per step of the episodes the evaluation of the same
seed plays (and a reset frame per episode), its first frame is the seeded env's first frame, and
the frames change; a recording that wrote nothing, one frame or the wrong episodes fails."""

from __future__ import annotations

import gymnasium as gym
import imageio.v3 as imageio
import numpy as np
import pytest
from PIL import Image, ImageSequence

import rlsurgery as rls
from rlsurgery.training import evaluate_model
from rlsurgery.video import VideoError, check_renderable, check_video_path, record_video
from tests.hardening.cli_cases import TEXT_ONLY_ENV, train_tiny_model

ENV = "CartPole-v1"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return rls.load(train_tiny_model(tmp_path_factory.mktemp("video") / "run"), device="cpu")


def first_frame(seed: int) -> np.ndarray:
    env = gym.make(ENV, render_mode="rgb_array")
    env.reset(seed=seed)
    frame = env.render()
    env.close()
    return frame


def changed_pixels(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels that differ by more than compression noise (the cart and pole move)."""
    return int((np.abs(a.astype(int) - b).max(axis=-1) > 40).sum())


def test_mp4_holds_every_step_of_the_evaluated_episodes(model, tmp_path):
    lengths = evaluate_model(model, ENV, episodes=3, seed=5)["lengths"]
    path = record_video(model, ENV, tmp_path / "clip.mp4", episodes=3, seed=5, max_frames=None)
    frames = imageio.imread(path, index=None)
    assert frames.shape == (sum(lengths) + 3, 400, 600, 3)  # a reset frame, then one per step
    assert imageio.immeta(path)["fps"] == 50  # CartPole's metadata["render_fps"]
    assert np.abs(frames[0].astype(int) - first_frame(5)).mean() < 3  # lossy, but the same picture
    assert changed_pixels(frames[0], frames[-1]) > 200
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no partial file left


def test_gif_capped_and_downscaled(model, tmp_path):
    lengths = evaluate_model(model, ENV, episodes=5, seed=0)["lengths"]
    assert sum(lengths) + 5 > 30  # the cap, not the episodes, ends this recording
    path = record_video(model, ENV, tmp_path / "clip.gif", episodes=5, max_frames=30, max_width=300)
    frames = imageio.imread(path, index=None)
    assert frames.shape[1:] == (200, 300, 3)
    assert changed_pixels(frames[0], frames[-1]) > 50
    # Pillow merges identical consecutive frames into a longer one: the time shown is 30 frames
    with Image.open(path) as gif:
        durations = [frame.info["duration"] for frame in ImageSequence.Iterator(gif)]
    assert len(durations) == len(frames) <= 30 and sum(durations) == 30 * 20


def test_an_existing_file_is_replaced_only_with_force(model, tmp_path):
    path = tmp_path / "clip.gif"
    path.write_bytes(b"mine")
    with pytest.raises(VideoError, match="exists; pass --force"):
        record_video(model, ENV, path, max_frames=5)
    assert path.read_bytes() == b"mine"
    record_video(model, ENV, path, max_frames=5, force=True)
    assert imageio.imread(path, index=None).shape[0] >= 1


def test_a_failed_recording_leaves_nothing(model, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("policy broke")

    monkeypatch.setattr(model, "predict", broken)
    with pytest.raises(RuntimeError, match="policy broke"):
        record_video(model, ENV, tmp_path / "clip.mp4", max_frames=5)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("clip.avi", "a video is .mp4 or .gif, not .avi"),
        ("clip", "has no suffix"),
        ("missing/clip.mp4", "the folder"),
        ("folder.mp4", "is a folder"),
    ],
)
def test_bad_paths(tmp_path, name, message):
    (tmp_path / "folder.mp4").mkdir()
    with pytest.raises(VideoError, match=message):
        check_video_path(tmp_path / name)


def test_an_env_without_rgb_array_frames(model, tmp_path):
    with pytest.raises(VideoError, match=r"cannot render rgb_array frames \(its render modes: ansi\)"):
        record_video(model, TEXT_ONLY_ENV, tmp_path / "clip.gif")
    assert list(tmp_path.iterdir()) == []
    check_renderable(ENV)
