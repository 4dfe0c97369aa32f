"""Figures of a study: learning curves, aggregate intervals, performance profiles, improvement.

Each function draws what :mod:`rlsurgery.bench.stats` computed (pass the precomputed table or
curves to skip recomputing them), writes one PNG with matplotlib's Agg backend and returns its
path, or ``None`` (writing nothing) when there is nothing to draw yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rlsurgery.bench import stats
from rlsurgery.bench.continual import sequence_runs
from rlsurgery.bench.results import StudyResults

DPI = 100
#: Pair separator in rliable's improvement plot keys: a character no variant name contains
_PAIR_SEPARATOR = "\x1f"


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rliable_plot_utils() -> Any:
    _pyplot()
    from rliable import plot_utils

    return plot_utils


def variant_colors(variants: list[str]) -> dict[str, Any]:
    """One fixed color per variant, the same in every figure of a study.

    :param variants: variant names, in study order
    :return: color of each variant
    """
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    return {variant: palette(index % 10) for index, variant in enumerate(variants)}


def _save(figure: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def _draw_curves(results: StudyResults, curves: pd.DataFrame, path: str | Path, ylabel: str) -> Path | None:
    if curves.empty:
        return None
    plt = _pyplot()
    env_ids = [env_id for env_id in stats.study_env_ids(results) if env_id in set(curves["env_id"])]
    n_columns = min(3, len(env_ids))
    n_rows = -(-len(env_ids) // n_columns)
    figure, axes = plt.subplots(
        n_rows, n_columns, figsize=(4.2 * n_columns, 3.2 * n_rows), squeeze=False, layout="constrained"
    )
    colors = variant_colors(stats.study_variants(results))
    for axis, env_id in zip(axes.flat, env_ids):
        for variant, band in curves[curves["env_id"] == env_id].groupby("variant", sort=False):
            color = colors[variant]
            label = f"{variant} (n={int(band['n_seeds'].iloc[0])})"
            axis.plot(band["step"], band["mean"], color=color, linewidth=1.6, label=label)
            axis.fill_between(band["step"], band["low"], band["high"], color=color, alpha=0.2, linewidth=0)
        axis.set_title(env_id, fontsize="medium")
        axis.set_xlabel("environment steps")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    for axis in list(axes.flat)[len(env_ids) :]:
        axis.set_visible(False)
    return _save(figure, path)


def plot_learning_curves(
    results: StudyResults,
    path: str | Path,
    curves: pd.DataFrame | None = None,
    reps: int = 1000,
    seed: int = 0,
) -> Path | None:
    """Greedy evaluation return against environment steps: one panel per environment, one line per
    variant (mean over finished seeds) with its 95% bootstrap band.

    :param results: the study's results
    :param path: PNG to write
    :param curves: :func:`stats.learning_curves` of the evaluations, if already computed
    :param reps: bootstrap replications (when computing the curves)
    :param seed: seed of the bootstrap (when computing the curves)
    :return: the PNG written, or ``None`` without any finished run's evaluations
    """
    if curves is None:
        curves = stats.learning_curves(results, "evals", reps=reps, seed=seed)
    return _draw_curves(results, curves, path, "greedy evaluation return")


def plot_training_curves(
    results: StudyResults,
    path: str | Path,
    curves: pd.DataFrame | None = None,
    reps: int = 1000,
    seed: int = 0,
) -> Path | None:
    """Training episode return (trailing mean) against environment steps, laid out as
    :func:`plot_learning_curves`.

    :param results: the study's results
    :param path: PNG to write
    :param curves: :func:`stats.learning_curves` of the training episodes, if already computed
    :param reps: bootstrap replications (when computing the curves)
    :param seed: seed of the bootstrap (when computing the curves)
    :return: the PNG written, or ``None`` without any finished run's episodes
    """
    if curves is None:
        curves = stats.learning_curves(results, "episodes", reps=reps, seed=seed)
    return _draw_curves(results, curves, path, "training episode return")


def plot_success_rates(results: StudyResults, curves: pd.DataFrame, path: str | Path) -> Path | None:
    """Greedy success rate against environment steps, laid out as :func:`plot_learning_curves`.

    :param results: the study's results
    :param curves: :func:`stats.success_rate_curves` of the study
    :param path: PNG to write
    :return: the PNG written, or ``None`` when there are no curves
    """
    return _draw_curves(results, curves, path, "greedy success rate")


def plot_intervals(
    results: StudyResults,
    path: str | Path,
    table: pd.DataFrame | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> Path | None:
    """IQM, median, mean and optimality gap of normalized scores with 95% CIs (rliable).

    :param results: the study's results
    :param path: PNG to write
    :param table: :func:`stats.aggregate_table`, if already computed
    :param reps: bootstrap replications (when computing the table)
    :param seed: seed of the bootstrap (when computing the table)
    :return: the PNG written, or ``None`` when no variant has a complete seed
    """
    if table is None:
        table = stats.aggregate_table(results, reps=reps, seed=seed)
    if table.empty:
        return None
    names = [name for name, _ in stats.AGGREGATE_METRICS]
    points, intervals = {}, {}
    for row in table.itertuples(index=False):
        row_values = row._asdict()
        points[row.variant] = np.array([row_values[name] for name in names])
        intervals[row.variant] = np.array(
            [[row_values[f"{name}_low"] for name in names], [row_values[f"{name}_high"] for name in names]]
        )
    row_height = max(0.45, 1.6 / len(table))
    figure_height = row_height * len(table)
    figure, _ = _rliable_plot_utils().plot_interval_estimates(
        points,
        intervals,
        metric_names=[label for _, label in stats.AGGREGATE_METRICS],
        algorithms=list(table["variant"]),
        colors=variant_colors(stats.study_variants(results)),
        subfigure_width=3.0,
        row_height=row_height,
        xlabel="normalized score",
        wspace=0.25,  # room between the subplots for their edge tick labels
        xlabel_y_coordinate=0.11 - 0.6 / figure_height,
    )
    return _save(figure, path)


def plot_performance_profiles(
    results: StudyResults,
    path: str | Path,
    profiles: stats.PerformanceProfiles | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> Path | None:
    """Fraction of runs above each normalized-score threshold, per variant, with 95% bands (rliable).

    :param results: the study's results
    :param path: PNG to write
    :param profiles: :func:`stats.performance_profiles`, if already computed
    :param reps: bootstrap replications (when computing the profiles)
    :param seed: seed of the bootstrap (when computing the profiles)
    :return: the PNG written, or ``None`` when no variant has a complete seed
    """
    if profiles is None:
        profiles = stats.performance_profiles(results, reps=reps, seed=seed)
    if profiles is None:
        return None
    figure, axis = _pyplot().subplots(figsize=(6, 3.6))
    _rliable_plot_utils().plot_performance_profiles(
        profiles.profiles,
        profiles.thresholds,
        performance_profile_cis=profiles.intervals,
        colors=variant_colors(stats.study_variants(results)),
        ax=axis,
        xlabel=r"normalized score $\tau$",
        ylabel=r"fraction of runs with score $> \tau$",
        labelsize="medium",
        ticklabelsize="small",
        legend=True,
        legendsize="small",
    )
    return _save(figure, path)


def plot_improvement(
    results: StudyResults,
    path: str | Path,
    table: pd.DataFrame | None = None,
    reps: int = 2000,
    seed: int = 0,
) -> Path | None:
    """Probability of improvement of each variant over the baseline, with 95% CIs (rliable).

    :param results: the study's results
    :param path: PNG to write
    :param table: :func:`stats.improvement_table`, if already computed
    :param reps: bootstrap replications (when computing the table)
    :param seed: seed of the bootstrap (when computing the table)
    :return: the PNG written, or ``None`` without a baseline or comparable variants
    """
    if table is None:
        table = stats.improvement_table(results, reps=reps, seed=seed)
    if table.empty:
        return None
    pairs = [f"{row.variant}{_PAIR_SEPARATOR}{row.baseline}" for row in table.itertuples(index=False)]
    probabilities = dict(zip(pairs, table["probability"]))
    intervals = {
        pair: np.array([low, high])
        for pair, low, high in zip(pairs, table["probability_low"], table["probability_high"])
    }
    colors = variant_colors(stats.study_variants(results))
    figure, axis = _pyplot().subplots(figsize=(5, 0.6 + 0.45 * len(pairs)))
    _rliable_plot_utils().plot_probability_of_improvement(
        probabilities,
        intervals,
        pair_separator=_PAIR_SEPARATOR,
        ax=axis,
        colors=[colors[variant] for variant in table["variant"]],
        xticks=[0.0, 0.25, 0.5, 0.75, 1.0],
        xlabel="P(variant > baseline)",
        left_ylabel="variant",
        right_ylabel="baseline",
        labelsize="medium",
        ticklabelsize="small",
    )
    axis.set_xlim(0.0, 1.0)
    axis.axvline(0.5, color="grey", linestyle="--", linewidth=0.8)
    return _save(figure, path)


def plot_task_curves(results: StudyResults, path: str | Path) -> Path | None:
    """A task-sequence study: one panel per task, its normalized return over the whole sequence for
    each variant (mean over seeds, the band between the lowest and highest seed), the task ends marked.

    :return: the figure's path, or None before any sequence run finished
    """
    runs = sequence_runs(results) if results.tasks else []
    if not runs:
        return None
    plt = _pyplot()
    colors = variant_colors(results.variants)
    n = len(results.tasks)
    figure, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.2), squeeze=False, sharey=True)
    for j, label in enumerate(results.tasks):
        axis = axes[0, j]
        for variant in results.variants:
            mine = [r for r in runs if r.variant == variant]
            if not mine:
                continue
            steps = sorted(set(mine[0].steps).intersection(*[set(r.steps) for r in mine[1:]]))
            values = np.array([[r.curves[r.steps.index(s), j] for s in steps] for r in mine])
            axis.plot(steps, values.mean(axis=0), color=colors[variant], label=variant)
            axis.fill_between(
                steps, values.min(axis=0), values.max(axis=0), color=colors[variant], alpha=0.15
            )
        for end in runs[0].boundaries[:-1]:
            axis.axvline(end, color="0.6", linestyle="--", linewidth=0.8)
        axis.set_title(f"on {label}")
        axis.set_xlabel("env steps (whole sequence)")
    axes[0, 0].set_ylabel("normalized return")
    axes[0, -1].legend(fontsize=8, loc="best")
    return _save(figure, path)
