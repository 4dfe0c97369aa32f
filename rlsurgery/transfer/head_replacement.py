"""Head replacement: the source's backbone and a head for the target's action set, shared actions kept.

With the source's head W_s ∈ ℝ^{n_s×d} (one row per action, bias b_s) and a target of n_t actions,
a map m from target actions to source actions (``action_map``, an inter-task action mapping in the
sense of Taylor & Stone 2009, https://jmlr.org/papers/v10/taylor09a.html; by default m(i) = i for
i < min(n_s, n_t)) gives the target head::

    W_t[i] = W_s[m(i)], b_t[i] = b_s[m(i)]      where m(i) is defined
    W_t[i], b_t[i]: the target agent's fresh initialisation    for new actions (m(i) = −1)

so right after the surgery every shared action keeps its Q-value / logit / mean exactly, and the
new ones start as the target agent would. Every tensor indexed by the action is carried this way
(:func:`~rlsurgery.nets.transfer.action_tensors`): DQN's Q layer and its target; PPO/A2C's
``action_net`` (and ``log_std`` for a ``Box``); SAC/TD3's actor heads and the action columns of the
critics' first layers (the observation columns copied whole). Both spaces must be ``Discrete``, or
both 1-D ``Box`` (the map then runs over action dimensions). Everything trains, unless
``feature_extraction`` or ``gradual_unfreezing`` says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.nets.transfer import PartialCopy, action_count, action_tensors
from rlsurgery.transfer.source import SourceFields, TransferSurgery


@dataclass
class HeadReplacementParams(SourceFields):
    action_map: list[int] = param(
        [],
        "m: for each target action, the source action whose row it takes (−1: a new action); "
        "empty: action i takes row i where the source has one",
    )


def action_mapping(n_source: int, n_target: int, given: list[int]) -> tuple[int | None, ...]:
    """m as a tuple over the target actions (None: a new action)."""
    if not given:
        return tuple(i if i < n_source else None for i in range(n_target))
    if len(given) != n_target:
        raise IncompatibleSurgeryError(
            f"head_replacement: action_map has {len(given)} entries for {n_target} target actions"
        )
    bad = [j for j in given if not -1 <= j < n_source]
    if bad:
        raise IncompatibleSurgeryError(
            f"head_replacement: action_map entries must lie in [-1, {n_source - 1}] (got {bad})"
        )
    return tuple(j if j >= 0 else None for j in given)


@register(proof="tests/transfer/test_transfer.py::test_head_replacement_keeps_the_shared_actions_values")
class HeadReplacement(TransferSurgery):
    """Copy the source's weights into a target with another action set; shared actions keep their rows."""

    key = "head_replacement"
    Params = HeadReplacementParams
    params: HeadReplacementParams
    replaces_head = True

    def check_source(self, agent: BaseAlgorithm, source: BaseAlgorithm) -> None:
        super().check_source(agent, source)
        kinds = (type(source.action_space), type(agent.action_space))
        if kinds[0] is not kinds[1] or kinds[0] not in (spaces.Discrete, spaces.Box):
            raise IncompatibleSurgeryError(
                f"{self.key}: cannot carry a head from a {kinds[0].__name__} action space to a "
                f"{kinds[1].__name__} one (both Discrete, or both 1-D Box)"
            )
        for space in (source.action_space, agent.action_space):
            try:
                action_count(space)
            except IncompatibleSurgeryError as error:
                raise IncompatibleSurgeryError(f"{self.key}: {error}") from None

    def remap(self, agent: BaseAlgorithm, source: BaseAlgorithm) -> dict[str, PartialCopy]:
        mapping = action_mapping(
            action_count(source.action_space), action_count(agent.action_space), list(self.params.action_map)
        )
        try:
            tensors = action_tensors(agent)
            action_tensors(source)  # the source's head must be one row per action too
        except IncompatibleSurgeryError as error:
            raise IncompatibleSurgeryError(f"{self.key}: {error}") from None
        return {name: PartialCopy(dim, prefix, mapping) for name, (dim, prefix) in tensors.items()}
