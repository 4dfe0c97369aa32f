"""Synthetic study results with known answers, for the statistics and report tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rlsurgery.bench.results import EPISODE_COLUMNS, EVAL_COLUMNS, RUN_COLUMNS, EnvScores, StudyResults

#: A final score of ``FAILED`` makes a failed run; ``PENDING`` a run not finished yet
FAILED = "failed"
PENDING = "pending"


def build_study(
    final_scores: dict[str, dict[str, list]],
    envs: dict[str, EnvScores] | None = None,
    baseline: str | None = None,
    n_evals: int = 5,
    name: str = "synthetic",
) -> StudyResults:
    """A study whose runs end with the given final scores.

    :param final_scores: per variant, per environment, the final score of seeds 0, 1, ... (or
        ``FAILED`` / ``PENDING``)
    :param envs: normalization facts (default: random 0, reference 1 for every environment)
    :param baseline: the baseline variant
    :param n_evals: evaluations per finished run, rising linearly to the final score at steps
        ``200 k + seed`` (slightly different steps per seed)
    """
    runs, evals, episodes = [], [], []
    env_ids = list(dict.fromkeys(env_id for per_env in final_scores.values() for env_id in per_env))
    for variant, per_env in final_scores.items():
        for env_id, scores in per_env.items():
            for seed, score in enumerate(scores):
                run_id = f"{variant}/{env_id}/{seed}"
                status = score if score in (FAILED, PENDING) else "done"
                error = (
                    f"Traceback (most recent call last):\nRuntimeError: {run_id} diverged"
                    if status == FAILED
                    else None
                )
                final = float(score) if status == "done" else None
                runs.append([run_id, variant, env_id, seed, status, final, 0.0, 1000, 10.0 + seed, error])
                if status != "done":
                    continue
                for k in range(1, n_evals + 1):
                    evals.append([run_id, variant, env_id, seed, 200 * k + seed, final * k / n_evals])
                for episode in range(30):
                    step = 35 * (episode + 1) + seed
                    episodes.append([run_id, variant, env_id, seed, step, final * episode / 29 + 0.1 * seed])
    return StudyResults(
        name=name,
        variants=list(final_scores),
        envs=envs
        if envs is not None
        else {env_id: EnvScores(env_id, 0.0, 1.0, "test") for env_id in env_ids},
        runs=pd.DataFrame(runs, columns=RUN_COLUMNS),
        evals=pd.DataFrame(evals, columns=EVAL_COLUMNS),
        episodes=pd.DataFrame(episodes, columns=EPISODE_COLUMNS),
        baseline=baseline,
        description="Synthetic study for tests.",
    )


def two_variant_study() -> StudyResults:
    """2 variants x 2 environments x 3 seeds; seed 2 of ``better`` failed on ``EnvB``."""
    rng = np.random.default_rng(0)
    return build_study(
        {
            "base": {"EnvA": list(50 + rng.normal(0, 5, 3)), "EnvB": list(-100 + rng.normal(0, 10, 3))},
            "better": {"EnvA": list(80 + rng.normal(0, 5, 3)), "EnvB": [-60.0, -55.0, FAILED]},
        },
        envs={
            "EnvA": EnvScores("EnvA", random_score=10.0, reference_score=100.0, reference_source="paper"),
            "EnvB": EnvScores("EnvB", random_score=-200.0),
        },
        baseline="base",
    )
