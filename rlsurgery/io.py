"""Loading models and reading what a model zip says about itself.

``rls.load`` opens any zip rlsurgery saved (and plain SB3 zips of the algorithms it
knows): it reads which algorithm wrote it, then lets that class rebuild the model,
replaying recorded surgeries before the parameters are set. Nothing in the file is
unpickled unless the caller trusts it (``trust=True``, ``--trust``): see
:mod:`rlsurgery.core.model_zip` and ``docs/security.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.agents import ALGORITHMS
from rlsurgery.agents.surgical import SurgicalMixin
from rlsurgery.core.errors import ModelFileError
from rlsurgery.core.model_zip import load_without_unpickling, read_model_data, zips_trusted
from rlsurgery.zoo import model_source, record_zoo_env

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


def load(
    path: str | Path, env: Any = None, device: str = "auto", *, trust: bool = False, **kwargs: Any
) -> BaseAlgorithm:
    """Load any model rlsurgery saved (any algorithm), surgeries and provenance restored.

    rlsurgery's zips load without unpickling anything. A plain SB3 zip (or one from an rlsurgery
    version before plain-data saving) holds pickled objects that can run code when loaded: it is
    refused unless ``trust=True`` (or ``custom_objects`` stand in for every pickled entry).

    :param path: the model zip, an rlsurgery run folder, or an rl-zoo3 run folder (``logs/dqn/CartPole-v1_1``:
        its model, with the env id and ``env_kwargs`` of its ``args.yml`` recorded on the model)
    :param env: environment to attach (optional for prediction)
    :param device: ``"auto"``, ``"cpu"`` or ``"cuda"``
    :param trust: unpickle what the file holds, as SB3 does (only for files you trust)
    :param kwargs: passed to the class's ``load`` (``custom_objects``, ...)
    """
    path, zoo = model_source(path)
    cls = algorithm_of(read_model_data(path))
    if issubclass(cls, SurgicalMixin):
        return record_zoo_env(cls.load(path, env=env, device=device, trust=trust, **kwargs), zoo)
    custom_objects = kwargs.pop("custom_objects", None)
    model = load_without_unpickling(
        cls.load, path, trust=trust, custom_objects=custom_objects, env=env, device=device, **kwargs
    )
    return record_zoo_env(model, zoo)


def surgery_log_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The provenance records stored in a model's data (empty for plain SB3 zips)."""
    log = data.get("surgery_log") or []
    return log if isinstance(log, list) else []


def load_saved_model(path: str | Path, trust: bool = False) -> BaseAlgorithm:
    """A saved SB3 / rlsurgery model (any algorithm), on the CPU, as the class that saved it
    (a zip a surgery reads, e.g. a teacher: trusted inside :func:`~rlsurgery.core.model_zip.trusted_zips`)."""
    path, zoo = model_source(path)
    try:
        algorithm_of(read_model_data(path))
    except ModelFileError:
        raise
    except ValueError:  # actor-critic zips (PPO, A2C) share the policy class
        from stable_baselines3 import PPO

        model = load_without_unpickling(
            PPO.load, path, trust=zips_trusted(trust), custom_objects=None, device="cpu"
        )
        return record_zoo_env(model, zoo)
    return load(path, device="cpu", trust=zips_trusted(trust))


__all__ = ["algorithm_of", "load", "load_saved_model", "read_model_data", "surgery_log_of"]
