"""The JSON-lines results file shared by the benchmark scripts under scripts/bench/."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[2] / "scripts" / "bench" / "results_log.py"


def load_results_log():
    spec = importlib.util.spec_from_file_location("results_log", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ResultsLog


def test_records_are_read_back_in_order_and_their_keys_mark_the_work_done(tmp_path):
    ResultsLog = load_results_log()
    log = ResultsLog(tmp_path / "sub" / "results.jsonl", key=("env_id", "seed"))
    assert log.rows() == [] and log.done() == set()
    log.append({"env_id": "CartPole-v1", "seed": 0, "mean_return": 500.0})
    log.append({"env_id": "CartPole-v1", "seed": 1, "mean_return": 21.5})
    # a second reader of the same file (a rerun) sees both records and skips their work
    again = ResultsLog(tmp_path / "sub" / "results.jsonl", key=("env_id", "seed"))
    assert [r["mean_return"] for r in again.rows()] == [500.0, 21.5]
    assert again.done() == {("CartPole-v1", 0), ("CartPole-v1", 1)}


def test_a_record_without_its_key_fields_is_refused_and_nothing_is_written(tmp_path):
    ResultsLog = load_results_log()
    log = ResultsLog(tmp_path / "results.jsonl", key=("env_id", "seed"))
    with pytest.raises(KeyError, match="seed"):
        log.append({"env_id": "CartPole-v1", "mean_return": 1.0})
    assert not log.path.exists()
