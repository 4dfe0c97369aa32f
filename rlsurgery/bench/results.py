"""What a study produced, as tables: the input of statistics, plots and the report.

``StudyResults`` is read from a study's SQLite store (:func:`rlsurgery.bench.store.ResultStore.results`)
or built directly (tests build synthetic ones). Its tables are pandas DataFrames:

* ``runs``: one row per run: ``run_id, variant, env_id, seed, status`` (``done`` /
  ``failed`` / ``pending`` / ``running``), ``final_score`` (mean greedy return of the last
  evaluation), ``final_std``, ``steps``, ``wall_s``, ``error``.
* ``evals``: the periodic evaluations: ``run_id, variant, env_id, seed, step, mean_return``.
* ``episodes``: training episode returns: ``run_id, variant, env_id, seed, step,
  episode_return``.
* ``metrics``: the logger values the study keeps (its ``metrics``): ``run_id, variant, env_id,
  seed, step, key, value``, one row per value and log dump.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

RUN_COLUMNS = [
    "run_id",
    "variant",
    "env_id",
    "seed",
    "status",
    "final_score",
    "final_std",
    "steps",
    "wall_s",
    "error",
]
EVAL_COLUMNS = ["run_id", "variant", "env_id", "seed", "step", "mean_return"]
EPISODE_COLUMNS = ["run_id", "variant", "env_id", "seed", "step", "episode_return"]
METRIC_COLUMNS = ["run_id", "variant", "env_id", "seed", "step", "key", "value"]
#: a task-sequence run's evaluations (``task``: the task's index) and the step each task ended at
TASK_EVAL_COLUMNS = ["run_id", "variant", "seed", "step", "task", "mean_return"]
TASK_END_COLUMNS = ["run_id", "task", "step"]


@dataclass
class EnvScores:
    """Normalization facts of one environment: normalized = (score - random) / (reference - random).

    ``reference_score`` may be ``None``: the study's best variant mean then serves as reference.
    """

    env_id: str
    random_score: float | None = None
    reference_score: float | None = None
    reference_source: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "env_id": self.env_id,
            "random_score": self.random_score,
            "reference_score": self.reference_score,
            "reference_source": self.reference_source,
        }


@dataclass
class StudyResults:
    """Everything a report is built from."""

    name: str
    variants: list[str]
    envs: dict[str, EnvScores]
    runs: pd.DataFrame
    evals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EVAL_COLUMNS))
    episodes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EPISODE_COLUMNS))
    metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=METRIC_COLUMNS))
    baseline: str | None = None
    description: str = ""
    tasks: list[str] = field(default_factory=list)
    """a task-sequence study's task labels, in order (their scores are in ``envs``)"""
    reference: str | None = None
    """the variant trained on each task alone (forward transfer's reference), if any"""
    task_evals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TASK_EVAL_COLUMNS))
    task_ends: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=TASK_END_COLUMNS))

    @property
    def done(self) -> pd.DataFrame:
        """The runs that finished."""
        return self.runs[self.runs["status"] == "done"]
