"""The SQLite result store: runs registered once, results stored whole, resume bookkeeping."""

from __future__ import annotations

import pytest

from rlsurgery.bench.plots import plot_success_rates
from rlsurgery.bench.stats import normalized_scores, success_rate_curves, success_rates
from rlsurgery.bench.store import ResultStore
from rlsurgery.bench.study import load_study
from rlsurgery.core.errors import StudyError
from tests.bench.study_helpers import write_tiny_study


def _result(run_id: str, score: float = 10.0, status: str = "done") -> dict:
    return {
        "run_id": run_id,
        "status": status,
        "final_score": score,
        "final_std": 1.0,
        "steps": 600,
        "wall_s": 1.5,
        "evals": [
            {"step": 300, "mean_return": 9.0, "std_return": 0.5, "returns": [8.5, 9.5]},
            {"step": 600, "mean_return": score, "std_return": 1.0, "returns": [score - 1, score + 1]},
        ],
        "episodes": [{"step": 20, "return": 20.0, "length": 20}, {"step": 35, "return": 15.0, "length": 15}],
    }


def test_register_save_and_read_back(tmp_path):
    spec = load_study(write_tiny_study(tmp_path, seeds=2))
    runs = spec.runs()
    with ResultStore(tmp_path / "study") as store:
        store.register(spec, runs)
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with ResultStore.open_existing(tmp_path / "study") as again:  # a second connection reads it
            assert again.spec().name == "tiny"
        assert store.status_counts() == {"pending": 2}
        store.mark_running(runs[0].run_id)
        store.save_result(_result(runs[0].run_id, 42.0))
        store.save_result(_result(runs[0].run_id, 43.0))  # stored again: replaced, not duplicated
        assert store.status_counts() == {"done": 1, "pending": 1}
        assert [r.run_id for r in store.todo()] == [runs[1].run_id]
        results = store.results()
    assert results.runs["final_score"].tolist()[0] == 43.0
    assert len(results.evals) == 2 and results.evals["step"].tolist() == [300, 600]
    assert results.episodes["episode_return"].tolist() == [20.0, 15.0]
    assert results.variants == ["dqn"] and results.baseline == "dqn"


def test_registering_again_keeps_results_and_adds_new_runs(tmp_path):
    folder = tmp_path / "study"
    spec = load_study(write_tiny_study(tmp_path, seeds=2))
    with ResultStore(folder) as store:
        store.register(spec, spec.runs())
        store.save_result(_result(spec.runs()[0].run_id))
    bigger = load_study(write_tiny_study(tmp_path, seeds=3))
    with ResultStore(folder) as store:
        store.register(bigger, bigger.runs())
        assert store.status_counts() == {"done": 1, "pending": 2}
        assert store.spec().seeds == [0, 1, 2]


def test_changed_configuration_is_refused(tmp_path):
    folder = tmp_path / "study"
    spec = load_study(write_tiny_study(tmp_path, steps=600))
    with ResultStore(folder) as store:
        store.register(spec, spec.runs())
    changed = load_study(write_tiny_study(tmp_path, steps=800))
    with ResultStore(folder) as store, pytest.raises(StudyError, match="another configuration"):
        store.register(changed, changed.runs())


def test_corrected_scores_keep_stored_runs_and_renormalize(tmp_path):
    """Normalization scores do not identify a run: correcting them re-normalizes the study."""
    import dataclasses
    import hashlib
    import json

    folder = tmp_path / "study"
    spec = load_study(write_tiny_study(tmp_path, seeds=1))
    run = spec.runs()[0]
    with ResultStore(folder) as store:
        store.register(spec, [run])
        store.save_result(_result(run.run_id, score=261.84))
        # a study written before scores left the hash stored the hash over the whole env entry
        legacy = json.dumps({"variant": run.variant, "env": run.env, "seed": run.seed}, sort_keys=True)
        legacy_hash = hashlib.sha256(legacy.encode()).hexdigest()[:16]
        assert legacy_hash != run.config_hash
        store.conn.execute("UPDATE runs SET config_hash = ? WHERE run_id = ?", (legacy_hash, run.run_id))
        store.conn.commit()
    corrected = dataclasses.replace(
        spec, envs=[dataclasses.replace(spec.envs[0], random_score=0.0, reference_score=523.68)]
    )
    with ResultStore(folder) as store:
        store.register(corrected, corrected.runs())
        assert store.status_counts() == {"done": 1}
        stored_hash = store.conn.execute("SELECT config_hash FROM runs").fetchone()[0]
        assert stored_hash == corrected.runs()[0].config_hash == run.config_hash
        results = store.results()
    assert results.envs["CartPole-v1"].reference_score == 523.68
    assert normalized_scores(results)["dqn"][0, 0] == pytest.approx(0.5)


def test_eval_returns_give_success_rates_per_evaluation(tmp_path):
    spec = load_study(write_tiny_study(tmp_path, seeds=2))
    first, second = [r.run_id for r in spec.runs()]
    with ResultStore(tmp_path / "s") as store:
        store.register(spec, spec.runs())
        store.save_result(_result(first))  # evals at 300: [8.5, 9.5]; at 600: [9.0, 11.0]
        store.save_result({**_result(second), "status": "failed"})  # not counted
        episodes = store.eval_returns()
        results = store.results()
    assert list(episodes["episode_return"]) == [8.5, 9.5, 9.0, 11.0]
    assert list(episodes["episode"]) == [0, 1, 0, 1]
    rates = success_rates(episodes, {"CartPole-v1": 9.2})
    assert list(rates["step"]) == [300, 600]
    assert list(rates["success_rate"]) == [0.5, 0.5]
    assert list(rates["episodes"]) == [2, 2]
    assert list(success_rates(episodes, {"CartPole-v1": 8.0})["success_rate"]) == [1.0, 1.0]
    assert success_rates(episodes, {"Other-v0": 0.0}).empty
    curves = success_rate_curves(results, rates, reps=50)
    assert list(curves["step"]) == [300, 600] and list(curves["mean"]) == [0.5, 0.5]
    assert plot_success_rates(results, curves, tmp_path / "success.png").stat().st_size > 0


def test_interrupted_and_failed_runs_are_redone(tmp_path):
    spec = load_study(write_tiny_study(tmp_path, seeds=3))
    ids = [r.run_id for r in spec.runs()]
    with ResultStore(tmp_path / "s") as store:
        store.register(spec, spec.runs())
        store.mark_running(ids[0])  # a killed driver leaves it 'running'
        store.save_result({"run_id": ids[1], "status": "failed", "error": "Traceback ...\nValueError: boom"})
        store.save_result(_result(ids[2]))
        assert [r.run_id for r in store.todo()] == ids[:2]
        store.mark_pending([ids[0]])
        assert store.status_counts() == {"pending": 1, "failed": 1, "done": 1}
        failed = store.results().runs.set_index("run_id").loc[ids[1]]
        assert failed["status"] == "failed" and "boom" in failed["error"]


def test_open_existing_needs_a_store(tmp_path):
    with pytest.raises(StudyError, match="not a study folder"):
        ResultStore.open_existing(tmp_path)
