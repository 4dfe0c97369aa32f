"""Repairs triggered by a bad update (catalog section 30): filter it, lower or re-warm the rate, roll back.

Chowdhery et al. 2022 (PaLM: on a loss spike, restart from an earlier checkpoint and skip the
batches, https://arxiv.org/abs/2204.02311); Molybog et al. 2023 (loss spikes in Adam,
https://arxiv.org/abs/2304.09871).
A bad update is one whose loss is not finite or whose size exceeds k times the running average
of the previous ones, or whose gradients are not finite::

    running average   m ← β m + (1 − β) |L|   over accepted updates (after ``warmup`` of them);
                      a spike counts as a loss of k·m, so a lasting level shift is accepted eventually
    spike             |L| > k · m   (or L, ∇ not finite)

(|L|, not L: a PPO loss, policy term minus entropy bonus, is often negative, and a ratio to a
negative or near-zero average would flag every update.)

    loss_spike_filtering      the bad update is skipped: every gradient is dropped before the step
                              (Adam leaves parameters without gradients, and their moments, untouched)
    learning_rate_reduction   on each bad update the rate's factor is multiplied by γ (≥ f_min); kept
                              in the surgery's state and saved with the model
    warmup_restart            on a bad update, the rate restarts a linear warmup from f₀ over T env steps
    checkpoint_rollback       a snapshot (parameters, optimizer state, replay position) every ``every``
                              env steps, in memory or on disk; a bad update and the rest of that training
                              phase are skipped, the snapshot is restored bit for bit before the next
                              env step, and training goes on. The last ``keep`` snapshots are kept: a
                              restored snapshot is on probation for ``every`` env steps (no snapshot is
                              taken meanwhile); a bad update during it means that snapshot was taken with
                              the bad data already stored (a fault just before a snapshot), so it is
                              dropped and the one before it restored; its replay position
                              leaves the bad transitions out of sampling until they are overwritten
                              (while the buffer is not yet full; in a full buffer they stay sampleable
                              until overwritten, and rollbacks repeat until then)

The repairs fill the ``before_step`` stage of every surgical agent: each optimizer step of an update
is judged on that step's own loss (one running average per optimizer role: SAC's critic and actor
losses have their own scales). On TRPO that is its critic step only (the actor moves by a line
search, not by an optimizer).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from torch.nn.utils import get_total_norm

from rlsurgery.catalog import register
from rlsurgery.core.params import MAX_COPIES, param
from rlsurgery.core.state import transient
from rlsurgery.nets.loss import LOSS_FAMILIES
from rlsurgery.nets.optimizer_surgery import OptimizerSurgery
from rlsurgery.nets.step_hooks import add_lr_factor, optimizers_by_role, record, trainable_parameters
from rlsurgery.runtime.schedules import warmup_factor


class SpikeDetector:
    """Flags losses larger (in size) than k × their running average, and non-finite ones."""

    def __init__(self, k: float, beta: float, warmup: int) -> None:
        self.k, self.beta, self.warmup = k, beta, warmup
        self.mean: float | None = None
        self.seen = 0

    def is_bad(self, loss: float) -> bool:
        """Whether ``loss`` is a spike; accepted losses update the running average."""
        if not math.isfinite(loss):
            return True
        loss = abs(loss)
        if self.mean is not None and self.seen >= self.warmup and loss > self.k * self.mean:
            # a spike moves the average as a loss of k·m would: a lasting shift of the loss level is
            # accepted after a few dozen updates instead of blocking training for good
            self.mean = self.beta * self.mean + (1 - self.beta) * self.k * self.mean
            return True
        self.mean = loss if self.mean is None else self.beta * self.mean + (1 - self.beta) * loss
        self.seen += 1
        return False


def gradients_finite(optimizer: th.optim.Optimizer) -> bool:
    """Whether every gradient is finite, from one multi-tensor 2-norm and one sync (NaN and ±inf
    propagate into the norm; a norm that overflows float32, above ~1.8e19, counts as not finite too).
    A check and a sync per tensor cost ~8× more, ~10% of a small DQN update."""
    grads = [p.grad for p in trainable_parameters(optimizer)]
    return not grads or math.isfinite(float(get_total_norm(grads, norm_type=2.0, foreach=True)))


def drop_gradients(optimizer: th.optim.Optimizer) -> None:
    """Skip this step: parameters without a gradient are left alone by the optimizer."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


@dataclass
class SpikeParams:
    k: float = param(5.0, "k: a loss whose size is above k × its running average is a spike", gt=1.0)
    beta: float = param(0.99, "β: smoothing of the running average", ge=0.0, lt=1.0)
    warmup: int = param(100, "updates averaged before spikes are detected", ge=1)


@dataclass
class RepairState:
    events: int = 0
    """bad updates seen (logged as ``train/<key>_events``)"""
    averages: dict[str, list] = field(default_factory=dict)
    """optimizer role -> [running average of |L|, updates averaged]: one spike detector per role"""


class BadUpdateRepair(OptimizerSurgery):
    """Shared plumbing: judge every optimizer step of an update, call :meth:`repair` on a bad one."""

    params: Any
    stages = ("before_step",)
    #: before SAM (5): a dropped update is not made sharpness-aware
    stage_order = 3
    State: ClassVar[type] = RepairState

    def repair(self, agent: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define repair()")

    def install(self, agent: BaseAlgorithm) -> None:
        """Nothing to hook beyond the ``before_step`` stage (subclasses add rate factors)."""

    def before_step(self, agent: BaseAlgorithm, role: str, batch: Any, loss: th.Tensor) -> None:
        """Judge this step's loss and gradients; repair a bad step."""
        optimizer = optimizers_by_role(agent)[role]
        p, state = self.params, self.state(agent)
        detector = SpikeDetector(p.k, p.beta, p.warmup)
        detector.mean, detector.seen = state.averages.get(role, [None, 0])
        bad = detector.is_bad(float(loss.detach()))
        state.averages[role] = [detector.mean, detector.seen]
        if not gradients_finite(optimizer) or bad:
            state.events += 1
            record(agent, f"train/{self.key}_events", state.events)
            self.repair(agent, role, optimizer)


@register(proof="tests/repair/test_spikes.py::test_spikes_are_filtered_and_reduce_or_rewarm_the_rate")
class LossSpikeFiltering(BadUpdateRepair):
    """Skip every update whose loss spikes (or is not finite)."""

    key = "loss_spike_filtering"
    Params = SpikeParams
    params: SpikeParams
    families = LOSS_FAMILIES

    def repair(self, agent: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
        drop_gradients(optimizer)


@dataclass
class ReductionState(RepairState):
    factor: float = 1.0
    """the learning rate's current multiplier"""


@dataclass
class ReductionParams(SpikeParams):
    factor: float = param(0.5, "γ: multiplier of the rate at each bad update", gt=0.0, lt=1.0)
    min_factor: float = param(0.01, "f_min: the rate is never reduced below f_min·η", gt=0.0, le=1.0)


@register(proof="tests/repair/test_spikes.py::test_spikes_are_filtered_and_reduce_or_rewarm_the_rate")
class LearningRateReduction(BadUpdateRepair):
    """Multiply the learning rate by γ at every loss spike."""

    key = "learning_rate_reduction"
    Params = ReductionParams
    params: ReductionParams
    families = LOSS_FAMILIES

    State: ClassVar[type] = ReductionState

    def install(self, agent: BaseAlgorithm) -> None:
        add_lr_factor(agent, lambda a, _r, _i, _g: self.state(a).factor)
        super().install(agent)

    def repair(self, agent: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
        state = self.state(agent)
        state.factor = max(self.params.min_factor, state.factor * self.params.factor)


@dataclass
class RewarmState(RepairState):
    rewarm_from: int | None = None
    """env step of the last bad update: the warmup restarts there"""


@dataclass
class RewarmParams(SpikeParams):
    warmup_steps: int = param(5_000, "T: env steps of the new warmup", ge=1)
    start_factor: float = param(0.01, "f₀: fraction of the rate right after the bad update", ge=0.0, le=1.0)


@register(proof="tests/repair/test_spikes.py::test_spikes_are_filtered_and_reduce_or_rewarm_the_rate")
class WarmupRestart(BadUpdateRepair):
    """Restart a linear learning-rate warmup after a loss spike (the spiking update is skipped)."""

    key = "warmup_restart"
    Params = RewarmParams
    params: RewarmParams
    families = LOSS_FAMILIES

    State: ClassVar[type] = RewarmState

    def install(self, agent: BaseAlgorithm) -> None:
        p = self.params

        def factor(a: BaseAlgorithm, _r: str, _i: int, _g: dict) -> float:
            event = self.state(a).rewarm_from
            if event is None or a.num_timesteps < event:  # none yet, or the step count was reset
                return 1.0
            return warmup_factor(a.num_timesteps - event, p.warmup_steps, p.start_factor)

        add_lr_factor(agent, factor)
        super().install(agent)

    def repair(self, agent: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
        self.state(agent).rewarm_from = agent.num_timesteps
        drop_gradients(optimizer)


@dataclass
class RollbackState(RepairState):
    pending: bool = False
    """a bad update was seen: updates are skipped until the snapshot is restored, between two updates
    (restoring inside one would break the graphs an algorithm keeps across its optimizers)"""
    probation_from: int | None = None
    """env step of the last restore while its snapshot is on probation (None: not on probation)"""
    snapshots: list = transient(list)  # noqa: RUF009
    """the kept snapshots, oldest first (each in memory, or ``{"path", "step"}`` on disk); not saved"""


@dataclass
class RollbackParams(SpikeParams):
    every: int = param(5_000, "env steps between two snapshots", ge=1)
    folder: str = param("", "keep the snapshots on disk in this folder (empty: in memory)")
    keep: int = param(
        2,
        "snapshots kept; a bad update within every steps of a rollback falls back to an older one",
        ge=1,
        le=MAX_COPIES,
    )


@register(proof="tests/repair/test_rollback.py::test_nan_rolls_back_to_the_snapshot_bit_for_bit")
class CheckpointRollback(BadUpdateRepair):
    """Snapshots every ``every`` steps; a bad update restores the last one (parameters, optimizers, replay
    position) and is skipped."""

    key = "checkpoint_rollback"
    cost_note = (
        "a copy of the parameters, optimizer state and replay position every `every` env steps, and"
        " after a bad update the rest of that training phase is skipped and the copy restored (what"
        " it costs depends on how many spikes the run has)"
    )
    Params = RollbackParams
    params: RollbackParams
    State: ClassVar[type] = RollbackState

    def newest(self, agent: BaseAlgorithm) -> dict[str, Any] | None:
        """The newest snapshot (``None`` before the first)."""
        snapshots = self.state(agent).snapshots
        return snapshots[-1] if snapshots else None

    def take(self, agent: BaseAlgorithm) -> None:
        """Snapshot now (the oldest kept one goes when there are more than ``keep``)."""
        replay = getattr(agent, "replay_buffer", None)
        snapshot = {
            "policy": copy.deepcopy(agent.policy.state_dict()),
            "optimizers": {r: copy.deepcopy(o.state_dict()) for r, o in optimizers_by_role(agent).items()},
            "replay": None if replay is None else (replay.pos, replay.full),
            "step": agent.num_timesteps,
        }
        if self.params.folder:
            folder = Path(self.params.folder)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"rollback_snapshot_{agent.num_timesteps}.pt"
            th.save(snapshot, path)
            snapshot = {"path": str(path), "step": agent.num_timesteps}
        snapshots = self.state(agent).snapshots
        snapshots.append(snapshot)
        while len(snapshots) > self.params.keep:
            self._forget(snapshots.pop(0))

    @staticmethod
    def _forget(snapshot: dict[str, Any]) -> None:
        if "path" in snapshot:
            Path(snapshot["path"]).unlink(missing_ok=True)

    def restore(self, agent: BaseAlgorithm) -> None:
        """Back to the newest snapshot, bit for bit."""
        snapshot = self.newest(agent)
        if snapshot is None:
            return
        if "path" in snapshot:
            snapshot = th.load(snapshot["path"], weights_only=True)
        agent.policy.load_state_dict(snapshot["policy"])
        for role, optimizer in optimizers_by_role(agent).items():
            optimizer.load_state_dict(copy.deepcopy(snapshot["optimizers"][role]))
        replay = getattr(agent, "replay_buffer", None)
        if replay is not None and snapshot["replay"] is not None:
            replay.pos, replay.full = snapshot["replay"]
        self.state(agent).probation_from = agent.num_timesteps
        record(agent, "train/rolled_back_to_step", snapshot["step"])

    def before_step(self, agent: BaseAlgorithm, role: str, batch: Any, loss: th.Tensor) -> None:
        """Judge the step; while a restore is pending, every step is skipped."""
        super().before_step(agent, role, batch, loss)
        if self.state(agent).pending:
            drop_gradients(optimizers_by_role(agent)[role])

    def repair(self, agent: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
        state = self.state(agent)
        if not state.pending and state.probation_from is not None and len(state.snapshots) > 1:
            # bad again soon after a rollback: the newest snapshot already held the bad data
            dropped = state.snapshots.pop()
            self._forget(dropped)
            record(agent, "train/rollback_dropped_snapshot", dropped["step"])
        state.pending = True

    def restore_if_pending(self, agent: BaseAlgorithm) -> None:
        state = self.state(agent)
        if state.pending:
            self.restore(agent)
            state.pending = False

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Restores between updates when a bad one was seen; snapshots every ``every`` env steps."""
        return _RollbackCallback(self)


class _RollbackCallback(BaseCallback):
    def __init__(self, surgery: CheckpointRollback) -> None:
        super().__init__()
        self.surgery = surgery

    def _on_step(self) -> bool:
        surgery, state = self.surgery, self.surgery.state(self.model)
        surgery.restore_if_pending(self.model)
        now, every = self.model.num_timesteps, surgery.params.every
        if state.probation_from is not None:
            if now - state.probation_from < every:
                return True  # no snapshot of a state still on probation
            state.probation_from = None  # proven: the due snapshot below is taken
        snapshot = surgery.newest(self.model)
        if snapshot is None or now - snapshot["step"] >= every:
            surgery.take(self.model)
        return True

    def _on_rollout_start(self) -> None:
        self.surgery.restore_if_pending(self.model)

    def _on_training_end(self) -> None:
        self.surgery.restore_if_pending(self.model)
