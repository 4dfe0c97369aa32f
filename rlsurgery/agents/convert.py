"""A plain SB3 model in memory as its surgical agent: ``rls.surgical(model)``.

A notebook user with a trained ``stable_baselines3.PPO`` need not save and reload it to operate
on it: :func:`surgical` returns the surgical agent of the same algorithm (``SurgicalPPO``) with
the same weights, optimizer state, counters (``num_timesteps``, updates, episodes), last
observation, episode buffers and environment; an off-policy model's replay buffer is the same
object. SB3's standard policies (``MlpPolicy``, ``CnnPolicy``, ``MultiInputPolicy``) become the
surgical agent's policies of the same name, which have the same parameters.

The conversion (each surgical class's ``from_model``, e.g. ``SurgicalPPO.from_model(ppo)``) goes
through SB3's own ``save``/``load`` in a temporary folder, so it copies exactly what a zip would
hold; the pickles it reads are the ones it has just written.
"""

from __future__ import annotations

from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.agents import ALGORITHMS, surgical_class_of
from rlsurgery.agents.surgical import SurgicalMixin
from rlsurgery.core.errors import IncompatibleSurgeryError


def surgical(model: BaseAlgorithm) -> BaseAlgorithm:
    """``model`` as its surgical agent class (``model`` itself if it already is one).

    :param model: a plain SB3 DQN, PPO, A2C, SAC, TD3 or sb3-contrib TRPO (trained or not)
    :return: a new surgical agent with the same weights, optimizer state, counters, env and replay
        buffer; ``model`` is left as it was (its replay buffer is shared, not copied)

    >>> from stable_baselines3 import DQN
    >>> import rlsurgery as rls
    >>> type(rls.surgical(DQN("MlpPolicy", "CartPole-v1"))).__name__
    'SurgicalDQN'
    """
    if isinstance(model, SurgicalMixin):
        return model
    try:
        cls: Any = surgical_class_of(model)
    except TypeError:
        raise IncompatibleSurgeryError(
            f"{type(model).__name__}: no surgical agent for this algorithm "
            f"(rlsurgery has {', '.join(c.__bases__[-1].__name__ for c in ALGORITHMS.values())})"
        ) from None
    return cls.from_model(model)
