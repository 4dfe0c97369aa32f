"""Sample efficiency in study reports: the area under the evaluation curve (issue 21).

Synthetic curves with known answers: two variants that end at the same score, one there from its
first evaluation, one rising linearly. Their final aggregates tie; their AUC aggregates must not.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rlsurgery.bench import report, stats
from rlsurgery.bench.results import EVAL_COLUMNS, RUN_COLUMNS, EnvScores, StudyResults

REPS = 200
#: the evaluation curves of every seed, per variant (4 evaluations, same final score 1.0)
CURVES = {"slow": [0.25, 0.5, 0.75, 1.0], "fast": [1.0, 1.0, 1.0, 1.0]}


def curve_study(curves=CURVES, seeds: int = 4, envs=None, baseline: str | None = "slow") -> StudyResults:
    runs, evals = [], []
    for variant, curve in curves.items():
        for env_id, scale in (("EnvA", 1.0), ("EnvB", 1.0)):
            for seed in range(seeds):
                run_id = f"{variant}/{env_id}/{seed}"
                runs.append([run_id, variant, env_id, seed, "done", curve[-1] * scale, 0.0, 400, 1.0, None])
                evals += [
                    [run_id, variant, env_id, seed, 100 * (k + 1), v * scale] for k, v in enumerate(curve)
                ]
    return StudyResults(
        name="curves",
        variants=list(curves),
        envs=envs or {e: EnvScores(e, 0.0, 1.0, "test") for e in ("EnvA", "EnvB")},
        runs=pd.DataFrame(runs, columns=RUN_COLUMNS),
        evals=pd.DataFrame(evals, columns=EVAL_COLUMNS),
        baseline=baseline,
    )


def test_auc_is_the_mean_of_the_normalized_evaluations():
    study = curve_study()
    auc = stats.normalized_scores(study, score="auc")
    np.testing.assert_allclose(auc["slow"], 0.625)  # (0.25 + 0.5 + 0.75 + 1) / 4
    np.testing.assert_allclose(auc["fast"], 1.0)
    final = stats.normalized_scores(study)
    np.testing.assert_allclose(final["slow"], final["fast"])  # the final score cannot tell them apart


def test_auc_is_normalized_like_the_final_score():
    envs = {e: EnvScores(e, random_score=10.0, reference_score=110.0) for e in ("EnvA", "EnvB")}
    study = curve_study({"raw": [60.0, 110.0]}, envs=envs, baseline=None)
    np.testing.assert_allclose(stats.normalized_scores(study, score="auc")["raw"], 0.75)  # (0.5 + 1) / 2


def test_auc_aggregates_and_probability_of_improvement():
    study = curve_study()
    table = stats.aggregate_table(study, reps=REPS, score="auc").set_index("variant")
    assert table.loc["slow", "iqm"] == pytest.approx(0.625) and table.loc["fast", "iqm"] == pytest.approx(1.0)
    assert table.loc["slow", "iqm_high"] == pytest.approx(0.625)  # every seed the same: no width
    final = stats.improvement_table(study, reps=REPS).set_index("variant")
    auc = stats.improvement_table(study, reps=REPS, score="auc").set_index("variant")
    assert final.loc["fast", "probability"] == pytest.approx(0.5)  # ties at the end
    assert auc.loc["fast", "probability"] == pytest.approx(1.0)  # always ahead on the way


def test_a_run_without_evaluations_has_no_auc_and_its_seed_is_left_out():
    study = curve_study()
    study.evals = study.evals[study.evals["run_id"] != "fast/EnvB/0"]
    assert stats.normalized_scores(study, score="auc")["fast"].shape == (3, 2)
    assert stats.normalized_scores(study)["fast"].shape == (4, 2)
    per_env = stats.per_env_table(study).set_index(["variant", "env_id"])
    assert per_env.loc[("slow", "EnvA"), "auc_mean"] == pytest.approx(0.625)
    with pytest.raises(ValueError, match="score must be one of final, auc"):
        stats.aggregate_table(study, score="area")


def test_the_summary_shows_both_iqms_and_says_who_learns_sooner():
    study = curve_study({"slow": [0.25, 0.5, 0.75, 1.0], "fast": [0.9, 0.9, 0.9, 0.9]})
    text = report.summary_text(study, reps=REPS)
    header = text.splitlines()[1]
    assert "final IQM [95% CI]" in header and "AUC IQM [95% CI]" in header
    assert text.splitlines()[-1] == (
        "fast learns sooner (best AUC IQM 0.900 vs 0.625) while slow ends higher (best final IQM 1.00 vs 0.900)"
    )
    assert "learns sooner" not in report.summary_text(curve_study(), reps=REPS)  # fast leads both: no line


def test_the_report_files_hold_the_sample_efficiency(tmp_path):
    paths = report.write_report(curve_study(), tmp_path, reps=REPS, curve_reps=REPS)
    summary = json.loads(paths["summary"].read_text())
    rows = {r["variant"]: r for r in summary["tables"]["aggregate_auc"]}
    assert rows["slow"]["iqm"] == pytest.approx(0.625) and rows["fast"]["iqm"] == pytest.approx(1.0)
    assert {r["variant"] for r in summary["tables"]["improvement_auc"]} == {"fast"}
    assert (tmp_path / "tables" / "aggregate_auc.csv").is_file()
    page = paths["report"].read_text()
    assert "<h2>Sample efficiency</h2>" in page and "aggregate-auc" in page
