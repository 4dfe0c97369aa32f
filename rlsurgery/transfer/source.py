"""What every transfer surgery shares: a source model, one weight copy, and an arrangement of what trains.

A transfer surgery starts a freshly built agent of the *target* task from a trained *source* model
(``source``: a ``.zip``, an rlsurgery or rl-zoo3 run folder, or, from Python, a loaded model). It acts
in ``modify_networks``, first of the network surgeries (``build_order`` 5), on a fresh build and
again on ``load``:

1. on a fresh build, the first transfer surgery of the agent copies the source's policy once for all
   of them (:func:`~rlsurgery.nets.transfer.copy_policy_weights`), before any other network surgery
   renames or wraps a layer: it leaves the tensors any of them keeps fresh (a new head) and copies
   in part the ones a head replacement maps. Every other tensor must match in name and shape:
   anything else is refused, naming the tensors, before any training. Target networks then start as
   copies of their online networks (the source's online weights, as SB3 builds an agent), and the
   optimizers' moments are cleared (they belonged to the fresh weights);
2. :meth:`TransferSurgery.arrange`: what trains and at what rate (frozen groups, optimizer groups);
   nothing here depends on the source, so a loaded model needs no source. Network surgeries applied
   after it (adapters, inserted norms) decide whether the parameters they add train.

What was copied is kept in the surgery's state (``result``), saved with the model. The source's
observation normalization (a ``VecNormalize`` of an rl-zoo3 run) is not carried over.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.core.params import param
from rlsurgery.core.state import ResultState
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.io import load_saved_model
from rlsurgery.nets.layout import layout_of, target_pairs
from rlsurgery.nets.step_hooks import optimizers_by_role
from rlsurgery.nets.transfer import PartialCopy, copy_policy_weights
from rlsurgery.zoo import is_model_source

#: families whose networks a transfer surgery copies and arranges (freezing needs gradient steps on
#: every trained parameter: TRPO's policy step differentiates all policy parameters at once)
TRANSFER_FAMILIES = ("dqn", *ON_POLICY_FAMILIES, "sac", "td3")
#: the text a source given as a loaded model leaves in the surgery's parameters (and provenance log)
IN_MEMORY = "<in-memory model>"
#: surgeries that set the initial weights too (they would overwrite, or be overwritten by, the source's)
INITIALIZATION_KEYS = (
    "xavier_initialization",
    "he_initialization",
    "orthogonal_initialization",
    "layer_sequential_initialization",
    "pre_training_initialization",
)


@dataclass
class SourceFields:
    source: str = param(
        doc="the trained source model: a .zip, an rlsurgery or rl-zoo3 run folder (from Python also a "
        "loaded model)"
    )


def _describe(space: spaces.Space) -> str:
    return f"{type(space).__name__}{getattr(space, 'shape', '')}"


class TransferSurgery(Surgery):
    """The base of the transfer surgeries (see the module docstring)."""

    attaches_to = (Attachment.NETWORK,)
    families = TRANSFER_FAMILIES
    refusals: ClassVar[dict[str, str]] = {
        "trpo": "TRPO's natural-gradient policy step differentiates every policy parameter at once "
        "(frozen ones included)"
    }
    State: ClassVar[type | None] = ResultState
    build_order = 5  # before network surgeries that rename tensors (the copy is by name)
    #: does this surgery carry the head to another action set (the source's may differ)?
    replaces_head: ClassVar[bool] = False
    params: Any

    def __init__(self, **params: Any) -> None:
        source = params.get("source")
        self._source_model: BaseAlgorithm | None = None
        if isinstance(source, BaseAlgorithm):
            self._source_model = source
            params = {**params, "source": f"{IN_MEMORY} {type(source).__name__}"}
        super().__init__(**params)

    # ------------------------------------------------------------------ checks
    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        clash = [s.key for s in getattr(agent, "surgeries", []) if s.key in INITIALIZATION_KEYS]
        if clash:
            raise IncompatibleSurgeryError(
                f"{self.key}: does not compose with {', '.join(clash)} (both set the initial weights)"
            )
        if not getattr(agent, "_rls_fresh", False):
            return  # a loaded model holds the copied weights already
        if self._source_model is None and not is_model_source(self.params.source):
            raise ParameterError(
                f"{self.key}: parameter 'source' must be an existing .zip file or a run folder "
                f"(rlsurgery or rl-zoo3), or a loaded model (got {self.params.source!r})"
            )
        sources = {s.source_identity() for s in transfer_surgeries(agent)}
        if len(sources) > 1:
            raise ParameterError(
                f"{self.key}: the transfer surgeries of one agent must share one source "
                f"(got {sorted(str(s) for s in sources)})"
            )

    def source_identity(self) -> object:
        """What tells two sources apart: the loaded model itself, or the path."""
        return id(self._source_model) if self._source_model is not None else str(self.params.source)

    def check_source(self, agent: BaseAlgorithm, source: BaseAlgorithm) -> None:
        """Refuse a source of another agent family, or whose observations, or (without a head
        replacement) actions, differ."""
        if layout_of(source).name != layout_of(agent).name:
            raise IncompatibleSurgeryError(
                f"{self.key}: the source is a {type(source).__name__}, the target a {type(agent).__name__}: "
                "their networks are not laid out alike"
            )
        if source.observation_space.shape != agent.observation_space.shape or type(
            source.observation_space
        ) is not type(agent.observation_space):
            raise IncompatibleSurgeryError(
                f"{self.key}: the source observes {_describe(source.observation_space)}, the target "
                f"{_describe(agent.observation_space)}: the networks cannot read the same inputs"
            )
        replacing = any(s.replaces_head for s in transfer_surgeries(agent))
        if not replacing and source.action_space != agent.action_space:
            raise IncompatibleSurgeryError(
                f"{self.key}: the source acts in {source.action_space}, the target in {agent.action_space}; "
                "add head_replacement to carry the head to the new action set"
            )

    # ------------------------------------------------------------------ what subclasses say
    def arrange(self, agent: BaseAlgorithm) -> None:
        """Set what trains and at what rate; runs on a fresh build and on ``load`` (default: all trains)."""

    def fresh_tensors(self, agent: BaseAlgorithm) -> list[str]:
        """State-dict names the copy leaves as the fresh agent has them (default: none)."""
        return []

    def remap(self, agent: BaseAlgorithm, source: BaseAlgorithm) -> dict[str, PartialCopy]:
        """State-dict names copied in part (default: none)."""
        return {}

    # ------------------------------------------------------------------ life cycle
    def modify_networks(self, agent: BaseAlgorithm) -> None:
        if getattr(agent, "_rls_fresh", False):
            self.copy_source(agent)
        self.arrange(agent)

    def source_model(self) -> BaseAlgorithm:
        """The source model (loaded from ``source`` unless given as a model)."""
        return self._source_model or load_saved_model(self.params.source)

    def copy_source(self, agent: BaseAlgorithm) -> None:
        """The one weight copy of the agent's transfer surgeries (done by the first; see the module)."""
        mine = transfer_surgeries(agent)
        if mine[0] is not self:
            self.state(agent).result["copied_by"] = mine[0].key
            return
        source = self.source_model()
        for surgery in mine:
            surgery.check_source(agent, source)
        keep = {name for s in mine for name in s.fresh_tensors(agent)}
        remap: dict[str, PartialCopy] = {}
        for s in mine:
            remap.update(s.remap(agent, source))
        report = copy_policy_weights(agent.policy, source.policy.state_dict(), keep, remap)
        failed = report["shape_mismatch"] + report["missing_in_source"]
        if failed:
            shown = ", ".join(failed[:4]) + (f" and {len(failed) - 4} more" if len(failed) > 4 else "")
            raise IncompatibleSurgeryError(
                f"{self.key}: the source's networks differ from the target's: "
                f"{len(report['shape_mismatch'])} tensors of another shape, "
                f"{len(report['missing_in_source'])} missing in the source ({shown}); "
                "build the target with the source's policy_kwargs"
            )
        for online, target in target_pairs(agent):  # as SB3 builds an agent: targets equal their nets
            target.load_state_dict(online.state_dict())
        for optimizer in optimizers_by_role(agent).values():
            optimizer.state.clear()  # moments of the fresh weights do not apply to the copied ones
        kept = ("copied", "partially_copied", "kept")
        self.state(agent).result.update({"source": self.params.source, **{k: report[k] for k in kept}})


def transfer_surgeries(agent: BaseAlgorithm) -> list[TransferSurgery]:
    """The agent's transfer surgeries, in the order given."""
    return [s for s in getattr(agent, "surgeries", []) if isinstance(s, TransferSurgery)]
