"""Logger values kept per run (a study's ``metrics``): recorded at each log dump by the worker,
stored with the run, summarised per variant in the report."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from rlsurgery.bench import report, stats
from rlsurgery.bench.results import METRIC_COLUMNS
from rlsurgery.bench.store import ResultStore
from rlsurgery.bench.study import StudySpec, Variant, load_study, select_envs
from rlsurgery.bench.worker import MetricRecorder, execute_run, metric_selected
from tests.bench.study_helpers import write_tiny_study
from tests.bench.synthetic import build_study


def test_keys_and_prefixes_select_logger_values():
    assert metric_selected("train/approx_kl", ["train/approx_kl"])
    assert not metric_selected("train/approx_kl_x", ["train/approx_kl"])
    assert metric_selected("train/loss", ["train/"])
    assert not metric_selected("rollout/ep_rew_mean", ["train/"])
    recorder = MetricRecorder(["train/"])
    recorder.write(
        {
            "train/loss": np.float32(0.5),
            "train/n_updates": 3,
            "train/hist": np.zeros(4),  # not a scalar: skipped
            "train/flag": True,  # a boolean is not a metric either
            "time/fps": 100,
        },
        {},
        step=64,
    )
    assert recorder.records == [
        {"step": 64, "key": "train/loss", "value": 0.5},
        {"step": 64, "key": "train/n_updates", "value": 3.0},
    ]


def test_metrics_table_takes_medians_over_runs():
    results = build_study({"a": {"E": [1.0, 1.0, 1.0]}})
    rows = []
    for seed, values in enumerate([[1.0, 3.0], [2.0, 6.0, 4.0], [10.0, 20.0]]):
        for i, value in enumerate(values):
            rows.append([f"a/E/{seed}", "a", "E", seed, 100 * (i + 1), "train/approx_kl", value])
    results.metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    table = stats.metrics_table(results)
    assert len(table) == 1
    row = table.iloc[0]
    # per run: means 2, 4, 15; maxima 3, 6, 20; last 3, 4, 20; values 2, 3, 2
    assert (row["n_runs"], row["n_values"]) == (3, 2.0)
    assert (row["mean"], row["max"], row["last"]) == (4.0, 6.0, 4.0)
    assert stats.metrics_table(build_study({"a": {"E": [1.0]}})).empty
    assert row["non_finite_runs"] == 0


def test_metrics_table_counts_non_finite_values_instead_of_hiding_them():
    results = build_study({"a": {"E": [1.0, 1.0, 1.0]}})
    runs = [[0.5, float("nan")], [0.25, 0.75], [float("inf"), 2.0]]  # a NaN loss ends seed 0
    rows = [
        [f"a/E/{seed}", "a", "E", seed, 100 * (i + 1), "train/loss", value]
        for seed, values in enumerate(runs)
        for i, value in enumerate(values)
    ]
    results.metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    row = stats.metrics_table(results).iloc[0]
    assert row["non_finite_runs"] == 2
    # per run over finite values: means 0.5, 0.5, 2.0; maxima 0.5, 0.75, 2.0; last NaN, 0.75, 2.0
    assert (row["mean"], row["max"]) == (0.5, 0.75)
    assert row["last"] == pytest.approx(1.375)  # the median of the finite last values


def test_store_keeps_a_nan_metric_and_upgrades_an_older_store(tmp_path):
    import sqlite3

    spec = load_study(write_tiny_study(tmp_path, seeds=1))
    run = spec.runs()[0]
    folder = tmp_path / "study"
    folder.mkdir()
    old_schema = sqlite3.connect(folder / "study.db")  # a store written before NaN was allowed
    old_schema.execute(
        "CREATE TABLE metrics (run_id TEXT NOT NULL, idx INTEGER NOT NULL, step INTEGER NOT NULL, "
        "key TEXT NOT NULL, value REAL NOT NULL, PRIMARY KEY (run_id, idx))"
    )
    old_schema.execute("INSERT INTO metrics VALUES ('kept', 0, 10, 'train/loss', 0.5)")
    old_schema.commit()
    old_schema.close()
    result = {
        "run_id": run.run_id,
        "status": "done",
        "final_score": 1.0,
        "final_std": 0.0,
        "steps": 600,
        "wall_s": 1.0,
        "evals": [{"step": 600, "mean_return": 1.0, "std_return": 0.0, "returns": [1.0]}],
        "metrics": [
            {"step": 100, "key": "train/loss", "value": 0.25},
            {"step": 200, "key": "train/loss", "value": float("nan")},
        ],
    }
    with ResultStore(folder) as store:
        assert store.conn.execute("SELECT value FROM metrics WHERE run_id = 'kept'").fetchall() == [(0.5,)]
        store.register(spec, [run])
        store.save_result(result)
        values = store.results().metrics["value"].tolist()
    assert values[0] == 0.25 and np.isnan(values[1])


def test_store_keeps_metrics_with_their_run(tmp_path):
    spec = load_study(write_tiny_study(tmp_path, seeds=1))
    run = spec.runs()[0]
    result = {
        "run_id": run.run_id,
        "status": "done",
        "final_score": 1.0,
        "final_std": 0.0,
        "steps": 600,
        "wall_s": 1.0,
        "evals": [{"step": 600, "mean_return": 1.0, "std_return": 0.0, "returns": [1.0]}],
        "metrics": [{"step": 100, "key": "train/loss", "value": 0.25}],
    }
    with ResultStore(tmp_path / "study") as store:
        store.register(spec, [run])
        store.save_result({**result, "metrics": [{"step": 50, "key": "train/loss", "value": 9.0}]})
        store.save_result(result)  # stored again: replaced, not added to
        metrics = store.results().metrics
    assert metrics[["step", "key", "value"]].values.tolist() == [[100, "train/loss", 0.25]]
    assert metrics["variant"].tolist() == ["dqn"]


def test_study_metrics_reach_runs_and_the_stored_spec(tmp_path):
    study = write_tiny_study(tmp_path, seeds=1)
    study.write_text(study.read_text() + "metrics: [train/loss, rollout/]\n")
    spec = load_study(study)
    assert spec.metrics == ["train/loss", "rollout/"]
    run = spec.runs()[0]
    assert run.metrics == spec.metrics and run.as_dict()["metrics"] == spec.metrics
    (tmp_path / "plain").mkdir()
    plain = load_study(write_tiny_study(tmp_path / "plain", seeds=1))
    assert plain.runs()[0].config_hash == run.config_hash  # what is logged does not change a run
    assert StudySpec.from_dict(spec.as_dict()).metrics == spec.metrics


@pytest.mark.parametrize("recipe", ["ppo", "dqn"])
def test_a_run_keeps_the_logger_values_it_was_asked_for(recipe):
    hyperparams = (
        {"n_envs": 1, "n_steps": 64, "batch_size": 32, "n_epochs": 2, "policy_kwargs": {"net_arch": [8]}}
        if recipe == "ppo"
        else {
            "learning_starts": 100,
            "train_freq": 20,
            "gradient_steps": 2,
            "batch_size": 16,
            "policy_kwargs": {"net_arch": [8]},
        }
    )
    spec = StudySpec(
        "m",
        [Variant(recipe, recipe, hyperparams=hyperparams)],
        select_envs(None, ["CartPole-v1"], steps=640, eval_freq=640, n_eval_episodes=1),
        [0],
        device="cpu",
        metrics=["train/loss", "train/n_updates"],
    )
    result = execute_run(spec.runs()[0].as_dict())
    assert result["status"] == "done", result.get("error")
    kept = pd.DataFrame(result["metrics"])
    assert set(kept["key"]) == {"train/loss", "train/n_updates"}
    updates = kept[kept["key"] == "train/n_updates"]
    # one value per log dump, in step order, with the update count growing between dumps
    assert updates["step"].is_monotonic_increasing and updates["step"].max() <= 640
    assert updates["value"].is_monotonic_increasing and updates["value"].iloc[-1] > updates["value"].iloc[0]
    assert np.isfinite(kept["value"]).all()


def test_report_shows_training_metrics_only_when_kept(tmp_path):
    results = build_study({"a": {"E": [1.0, 2.0]}, "b": {"E": [2.0, 3.0]}}, baseline="a")
    plain = report.write_report(results, tmp_path, reps=50, curve_reps=50)
    assert "metrics" not in plain["tables"] and "Training metrics" not in plain["report"].read_text()
    results.metrics = pd.DataFrame(
        [[f"{v}/E/{s}", v, "E", s, 10, "train/approx_kl", 0.01 * (s + 1)] for v in "ab" for s in (0, 1)],
        columns=METRIC_COLUMNS,
    )
    written = report.write_report(results, tmp_path, reps=50, curve_reps=50)
    table = pd.read_csv(written["tables"]["metrics"])
    assert table["variant"].tolist() == ["a", "b"] and table["mean"].tolist() == pytest.approx([0.015, 0.015])
    page = written["report"].read_text()
    assert "Training metrics" in page and "train/approx_kl" in page
    report.write_report(build_study({"a": {"E": [1.0]}}), tmp_path, reps=50, curve_reps=50)
    assert not (tmp_path / "tables" / "metrics.csv").exists()  # a stale table is removed


def test_metrics_table_gives_nan_quietly_for_a_key_that_is_never_finite():
    results = build_study({"a": {"E": [1.0, 1.0]}})
    rows = [[f"a/E/{seed}", "a", "E", seed, 100, "train/loss", float("nan")] for seed in range(2)]
    results.metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would fail here
        row = stats.metrics_table(results).iloc[0]
    assert row["non_finite_runs"] == 2
    assert np.isnan(row["mean"]) and np.isnan(row["max"]) and np.isnan(row["last"])
