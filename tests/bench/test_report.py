"""The study report: files, embedded figures, tables, and the awkward cases (nothing finished, one seed)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from rlsurgery.bench import report, stats
from rlsurgery.bench.results import EnvScores
from tests.bench.synthetic import FAILED, PENDING, build_study, two_variant_study

REPS = 200
PLOTS = {"aggregate_intervals", "performance_profiles", "improvement", "learning_curves", "training_curves"}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("report")
    return out_dir, report.write_report(two_variant_study(), out_dir, reps=REPS, curve_reps=REPS)


def embedded_images(page: str) -> list[str]:
    return re.findall(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)


def test_files_exist(written):
    out_dir, paths = written
    assert set(paths["plots"]) == PLOTS
    for name in PLOTS:
        assert (out_dir / "plots" / f"{name}.png").stat().st_size > 1000
    for name in ("runs", "per_env", "aggregate", "improvement"):
        assert (out_dir / "tables" / f"{name}.csv").is_file()
    assert paths["report"] == out_dir / "report.html"
    assert (out_dir / "summary.json").is_file()


def test_csv_tables_read_back(written):
    out_dir, _ = written
    runs = pd.read_csv(out_dir / "tables" / "runs.csv")
    assert len(runs) == 12 and (runs["status"] == "failed").sum() == 1
    aggregate = pd.read_csv(out_dir / "tables" / "aggregate.csv")
    assert list(aggregate.columns) == stats.AGGREGATE_COLUMNS
    assert list(aggregate["variant"]) == ["base", "better"]
    assert list(aggregate["n_runs"]) == [3, 2]  # seed 2 of "better" failed on EnvB
    per_env = pd.read_csv(out_dir / "tables" / "per_env.csv")
    assert len(per_env) == 4
    assert per_env.set_index(["variant", "env_id"]).loc[("better", "EnvB"), "n_failed"] == 1
    improvement = pd.read_csv(out_dir / "tables" / "improvement.csv")
    assert list(improvement["variant"]) == ["better"] and improvement.loc[0, "probability"] == 1.0


def test_html_is_self_contained_with_figures_and_tables(written):
    out_dir, _ = written
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    assert len(embedded_images(page)) == len(PLOTS)
    assert 'src="http' not in page and "<script" not in page and "<link" not in page
    for kind in ("aggregate", "per-env", "improvement", "envs", "runs"):
        assert re.search(rf'<table[^>]*class="[^"]*\btable {kind}\b', page), kind
    assert "Study: synthetic" in page and "Synthetic study for tests." in page
    assert "base (baseline)" in page
    assert "best variant mean in this study (better)" in page and "paper" in page
    assert "RuntimeError: better/EnvB/2 diverged" in page  # the failures section


def test_summary_json(written):
    out_dir, _ = written
    summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["study"] == "synthetic" and summary["baseline"] == "base"
    assert summary["variants"] == ["base", "better"]
    envs = {env["env_id"]: env for env in summary["envs"]}
    assert envs["EnvA"]["reference_score"] == 100.0 and envs["EnvA"]["reference_source"] == "paper"
    assert envs["EnvB"]["random_score"] == -200.0 and "better" in envs["EnvB"]["reference_source"]
    assert summary["counts"] == {"runs": 12, "done": 11, "failed": 1, "unfinished": 0}
    assert {row["variant"] for row in summary["tables"]["aggregate"]} == {"base", "better"}
    assert len(summary["tables"]["per_env"]) == 4
    assert summary["files"]["tables"]["improvement"] == "tables/improvement.csv"


def test_summary_text():
    text = report.summary_text(two_variant_study(), reps=REPS)
    lines = text.splitlines()
    assert lines[0].startswith("Study synthetic: 12 runs, 11 done, 1 failed")
    header = lines[1].split()
    assert header[:3] == ["variant", "EnvA", "EnvB"]
    better = next(line for line in lines if line.startswith("better"))
    assert "(3/0)" in better and "(2/1)" in better and " ± " in better and "[" in better
    assert "\x1b" not in text  # plain text, fine in a pipe


def test_report_without_finished_runs(tmp_path):
    study = build_study({"a": {"E": [PENDING, PENDING]}, "b": {"E": [FAILED, PENDING]}}, baseline="a")
    paths = report.write_report(study, tmp_path, reps=REPS)
    assert paths["plots"] == {}
    assert not list((tmp_path / "plots").glob("*.png"))
    assert pd.read_csv(tmp_path / "tables" / "aggregate.csv").empty
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "No finished runs yet" in page and embedded_images(page) == []
    assert "0 done" in report.summary_text(study, reps=REPS)
    json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))


def test_report_with_one_seed_and_one_env(tmp_path):
    study = build_study({"a": {"E": [3.0]}, "b": {"E": [5.0]}}, baseline="a")
    paths = report.write_report(study, tmp_path, reps=REPS, curve_reps=REPS)
    assert set(paths["plots"]) == PLOTS
    row = pd.read_csv(tmp_path / "tables" / "aggregate.csv").iloc[0]
    assert row["iqm_low"] == row["iqm"] == row["iqm_high"] == 3.0
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["tables"]["per_env"][0]["std"] is None  # undefined for one seed, valid JSON
    assert "3.00 (1/0)" in report.summary_text(study, reps=REPS)


def test_rewriting_a_report_removes_stale_files(tmp_path):
    report.write_report(two_variant_study(), tmp_path, reps=REPS, curve_reps=REPS)
    without_baseline = two_variant_study()
    without_baseline.baseline = None
    paths = report.write_report(without_baseline, tmp_path, reps=REPS, curve_reps=REPS)
    assert "improvement" not in paths["plots"] and "improvement" not in paths["tables"]
    assert not (tmp_path / "plots" / "improvement.png").exists()
    assert not (tmp_path / "tables" / "improvement.csv").exists()


def test_error_excerpt_keeps_first_lines_and_the_last():
    error = "\n".join(f"line {index}" for index in range(20))
    excerpt = report.error_excerpt(error, n_lines=3).splitlines()
    assert excerpt == ["line 0", "line 1", "line 2", "… (16 more lines)", "line 19"]
    assert report.error_excerpt(None) == "no error recorded"


def test_env_without_any_scores_is_reported():
    study = build_study({"v": {"E": [1.0]}}, envs={"E": EnvScores("E"), "Other": EnvScores("Other")})
    text = report.summary_text(study, reps=REPS)
    assert "Other" in text
    assert stats.env_normalization(study, "Other").reference_source == "no finished run yet"


def test_report_of_study_without_runs(tmp_path):
    study = build_study({})
    study.envs = {"E": EnvScores("E")}
    paths = report.write_report(study, tmp_path, reps=REPS)
    assert paths["plots"] == {} and (tmp_path / "report.html").is_file()
    assert report.summary_text(study) == "Study synthetic: 0 runs, 0 done, 0 failed, 0 unfinished"
