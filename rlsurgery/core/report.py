"""The report of an operation: what a surgery on a trained model cost in size, latency and return.

``Surgery.operate`` measures the model before the surgery and the model it returns, when given a
:class:`Meter` (``rls.operate(model, spec, report=True)`` passes one), and keeps the report in the
provenance record of that operation as plain data (``record["report"]``), so it survives
``save``/``load`` and ``rlsurgery inspect`` shows it. The fields, and their units:

==================  ==========================================================================
``params``          parameters of the online networks (targets not counted), after the surgery
``nonzero_params``  of those, how many are non-zero, masks applied (a pruned weight counts 0)
``weight_bytes``    bytes the online networks' weights take as deployed: parameters and buffers
                    at their dtype, quantized layers at their own size (int8 codes and scales,
                    binary / ternary weights packed at 1 / 2 bits; see ``rlsurgery.nets.size``)
``bytes``           size of the model's zip as ``model.save`` writes it (the report itself not
                    in it)
``latency_ms_b1``   median wall time of one ``model.predict(obs, deterministic=True)`` on a
                    batch of 1 observation, in milliseconds, after a warm-up
``latency_ms_b256`` the same on a batch of 256 observations
``ort_latency_ms_b1``, ``ort_latency_ms_b256``
                    the same for the greedy policy exported to ONNX and run by ONNX Runtime on one
                    thread (``rlsurgery.export``); ``None`` where it was not measured
``return_before``   ``{"mean", "std"}`` of the greedy return over ``episodes`` episodes of
                    ``env_id`` (evaluation env seeded with ``eval_seed``), before the surgery
``return_after``    the same, on the operated model (same env, episodes and seed)
``before``          ``params``, ``nonzero_params``, ``weight_bytes``, ``bytes``,
                    ``latency_ms_b1`` and ``latency_ms_b256`` of the model before the surgery
==================  ==========================================================================

plus where they were measured: ``key`` (the surgery), ``env_id``, ``episodes``, ``eval_seed`` and
``device`` (latencies are of that device; the CPU unless the model was elsewhere).

>>> before = ModelCost(params=100, nonzero_params=100, bytes=9000, latency_ms_b1=0.2,
...                    latency_ms_b256=0.5, return_mean=10.0, return_std=1.0)
>>> after = ModelCost(params=100, nonzero_params=50, bytes=9100, latency_ms_b1=0.2,
...                   latency_ms_b256=0.5, return_mean=9.0, return_std=2.0)
>>> report = OperationReport.from_costs("magnitude_pruning", before, after, env_id="CartPole-v1",
...                                     episodes=2, eval_seed=0, device="cpu")
>>> report.nonzero_params, report.before["nonzero_params"], report.return_after
(50, 100, {'mean': 9.0, 'std': 2.0})
>>> OperationReport.from_dict(report.as_dict()) == report
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stable_baselines3.common.base_class import BaseAlgorithm

#: the measures taken on both models, in the order the table shows them
SIZE_AND_LATENCY = (
    "params",
    "nonzero_params",
    "weight_bytes",
    "bytes",
    "latency_ms_b1",
    "latency_ms_b256",
    "ort_latency_ms_b1",
    "ort_latency_ms_b256",
)


@dataclass(frozen=True)
class ModelCost:
    """The measures of one model (see the module docstring for the units)."""

    params: int
    nonzero_params: int
    bytes: int
    latency_ms_b1: float
    latency_ms_b256: float
    return_mean: float
    return_std: float
    weight_bytes: int = 0
    ort_latency_ms_b1: float | None = None
    ort_latency_ms_b256: float | None = None


class Meter(Protocol):
    """What ``Surgery.operate`` measures a model with (``rlsurgery.measure.ReportMeter``)."""

    env_id: str
    episodes: int
    eval_seed: int

    def measure(self, model: BaseAlgorithm) -> ModelCost:
        """The measures of ``model``; must leave the model and the global random states as they were."""
        ...


@dataclass
class OperationReport:
    """What one operation cost: size and latency of the operated model, return before and after."""

    #: the surgery's catalog key
    key: str
    #: parameters of the online networks after the surgery
    params: int
    #: non-zero parameters after the surgery (masks applied)
    nonzero_params: int
    #: bytes of the operated model's zip
    bytes: int
    #: median milliseconds of one ``predict`` on 1 observation
    latency_ms_b1: float
    #: median milliseconds of one ``predict`` on 256 observations
    latency_ms_b256: float
    #: greedy return of the model before the surgery: ``{"mean": ..., "std": ...}``
    return_before: dict[str, float]
    #: greedy return of the operated model: ``{"mean": ..., "std": ...}``
    return_after: dict[str, float]
    #: bytes of the online networks' weights as deployed, after the surgery (0: not measured)
    weight_bytes: int = 0
    #: median milliseconds of one ONNX Runtime run of the exported policy, 1 and 256 observations
    #: (``None``: not measured)
    ort_latency_ms_b1: float | None = None
    ort_latency_ms_b256: float | None = None
    #: the size and latency measures of the model before the surgery (same names as above)
    before: dict[str, float] = field(default_factory=dict)
    #: Gymnasium id the returns were measured on
    env_id: str = ""
    #: episodes of each return measurement
    episodes: int = 0
    #: seed of the evaluation env (the same for both measurements)
    eval_seed: int = 0
    #: torch device the latencies were measured on
    device: str = "cpu"

    @classmethod
    def from_costs(
        cls,
        key: str,
        before: ModelCost,
        after: ModelCost,
        env_id: str,
        episodes: int,
        eval_seed: int,
        device: str,
    ) -> OperationReport:
        """The report of an operation from the measures of the model before and after it."""
        return cls(
            key=key,
            **{name: getattr(after, name) for name in SIZE_AND_LATENCY},
            return_before={"mean": float(before.return_mean), "std": float(before.return_std)},
            return_after={"mean": float(after.return_mean), "std": float(after.return_std)},
            before={name: getattr(before, name) for name in SIZE_AND_LATENCY},
            env_id=env_id,
            episodes=int(episodes),
            eval_seed=int(eval_seed),
            device=device,
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (what the provenance record keeps)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperationReport:
        """The report kept in a provenance record (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def table(self, indent: str = "") -> str:
        """A readable table: one row per measure, the model before and after the surgery."""
        rows = [
            f"{indent}report of {self.key} on {self.env_id or '?'} ({self.episodes} episodes, eval seed "
            f"{self.eval_seed}; latency on {self.device})",
            f"{indent}  {'':<16} {'before':>14} {'after':>14}",
        ]
        for name in SIZE_AND_LATENCY:
            old, new = self.before.get(name), getattr(self, name)
            rows.append(f"{indent}  {name:<16} {_cell(old):>14} {_cell(new):>14}")
        old_return, new_return = (
            f"{r['mean']:.2f} ± {r['std']:.2f}" for r in (self.return_before, self.return_after)
        )
        rows.append(f"{indent}  {'return':<16} {old_return:>14} {new_return:>14}")
        return "\n".join(rows)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
