"""``rlsurgery compare / ablate / report / suites`` end to end, and their bad-input errors."""

from __future__ import annotations

import json

import pytest

from rlsurgery.cli import main


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_suites_lists_the_bundled_suites(capsys):
    assert main(["suites", "--json"]) == 0
    suites = {s["name"]: s for s in _json(capsys)}
    assert [e["env_id"] for e in suites["classic"]["envs"]][:2] == ["CartPole-v1", "Acrobot-v1"]


def test_compare_then_report_rebuilds_the_same_tables(tmp_path, capsys):
    out = tmp_path / "study"
    args = [
        "compare",
        "--agents",
        "dqn",
        "--env",
        "CartPole-v1",
        "--seeds",
        "2",
        "--steps",
        "300",
        "--workers",
        "2",
        "--out",
        str(out),
        "--no-progress",
        "--reps",
        "50",
        "--metric",
        "rollout/exploration_rate",  # 300 steps: before learning_starts, so no train/ values yet
        "--json",
    ]
    assert main(args) == 0
    summary = _json(capsys)
    assert summary["counts"]["done"] == 2 and summary["variants"] == ["dqn"]
    kept = summary["tables"]["metrics"]  # the logger value asked for, kept for both seeds
    assert [(r["key"], r["n_runs"]) for r in kept] == [("rollout/exploration_rate", 2)]
    assert kept[0]["n_values"] >= 1
    for name in ("report.html", "summary.json", "summary.txt", "tables/per_env.csv", "tables/aggregate.csv"):
        assert (out / name).is_file(), name
    assert main(["report", str(out), "--reps", "50", "--json"]) == 0
    rebuilt = _json(capsys)
    assert rebuilt["tables"]["per_env"] == summary["tables"]["per_env"]
    assert main(["report", str(out), "--reps", "50"]) == 0
    text = capsys.readouterr().out
    assert "dqn" in text and "CartPole-v1" in text and "IQM" in text


def test_ablate_runs_leave_one_out_variants(tmp_path, capsys):
    out = tmp_path / "ablate"
    args = [
        "ablate",
        "rainbow",
        "--env",
        "CartPole-v1",
        "--seeds",
        "1",
        "--steps",
        "200",
        "--eval-episodes",
        "2",
        "--workers",
        "2",
        "--out",
        str(out),
        "--no-progress",
        "--reps",
        "50",
        "--json",
    ]
    assert main(args) == 0
    summary = _json(capsys)
    assert summary["variants"][0] == "rainbow" and summary["baseline"] == "rainbow"
    assert "rainbow-no-prioritized_replay" in summary["variants"] and len(summary["variants"]) == 7
    assert summary["counts"]["done"] == 7


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["compare", "--agents", "dqn", "--env", "CartPole-v1", "--seeds", "0"],
            "--seeds: must be an integer >= 1, got 0",
        ),
        (["compare", "--agents", "dqn,rainbo", "--env", "CartPole-v1"], "unknown recipe 'rainbo'"),
        (["compare", "--agents", "dqn", "--suite", "clasic"], "unknown suite 'clasic'"),
        (["compare", "--agents", "dqn", "--env", "CartPol-v1"], "unknown environment id 'CartPol-v1'"),
        (["compare", "--agents", "dqn"], "give a suite or at least one environment id"),
        (["compare", "--env", "CartPole-v1"], "give a STUDY.yaml, or --agents"),
        (["ablate", "dqn", "--env", "CartPole-v1"], "no surgeries to ablate"),
        (["report", "nowhere"], "not a study folder"),
        (["compare", "--agents", "dqn", "--env", "CartPole-v1", "--metric", " x"], "bad entry: ' x'"),
    ],
)
def test_bad_input_fails_before_any_run(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "studies").exists()  # nothing written


def test_a_changed_study_never_overwrites_stored_results(tmp_path, capsys):
    out = tmp_path / "study"
    base = [
        "compare",
        "--agents",
        "dqn",
        "--env",
        "CartPole-v1",
        "--seeds",
        "1",
        "--workers",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--reps",
        "20",
        "--eval-episodes",
        "2",
    ]
    assert main([*base, "--steps", "200"]) == 0
    before = (out / "study.db").read_bytes()
    capsys.readouterr()
    assert main([*base, "--steps", "300"]) == 2
    assert "another configuration" in capsys.readouterr().err
    assert (out / "study.db").read_bytes() == before


def test_variant_runs_part_of_a_study_file_and_keeps_the_rest(tmp_path, capsys):
    study = tmp_path / "two.yaml"
    study.write_text(
        "name: two\nenvs: [CartPole-v1]\nseeds: 1\nsteps: 200\nn_eval_episodes: 2\nbaseline: plain\n"
        "variants:\n  plain: {recipe: dqn}\n  double: {recipe: dqn, surgeries: [double_q_learning]}\n"
    )
    out = tmp_path / "study"
    base = ["compare", str(study), "--workers", "1", "--out", str(out), "--no-progress", "--reps", "20"]
    assert main([*base, "--variant", "double", "--json"]) == 0
    first = _json(capsys)
    assert first["variants"] == ["double"] and first["counts"]["done"] == 1
    assert main([*base, "--variant", "plain", "--json"]) == 0
    both = _json(capsys)
    assert sorted(both["variants"]) == ["double", "plain"] and both["counts"]["done"] == 2
    assert both["baseline"] == "plain"  # the study file's baseline, though the first run left it out
    assert main([*base, "--variant", "tripple"]) == 2
    err = capsys.readouterr().err
    assert "--variant: 'tripple' is not a variant of the study (variants: plain, double)" in err
    assert main(["compare", "--agents", "dqn", "--env", "CartPole-v1", "--variant", "dqn"]) == 2
    assert "--variant selects variants of a STUDY.yaml" in capsys.readouterr().err
