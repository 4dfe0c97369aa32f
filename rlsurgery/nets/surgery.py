"""The base of the network surgeries: applied when the agent is built, at a step, or to a saved model.

A :class:`NetworkSurgery` defines :meth:`~NetworkSurgery.apply`. It runs

* when a surgical agent is built (``surgeries=[...]``, in ``build_order``),
* at a training step (``at_step``), or on a trained model (``rls.operate`` /
  ``rlsurgery operate``, through the template :meth:`Surgery.operate`, which needs a surgical
  agent and refuses a second application unless ``repeatable``): recorded in the provenance log, and
* again on ``load``, from the log, with ``replay=True``: the architecture is rebuilt
  (shapes only; the saved weights are then loaded into it), so surgeries whose result
  depends on data or weights (which units to keep …) must give the same *shapes* on replay.
"""

from __future__ import annotations

from typing import Any, ClassVar

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.state import ResultState
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.nets import transform_networks
from rlsurgery.nets.layout import online_networks
from rlsurgery.nets.mlp import MLPStack, mlp_stacks

#: agent families whose networks the network surgeries can edit
NETWORK_FAMILIES = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac", "td3")


class NetworkSurgery(Surgery):
    """A surgery on the networks of an agent, usable at build time, at a step and on saved models."""

    attaches_to = (Attachment.NETWORK, Attachment.POST_TRAINING)
    families = NETWORK_FAMILIES
    operates_in_place = True
    #: may the surgery be applied a second time to the same model (e.g. widen twice)?
    repeatable: ClassVar[bool] = False
    params: Any
    #: what the surgery did last (sparsity reached, parameter counts, widths), saved with the model
    State: ClassVar[type | None] = ResultState

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        """Edit the agent's networks. ``replay``: rebuilding a saved model's architecture on ``load``."""
        raise NotImplementedError(f"{type(self).__name__} must define apply()")

    def record_choice(self, agent: BaseAlgorithm, field: str, value: Any) -> None:
        """Keep a data- or weight-dependent choice (removed layers, ranks) in the surgery's parameter
        ``field``, so that ``load`` rebuilds the same shapes; a build-time provenance record, written
        before the surgery ran, gets it too."""
        setattr(self.params, field, value)
        for record in getattr(agent, "surgery_log", []):
            if record["key"] == self.key and record["applied"] == "build":
                record["params"][field] = list(value) if isinstance(value, (list, tuple)) else value

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        self.apply(agent, replay=not getattr(agent, "_rls_fresh", False))

    def transform(self, model: BaseAlgorithm, env_id: str | None) -> BaseAlgorithm:
        """Apply to a trained surgical agent in place (``operate`` records it; ``load`` replays it)."""
        self.apply(model, replay=False)
        return model


class StructuralSurgery(NetworkSurgery):
    """Shared plumbing: find the MLP stacks, refuse networks without any, edit every network."""

    sb3_representable = False  # layers, widths and connections that SB3's net_arch cannot express

    build_order = 20

    def stacks(self, agent: BaseAlgorithm) -> list[MLPStack]:
        """The MLP stacks of the online networks (refused when there are none)."""
        stacks = [s for net in online_networks(agent).values() for s in mlp_stacks(net)]
        if not stacks:
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no MLP with a hidden layer "
                "(policy_kwargs net_arch is empty?)"
            )
        return stacks

    def hidden_index(self, stack: MLPStack, position: int) -> int:
        """``position`` (negative counts from the end) as an index of the stack's hidden layers."""
        n = len(stack.hidden)
        if not -n <= position < n:
            raise IncompatibleSurgeryError(
                f"{self.key}: position {position} is outside the {n} hidden layers of "
                f"{stack.name or 'the MLP'}"
            )
        return position % n

    def edit(self, agent: BaseAlgorithm, stack_edit: Any, copy_targets: bool = False) -> None:
        """Check the online stacks, then apply ``stack_edit(net, stack)`` to every stack of every network
        (``copy_targets``: then load the targets from their online networks)."""
        self.stacks(agent)

        def transform(net: nn.Module) -> None:
            for stack in mlp_stacks(net):
                try:
                    stack_edit(net, stack)
                except (TypeError, ValueError) as error:
                    raise IncompatibleSurgeryError(f"{self.key}: {error}") from error

        transform_networks(agent, transform, copy_targets=copy_targets)
