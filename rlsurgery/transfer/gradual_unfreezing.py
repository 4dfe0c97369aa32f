"""Gradual unfreezing: the source's weights, trained from the top layer group down, one more every k steps.

Howard & Ruder 2018 (ULMFiT), https://arxiv.org/abs/1801.06146, with the layer groups counted from the
top (g = 0: the output layers; :func:`~rlsurgery.nets.transfer.depth_groups`) and t the env step::

    group g trains at step t  ⇔  g < 1 + ⌊t / k⌋        (all G groups from t = (G − 1)·k on)

A frozen group gets no gradient, so neither the optimizer nor weight decay moves it; an unfrozen group
starts with fresh optimizer moments. The number of trained groups is set after every env step from
the agent's step count, so a loaded model resumes where it was, and never goes down (a ``learn`` with
``reset_num_timesteps=True`` does not freeze trained groups again); it is logged as
``train/rls_unfrozen_groups``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment
from rlsurgery.nets.step_hooks import record
from rlsurgery.nets.transfer import agent_depth_groups
from rlsurgery.runtime.callbacks import EveryStep
from rlsurgery.transfer.source import SourceFields, TransferSurgery


@dataclass
class GradualUnfreezingParams(SourceFields):
    every: int = param(10_000, "k: env steps between two unfreezings", ge=1)


@dataclass
class UnfreezingState:
    unfrozen: int = 0
    """layer groups trained now, from the top"""
    groups: int = 0
    """layer groups in all"""
    result: dict[str, Any] = field(default_factory=dict)
    """what the weight copy did"""


def unfrozen_groups(step: int, every: int, n_groups: int) -> int:
    """How many layer groups (from the top) train at env step ``step``: min(G, 1 + ⌊t / k⌋)."""
    return min(n_groups, 1 + step // every)


@register(proof="tests/transfer/test_transfer.py::test_gradual_unfreezing_unfreezes_one_group_every_k_steps")
class GradualUnfreezing(TransferSurgery):
    """Copy the source's weights; train only the top layer group, then one more group every k steps."""

    key = "gradual_unfreezing"
    attaches_to = (Attachment.NETWORK, Attachment.SCHEDULE)
    Params = GradualUnfreezingParams
    params: GradualUnfreezingParams
    State: ClassVar[type | None] = UnfreezingState
    conflicts = ("full_fine_tuning", "feature_extraction")
    conflict_reason = "gradual unfreezing decides which layers train"

    def arrange(self, agent: BaseAlgorithm) -> None:
        #: the layer groups, cut once over the parameters that train when the agent is built or loaded
        self.layer_groups = agent_depth_groups(agent)
        self._applied: int | None = None
        self.state(agent).groups = len(self.layer_groups)
        self.unfreeze_to(
            agent, unfrozen_groups(agent.num_timesteps, self.params.every, len(self.layer_groups))
        )

    def unfreeze_to(self, agent: BaseAlgorithm, count: int) -> None:
        """Train the top ``count`` groups, freeze the rest (never fewer than already trained: a
        ``learn(reset_num_timesteps=True)`` restarts the step count, not the freezing)."""
        count = max(count, self.state(agent).unfrozen)
        if count == self._applied:
            return
        for depth, group in enumerate(self.layer_groups):
            for p in group:
                p.requires_grad_(depth < count)
                if depth >= count:
                    p.grad = None
        self._applied = self.state(agent).unfrozen = count
        record(agent, "train/rls_unfrozen_groups", count)

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Unfreezes the next group when its step comes."""

        def step(model: BaseAlgorithm) -> None:
            self.unfreeze_to(
                model, unfrozen_groups(model.num_timesteps, self.params.every, len(self.layer_groups))
            )

        return EveryStep(step)
