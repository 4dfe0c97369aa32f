"""Task-sequence studies: ``tasks:`` in a study file, one agent per seed through the tasks, the report."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

from rlsurgery.bench import continual
from rlsurgery.bench.runner import run_study
from rlsurgery.bench.store import ResultStore
from rlsurgery.bench.study import SEQUENCE_LABEL, load_study
from rlsurgery.core.errors import StudyError
from tests.bench.study_helpers import TINY_HYPERPARAMS

SEQUENCE = """\
name: permuted
seeds: 2
eval_freq: 150
n_eval_episodes: 1
device: cpu
reference: fine-tuning
tasks:
  permuted-0: {id: rlsurgery/Permuted-v0, steps: 300, env_kwargs: {env_id: CartPole-v1, task: 0},
               random_score: 9.4, reference_score: 500}
  permuted-1: {id: rlsurgery/Permuted-v0, steps: 300, env_kwargs: {env_id: CartPole-v1, task: 1},
               random_score: 9.4, reference_score: 500}
variants:
  fine-tuning: {recipe: dqn, hyperparams: HYPER}
  ewc: {recipe: dqn, surgeries: ["elastic_weight_consolidation:samples=16"], hyperparams: HYPER}
"""


def write(folder, text):
    path = folder / "study.yaml"
    path.write_text(textwrap.dedent(text).replace("HYPER", TINY_HYPERPARAMS))
    return path


def test_a_tasks_study_expands_to_one_sequence_run_per_variant_and_seed_plus_the_reference(tmp_path):
    spec = load_study(write(tmp_path, SEQUENCE))
    assert [t.label for t in spec.tasks] == ["permuted-0", "permuted-1"]
    assert [e.label for e in spec.envs] == [SEQUENCE_LABEL] and spec.envs[0].steps == 600
    runs = spec.runs()
    sequence = [r for r in runs if r.tasks]
    assert [r.run_id for r in sequence] == [
        "fine-tuning|sequence|0",
        "fine-tuning|sequence|1",
        "ewc|sequence|0",
        "ewc|sequence|1",
    ]
    assert [t["env_kwargs"]["task"] for t in sequence[0].tasks] == [0, 1]
    reference = [r.run_id for r in runs if not r.tasks]
    assert reference == [f"fine-tuning|permuted-{t}|{seed}" for t in (0, 1) for seed in (0, 1)]
    # the tasks are part of a run's identity
    other = load_study(write(tmp_path, SEQUENCE.replace("task: 1}", "task: 2}")))
    assert other.runs()[0].config_hash != sequence[0].config_hash


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        (("name: permuted", "name: permuted\nenvs: [CartPole-v1]"), 2, "either 'tasks'"),
        (
            (
                "steps: 300, env_kwargs: {env_id: CartPole-v1, task: 1}",
                "env_kwargs: {env_id: CartPole-v1, task: 1}",
            ),
            1,
            "needs its steps",
        ),
        (
            ("reference: fine-tuning", "reference: nobody"),
            1,
            "reference 'nobody' must be one of the variants",
        ),
    ],
)
def test_bad_task_studies_fail_with_the_file_and_line(tmp_path, change, line, message):
    path = write(tmp_path, SEQUENCE.replace(*change))
    with pytest.raises(StudyError, match=message) as error:
        load_study(path)
    assert str(path) in str(error.value)


def test_tasks_must_share_their_spaces(tmp_path):
    text = SEQUENCE.replace(
        "id: rlsurgery/Permuted-v0, steps: 300, env_kwargs: {env_id: CartPole-v1, task: 1}",
        "id: Acrobot-v1, steps: 300",
    )
    spec = load_study(write(tmp_path, text))
    with pytest.raises(StudyError, match="permuted-1 has spaces"):
        spec.validate(build=False)


def test_a_sequence_study_runs_resumes_and_reports_the_continual_metrics(tmp_path):
    spec = load_study(write(tmp_path, SEQUENCE))
    folder = run_study(spec, tmp_path / "out", workers=2, progress=False, reps=200)
    store = ResultStore.open_existing(folder)
    results = store.results()
    assert set(results.done["run_id"]) == {r.run_id for r in spec.runs()}
    run = results.task_evals[results.task_evals["run_id"] == "ewc|sequence|0"]
    assert sorted(set(run["step"])) == [0, 150, 300, 450, 600] and sorted(set(run["task"])) == [0, 1]
    assert results.task_ends[results.task_ends["run_id"] == "ewc|sequence|0"]["step"].tolist() == [300, 600]
    summary = json.loads((folder / "summary.json").read_text())
    matrix = summary["tables"]["task_matrix"]
    assert len(matrix) == 2 * 4  # variants × (after task i, on task j)
    metrics = {(m["variant"], m["metric"]) for m in summary["tables"]["continual"]}
    assert ("ewc", "forgetting") in metrics and ("fine-tuning", "forward_transfer") in metrics
    # the table agrees with the stored returns, normalized and averaged over seeds by hand
    runs = continual.sequence_runs(results)
    ewc = [r for r in runs if r.variant == "ewc"]
    by_hand = np.mean([r.curves[r.steps.index(300), 1] for r in ewc])
    row = next(
        m
        for m in matrix
        if m["variant"] == "ewc" and m["after_task"] == "permuted-0" and m["on_task"] == "permuted-1"
    )
    assert row["mean"] == pytest.approx(by_hand)
    assert (
        "Task sequence" in (folder / "report.html").read_text()
        and (folder / "plots" / "task_curves.png").exists()
    )
    # resume: the same command finds everything done
    again = run_study(spec, folder, workers=2, progress=False, report=False)
    assert ResultStore.open_existing(again).todo() == []
