"""Environments: rlsurgery's own (registered under the ``rlsurgery/`` namespace when this
module is imported, which ``import rlsurgery`` does), and making sure a Gymnasium id is usable
before anything is trained.

* ``rlsurgery/DeepSea-v0``: :class:`~rlsurgery.envs.deep_sea.DeepSeaEnv` (kwargs ``size``, ...)
* ``rlsurgery/Chain-v0``: :class:`~rlsurgery.envs.chain.ChainEnv` (kwargs ``n_states``, ``horizon``, ...)
* ``rlsurgery/BitFlip-v0``: :class:`~rlsurgery.envs.bit_flip.BitFlipEnv` (kwargs ``n_bits``, ``continuous``)
* ``rlsurgery/CartPole-v1``, ``rlsurgery/Shifted-v0``, ``rlsurgery/Permuted-v0``: task families
  (:mod:`rlsurgery.envs.variants`: CartPole's physics as kwargs, a shifted sensor, permuted tasks)

MinAtar ids (``MinAtar/Breakout-v1``, ...) are registered on demand when the ``minatar``
extra is installed; other ids must already be registered in Gymnasium.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util

import gymnasium as gym

from rlsurgery.core.errors import EnvironmentNotAvailableError

#: rlsurgery's environments: id -> entry point
OWN_ENVS = {
    "rlsurgery/DeepSea-v0": "rlsurgery.envs.deep_sea:DeepSeaEnv",
    "rlsurgery/Chain-v0": "rlsurgery.envs.chain:ChainEnv",
    "rlsurgery/BitFlip-v0": "rlsurgery.envs.bit_flip:BitFlipEnv",
}
for _env_id, _entry_point in OWN_ENVS.items():
    if _env_id not in gym.registry:
        gym.register(_env_id, entry_point=_entry_point)
#: task families (:mod:`rlsurgery.envs.variants`): a CartPole of other physics, any env through a
#: shifted sensor or a fixed permutation
if "rlsurgery/CartPole-v1" not in gym.registry:
    gym.register(
        "rlsurgery/CartPole-v1",
        entry_point="rlsurgery.envs.variants:CartPoleVariantEnv",
        max_episode_steps=500,
        reward_threshold=475.0,
    )
for _env_id, _entry_point in (
    ("rlsurgery/Shifted-v0", "rlsurgery.envs.variants:make_shifted"),
    ("rlsurgery/Permuted-v0", "rlsurgery.envs.variants:make_permuted"),
):
    if _env_id not in gym.registry:
        gym.register(_env_id, entry_point=_entry_point)

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
