"""Stage pipelines: the named steps of a surgical agent that surgeries fill.

A surgical agent declares its stages (:class:`Stage`), each either *exclusive* (one
surgery at most replaces the default, e.g. next-action selection) or *composable*
(every surgery that fills it runs, in order, e.g. after-update hooks). The
:class:`StagePipeline` is built once from the agent's surgeries; it rejects two
surgeries that claim the same exclusive stage with a message naming both, and it
dispatches each stage to its filler or to the agent's default.

Surgeries meet only through the named fields of the batch the stages pass along
(:class:`rlsurgery.core.batch.Batch`), never through each other's classes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.surgery import Surgery


@dataclass(frozen=True)
class Stage:
    """One named step of an agent's train step or action selection."""

    name: str
    composable: bool
    doc: str


class StagePipeline:
    """Which surgery fills which stage of an agent.

    :param agent_name: used in error messages
    :param stages: the agent's stage definitions
    :param surgeries: the surgeries applied to the agent
    :param family: the agent's family, for surgeries whose stages depend on it

    >>> stages = [Stage("target", False, "TD target"), Stage("after_update", True, "hooks")]
    >>> class A(Surgery):
    ...     key, stages = "a", ("target",)
    >>> class B(Surgery):
    ...     key, stages = "b", ("target",)
    >>> StagePipeline("Agent", stages, [A(), B()])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rlsurgery.core.errors.IncompatibleSurgeryError: 'a' and 'b' both fill the 'target' stage of Agent, ...
    """

    def __init__(
        self,
        agent_name: str,
        stages: Iterable[Stage],
        surgeries: Sequence[Surgery],
        family: str | None = None,
    ) -> None:
        self.stages = {s.name: s for s in stages}
        self._fillers: dict[str, list[Surgery]] = {name: [] for name in self.stages}
        for surgery in surgeries:
            for name in surgery.stages_for(family):
                if name not in self.stages:
                    raise IncompatibleSurgeryError(
                        f"{surgery.key}: fills stage {name!r}, which {agent_name} does not have "
                        f"(stages: {', '.join(self.stages)})"
                    )
                fillers = self._fillers[name]
                if fillers and not self.stages[name].composable:
                    raise IncompatibleSurgeryError(
                        f"{fillers[0].key!r} and {surgery.key!r} both fill the {name!r} stage of "
                        f"{agent_name}, which takes one surgery ({self.stages[name].doc})"
                    )
                fillers.append(surgery)
        for name, fillers in self._fillers.items():
            if self.stages[name].composable:  # stable: surgeries of equal order keep the order given
                fillers.sort(key=lambda s: s.stage_order)

    def owner(self, stage: str) -> Surgery | None:
        """The surgery filling an exclusive ``stage``, or ``None`` (the agent's default)."""
        fillers = self._fillers[stage]
        return fillers[0] if fillers else None

    def fillers(self, stage: str) -> list[Surgery]:
        """Every surgery filling ``stage``, in the order they were given."""
        return list(self._fillers[stage])

    def run(self, stage: str, default: Callable[..., Any], *args: Any) -> Any:
        """Run an exclusive stage: its filler's hook, or ``default`` when none fills it."""
        owner = self.owner(stage)
        if owner is None:
            return default(*args)
        return getattr(owner, stage)(*args)

    def run_all(self, stage: str, *args: Any) -> None:
        """Run a composable stage: every filler's hook, in ``stage_order`` (then the order given)."""
        for surgery in self._fillers[stage]:
            getattr(surgery, stage)(*args)

    def table(self) -> dict[str, list[str]]:
        """Stage name -> keys of the surgeries filling it (for ``inspect`` and logs)."""
        return {name: [s.key for s in fillers] for name, fillers in self._fillers.items()}


#: the stages every surgical agent has, with one signature everywhere (see ``Surgery``)
AUX_LOSS = Stage("aux_loss", True, "extra loss terms per role, added before the backward pass")
BEFORE_STEP = Stage("before_step", True, "hooks after backward and clipping, before each optimizer step")
