"""Parameters shared by the int8 surgeries: which layers stay fp32, and the calibration on the agent's
own states."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlsurgery.core.params import param


@dataclass
class HeadParams:
    keep_heads: bool = param(
        True,
        "the output layers (Q-values, logits, action means, values) stay fp32: their rounding errors "
        "move each output on its own and reorder close actions, and they hold few of the weights",
    )
    weight_scales: Literal["row", "tensor"] = param(
        "row",
        "one int8 scale per output row of each weight (finer), or one per layer (4 bytes a row fewer: "
        "on small networks the row scales weigh a tenth of the int8 model)",
    )


@dataclass
class CalibrationParams(HeadParams):
    states: int = param(512, "states to calibrate on: the newest replay / rollout data, else a rollout", ge=1)
    observer: Literal["minmax", "percentile"] = param(
        "minmax", "input range of each layer: min and max, or the percentiles below"
    )
    percentile: float = param(
        99.99, "with observer=percentile: the range is [100 − p, p] percentiles", gt=50.0, le=100.0
    )
    equalize: bool = param(
        True,
        "post-training, in each network's input layers: per-feature scales e_j = max |x_j| folded into "
        "the weight's columns (x / e and W·diag e), so that observation features of different scales "
        "share the 8-bit range",
    )
