"""Feature extraction: the source's backbone, frozen; a new head trained on the target task.

Yosinski et al. 2014, https://arxiv.org/abs/1411.1792 (frozen transferred layers)::

    θ = (θ_backbone, θ_head),  θ_backbone = θ_backbone^source, ∂L/∂θ_backbone not applied (frozen)
    θ_head: the target agent's own fresh initialisation (``reset_head``) or the source's, trained

The head is the output layers of every network (:func:`~rlsurgery.nets.transfer.head_modules`:
DQN's Q layer; PPO/A2C's action and value layers and ``log_std``; SAC/TD3's actor heads and the
critics' last layers); the backbone is everything else, the features extractor included. With
``head_replacement`` the head is carried over instead (shared actions keep their rows), still alone
in training.
"""

from __future__ import annotations

from dataclasses import dataclass

from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.groups import train_only
from rlsurgery.nets.transfer import agent_depth_groups, head_tensor_names
from rlsurgery.transfer.source import SourceFields, TransferSurgery, transfer_surgeries


@dataclass
class FeatureExtractionParams(SourceFields):
    reset_head: bool = param(
        True, "start the head from the target agent's fresh initialisation (False: the source's)"
    )


@register(
    proof="tests/transfer/test_transfer.py::test_feature_extraction_freezes_the_backbone_and_trains_a_new_head"
)
class FeatureExtraction(TransferSurgery):
    """Copy the source's backbone and freeze it; train only the output layers."""

    key = "feature_extraction"
    Params = FeatureExtractionParams
    params: FeatureExtractionParams
    conflicts = ("full_fine_tuning", "gradual_unfreezing")
    conflict_reason = "feature extraction keeps the backbone frozen for the whole run"

    def arrange(self, agent: BaseAlgorithm) -> None:
        head = agent_depth_groups(agent)[0]
        self.state(agent).result["trainable_parameters"] = train_only(agent, head)

    def fresh_tensors(self, agent: BaseAlgorithm) -> list[str]:
        if not self.params.reset_head or any(s.replaces_head for s in transfer_surgeries(agent)):
            return []
        return head_tensor_names(agent)
