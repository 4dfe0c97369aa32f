"""What every mask-based pruning surgery shares: which layers, when, and the bookkeeping.

A pruning surgery computes one mask per prunable layer (:meth:`MaskSurgery.masks`) from the
current weights and applies it to the online networks, then copies the masks to the target
networks. It runs when the agent is built (``surgeries=``: pruning at initialisation) or on
a trained model (``rls.operate`` / ``rlsurgery operate``, recorded in the provenance log);
on ``load`` the masking is replayed and the saved masks are restored with the weights.
The surgery's state (``result``) reports the sparsity reached.
"""

from __future__ import annotations

from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.nets.masks import apply_mask, effective_weight, prunable_layers, sparsity, sync_target_masks
from rlsurgery.nets.surgery import NetworkSurgery


class MaskSurgery(NetworkSurgery):
    """Base of the pruning surgeries: subclasses define :meth:`masks`."""

    build_order = 90  # after every surgery that builds or replaces layers
    params: Any

    def masks(self, weights: list[th.Tensor]) -> list[th.Tensor]:
        """One 0/1 mask per weight tensor (same shapes)."""
        raise NotImplementedError(f"{type(self).__name__} must define masks()")

    def layers(self, agent: BaseAlgorithm) -> list[tuple[str, Any]]:
        """The layers this surgery masks."""
        layers = prunable_layers(agent, include_output=self.params.include_output)
        if not layers:
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__} has no Linear or Conv2d layer to prune"
            )
        return layers

    def prune(self, agent: BaseAlgorithm) -> float:
        """Mask the layers by the current weights, sync the targets; the sparsity reached."""
        layers = [m for _, m in self.layers(agent)]
        with th.no_grad():
            for layer, mask in zip(layers, self.masks([effective_weight(m) for m in layers])):
                apply_mask(layer, mask)
        sync_target_masks(agent)
        return sparsity(layers)

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        """Mask by the current weights and record the sparsity (on ``load`` the saved masks then
        replace these, and the restored state keeps the sparsity they hold: a schedule's or the
        training signal's pruning, not the replayed placeholder masks')."""
        reached = self.prune(agent)
        if not replay:
            self.state(agent).result = {"sparsity": reached}
