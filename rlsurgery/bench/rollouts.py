"""GIFs of a study's agents: each variant's best seed on each env, for a study saved with models.

The best seed of a variant on an env is its finished run with the highest final score (the lowest
seed among equals). Its saved model (``models/`` in the study folder) plays one greedy episode on
its evaluation env (seed ``10_000 + seed``, as the run's own evaluations), at most
:data:`GIF_FRAMES` frames downscaled to :data:`GIF_WIDTH` pixels, into ``videos/`` beside the
report. A GIF is named after its run and the digest of its model file, so rebuilding a report
renders again only the models that changed; GIFs of no current model are removed. A run without a
model file, a model that does not load, an env that cannot render ``rgb_array`` frames: no GIF, a
note in the report instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import pandas as pd

from rlsurgery.bench.results import StudyResults
from rlsurgery.bench.study import merged_env_kwargs
from rlsurgery.bench.suites import EnvSettings
from rlsurgery.bench.worker import EVAL_SEED_OFFSET
from rlsurgery.core.errors import SurgeryError
from rlsurgery.io import load
from rlsurgery.recipes import load_recipe
from rlsurgery.video import VideoError, check_renderable, record_video

#: at most this many frames per GIF (4 s of CartPole)
GIF_FRAMES = 200
#: GIF frames wider than this are downscaled to it (a GIF stays a few hundred kB)
GIF_WIDTH = 240
#: the folder of the GIFs, in the study folder
VIDEOS_DIR = "videos"


@dataclass
class Rollout:
    """The GIF of one variant's best seed on one env, or why there is none."""

    variant: str
    env: str
    """the env's label in the study (its name, or its Gymnasium id)"""
    run_id: str
    seed: int
    final_score: float
    gif: Path | None = None
    note: str = ""
    """why there is no GIF"""


def best_runs(results: StudyResults) -> pd.DataFrame:
    """The finished run with the highest final score of each variant on each env (the lowest seed
    among equals), in study order."""
    done = results.done.dropna(subset=["final_score"])
    if done.empty:
        return done
    ranked = done.assign(_score=pd.to_numeric(done["final_score"])).sort_values(
        ["_score", "seed"], ascending=[False, True], kind="stable"
    )
    best = ranked.drop_duplicates(["variant", "env_id"]).drop(columns="_score")
    order = {name: i for i, name in enumerate(results.variants)}
    return best.sort_values(["variant", "env_id"], key=lambda c: c.map(order) if c.name == "variant" else c)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _render(config: dict[str, Any], model_path: Path, gif: Path) -> None:
    env = EnvSettings.from_dict(config["env"])
    env_kwargs = merged_env_kwargs(load_recipe(config["variant"]["recipe"]), env)
    check_renderable(env.env_id, env_kwargs)  # before loading the model
    model = load(model_path, device="cpu")
    record_video(
        model,
        env.env_id,
        gif,
        episodes=1,
        seed=EVAL_SEED_OFFSET + int(config["seed"]),
        env_kwargs=env_kwargs,
        max_frames=GIF_FRAMES,
        max_width=GIF_WIDTH,
        force=True,
    )


def write_rollout_gifs(folder: str | Path, results: StudyResults, configs: dict[str, Any]) -> list[Rollout]:
    """The GIF of each variant's best seed on each env, rendered into ``folder/videos`` unless there.

    :param folder: the study folder (its ``models/`` holds the saved models)
    :param results: the study's results
    :param configs: each run's stored configuration (a :class:`~rlsurgery.bench.study.RunSpec` as
        a dict), by run id
    :return: one entry per variant and env with a finished run, none for a study without models
    """
    folder = Path(folder)
    videos = folder / VIDEOS_DIR
    rollouts, kept = [], set()
    for run in best_runs(results).itertuples(index=False):
        config = configs.get(run.run_id) or {}
        if not config.get("model_path"):
            continue  # a study that does not save models
        rollout = Rollout(
            str(run.variant), str(run.env_id), str(run.run_id), int(run.seed), float(run.final_score)
        )
        rollouts.append(rollout)
        model_path = folder / "models" / Path(config["model_path"]).name  # the folder may have moved
        if not model_path.is_file():
            rollout.note = f"no saved model ({model_path.relative_to(folder)} is missing)"
            continue
        gif = videos / f"{model_path.stem}-{_digest(model_path)}.gif"
        kept.add(gif.name)
        if not gif.is_file():
            videos.mkdir(exist_ok=True)
            try:
                _render(config, model_path, gif)
            except VideoError as exc:
                rollout.note = f"{exc}: no GIF"
                continue
            except (SurgeryError, OSError, gym.error.Error) as exc:
                rollout.note = f"no GIF: {type(exc).__name__}: {exc}"
                continue
        rollout.gif = gif
    if videos.is_dir():
        for stale in videos.glob("*.gif"):
            if stale.name not in kept:
                stale.unlink()
    return rollouts
