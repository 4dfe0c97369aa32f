"""Loading models and reading what a model zip says about itself.

``rls.load`` opens any zip rlsurgery saved (and plain SB3 zips of the algorithms it
knows): it reads which algorithm wrote it, then lets that class rebuild the model,
replaying recorded surgeries before the parameters are set.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.agents import ALGORITHMS

#: SB3 algorithms recognised in plain zips, by the module of their policy class
_SB3_BY_POLICY_MODULE = {
    "stable_baselines3.dqn.policies": ("stable_baselines3", "DQN"),
    "stable_baselines3.ppo.policies": ("stable_baselines3", "PPO"),
    "stable_baselines3.a2c.policies": ("stable_baselines3", "A2C"),
    "stable_baselines3.sac.policies": ("stable_baselines3", "SAC"),
    "stable_baselines3.td3.policies": ("stable_baselines3", "TD3"),
    "stable_baselines3.ddpg.policies": ("stable_baselines3", "TD3"),
    "sb3_contrib.qrdqn.policies": ("sb3_contrib", "QRDQN"),
}


def read_model_data(path: str | Path) -> dict[str, Any]:
    """The JSON ``data`` record of an SB3 model zip (no torch, no unpickling)."""
    path = Path(path)
    if not path.is_file() and path.with_suffix(".zip").is_file():
        path = path.with_suffix(".zip")
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("data").decode("utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"no model file at {path}") from None
    except (zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{path} is not an SB3 model zip ({exc})") from None


def algorithm_of(data: dict[str, Any]) -> type[BaseAlgorithm]:
    """The class that wrote ``data``: an rlsurgery agent, or an SB3 / sb3-contrib algorithm."""
    import importlib

    name = data.get("rlsurgery_algorithm")
    if name:
        for cls in ALGORITHMS.values():
            if cls.__name__ == name:
                return cls
        raise ValueError(f"model written by {name}, which this rlsurgery version does not have")
    module = (data.get("policy_class") or {}).get("__module__", "")
    if module == "stable_baselines3.common.policies":  # ActorCriticPolicy: PPO, A2C or TRPO
        if "cg_max_steps" in data:
            return importlib.import_module("sb3_contrib").TRPO
        package, cls_name = (
            ("stable_baselines3", "PPO") if "n_epochs" in data else ("stable_baselines3", "A2C")
        )
        return getattr(importlib.import_module(package), cls_name)
    if module in _SB3_BY_POLICY_MODULE:
        package, cls_name = _SB3_BY_POLICY_MODULE[module]
        return getattr(importlib.import_module(package), cls_name)
    raise ValueError(
        f"cannot tell which algorithm wrote this model (policy module {module!r}); use its class's load()"
    )


def load(path: str | Path, env: Any = None, device: str = "auto", **kwargs: Any) -> BaseAlgorithm:
    """Load any model rlsurgery saved (any algorithm), surgeries and provenance restored.

    :param path: the model zip
    :param env: environment to attach (optional for prediction)
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param kwargs: passed to the class's ``load``
    """
    cls = algorithm_of(read_model_data(path))
    return cls.load(path, env=env, device=device, **kwargs)


def surgery_log_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The provenance records stored in a model's data (empty for plain SB3 zips)."""
    log = data.get("surgery_log") or []
    return log if isinstance(log, list) else []


def load_saved_model(path: str | Path) -> BaseAlgorithm:
    """A saved SB3 / rlsurgery model (any algorithm), on the CPU, as the class that saved it."""
    data = read_model_data(path)
    try:
        cls = algorithm_of(data)
    except ValueError:
        from stable_baselines3 import PPO  # actor-critic zips (PPO, A2C) share the policy class

        cls = PPO
    return cls.load(path, device="cpu")
