"""Statistics over study results, checked against answers known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from rliable import metrics

from rlsurgery.bench import stats
from rlsurgery.bench.results import EnvScores
from tests.bench.synthetic import FAILED, PENDING, build_study, two_variant_study

REPS = 200


def one_env_study(scores_by_variant: dict[str, list], baseline: str | None = None):
    return build_study(
        {variant: {"Env": list(scores)} for variant, scores in scores_by_variant.items()}, baseline=baseline
    )


# ------------------------------------------------------------------------------------------------ IQM


def test_iqm_of_one_to_eight():
    scores = np.arange(1.0, 9.0).reshape(8, 1)
    # 25% trimmed on each side: mean of 3, 4, 5, 6
    assert metrics.aggregate_iqm(scores) == pytest.approx(4.5)
    table = stats.aggregate_table(one_env_study({"v": range(1, 9)}), reps=REPS)
    assert table.loc[0, "iqm"] == pytest.approx(4.5)
    assert table.loc[0, "median"] == table.loc[0, "mean"] == pytest.approx(4.5)


def test_rliable_iqm_is_the_interquartile_mean():
    scores = np.random.default_rng(3).normal(size=(12, 4))
    ordered = np.sort(scores.ravel())
    quarter = len(ordered) // 4
    by_hand = ordered[quarter:-quarter].mean()
    assert metrics.aggregate_iqm(scores) == pytest.approx(by_hand)


# ----------------------------------------------------------------------------------------- intervals


def test_ci_of_identical_scores_has_zero_width():
    table = stats.aggregate_table(one_env_study({"v": [0.7] * 6}), reps=REPS)
    for name, _ in stats.AGGREGATE_METRICS:
        assert table.loc[0, f"{name}_low"] == pytest.approx(table.loc[0, f"{name}_high"])
    assert table.loc[0, "iqm_low"] == pytest.approx(0.7)
    assert table.loc[0, "optimality_gap"] == pytest.approx(0.3)


def test_ci_contains_true_value_and_narrows_with_more_runs():
    rng = np.random.default_rng(1)
    widths = {}
    for n_runs in (5, 80):
        study = one_env_study({"v": rng.normal(0.5, 0.1, n_runs)})
        row = stats.aggregate_table(study, reps=1000).iloc[0]
        assert row["mean_low"] <= 0.5 <= row["mean_high"]
        assert row["iqm_low"] <= 0.5 <= row["iqm_high"]
        assert row["mean_low"] <= row["mean"] <= row["mean_high"]
        widths[n_runs] = row["mean_high"] - row["mean_low"]
    assert widths[80] < widths[5] / 2


def test_bootstrap_is_deterministic_and_leaves_global_rng_alone():
    study = two_variant_study()
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    first = stats.aggregate_table(study, reps=REPS, seed=7)
    assert np.random.rand() == expected_next
    pd.testing.assert_frame_equal(first, stats.aggregate_table(study, reps=REPS, seed=7))
    other_seed = stats.aggregate_table(study, reps=REPS, seed=8)
    assert not np.allclose(first["iqm_low"], other_seed["iqm_low"])


def test_one_seed_gives_degenerate_intervals():
    row = stats.aggregate_table(one_env_study({"v": [0.4]}), reps=REPS).iloc[0]
    assert row["n_runs"] == 1
    assert row["iqm_low"] == row["iqm"] == row["iqm_high"] == pytest.approx(0.4)


# ------------------------------------------------------------------------------ probability of improvement


def test_probability_of_improvement_is_one_when_always_better():
    study = one_env_study({"base": [0.1, 0.2, 0.3, 0.4], "better": [0.5, 0.6, 0.7, 0.8]}, baseline="base")
    table = stats.improvement_table(study, reps=REPS)
    assert list(table["variant"]) == ["better"]
    row = table.iloc[0]
    assert row["baseline"] == "base"
    assert row["probability"] == row["probability_low"] == row["probability_high"] == pytest.approx(1.0)


def test_probability_of_improvement_is_one_half_for_identical_distributions():
    same = [0.1, 0.5, 0.3, 0.9]
    study = one_env_study({"base": same, "copy": same}, baseline="base")
    assert stats.improvement_table(study, reps=REPS).loc[0, "probability"] == pytest.approx(0.5)

    rng = np.random.default_rng(2)
    study = one_env_study({"base": rng.normal(0, 1, 60), "twin": rng.normal(0, 1, 60)}, baseline="base")
    row = stats.improvement_table(study, reps=REPS).iloc[0]
    assert row["probability"] == pytest.approx(0.5, abs=0.12)
    assert row["probability_low"] < 0.5 < row["probability_high"]


def test_no_improvement_table_without_baseline():
    assert stats.improvement_table(one_env_study({"a": [1.0], "b": [2.0]}), reps=REPS).empty


# ---------------------------------------------------------------------------------------- normalization


def test_normalization_arithmetic():
    study = build_study(
        {"v": {"Env": [60.0, 110.0, 10.0]}},
        envs={"Env": EnvScores("Env", random_score=10.0, reference_score=110.0, reference_source="paper")},
    )
    np.testing.assert_allclose(stats.normalized_scores(study)["v"], [[0.5], [1.0], [0.0]])
    norm = stats.env_normalization(study, "Env")
    assert (norm.random_source, norm.reference_source) == ("given", "paper")


def test_reference_none_falls_back_to_best_variant_mean():
    study = build_study(
        {"weak": {"Env": [20.0, 40.0]}, "strong": {"Env": [70.0, 90.0]}},
        envs={"Env": EnvScores("Env", random_score=None, reference_score=None)},
    )
    norm = stats.env_normalization(study, "Env")
    assert norm.random_score == 0.0 and norm.reference_score == pytest.approx(80.0)
    assert "strong" in norm.reference_source
    matrices = stats.normalized_scores(study)
    np.testing.assert_allclose(matrices["weak"], [[0.25], [0.5]])
    assert matrices["strong"].mean() == pytest.approx(1.0)


def test_env_missing_from_envs_is_normalized_with_defaults():
    study = build_study(
        {"v": {"Known": [1.0], "Unknown": [4.0]}}, envs={"Known": EnvScores("Known", 0.0, 2.0)}
    )
    assert stats.study_env_ids(study) == ["Known", "Unknown"]
    np.testing.assert_allclose(stats.normalized_scores(study)["v"], [[0.5, 1.0]])


def test_only_seeds_finished_on_every_env_count():
    study = build_study(
        {
            "partial": {"A": [0.1, 0.2, 0.3, 0.4], "B": [0.5, FAILED, 0.7, PENDING]},
            "none_complete": {"A": [0.1, FAILED], "B": [FAILED, 0.2]},
            "complete": {"A": [0.3, 0.3], "B": [0.6, 0.6]},
        }
    )
    matrices = stats.normalized_scores(study)
    assert list(matrices) == ["partial", "complete"]
    np.testing.assert_allclose(matrices["partial"], [[0.1, 0.5], [0.3, 0.7]])
    assert list(stats.complete_seed_scores(study, "partial").index) == [0, 2]
    assert list(stats.aggregate_table(study, reps=REPS)["n_runs"]) == [2, 2]


def test_variants_keep_study_order():
    study = build_study({"zeta": {"E": [1.0]}, "alpha": {"E": [2.0]}, "mid": {"E": [3.0]}})
    assert list(stats.normalized_scores(study)) == ["zeta", "alpha", "mid"]
    assert list(stats.aggregate_table(study, reps=REPS)["variant"]) == ["zeta", "alpha", "mid"]


# ------------------------------------------------------------------------------------------- per env


def test_per_env_table():
    study = build_study({"v": {"A": [1.0, 2.0, 3.0, 10.0, FAILED, PENDING], "B": [5.0]}})
    table = stats.per_env_table(study).set_index("env_id")
    a = table.loc["A"]
    assert (a["n_done"], a["n_failed"], a["n_unfinished"]) == (4, 1, 1)
    assert a["mean"] == pytest.approx(4.0)
    assert a["median"] == pytest.approx(2.5)
    assert a["iqm"] == pytest.approx(2.5)  # mean of 2 and 3
    assert a["std"] == pytest.approx(np.std([1, 2, 3, 10], ddof=1))
    assert a["mean_wall_s"] == pytest.approx(np.mean([10.0, 11.0, 12.0, 13.0]))
    assert a["normalized_mean"] == pytest.approx(4.0)
    assert np.isnan(table.loc["B", "std"])  # one seed


def test_empty_study_gives_empty_tables():
    study = build_study({"v": {"A": [PENDING, PENDING]}})
    assert stats.normalized_scores(study) == {}
    assert stats.aggregate_table(study, reps=REPS).empty
    assert list(stats.aggregate_table(study, reps=REPS).columns) == stats.AGGREGATE_COLUMNS
    assert stats.performance_profiles(study, reps=REPS) is None
    assert stats.learning_curves(study, reps=REPS).empty
    assert stats.per_env_table(study).loc[0, "n_unfinished"] == 2


# -------------------------------------------------------------------------------------------- curves


def test_align_curves_on_common_steps():
    curves = [
        (np.array([20.0, 120.0, 220.0, 320.0]), np.array([0.0, 1.0, 2.0, 3.0])),
        (np.array([10.0, 110.0, 210.0]), np.array([0.0, 10.0, 20.0])),
    ]
    # the sparsest curve's steps inside the range both cover, [20, 210]
    steps, matrix = stats.align_curves(curves)
    np.testing.assert_allclose(steps, [110.0, 210.0])
    np.testing.assert_allclose(matrix, [[0.9, 1.9], [10.0, 20.0]])


def test_curve_band_of_identical_curves_has_zero_width():
    steps = np.array([100.0, 200.0, 300.0])
    band = stats.curve_band([(steps, np.array([1.0, 2.0, 3.0]))] * 4, reps=REPS)
    np.testing.assert_allclose(band["mean"], [1.0, 2.0, 3.0])
    np.testing.assert_allclose(band["low"], band["high"])
    assert (band["n_seeds"] == 4).all()


def test_curve_band_contains_the_mean():
    rng = np.random.default_rng(4)
    steps = np.arange(1, 11) * 100.0
    band = stats.curve_band([(steps, rng.normal(size=10)) for _ in range(6)], reps=REPS)
    assert ((band["low"] <= band["mean"]) & (band["mean"] <= band["high"])).all()
    assert (band["high"] > band["low"]).all()


def test_learning_curves_use_finished_runs_of_each_variant_and_env():
    curves = stats.learning_curves(two_variant_study(), "evals", reps=REPS)
    counts = curves.groupby(["variant", "env_id"])["n_seeds"].first().to_dict()
    assert counts == {("base", "EnvA"): 3, ("base", "EnvB"): 3, ("better", "EnvA"): 3, ("better", "EnvB"): 2}
    training = stats.learning_curves(two_variant_study(), "episodes", reps=REPS)
    assert set(training["variant"]) == {"base", "better"}


def test_performance_profiles_decrease_to_zero():
    profiles = stats.performance_profiles(two_variant_study(), reps=REPS, n_thresholds=21)
    assert profiles is not None and len(profiles.thresholds) == 21
    for variant in ("base", "better"):
        assert profiles.profiles[variant][-1] == 0.0
        assert np.all(np.diff(profiles.profiles[variant]) <= 0)
        assert profiles.intervals[variant].shape == (2, 21)


def test_success_table_counts_found_solved_and_first_success_steps():
    from rlsurgery.bench.stats import success_table

    # build_study: training episode k of seed s returns final·k/29 + 0.1·s at step 35(k+1) + s
    results = build_study({"a": {"Env": [1.0, 0.2, 0.6]}, "b": {"Env": [0.0, 0.0]}})
    table = success_table(results, {"Env": 0.5, "Other": 0.0}).set_index("variant")
    a, b = table.loc["a"], table.loc["b"]
    # seed 0: k/29 > 0.5 first at k = 15 -> step 35·16 = 560; seed 1: 0.2k/29 + 0.1 > 0.5 needs
    # k > 58, beyond its 30 episodes; seed 2: 0.6k/29 + 0.2 > 0.5 first at k = 15 -> step 562
    assert a["first_success_steps"] == [560, None, 562]
    assert (a["seeds"], a["found"], a["solved"]) == (3, 2, 2)  # final scores 1.0 and 0.6 exceed 0.5
    assert a["median_first_success"] == 561
    assert (b["found"], b["solved"]) == (0, 0) and np.isnan(b["median_first_success"])
