"""Statistics over a study's results: normalized scores, aggregates with confidence intervals, curves.

Aggregates follow Agarwal et al. (2021), "Deep RL at the Edge of the Statistical Precipice", through
the ``rliable`` library: interquartile mean (IQM), median, mean and optimality gap of normalized
final scores, each with a 95% stratified-bootstrap confidence interval, and the probability of
improvement over a baseline.

Scores are normalized per environment: ``(score - random) / (reference - random)``. An environment
without a reference score takes the best per-variant mean final score of the study as its reference;
one without a random score takes 0.

Two scores of a run are aggregated: its **final** score (the last evaluation's mean greedy return)
and its **sample efficiency**, the area under its evaluation curve: the mean of its normalized
evaluation scores over all its evaluations (``auc``). Normalization is affine, so that is the
normalized mean of its raw evaluation returns. Two variants with the same final score differ in
``auc`` when one got there sooner.

rliable's bootstrap draws from NumPy's global random generator: every bootstrap here runs with that
generator seeded from ``seed`` (its previous state is restored afterwards), so results are
deterministic given ``seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from rliable import metrics as rliable_metrics
from scipy.stats import trim_mean

from rlsurgery.bench.results import EnvScores, StudyResults

#: Coverage of every confidence interval and band
CONFIDENCE = 0.95
#: Aggregate metrics, as ``(column name, label)``, in the order of the aggregate table
AGGREGATE_METRICS = [
    ("iqm", "IQM"),
    ("median", "Median"),
    ("mean", "Mean"),
    ("optimality_gap", "Optimality gap"),
]
AGGREGATE_COLUMNS = [
    "variant",
    "n_runs",
    *[f"{name}{suffix}" for name, _ in AGGREGATE_METRICS for suffix in ("", "_low", "_high")],
]
IMPROVEMENT_COLUMNS = [
    "variant",
    "baseline",
    "probability",
    "probability_low",
    "probability_high",
    "n_runs",
    "n_runs_baseline",
]
PER_ENV_COLUMNS = [
    "variant",
    "env_id",
    "n_done",
    "n_failed",
    "n_unfinished",
    "mean",
    "median",
    "iqm",
    "std",
    "normalized_mean",
    "auc_mean",
    "mean_wall_s",
]
CURVE_COLUMNS = ["variant", "env_id", "step", "mean", "low", "high", "n_seeds"]
METRIC_SUMMARY_COLUMNS = [
    "variant",
    "env_id",
    "key",
    "n_runs",
    "n_values",
    "mean",
    "max",
    "last",
    "non_finite_runs",
]


def _rliable_library() -> Any:
    """``rliable.library`` (imported on first use: it pulls in arch and statsmodels)."""
    from rliable import library

    return library


@contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed NumPy's global random generator (which rliable draws from), restoring its state on exit.

    :param seed: seed of the generator inside the block
    """
    saved_state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved_state)


def bootstrap_intervals(
    scores: np.ndarray | list[np.ndarray], statistic: Callable[..., Any], reps: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Point estimate and 95% stratified-bootstrap interval of a statistic (rliable).

    :param scores: a (runs x tasks) matrix, or a list of such matrices resampled independently
        (statistics that compare methods)
    :param statistic: function of the matrix (or matrices) returning a scalar or 1D array
    :param reps: bootstrap replications
    :param seed: seed of the resampling
    :return: the point estimate as a 1D array, and the interval as a (2 x len) array of lower
        and upper bounds
    """
    library = _rliable_library()
    with seeded_global_rng(seed):
        points, intervals = library.get_interval_estimates(
            {"scores": scores},
            statistic,
            reps=reps,
            confidence_interval_size=CONFIDENCE,
        )
    point = np.atleast_1d(np.asarray(points["scores"], dtype=float))
    interval = np.asarray(intervals["scores"], dtype=float).reshape(2, -1)
    return point, interval


# ---------------------------------------------------------------------------------------------------
# Normalization
# ---------------------------------------------------------------------------------------------------


def _ordered_union(declared: Sequence[str], seen: pd.Series) -> list[str]:
    names = list(declared)
    names += [name for name in dict.fromkeys(seen.astype(str)) if name not in names]
    return names


def study_variants(results: StudyResults) -> list[str]:
    """Variants in ``results.variants`` order, then any other variant found in the runs.

    :param results: the study's results
    :return: variant names
    """
    return _ordered_union(results.variants, results.runs["variant"])


def study_env_ids(results: StudyResults) -> list[str]:
    """Environments in ``results.envs`` order, then any other environment found in the runs.

    :param results: the study's results
    :return: environment ids
    """
    return _ordered_union(list(results.envs), results.runs["env_id"])


@dataclass(frozen=True)
class EnvNormalization:
    """The scores one environment's returns are normalized with, and where they come from."""

    env_id: str
    random_score: float
    reference_score: float
    random_source: str
    reference_source: str

    @property
    def scale(self) -> float:
        """``reference - random``; 1 when that is 0 or undefined (scores then only shift)."""
        scale = self.reference_score - self.random_score
        return scale if math.isfinite(scale) and scale != 0 else 1.0

    def normalize(self, scores: np.ndarray | pd.Series | float) -> Any:
        """Normalized scores: ``(score - random) / (reference - random)``.

        :param scores: raw returns
        :return: normalized returns, of the same type
        """
        return (scores - self.random_score) / self.scale

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (undefined scores as ``None``)."""
        return {
            "env_id": self.env_id,
            "random_score": _finite_or_none(self.random_score),
            "reference_score": _finite_or_none(self.reference_score),
            "random_source": self.random_source,
            "reference_source": self.reference_source,
        }


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


#: the scores of a run that are aggregated: name -> column of the finished runs' table
SCORES = {"final": "final_score", "auc": "auc_score"}


def run_auc(results: StudyResults) -> pd.Series:
    """Each run's area under its evaluation curve in raw returns: the mean of its evaluations'
    mean returns (NaN for a run without evaluations), indexed by ``run_id``.

    :param results: the study's results
    :return: the raw AUC per run
    """
    evals = results.evals
    if evals is None or evals.empty:
        return pd.Series(dtype=float)
    returns = pd.to_numeric(evals["mean_return"], errors="coerce")
    return returns.groupby(evals["run_id"]).mean()


def _finished_runs(results: StudyResults) -> pd.DataFrame:
    done = results.done
    auc = run_auc(results)
    return done.assign(
        final_score=pd.to_numeric(done["final_score"], errors="coerce"),
        auc_score=done["run_id"].map(auc).astype(float),
    )


def _check_score(score: str) -> str:
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
    return SCORES[score]


def _study_reference(results: StudyResults, env_id: str) -> tuple[float, str]:
    done = _finished_runs(results)
    done = done[done["env_id"] == env_id]
    if done.empty:
        return math.nan, "no finished run yet"
    variant_means = done.groupby("variant")["final_score"].mean()
    best_variant = str(variant_means.idxmax())
    return float(variant_means.max()), f"best variant mean in this study ({best_variant})"


def env_normalization(results: StudyResults, env_id: str) -> EnvNormalization:
    """How one environment's scores are normalized.

    :param results: the study's results
    :param env_id: the environment
    :return: random and reference scores with their sources
    """
    given = results.envs.get(env_id, EnvScores(env_id))
    if given.random_score is None:
        random_score, random_source = 0.0, "none given: 0"
    else:
        random_score, random_source = float(given.random_score), "given"
    if given.reference_score is None:
        reference_score, reference_source = _study_reference(results, env_id)
    else:
        reference_score, reference_source = float(given.reference_score), given.reference_source or "given"
    return EnvNormalization(env_id, random_score, reference_score, random_source, reference_source)


def env_normalizations(results: StudyResults) -> dict[str, EnvNormalization]:
    """How every environment of the study is normalized.

    :param results: the study's results
    :return: one :class:`EnvNormalization` per environment, in study order
    """
    return {env_id: env_normalization(results, env_id) for env_id in study_env_ids(results)}


def complete_seed_scores(results: StudyResults, variant: str, score: str = "final") -> pd.DataFrame:
    """Final scores (or AUCs) of the seeds of a variant that finished on every environment of the study.

    A seed with a failed, pending or missing run on any environment is left out entirely, so that
    every row of the aggregate matrices is one full run of the suite. Should a seed have several
    finished runs on one environment, the last one counts.

    :param results: the study's results
    :param variant: the variant
    :param score: ``"final"`` or ``"auc"`` (a run without evaluations has no AUC: its seed is left out)
    :return: raw scores, one row per complete seed (sorted), one column per environment
    """
    column = _check_score(score)
    env_ids = study_env_ids(results)
    done = _finished_runs(results)
    done = done[done["variant"] == variant]
    scores = done.pivot_table(index="seed", columns="env_id", values=column, aggfunc="last")
    scores = scores.reindex(columns=env_ids).dropna(axis="index", how="any")
    return scores.sort_index()


def normalized_scores(results: StudyResults, score: str = "final") -> dict[str, np.ndarray]:
    """Normalized final scores (or AUCs) of each variant, the input of the aggregate statistics.

    Only seeds that finished (status ``done``) on every environment count (see
    :func:`complete_seed_scores`); variants without any such seed are left out.

    :param results: the study's results
    :param score: ``"final"`` or ``"auc"``
    :return: per variant (in study order) a (n_complete_seeds x n_envs) matrix, environments in
        :func:`study_env_ids` order
    """
    normalizations = env_normalizations(results)
    matrices = {}
    for variant in study_variants(results):
        scores = complete_seed_scores(results, variant, score)
        if scores.empty:
            continue
        columns = [normalizations[env_id].normalize(scores[env_id]) for env_id in scores.columns]
        matrices[variant] = np.column_stack(columns).astype(float)
    return matrices


# ---------------------------------------------------------------------------------------------------
# Aggregates
# ---------------------------------------------------------------------------------------------------


def _aggregate_metrics(scores: np.ndarray) -> np.ndarray:
    return np.array(
        [
            rliable_metrics.aggregate_iqm(scores),
            rliable_metrics.aggregate_median(scores),
            rliable_metrics.aggregate_mean(scores),
            rliable_metrics.aggregate_optimality_gap(scores),
        ]
    )


def aggregate_table(
    results: StudyResults, reps: int = 2000, seed: int = 0, score: str = "final"
) -> pd.DataFrame:
    """IQM, median, mean and optimality gap of each variant's normalized scores, with 95% CIs.

    :param results: the study's results
    :param reps: bootstrap replications
    :param seed: seed of each variant's bootstrap (adding a variant leaves the others' CIs as they were)
    :param score: ``"final"`` (final scores) or ``"auc"`` (areas under the evaluation curves)
    :return: one row per variant with complete seeds: ``variant, n_runs`` (complete seeds) and,
        for each metric (``iqm, median, mean, optimality_gap``), its value and ``_low`` / ``_high``
        bounds
    """
    rows = []
    for variant, scores in normalized_scores(results, score).items():
        point, interval = bootstrap_intervals(scores, _aggregate_metrics, reps, seed)
        row: dict[str, Any] = {"variant": variant, "n_runs": scores.shape[0]}
        for index, (name, _) in enumerate(AGGREGATE_METRICS):
            row[name] = point[index]
            row[f"{name}_low"], row[f"{name}_high"] = interval[:, index]
        rows.append(row)
    return pd.DataFrame(rows, columns=AGGREGATE_COLUMNS)


def improvement_table(
    results: StudyResults, reps: int = 2000, seed: int = 0, score: str = "final"
) -> pd.DataFrame:
    """Probability of improvement of each variant over the study's baseline, with 95% CIs.

    ``P(X > Y)``: the probability that a run of variant X scores higher than a run of the baseline
    Y on an environment, averaged over environments (rliable; runs resampled independently).

    :param results: the study's results
    :param reps: bootstrap replications
    :param seed: seed of the bootstrap
    :param score: ``"final"`` or ``"auc"``
    :return: one row per variant other than the baseline: ``variant, baseline, probability,
        probability_low, probability_high, n_runs, n_runs_baseline``; empty without a baseline
        or when the baseline has no complete seed
    """
    matrices = normalized_scores(results, score)
    baseline = results.baseline
    if baseline is None or baseline not in matrices:
        return pd.DataFrame(columns=IMPROVEMENT_COLUMNS)
    rows = []
    for variant, scores in matrices.items():
        if variant == baseline:
            continue
        pair = [scores, matrices[baseline]]
        point, interval = bootstrap_intervals(pair, rliable_metrics.probability_of_improvement, reps, seed)
        rows.append(
            {
                "variant": variant,
                "baseline": baseline,
                "probability": point[0],
                "probability_low": interval[0, 0],
                "probability_high": interval[1, 0],
                "n_runs": scores.shape[0],
                "n_runs_baseline": matrices[baseline].shape[0],
            }
        )
    return pd.DataFrame(rows, columns=IMPROVEMENT_COLUMNS)


@dataclass
class PerformanceProfiles:
    """Fraction of runs whose normalized score exceeds each threshold, per variant, with 95% bands."""

    thresholds: np.ndarray
    profiles: dict[str, np.ndarray]
    intervals: dict[str, np.ndarray]


def performance_profiles(
    results: StudyResults, reps: int = 2000, seed: int = 0, n_thresholds: int = 81
) -> PerformanceProfiles | None:
    """Run-score distributions (performance profiles) of the variants, with 95% bands (rliable).

    :param results: the study's results
    :param reps: bootstrap replications
    :param seed: seed of the bootstrap
    :param n_thresholds: number of thresholds, evenly spaced from ``min(0, lowest score)`` to
        ``max(1, highest score)``
    :return: the profiles, or ``None`` when no variant has a complete seed
    """
    matrices = normalized_scores(results)
    if not matrices:
        return None
    all_scores = np.concatenate([scores.ravel() for scores in matrices.values()])
    thresholds = np.linspace(min(0.0, all_scores.min()), max(1.0, all_scores.max()), n_thresholds)
    library = _rliable_library()
    with seeded_global_rng(seed):
        profiles, intervals = library.create_performance_profile(
            matrices, thresholds, reps=reps, confidence_interval_size=CONFIDENCE
        )
    return PerformanceProfiles(thresholds, profiles, intervals)


# ---------------------------------------------------------------------------------------------------
# Per environment
# ---------------------------------------------------------------------------------------------------


def _score_summary(scores: pd.Series) -> dict[str, float]:
    if scores.empty:
        return dict.fromkeys(("mean", "median", "iqm", "std"), math.nan)
    return {
        "mean": float(scores.mean()),
        "median": float(scores.median()),
        "iqm": float(trim_mean(scores.to_numpy(dtype=float), 0.25)),
        "std": float(scores.std(ddof=1)) if len(scores) > 1 else math.nan,
    }


def per_env_table(results: StudyResults) -> pd.DataFrame:
    """Final scores of each variant on each environment, over all its finished runs.

    :param results: the study's results
    :return: one row per (variant, environment) pair with at least one run: ``n_done, n_failed,
        n_unfinished`` (pending or running), ``mean, median, iqm`` (25% trimmed mean) and ``std``
        (sample, undefined for one run) of the final score, ``normalized_mean``, ``auc_mean`` (the
        mean raw AUC, :func:`run_auc`) and ``mean_wall_s`` of the finished runs
    """
    normalizations = env_normalizations(results)
    aucs = run_auc(results)
    rows = []
    for variant in study_variants(results):
        for env_id in study_env_ids(results):
            runs = results.runs[(results.runs["variant"] == variant) & (results.runs["env_id"] == env_id)]
            if runs.empty:
                continue
            done = runs[runs["status"] == "done"]
            summary = _score_summary(done["final_score"].astype(float))
            auc = done["run_id"].map(aucs).astype(float)
            rows.append(
                {
                    "variant": variant,
                    "env_id": env_id,
                    "n_done": len(done),
                    "n_failed": int((runs["status"] == "failed").sum()),
                    "n_unfinished": int(runs["status"].isin(["pending", "running"]).sum()),
                    **summary,
                    "normalized_mean": normalizations[env_id].normalize(summary["mean"]),
                    "auc_mean": float(auc.mean()) if auc.notna().any() else math.nan,
                    "mean_wall_s": float(done["wall_s"].mean()) if not done.empty else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=PER_ENV_COLUMNS)


def metrics_table(results: StudyResults) -> pd.DataFrame:
    """The logger values a study kept (its ``metrics``), summarised per variant, env and key.

    Each finished run's values of a key are reduced to their mean and maximum (over its finite
    values) and its last value; the table gives the median of each over the runs (seeds), so one
    odd seed does not dominate. Non-finite values (a NaN loss after a fault) are counted, not
    hidden: ``non_finite_runs`` is the number of runs with a NaN or infinite value of the key, and
    a run's ``last`` is its last value as logged, NaN included (the median over runs skips NaN).

    :param results: the study's results
    :return: one row per (variant, environment, key): ``n_runs`` (runs with that key),
        ``n_values`` (median values per run), ``mean``, ``max``, ``last`` (medians over runs),
        ``non_finite_runs``
    """
    values = results.metrics
    if values is None or values.empty:
        return pd.DataFrame(columns=METRIC_SUMMARY_COLUMNS)
    per_run = (
        values.groupby(["variant", "env_id", "key", "run_id"], sort=False)["value"]
        .agg(
            n_values="size",
            mean=lambda v: v[np.isfinite(v)].mean(),
            max=lambda v: v[np.isfinite(v)].max(),
            last=lambda v: v.iloc[-1],  # not groupby's "last", which skips NaN
            non_finite=lambda v: bool((~np.isfinite(v.to_numpy(dtype=float))).any()),
        )
        .reset_index()
    )
    order = {v: i for i, v in enumerate(study_variants(results))}
    env_order = {e: i for i, e in enumerate(study_env_ids(results))}
    rows = []
    for (variant, env_id, key), runs in per_run.groupby(["variant", "env_id", "key"], sort=False):
        rows.append(
            {
                "variant": variant,
                "env_id": env_id,
                "key": key,
                "n_runs": len(runs),
                "n_values": float(runs["n_values"].median()),
                "mean": median_or_nan(runs["mean"]),
                "max": median_or_nan(runs["max"]),
                "last": median_or_nan(runs["last"]),
                "non_finite_runs": int(runs["non_finite"].sum()),
            }
        )
    rows.sort(key=lambda r: (order.get(r["variant"], len(order)), env_order.get(r["env_id"], 0), r["key"]))
    return pd.DataFrame(rows, columns=METRIC_SUMMARY_COLUMNS)


def median_or_nan(values: pd.Series) -> float:
    """The median of the non-NaN values; NaN, without numpy's empty-slice warning, when there are none."""
    present = values.dropna()
    return float(present.median()) if not present.empty else math.nan


# ---------------------------------------------------------------------------------------------------
# Curves
# ---------------------------------------------------------------------------------------------------


def align_curves(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], max_points: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Put the curves of several seeds on common steps.

    The common steps are those of the curve with the fewest points, within the step range every
    curve covers (thinned to ``max_points``); each curve is linearly interpolated there, which
    leaves curves evaluated at those very steps unchanged.

    :param curves: per seed, ``(steps, values)``, steps increasing
    :param max_points: most steps kept
    :return: the common steps, and a (n_seeds x n_steps) matrix of values
    """
    if not curves:
        return np.empty(0), np.empty((0, 0))
    first_step = max(float(steps[0]) for steps, _ in curves)
    last_step = min(float(steps[-1]) for steps, _ in curves)
    sparsest_steps = min((np.asarray(steps, dtype=float) for steps, _ in curves), key=len)
    grid = sparsest_steps[(sparsest_steps >= first_step) & (sparsest_steps <= last_step)]
    if len(grid) > max_points:
        grid = grid[np.linspace(0, len(grid) - 1, max_points).round().astype(int)]
    matrix = np.vstack([np.interp(grid, steps, values) for steps, values in curves])
    return grid, matrix


def curve_band(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], reps: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Mean over seeds of aligned curves, with a pointwise 95% bootstrap band.

    Each step is a stratum of rliable's stratified bootstrap: seeds are resampled at each step.

    :param curves: per seed, ``(steps, values)``, steps increasing (see :func:`align_curves`)
    :param reps: bootstrap replications
    :param seed: seed of the bootstrap
    :return: ``step, mean, low, high, n_seeds``, one row per common step
    """
    steps, matrix = align_curves(curves)
    if matrix.size == 0:
        return pd.DataFrame(columns=["step", "mean", "low", "high", "n_seeds"])
    mean, band = bootstrap_intervals(matrix, lambda values: np.mean(values, axis=0), reps, seed)
    return pd.DataFrame(
        {"step": steps, "mean": mean, "low": band[0], "high": band[1], "n_seeds": matrix.shape[0]}
    )


def _smoothed(values: np.ndarray, window: int) -> np.ndarray:
    return pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()


def learning_curves(
    results: StudyResults, source: str = "evals", reps: int = 1000, seed: int = 0, window: int = 20
) -> pd.DataFrame:
    """Mean learning curve of each variant on each environment, over its finished runs, with bands.

    :param results: the study's results
    :param source: ``"evals"`` (greedy evaluation returns) or ``"episodes"`` (training episode
        returns, smoothed by a trailing mean over ``window`` episodes first)
    :param reps: bootstrap replications
    :param seed: seed of the bootstrap
    :param window: episodes in the trailing mean of training returns
    :return: ``variant, env_id, step, mean, low, high, n_seeds``
    """
    table, value_column = {
        "evals": (results.evals, "mean_return"),
        "episodes": (results.episodes, "episode_return"),
    }[source]
    finished = table[table["run_id"].isin(results.done["run_id"])]
    bands = []
    for variant in study_variants(results):
        for env_id in study_env_ids(results):
            subset = finished[(finished["variant"] == variant) & (finished["env_id"] == env_id)]
            curves = []
            for _, run in subset.groupby("run_id", sort=False):
                run = run.sort_values("step")
                values = run[value_column].to_numpy(dtype=float)
                if source == "episodes":
                    values = _smoothed(values, window)
                curves.append((run["step"].to_numpy(dtype=float), values))
            band = curve_band(curves, reps=reps, seed=seed)
            if not band.empty:
                bands.append(band.assign(variant=variant, env_id=env_id))
    if not bands:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(bands, ignore_index=True)[CURVE_COLUMNS]


def success_table(results: StudyResults, thresholds: dict[str, float]) -> pd.DataFrame:
    """How often and how soon each variant succeeds, per environment.

    A training episode *succeeds* when its (extrinsic) return exceeds the environment's
    threshold, e.g. 0.5 on DeepSea (the treasure) or −200 on MountainCar (the flag before the
    time limit); a run *solves* the task when its final greedy evaluation does.

    :param results: the study's results
    :param thresholds: environment label -> success threshold (envs not listed are skipped)
    :return: one row per (variant, env): ``seeds`` finished, ``found`` (seeds with a successful
        training episode), ``solved`` (seeds whose final score exceeds the threshold),
        ``median_first_success`` (median over the seeds that found it of the env step of the
        first successful episode; NaN when none did) and ``first_success_steps`` (per seed,
        in seed order; None where never)
    """
    done = _finished_runs(results)
    rows = []
    for variant in study_variants(results):
        for env_id in study_env_ids(results):
            if env_id not in thresholds:
                continue
            threshold = thresholds[env_id]
            runs = done[(done["variant"] == variant) & (done["env_id"] == env_id)].sort_values("seed")
            firsts: list[int | None] = []
            for run_id in runs["run_id"]:
                episodes = results.episodes[results.episodes["run_id"] == run_id].sort_values("step")
                hits = episodes[episodes["episode_return"] > threshold]
                firsts.append(int(hits["step"].iloc[0]) if len(hits) else None)
            found = [f for f in firsts if f is not None]
            rows.append(
                {
                    "variant": variant,
                    "env": env_id,
                    "seeds": len(runs),
                    "found": len(found),
                    "solved": int((runs["final_score"] > threshold).sum()),
                    "median_first_success": float(np.median(found)) if found else math.nan,
                    "first_success_steps": firsts,
                }
            )
    return pd.DataFrame(
        rows,
        columns=["variant", "env", "seeds", "found", "solved", "median_first_success", "first_success_steps"],
    )


def success_rates(eval_returns: pd.DataFrame, thresholds: dict[str, float]) -> pd.DataFrame:
    """Success rate of each greedy evaluation: the fraction of its episodes above the threshold.

    For goal tasks whose failed episodes all return the same value (BitFlip with n bits: −n),
    this is the success rate the HER paper plots over training.

    :param eval_returns: one row per evaluation episode
        (:meth:`~rlsurgery.bench.store.ResultStore.eval_returns`)
    :param thresholds: environment label -> success threshold (envs not listed are skipped)
    :return: one row per evaluation: ``variant, env_id, seed, step, success_rate, episodes``
    """
    columns = ["variant", "env_id", "seed", "step", "success_rate", "episodes"]
    rows = eval_returns[eval_returns["env_id"].isin(list(thresholds))]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    success = rows["episode_return"] > rows["env_id"].map(thresholds)
    grouped = rows.assign(success=success).groupby(["variant", "env_id", "seed", "step"], sort=False)
    table = grouped["success"].agg(success_rate="mean", episodes="size").reset_index()
    return table[columns]


def success_rate_curves(
    results: StudyResults, rates: pd.DataFrame, reps: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Mean success rate over seeds against environment steps, with 95% bootstrap bands.

    :param results: the study's results (for the order of variants and environments)
    :param rates: :func:`success_rates` of the study
    :param reps: bootstrap replications
    :param seed: seed of the bootstrap
    :return: ``variant, env_id, step, mean, low, high, n_seeds`` (as :func:`learning_curves`)
    """
    bands = []
    for variant in study_variants(results):
        for env_id in study_env_ids(results):
            subset = rates[(rates["variant"] == variant) & (rates["env_id"] == env_id)]
            curves = [
                (run["step"].to_numpy(dtype=float), run["success_rate"].to_numpy(dtype=float))
                for _, run in subset.sort_values("step").groupby("seed", sort=True)
            ]
            band = curve_band(curves, reps=reps, seed=seed)
            if not band.empty:
                bands.append(band.assign(variant=variant, env_id=env_id))
    if not bands:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(bands, ignore_index=True)[CURVE_COLUMNS]
