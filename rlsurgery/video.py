"""Watch an agent: greedy episodes of a model, rendered and written as an MP4 or a GIF.

What ``rlsurgery evaluate MODEL --video out.mp4`` records, and the GIFs of a study report. The env
is made with ``render_mode="rgb_array"``; Gymnasium's :class:`~gymnasium.wrappers.RenderCollection`
collects its frames, and imageio writes them: an MP4 through the ffmpeg that imageio-ffmpeg bundles
(frames streamed to it), a GIF through Pillow (frames kept until the file is written). The env is
seeded as :func:`~rlsurgery.training.evaluate_model` seeds its own (the first reset with ``seed``,
later ones unseeded), so with a greedy policy the video shows the first episodes of the evaluation
of the same seed.

A video is written to a hidden file beside ``path`` and renamed once complete: a failed recording
leaves nothing, and an existing file is only replaced with ``force``.

>>> from rlsurgery.video import check_video_path
>>> check_video_path("clip.avi")
Traceback (most recent call last):
...
rlsurgery.video.VideoError: clip.avi: a video is .mp4 or .gif, not .avi
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import imageio.v2 as imageio_v2
import imageio.v3 as imageio
import numpy as np
from gymnasium.wrappers import RenderCollection
from PIL import Image
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from rlsurgery.core.checks import MAX_SEED, check_int, check_optional_int
from rlsurgery.core.errors import SurgeryError
from rlsurgery.envs import ensure_registered

#: the suffixes a video can have
VIDEO_SUFFIXES = (".mp4", ".gif")
#: frames per second when the env's ``metadata["render_fps"]`` does not say
DEFAULT_FPS = 30
#: at most this many frames by default (rl-zoo3's ``record_video`` default ``--n-timesteps``)
DEFAULT_MAX_FRAMES = 1000

# pygame (the classic-control renderer) greets on stdout when imported, and stdout may be JSON; on a
# machine without a display its video driver complains on stderr, and no window could open anyway
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


class VideoError(SurgeryError):
    """A video that cannot be written: a bad path, an existing file, an env that cannot render."""


def check_video_path(path: str | Path, force: bool = False) -> Path:
    """``path`` if a video can be written there: a ``.mp4`` or ``.gif`` in an existing folder, not an
    existing file unless ``force``.

    :raises VideoError: another suffix, a missing folder, a folder at ``path``, an existing file
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        got = f"not {path.suffix}" if path.suffix else "and it has no suffix"
        raise VideoError(f"{path}: a video is {' or '.join(VIDEO_SUFFIXES)}, {got}")
    folder = path.parent
    if not folder.is_dir():
        what = "is a file" if folder.exists() else "does not exist"
        raise VideoError(f"{path}: the folder {folder} {what}")
    if path.is_dir():
        raise VideoError(f"{path} is a folder; name a video file")
    if path.exists() and not force:
        raise VideoError(f"{path} exists; pass --force to overwrite it")
    return path


def _make_env(env_id: str, env_kwargs: dict[str, Any] | None) -> gym.Env:
    ensure_registered(env_id)
    return gym.make(env_id, **{**(env_kwargs or {}), "render_mode": "rgb_array"})


def check_renderable(env_id: str, env_kwargs: dict[str, Any] | None = None) -> None:
    """Check that ``env_id`` renders ``rgb_array`` frames: it says so, and renders one after a reset.

    :raises VideoError: it cannot (no ``rgb_array`` render mode, a renderer not installed, no image)
    :raises EnvironmentNotAvailableError: an unknown ``env_id``
    """
    ensure_registered(env_id)
    plain = gym.make(env_id, **{k: v for k, v in (env_kwargs or {}).items() if k != "render_mode"})
    modes = list(plain.metadata.get("render_modes") or [])
    plain.close()
    if "rgb_array" not in modes:
        shown = ", ".join(map(str, modes)) or "none"
        raise VideoError(f"{env_id} cannot render rgb_array frames (its render modes: {shown})")
    env = _make_env(env_id, env_kwargs)
    try:
        env.reset(seed=0)
        try:
            frame = env.render()
        except gym.error.Error as exc:  # DependencyNotInstalled: pygame, box2d's renderer, ...
            raise VideoError(f"{env_id} cannot render rgb_array frames: {exc}") from None
    finally:
        env.close()
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3:
        raise VideoError(f"{env_id} renders no RGB image in rgb_array mode (got {type(frame).__name__})")


def render_fps(env: gym.Env) -> float:
    """The env's ``metadata["render_fps"]``, or :data:`DEFAULT_FPS`."""
    fps = env.metadata.get("render_fps")
    return float(fps) if isinstance(fps, int | float) and fps > 0 else float(DEFAULT_FPS)


def _downscaled(frame: np.ndarray, max_width: int | None) -> np.ndarray:
    height, width = frame.shape[:2]
    if max_width is None or width <= max_width:
        return frame
    size = (max_width, max(1, round(height * max_width / width)))
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR))


class _Writer:
    """Frames into ``path`` (MP4: streamed to ffmpeg; GIF: written by Pillow on close)."""

    def __init__(self, path: Path, fps: float) -> None:
        self.gif = path.suffix.lower() == ".gif"
        self.fps = fps
        self.closed = False
        if self.gif:
            self.file = imageio.imopen(path, "w", extension=".gif")
        else:  # even sizes are what libx264's yuv420p needs; imageio pads other sizes up
            self.file = imageio_v2.get_writer(path, format="FFMPEG", fps=fps, macro_block_size=2)

    def write(self, frame: np.ndarray) -> None:
        if self.gif:  # GIF durations are in ms; a palette frame takes a third of the memory
            self.file.write(frame, duration=1000 / self.fps, loop=0, bits=8)
        else:
            self.file.append_data(frame)

    def close(self) -> None:
        self.closed = True
        self.file.close()

    def abort(self) -> None:
        """Close after a failure (the file is removed next): what closing raises does not matter."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                self.file.close()


def _recording_env(
    env_id: str, env_kwargs: dict[str, Any] | None, env_wrapper: Any, wrap: Any, seed: int
) -> tuple[VecEnv, RenderCollection]:
    """A one-env VecEnv as evaluation builds it (``env_wrapper`` on the env, ``wrap`` on the VecEnv),
    with a frame collector innermost, under any wrapper: the frames are the env's own pictures."""
    collector = RenderCollection(_make_env(env_id, env_kwargs), pop_frames=True, reset_clean=False)
    env: gym.Env = env_wrapper(collector) if env_wrapper is not None else collector
    venv: VecEnv = DummyVecEnv([lambda: env])
    venv.seed(seed)  # the first reset only, as make_vec_env seeds evaluation's env
    if wrap is not None:
        try:
            venv = wrap(venv)
        except BaseException:
            venv.close()
            raise
    return venv, collector


def record_video(
    model: BaseAlgorithm,
    env_id: str,
    path: str | Path,
    episodes: int = 1,
    seed: int = 0,
    deterministic: bool = True,
    env_kwargs: dict[str, Any] | None = None,
    max_frames: int | None = DEFAULT_MAX_FRAMES,
    *,
    fps: float | None = None,
    max_width: int | None = None,
    force: bool = False,
    wrap: Any = None,
    env_wrapper: Any = None,
) -> Path:
    """Record ``episodes`` episodes of ``model`` on a fresh ``env_id`` env into ``path`` (.mp4 or .gif).

    Each episode gives its reset frame and one frame per env step; recording stops after ``episodes``
    episodes or at ``max_frames`` frames, whichever comes first. A GIF player shows identical
    consecutive frames as one longer frame (Pillow merges them). The model sees the observations
    that :func:`~rlsurgery.training.evaluate_model` gives it with the same ``env_wrapper`` and
    ``wrap`` (an rl-zoo3 run's wrappers, frame stack and ``VecNormalize`` statistics); the video
    shows the env's own frames.

    :param model: any SB3 model (its ``predict`` is called on the env's observations)
    :param env_id: Gymnasium id; it must render ``rgb_array`` frames
    :param path: the video file; its suffix picks the format
    :param episodes: episodes to record
    :param seed: seed of the env's first reset
    :param deterministic: greedy actions (``False``: exploratory)
    :param env_kwargs: the env's constructor arguments (as in training)
    :param max_frames: at most this many frames (``None``: no cap)
    :param fps: frames per second (default: the env's ``metadata["render_fps"]``, else 30)
    :param max_width: downscale frames wider than this (keeping their aspect), e.g. for small GIFs
    :param force: replace an existing file at ``path``
    :param wrap: wraps the VecEnv (``VecEnv -> VecEnv``), as in evaluation
    :param env_wrapper: wraps the env (``gym.Env -> gym.Env``), as in evaluation
    :return: ``path``
    :raises VideoError: a bad ``path`` (:func:`check_video_path`), an env that cannot render
    :raises SettingError: ``episodes`` or ``max_frames`` < 1, a bad ``seed``
    """
    path = check_video_path(path, force)
    episodes = check_int(episodes, "episodes", 1)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    max_frames = check_optional_int(max_frames, "max_frames", 1)
    max_width = check_optional_int(max_width, "max_width", 2)
    check_renderable(env_id, env_kwargs)
    venv, collector = _recording_env(env_id, env_kwargs, env_wrapper, wrap, seed)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    written = 0
    writer: _Writer | None = None

    def write(frames: list[np.ndarray]) -> bool:  # whether the cap is reached
        nonlocal written
        for frame in frames:
            if max_frames is not None and written >= max_frames:
                return True
            writer.write(_downscaled(frame, max_width))  # type: ignore[union-attr]
            written += 1
        return max_frames is not None and written >= max_frames

    try:
        obs = venv.reset()
        writer = _Writer(partial, float(fps) if fps else render_fps(collector))
        state, start, finished = None, np.ones((1,), dtype=bool), 0
        while not write(collector.render()):
            action, state = model.predict(obs, state=state, episode_start=start, deterministic=deterministic)
            obs, _, start, _ = venv.step(action)
            if start[0]:  # the VecEnv has reset: the collector holds the next episode's first frame
                finished += 1
                if finished == episodes:
                    write(collector.render()[:-1])
                    break
        writer.close()
        os.replace(partial, path)
    except BaseException:
        if writer is not None:
            writer.abort()
        partial.unlink(missing_ok=True)
        raise
    finally:
        venv.close()
    return path
