"""What the CLI hardening tests build: a tiny trained model (and copies of it with another
recorded environment), a study store registered without running it, and broken study stores."""

from __future__ import annotations

import json
import os
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from rlsurgery.bench.store import ResultStore
from rlsurgery.bench.study import StudySpec, Variant, select_envs
from rlsurgery.training import train_run


class TextOnlyCartPole(gym.Env):
    """CartPole's spaces, but it renders text only (no ``rgb_array``): an env a video cannot show."""

    metadata = {"render_modes": ["ansi"]}  # noqa: RUF012 (Gymnasium's class attribute)
    observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(4, np.float32), 1.0, True, False, {}

    def render(self) -> str:
        return "cart\n"


TEXT_ONLY_ENV = "TextOnlyCartPole-v0"
if TEXT_ONLY_ENV not in gym.registry:
    gym.register(TEXT_ONLY_ENV, entry_point=TextOnlyCartPole)


def train_tiny_model(folder: Path) -> Path:
    """A DQN trained for 64 steps on CartPole-v1 (its zip records the env): about a second."""
    train_run("dqn", "CartPole-v1", steps=64, out=folder, device="cpu", eval_episodes=1, progress_bar=False)
    return folder / "model.zip"


def with_data(model: Path, out: Path, **changes: Any) -> Path:
    """A copy of ``model`` whose ``data`` record has ``changes`` (a value of None drops the key)."""
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            content = source.read(name)
            if name == "data":
                data = json.loads(content)
                for key, value in changes.items():
                    data.pop(key, None) if value is None else data.__setitem__(key, value)
                content = json.dumps(data).encode()
            target.writestr(name, content)
    return out


def register_study(
    folder: Path,
    name: str,
    agents: tuple[str, ...] = ("dqn",),
    envs: tuple[str, ...] = ("CartPole-v1",),
    seeds: int = 1,
    command_line: bool | None = True,
) -> StudySpec:
    """A study store in ``folder`` holding ``name`` (its runs registered, none run): a study folder
    as ``compare`` leaves it, without the seconds of training."""
    spec = StudySpec(
        name=name,
        variants=[Variant(a, a) for a in agents],
        envs=select_envs(None, list(envs)),
        seeds=list(range(seeds)),
        baseline=agents[0],
        command_line=command_line,
    )
    with ResultStore(folder) as store:
        store.register(spec, spec.runs(folder))
    return spec


def broken_store(kind: str, store: bytes) -> bytes:
    """The bytes of a ``study.db`` that is not a readable study store, from a valid ``store``."""
    if kind == "random":
        return os.urandom(8192)
    if kind == "truncated":
        return store[: len(store) // 2]
    if kind == "damaged":  # a page in the middle overwritten
        return store[:8192] + os.urandom(512) + store[8192 + 512 :]
    if kind == "empty":
        return b""
    raise ValueError(kind)


def other_sqlite(path: Path) -> Path:
    """An SQLite database of someone else's (a ``notes`` table), named like a study store."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.close()
    return path
