"""Value schedules shared by the surgeries of several areas (ε, temperatures, coefficients, clip ranges).

Three kinds, evaluated at environment step ``t`` with SB3's ``progress_remaining``
(1 at the start of ``learn``, 0 at its end)::

    linear       v = v₀ + (v₁ − v₀) · min(1, (1 − progress_remaining) / fraction)   (SB3's ε schedule)
    exponential  v = max(v₁, v₀ · decayᵗ)          (or min(v₁, …) when v₁ > v₀)
    piecewise    linear interpolation through points [(t₀, v₀), (t₁, v₁), …], constant outside
    constant     v = v₀

``linear`` is computed by SB3's own ``LinearSchedule``, so a surgery using it with SB3's
parameters reproduces SB3 exactly.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from stable_baselines3.common.utils import LinearSchedule

from rlsurgery.core.params import check_bounds, param

ScheduleKind = Literal["linear", "exponential", "piecewise", "constant"]


def exponential_value(initial: float, final: float, decay: float, step: int) -> float:
    """v(t) = max(v₁, v₀ · decayᵗ) for a decreasing schedule (min for an increasing one)."""
    value = initial * decay ** max(step, 0)
    return max(final, value) if final <= initial else min(final, value)


def piecewise_value(points: list[list[float]], step: float) -> float:
    """Linear interpolation through ``points`` = [[t, v], ...] (sorted by t), constant outside."""
    steps = [p[0] for p in points]
    values = [p[1] for p in points]
    return float(np.interp(step, steps, values))


@dataclass
class ScheduleFields:
    """Schedule parameters; a surgery's ``Params`` subclasses this and adds ``initial``/``final``."""

    schedule: ScheduleKind = param("linear", "how the value moves: linear, exponential, piecewise, constant")
    fraction: float = param(
        0.1, "linear: fraction of the training run over which the value moves", gt=0.0, le=1.0
    )
    decay: float = param(
        0.999, "exponential: per-step factor, v = max(final, initial · decay^t)", gt=0.0, le=1.0
    )
    points: list[list[float]] = param([], "piecewise: [[step, value], ...] with increasing steps")

    def check(self) -> None:
        """Piecewise schedules need at least one point, with increasing steps."""
        if self.schedule == "piecewise":
            if not self.points or any(len(p) != 2 for p in self.points):
                raise ValueError("schedule 'piecewise' needs points=[[step, value], ...] (pairs)")
            steps = [p[0] for p in self.points]
            if any(b <= a for a, b in itertools.pairwise(steps)):
                raise ValueError(f"piecewise points need increasing steps (got {steps})")
            bounds = next((f.metadata for f in dataclasses.fields(self) if f.name == "initial"), {})
            for _, value in self.points:
                try:
                    check_bounds(value, bounds)
                except ValueError as exc:
                    raise ValueError(f"piecewise point value {value} {exc}, as 'initial'") from None


class ValueSchedule:
    """A schedule built from :class:`ScheduleFields` and its two end values.

    >>> s = ValueSchedule("exponential", 1.0, 0.1, decay=0.5)
    >>> s(step=2, progress_remaining=0.9)
    0.25
    >>> ValueSchedule("linear", 1.0, 0.0, fraction=0.5)(step=0, progress_remaining=0.75)
    0.5
    """

    def __init__(
        self,
        kind: str,
        initial: float,
        final: float,
        *,
        fraction: float = 0.1,
        decay: float = 0.999,
        points: list[list[float]] | None = None,
    ) -> None:
        self.kind = kind
        self.initial, self.final = initial, final
        self.decay = decay
        self.points = [list(map(float, p)) for p in points or []]
        self._linear = LinearSchedule(initial, final, fraction)

    @classmethod
    def from_fields(cls, fields: ScheduleFields, initial: float, final: float) -> ValueSchedule:
        """The schedule described by a surgery's parameters."""
        return cls(
            fields.schedule,
            initial,
            final,
            fraction=fields.fraction,
            decay=fields.decay,
            points=fields.points,
        )

    def at(self, agent: Any) -> float:
        """The value at an SB3 agent's current step and progress."""
        return self(agent.num_timesteps, agent._current_progress_remaining)

    def __call__(self, step: int, progress_remaining: float) -> float:
        """The value at environment step ``step`` (``progress_remaining`` for linear)."""
        if self.kind == "linear":
            return float(self._linear(progress_remaining))
        if self.kind == "exponential":
            return exponential_value(self.initial, self.final, self.decay, step)
        if self.kind == "piecewise":
            return piecewise_value(self.points, step)
        return float(self.initial)


def warmup_factor(step: int, warmup_steps: int, start_factor: float) -> float:
    """f₀ + (1 − f₀) · min(1, t / T_w)."""
    return start_factor + (1 - start_factor) * min(1.0, max(step, 0) / warmup_steps)


def cosine_factor(step: int, period: int, min_factor: float) -> float:
    """f_min + ½ (1 − f_min)(1 + cos(π · min(t, T) / T))."""
    return min_factor + 0.5 * (1 - min_factor) * (1 + math.cos(math.pi * min(step, period) / period))


def restart_position(step: int, first_period: int, mult: float) -> tuple[int, int]:
    """(t within the current period, length of the current period) for periods T₀, T₀·m, T₀·m², …"""
    period, start = first_period, 0
    while step >= start + period:
        start += period
        period = max(1, round(period * mult))
    return step - start, period


def triangular_factor(step: int, half_cycle: int, min_factor: float, halve: bool) -> float:
    """Triangular cycle between f_min and 1 (each cycle's amplitude halved with ``halve``)."""
    cycle = step // (2 * half_cycle)
    x = abs(step / half_cycle - 2 * cycle - 1)
    amplitude = (1 - min_factor) * (0.5**cycle if halve else 1.0)
    return min_factor + amplitude * max(0.0, 1 - x)


def run_length(agent: Any) -> int:
    """The env steps at which the agent's current ``learn`` call ends (at least 1): what schedules
    defined as fractions of "the training run" read."""
    return max(1, int(getattr(agent, "_total_timesteps", 0) or 1))
