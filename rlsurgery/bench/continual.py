"""Continual-learning metrics of a task sequence, as Continual World defines them.

Wołczyk et al. 2021, "Continual World: A Robotic Benchmark For Continual Reinforcement Learning",
https://arxiv.org/abs/2105.10919, section 3. N tasks are trained in order, task i during
[(i−1)Δ_i, iΔ_i); p_j(t) is the performance on task j at step t, here the return normalized per task,
(R − R_random) / (R_reference − R_random) (Continual World uses success rates, which lie in [0, 1];
normalized returns are not clipped). With T the end of the sequence::

    average performance   P = (1/N) Σ_j p_j(T)
    forgetting            F_i = p_i(end of task i) − p_i(T),           F = (1/N) Σ_i F_i   (F_N = 0)
    forward transfer      FT_i = (AUC_i − AUC_i^b) / (1 − AUC_i^b),     FT = (1/N) Σ_i FT_i
                          AUC_i = (1/Δ_i) ∫ p_i(t) dt over task i's own training span,
                          AUC_i^b the same for a reference agent trained on task i alone from scratch

Integrals are trapezoids over the evaluations, the span's start included when it was evaluated (the
end of the previous task), else from its first evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rlsurgery.bench.stats import bootstrap_intervals


def normalized(
    returns: np.ndarray, random_scores: Sequence[float], reference_scores: Sequence[float]
) -> np.ndarray:
    """Returns on task j (last axis) mapped to (R − random_j) / (reference_j − random_j)."""
    random_scores = np.asarray(random_scores, dtype=float)
    span = np.asarray(reference_scores, dtype=float) - random_scores
    if np.any(span == 0):
        raise ValueError("each task's reference score must differ from its random score")
    return (np.asarray(returns, dtype=float) - random_scores) / span


def average_performance(matrix: np.ndarray) -> float:
    """P: the mean over tasks of the performance after the last task (the matrix's last row)."""
    return float(np.mean(np.asarray(matrix, dtype=float)[-1]))


def forgetting(matrix: np.ndarray) -> np.ndarray:
    """F_i = p_i(end of task i) − p_i(T) for each task (the last is 0): diagonal minus last row."""
    matrix = np.asarray(matrix, dtype=float)
    return np.diag(matrix) - matrix[-1]


def span_auc(steps: Sequence[int], values: Sequence[float], start: int, end: int) -> float:
    """(1/(end − start)) ∫ p dt over [start, end] by trapezoids over the evaluations inside it."""
    steps_arr, values_arr = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    inside = (steps_arr >= start) & (steps_arr <= end)
    x, y = steps_arr[inside], values_arr[inside]
    if len(x) == 0:
        raise ValueError(f"no evaluation between steps {start} and {end}")
    if len(x) == 1:
        return float(y[0])
    area = np.sum((y[1:] + y[:-1]) / 2 * np.diff(x))  # trapezoids (numpy < 2 has no np.trapezoid)
    return float(area / (x[-1] - x[0]))


def forward_transfer(auc: float, reference_auc: float) -> float:
    """FT_i = (AUC_i − AUC_i^b) / (1 − AUC_i^b); NaN where the reference reaches 1 (nothing to gain)."""
    if reference_auc >= 1.0 - 1e-9:
        return float("nan")
    return (auc - reference_auc) / (1.0 - reference_auc)


@dataclass
class ContinualMetrics:
    """The metrics of one agent's run through a sequence (normalized performances)."""

    matrix: np.ndarray
    """p[i, j]: performance on task j after training task i"""
    average_performance: float
    forgetting: float
    forgetting_per_task: list[float]
    auc_per_task: list[float]
    forward_transfer: float | None = None
    forward_transfer_per_task: list[float] | None = None


def sequence_metrics(
    curve_steps: Sequence[int],
    curves: np.ndarray,
    boundaries: Sequence[int],
    reference_aucs: Sequence[float] | None = None,
) -> ContinualMetrics:
    """The Continual World metrics from one run's normalized curves.

    :param curve_steps: the env step of each evaluation
    :param curves: performance on every task (columns) at each evaluation (rows)
    :param boundaries: the env step at which each task's training ended
    :param reference_aucs: AUC_i^b of a single-task reference per task (for forward transfer)
    """
    curves = np.asarray(curves, dtype=float)
    rows = [list(curve_steps).index(b) for b in boundaries]
    matrix = curves[rows]
    starts = [0, *boundaries[:-1]]
    aucs = [span_auc(curve_steps, curves[:, i], starts[i], boundaries[i]) for i in range(len(boundaries))]
    f = forgetting(matrix)
    metrics = ContinualMetrics(
        matrix=matrix,
        average_performance=average_performance(matrix),
        forgetting=float(np.mean(f)),
        forgetting_per_task=f.tolist(),
        auc_per_task=aucs,
    )
    if reference_aucs is not None:
        per_task = [forward_transfer(a, b) for a, b in zip(aucs, reference_aucs)]
        metrics.forward_transfer_per_task = per_task
        metrics.forward_transfer = (
            float(np.nanmean(per_task)) if not np.all(np.isnan(per_task)) else float("nan")
        )
    return metrics


# ---------------------------------------------------------------------------------------------------
# A task-sequence study's tables (from its stored results)
# ---------------------------------------------------------------------------------------------------


@dataclass
class SequenceRun:
    """One stored sequence run: its normalized curves on every task and its task ends."""

    variant: str
    seed: int
    steps: list[int]
    curves: np.ndarray
    boundaries: list[int]


def task_normalization(results: Any) -> tuple[list[float], list[float]]:
    """(random, reference) score of each task: the study's, else from its runs (the mean return of the
    untrained agents at step 0, and the best variant's mean return on the task right after training it)."""
    randoms, references = [], []
    evals, ends = results.task_evals, results.task_ends
    for j, label in enumerate(results.tasks):
        scores = results.envs.get(label)
        random = getattr(scores, "random_score", None)
        reference = getattr(scores, "reference_score", None)
        on_task = evals[evals["task"] == j]
        if random is None:
            random = float(on_task[on_task["step"] == 0]["mean_return"].mean()) if len(on_task) else 0.0
        if reference is None:
            end_steps = ends[ends["task"] == j].set_index("run_id")["step"]
            at_end = on_task[on_task["step"] == on_task["run_id"].map(end_steps)]
            reference = float(at_end.groupby("variant")["mean_return"].mean().max()) if len(at_end) else 1.0
        if reference == random:
            reference = random + 1.0
        randoms.append(float(random))
        references.append(float(reference))
    return randoms, references


def sequence_runs(results: Any) -> list[SequenceRun]:
    """Every finished sequence run, its returns normalized per task (:func:`task_normalization`)."""
    randoms, references = task_normalization(results)
    runs = []
    for run_id, rows in results.task_evals.groupby("run_id", sort=False):
        table = rows.pivot_table(index="step", columns="task", values="mean_return").sort_index()
        ends = results.task_ends[results.task_ends["run_id"] == run_id].sort_values("task")["step"].tolist()
        if len(ends) != len(results.tasks) or table.shape[1] != len(results.tasks):
            continue
        runs.append(
            SequenceRun(
                variant=str(rows["variant"].iloc[0]),
                seed=int(rows["seed"].iloc[0]),
                steps=[int(s) for s in table.index],
                curves=normalized(table.to_numpy(), randoms, references),
                boundaries=[int(s) for s in ends],
            )
        )
    return runs


def reference_aucs(results: Any) -> list[float] | None:
    """AUC_i^b of each task: the reference variant trained on task i alone, mean over its seeds."""
    if results.reference is None:
        return None
    randoms, references = task_normalization(results)
    evals = results.evals[results.evals["variant"] == results.reference]
    # a single-task run is not evaluated before training: its curve starts where the untrained agents of
    # the sequences are on that task (their step-0 evaluation), as the sequences' own spans do
    starts = [
        float(
            np.mean([r.curves[r.steps.index(0), j] for r in sequence_runs(results) if 0 in r.steps] or [0.0])
        )
        for j in range(len(results.tasks))
    ]
    aucs = []
    for j, label in enumerate(results.tasks):
        on_task = evals[evals["env_id"] == label]
        if on_task.empty:
            return None
        per_seed = []
        for _, rows in on_task.groupby("seed"):
            rows = rows.sort_values("step")
            values = (rows["mean_return"].to_numpy() - randoms[j]) / (references[j] - randoms[j])
            steps = [0, *rows["step"].tolist()]
            per_seed.append(span_auc(steps, [starts[j], *values], 0, int(rows["step"].max())))
        aucs.append(float(np.mean(per_seed)))
    return aucs


def continual_tables(results: Any, reps: int = 2_000, seed: int = 0) -> dict[str, Any]:
    """``matrix`` (variant, after_task, on_task, mean, low, high: normalized performance on each task
    after each task) and ``metrics`` (variant, metric, mean, low, high: P, F and FT), with 95%
    stratified-bootstrap intervals over seeds (rliable)."""
    runs = sequence_runs(results)
    references = reference_aucs(results)
    matrix_rows, metric_rows = [], []
    for variant in results.variants:
        mine = [r for r in runs if r.variant == variant]
        if not mine:
            continue
        computed = [sequence_metrics(r.steps, r.curves, r.boundaries, references) for r in mine]
        stacked = np.stack([m.matrix.reshape(-1) for m in computed])  # seeds × N²
        point, interval = bootstrap_intervals(stacked, lambda x: x.mean(axis=0), reps, seed)
        n = len(results.tasks)
        for k in range(n * n):
            matrix_rows.append(
                {
                    "variant": variant,
                    "after_task": results.tasks[k // n],
                    "on_task": results.tasks[k % n],
                    "mean": point[k],
                    "low": interval[0, k],
                    "high": interval[1, k],
                }
            )
        values = {
            "average_performance": [m.average_performance for m in computed],
            "forgetting": [m.forgetting for m in computed],
        }
        if references is not None:
            values["forward_transfer"] = [m.forward_transfer for m in computed]
        for metric, per_seed in values.items():
            column = np.asarray(per_seed, dtype=float).reshape(-1, 1)
            if np.isnan(column).any():
                metric_rows.append(
                    {
                        "variant": variant,
                        "metric": metric,
                        "mean": float("nan"),
                        "low": float("nan"),
                        "high": float("nan"),
                        "seeds": len(column),
                    }
                )
                continue
            point, interval = bootstrap_intervals(column, lambda x: x.mean(axis=0), reps, seed)
            metric_rows.append(
                {
                    "variant": variant,
                    "metric": metric,
                    "mean": float(point[0]),
                    "low": float(interval[0, 0]),
                    "high": float(interval[1, 0]),
                    "seeds": len(column),
                }
            )
    return {"matrix": pd.DataFrame(matrix_rows), "metrics": pd.DataFrame(metric_rows)}
