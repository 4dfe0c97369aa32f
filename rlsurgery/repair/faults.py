"""Fault injection: corrupt the training data at a chosen step, to test that repairs repair.

Not a repair itself: a controlled fault (as in chaos engineering, Basiri et al. 2016,
https://arxiv.org/abs/1702.05843), so that the repair surgeries of :mod:`rlsurgery.repair.spikes`
can be measured on real runs::

    at env step t_f: the rewards of the newest ``count`` transitions become ``value``
                     (NaN, or a huge number), in the replay buffer (off-policy) or the rollout
                     being collected (on-policy, before its returns and advantages are computed)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.state import ResultState
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.nets.step_hooks import record
from rlsurgery.runtime.callbacks import EveryStep


def corrupt_newest_rewards(agent: BaseAlgorithm, count: int, value: float) -> int:
    """Set the rewards of the newest ``count`` stored transitions to ``value``; returns how many."""
    buffer = getattr(agent, "replay_buffer", None)
    if buffer is None:
        buffer = agent.rollout_buffer  # type: ignore[attr-defined]
        size = buffer.pos
        positions = np.arange(max(0, size - count), size)
    else:
        n = min(count, buffer.size())
        positions = (buffer.pos - 1 - np.arange(n)) % buffer.buffer_size
    buffer.rewards[positions] = value
    return len(positions)


@dataclass
class FaultParams:
    step: int = param(20_000, "t_f: env step of the fault", ge=1)
    kind: Literal["nan", "inf", "value"] = param("nan", "the corrupted reward: NaN, +inf, or ``value``")
    value: float = param(1e6, "the corrupted reward when kind is value")
    count: int = param(32, "newest transitions corrupted", ge=1)

    def reward(self) -> float:
        return {"nan": float("nan"), "inf": float("inf")}.get(self.kind, self.value)


@register(
    proof="tests/repair/test_rollback.py::test_injected_faults_break_plain_runs_and_repairs_hold",
    name="Fault Injection",
    sections=(30,),
    translation="at step t_f: r ← value for the newest n transitions",
    description="Corrupt the training data at a step (NaN or huge rewards) to test the repairs",
)
class FaultInjection(Surgery):
    """Corrupt the newest transitions' rewards once, at the first env step ≥ t_f (the step is recorded
    in its state, ``result["injected"]``, and saved, so a resumed run is not faulted twice)."""

    key = "fault_injection"
    State = ResultState
    attaches_to = (Attachment.REPLAY,)
    families = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac", "td3")
    Params = FaultParams
    params: FaultParams

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Injects the fault at t_f."""

        def inject(model: BaseAlgorithm) -> None:
            if model.num_timesteps >= self.params.step and not self.state(model).result.get("injected"):
                n = corrupt_newest_rewards(model, self.params.count, self.params.reward())
                self.state(model).result["injected"] = model.num_timesteps
                record(model, "train/fault_injected", n)

        return EveryStep(inject)
