"""Parameters of the calibration on the agent's own states, shared by the surgeries that calibrate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlsurgery.core.params import param


@dataclass
class CalibrationParams:
    states: int = param(512, "states to calibrate on: the newest replay / rollout data, else a rollout", ge=1)
    observer: Literal["minmax", "percentile"] = param(
        "minmax", "input range of each layer: min and max, or the percentiles below"
    )
    percentile: float = param(
        99.99, "with observer=percentile: the range is [100 − p, p] percentiles", gt=50.0, le=100.0
    )
