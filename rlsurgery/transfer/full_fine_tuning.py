"""Full fine-tuning: every weight from the source, every weight trained on the target task.

Yosinski et al. 2014, https://arxiv.org/abs/1411.1792: θ₀ = θ_source, then the target task's own
loss trains all of θ at the agent's learning rate. The source's networks must match the target's
in every tensor (a different action set: add ``head_replacement``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rlsurgery.catalog import register
from rlsurgery.transfer.source import SourceFields, TransferSurgery


@dataclass
class FullFineTuningParams(SourceFields):
    pass


@register(
    proof="tests/transfer/test_transfer.py::test_full_fine_tuning_starts_from_the_source_and_trains_all"
)
class FullFineTuning(TransferSurgery):
    """Start from all of the source's weights and train all of them."""

    key = "full_fine_tuning"
    Params = FullFineTuningParams
    params: FullFineTuningParams
    conflicts = ("feature_extraction", "gradual_unfreezing")
    conflict_reason = "full fine-tuning trains every layer from the start"
