"""Environments: making sure a Gymnasium id is usable before anything is trained.

MinAtar ids (``MinAtar/Breakout-v1``, ...) are registered on demand when the ``minatar``
extra is installed; other ids must already be registered in Gymnasium.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util

import gymnasium as gym

from rlsurgery.core.errors import EnvironmentNotAvailableError

#: optional extras and the module that shows each is installed
EXTRAS = {"box2d": "Box2D", "minatar": "minatar"}


def require_extra(extra: str, env_id: str) -> None:
    """Fail clearly when ``env_id`` needs an extra that is not installed."""
    module = EXTRAS.get(extra)
    if module is None:
        raise EnvironmentNotAvailableError(f"{env_id}: unknown extra {extra!r} (known: {', '.join(EXTRAS)})")
    if importlib.util.find_spec(module) is None:
        raise EnvironmentNotAvailableError(
            f"{env_id} needs the {extra!r} extra: pip install 'rlsurgery[{extra}]'"
        )


def ensure_registered(env_id: str) -> None:
    """Register ``env_id`` if rlsurgery knows how, else check Gymnasium knows it.

    ``module:EnvId`` imports ``module`` first (which registers ``EnvId``), as
    ``gymnasium.make`` does, so that worker processes find users' own environments.

    :raises EnvironmentNotAvailableError: unknown id (with close matches) or a missing extra
    """
    if env_id in gym.registry:
        return
    module, sep, name = env_id.partition(":")
    if sep:  # "my_package.envs:MyEnv-v0": importing the module registers the id (as gymnasium.make does)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise EnvironmentNotAvailableError(f"{env_id}: cannot import {module!r} ({exc})") from None
        env_id = name
        if env_id in gym.registry:
            return
    if env_id.startswith("MinAtar/"):
        require_extra("minatar", env_id)
        from minatar.gym import register_envs

        register_envs()
        if env_id in gym.registry:
            return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise EnvironmentNotAvailableError(f"unknown environment id {env_id!r}{hint}")
