"""The Ray backend on a local Ray with 2 CPUs: the same runs, the same store."""

from __future__ import annotations

import pytest

from rlsurgery.bench.runner import run_study
from rlsurgery.bench.store import ResultStore
from rlsurgery.bench.study import load_study
from tests.bench.study_helpers import write_tiny_study

ray = pytest.importorskip("ray", reason="the 'ray' extra is not installed")


def test_study_on_a_local_ray_matches_the_store_contract(tmp_path):
    spec = load_study(write_tiny_study(tmp_path, seeds=3, steps=400))
    try:
        folder = run_study(spec, tmp_path / "out", backend="ray", workers=2, progress=False, report=False)
    finally:
        if ray.is_initialized():
            ray.shutdown()
    with ResultStore(folder) as store:
        results = store.results()
        counts = store.status_counts()
    assert counts == {"done": 3}
    assert results.evals.groupby("run_id")["step"].apply(list).tolist() == [[200, 400]] * 3
    assert results.runs["final_score"].notna().all()
