"""Batch size and curriculum schedules (catalog section 7).

Smith et al. 2018 (increase the batch size instead of decaying the rate,
https://arxiv.org/abs/1711.00489); Bengio et al. 2009 (curriculum learning,
https://dl.acm.org/doi/10.1145/1553374.1553380); Narvekar et al. 2020 (curricula for RL,
https://arxiv.org/abs/2003.04960)::

    batch_size_increase   B(t) = B₀ · m^(⌊(t − t₀)/Δ⌋ + 1) for t ≥ t₀, capped at B_max (B₀: the agent's
                          own ``batch_size``): the replay sample of DQN, SAC and TD3, the minibatch of
                          PPO (which never exceeds the rollout, n_steps · n_envs). A2C is refused: each
                          of its updates uses the whole rollout, it has no batch size to grow
    curriculum_learning   stage k of a list of env settings {attribute: value, …}; the next stage comes
                          every ``every`` env steps (gate steps) or once the mean of the last ``window``
                          training-episode returns reaches ``threshold`` (gate success); a stage is
                          applied with ``set_attr`` on every training env

The current stage is in the surgery's state (saved with the model; ``load`` re-applies it
when the env is given). The success gate reads SB3's episode buffer, which is cleared when a
stage opens (so ``rollout/ep_rew_mean`` restarts with the new stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_BATCH, param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.nets.step_hooks import record
from rlsurgery.runtime.callbacks import EveryStep


@dataclass
class BatchSizeParams:
    factor: float = param(2.0, "m: the batch size is multiplied by m at each increase", gt=1.0)
    every: int = param(20_000, "Δ: env steps between two increases", ge=1)
    start_step: int = param(0, "t₀: env step of the first increase", ge=0)
    max_batch_size: int = param(1024, "B_max: the batch size never exceeds this", ge=1, le=MAX_BATCH)


def batch_size_at(step: int, base: int, p: BatchSizeParams) -> int:
    """B(t) = min(B_max, B₀ · m^k), k = number of increases by step t (the first at t₀)."""
    if step < p.start_step:
        return base
    increases = (step - p.start_step) // p.every + 1
    return int(min(p.max_batch_size, round(base * p.factor**increases)))


@dataclass
class BatchSizeState:
    base_batch_size: int | None = None
    """B₀: the agent's batch size before the schedule"""


@register(proof="tests/batches/test_schedule.py::test_batch_sizes_follow_the_schedule")
class BatchSizeIncrease(Surgery):
    """Grow the batch size of the updates geometrically during training (the agent's ``batch_size``:
    DQN/SAC/TD3 replay samples, PPO minibatches)."""

    key = "batch_size_increase"
    attaches_to = (Attachment.SCHEDULE,)
    #: agents with a ``batch_size`` their updates read (A2C updates on its whole rollout: no batch size)
    families = ("dqn", "ppo", "sac", "td3")
    Params = BatchSizeParams
    params: BatchSizeParams
    State = BatchSizeState

    def validate(self, agent: BaseAlgorithm) -> None:
        if getattr(agent, "algorithm_family", None) == "a2c":
            raise IncompatibleSurgeryError(
                f"{self.key}: not available for {type(agent).__name__}: A2C has no batch size, each of its "
                "updates uses the whole rollout (n_steps · n_envs samples); supports: "
                f"{', '.join(self.families)}"
            )
        super().validate(agent)

    def configure(self, agent: BaseAlgorithm) -> None:
        state = self.state(agent)
        if state.base_batch_size is None:  # a loaded model keeps the size it started from
            state.base_batch_size = int(agent.batch_size)

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Sets the batch size for the coming updates after every env step."""

        def update(model: BaseAlgorithm) -> None:
            size = batch_size_at(model.num_timesteps, self.state(model).base_batch_size, self.params)
            if size != model.batch_size:
                model.batch_size = size
                record(model, "train/batch_size", size)

        return EveryStep(update)


@dataclass
class CurriculumParams:
    stages: list[dict[str, Any]] = param([], "env settings in order, e.g. [{length: 0.25}, {length: 0.5}]")
    gate: Literal["steps", "success"] = param("steps", "advance every ``every`` steps, or on success")
    every: int = param(50_000, "gate steps: env steps per stage", ge=1)
    threshold: float = param(0.0, "gate success: mean training return that opens the next stage")
    window: int = param(20, "gate success: training episodes averaged", ge=1)

    def check(self) -> None:
        """At least one stage, each a mapping."""
        if not self.stages or not all(isinstance(s, dict) and s for s in self.stages):
            raise ValueError("'stages' must be a non-empty list of {attribute: value} mappings")


@dataclass
class CurriculumState:
    stage: int | None = None
    """the stage the env is at (None: not started)"""
    since: int = 0
    """env step at which that stage began"""


@register(proof="tests/batches/test_schedule.py::test_curriculum_advances_on_its_gate")
class CurriculumLearning(Surgery):
    """Train through a sequence of env settings, by step count or by success."""

    key = "curriculum_learning"
    attaches_to = (Attachment.SCHEDULE,)
    families = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac", "td3")
    Params = CurriculumParams
    params: CurriculumParams
    State = CurriculumState

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        env = agent.get_env()
        if env is not None:
            for stage in self.params.stages:
                for attribute in stage:
                    if not env.has_attr(attribute):
                        raise IncompatibleSurgeryError(
                            f"{self.key}: the training env has no attribute {attribute!r} to set"
                        )

    def set_env_stage(self, agent: BaseAlgorithm, stage: int) -> None:
        """Set the settings of stage ``stage`` on every training env."""
        env = agent.get_env()
        for attribute, value in self.params.stages[stage].items():
            env.set_attr(attribute, value)

    def apply_stage(self, agent: BaseAlgorithm, stage: int) -> None:
        """Open stage ``stage`` now: its settings on every training env, the state at it."""
        self.set_env_stage(agent, stage)
        state = self.state(agent)
        state.stage, state.since = stage, agent.num_timesteps
        record(agent, "train/curriculum_stage", stage)

    def after_build(self, agent: BaseAlgorithm) -> None:
        self.apply_stage(agent, 0)

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        stage = self.state(agent).stage
        if stage is not None and agent.get_env() is not None:
            # a loaded model continues at its stage, on the env it is given; the stage keeps the step
            # it opened at, so a steps gate opens the next one when it would have without the save
            self.set_env_stage(agent, stage)

    def advance(self, agent: BaseAlgorithm) -> None:
        """Every env step: open the next stage when its gate passes."""
        state = self.state(agent)
        stage = state.stage or 0
        if stage + 1 >= len(self.params.stages):
            return
        p = self.params
        if p.gate == "steps":
            ready = agent.num_timesteps - state.since >= p.every
        else:
            # SB3's episode buffer holds the episodes since the stage opened (cleared on advance)
            returns = [e["r"] for e in list(agent.ep_info_buffer)[-p.window :]]
            ready = len(returns) >= p.window and float(np.mean(returns)) >= p.threshold
        if ready:
            self.apply_stage(agent, stage + 1)
            agent.ep_info_buffer.clear()  # the next gate judges episodes of the new stage only

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Checks the gate after every env step."""
        return EveryStep(self.advance)
