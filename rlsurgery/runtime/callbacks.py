"""How surgeries act during training: SB3 callbacks they return from ``callback(agent)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback


class EveryStep(BaseCallback):
    """Calls ``hook(agent)`` after every environment step: how surgeries act during training
    (pruning schedules, dropout schedules, snapshots), returned by their ``callback(agent)``."""

    def __init__(self, hook: Callable[[Any], None]) -> None:
        super().__init__()
        self.hook = hook

    def _on_step(self) -> bool:
        self.hook(self.model)
        return True
