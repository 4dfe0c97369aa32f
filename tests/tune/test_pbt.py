"""population_based_training: the bottom of the population copies the top (weights, optimizer,
replay) and perturbs its hyperparameters; the loop runs on the study backends and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rlsurgery import catalog
from rlsurgery.io import load
from rlsurgery.tune import TuneError, TuneSettings, tune
from rlsurgery.tune import pbt as pbt_module
from rlsurgery.tune.methods.population_based_training import PopulationParams, exploit_pairs, perturb
from rlsurgery.tune.space import Dimension
from tests.breakage import assert_proof_fails_when, replaced

SPACE = """\
hyperparams:
  learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
  exploration_final_eps: {choices: [0.02, 0.05, 0.1]}
  learning_starts: 100
"""


def settings(folder: Path, **kwargs) -> TuneSettings:
    space = folder / "space.yaml"
    space.write_text(SPACE, encoding="utf-8")
    options = dict(
        sampler="population_based_training:population=4,interval=200,quantile=0.25,resample_probability=0",
        steps=600,
        n_eval_episodes=2,
        final_seeds=0,
        workers=2,
    )
    options.update(kwargs)
    return TuneSettings("dqn", "CartPole-v1", str(space), str(folder / "out"), **options)


def check_exploit_and_explore(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pairs = exploit_pairs([1.0, 5.0, 3.0, 9.0, 2.0, 7.0, 4.0, 8.0], 0.25, rng)
    assert set(pairs) == {0, 4} and set(pairs.values()) <= {3, 7}  # the 2 lowest copy the 2 highest
    assert exploit_pairs([1.0, 2.0, 3.0], 0.5, rng) == {0: 2}  # the groups never overlap
    dims = {"learning_rate": Dimension("hp.learning_rate", 1e-4, 1e-2, log=True)}
    params = PopulationParams(resample_probability=0.0)
    moved = {perturb({"learning_rate": 1e-3}, dims, params, rng)["learning_rate"] for _ in range(20)}
    assert len(moved) == 2 and np.allclose(sorted(moved), [8e-4, 1.2e-3])  # × 0.8 or × 1.2
    summary = tune(settings(tmp_path))
    state = json.loads((tmp_path / "out" / "pbt.json").read_text())
    assert state["rounds_done"] == 3 and all(len(m["scores"]) == 3 for m in state["members"])
    copies = [(m, h) for m in state["members"] for h in m["history"]]
    assert len(copies) == 2  # one of four copies another after rounds 0 and 1
    for member, copy in copies:
        winner = state["members"][copy["copied"]]
        round_ = copy["round"]
        assert winner["scores"][round_] >= member["scores"][round_]
        ratio = copy["hyperparams"]["learning_rate"] / copy["from"]["learning_rate"]
        assert ratio == pytest.approx(0.8) or ratio == pytest.approx(1.2)  # explored: × 0.8 or × 1.2
    # the copy trained on from the winner's files: its next round started from the winner's weights
    member, copy = copies[-1]
    rate = copy["hyperparams"]["learning_rate"]
    model = load(member["model"])
    assert model.learning_rate == pytest.approx(rate)
    assert summary["best"]["value"] == max(m["scores"][-1] for m in state["members"])


def test_the_bottom_copies_the_top_and_perturbs_it(tmp_path):
    check_exploit_and_explore(tmp_path)


def test_the_pbt_proof_fails_without_exploitation(tmp_path):
    breakage = replaced(pbt_module, "exploit_pairs", lambda scores, quantile, rng: {})
    assert_proof_fails_when(breakage, check_exploit_and_explore, tmp_path)


def test_the_pbt_proof_fails_without_perturbation(tmp_path):
    breakage = replaced(pbt_module, "perturb", lambda values, dims, params, rng: dict(values))
    assert_proof_fails_when(breakage, check_exploit_and_explore, tmp_path)


def test_a_finished_population_is_not_trained_again(tmp_path):
    first = tune(settings(tmp_path, workers=1))
    state = (tmp_path / "out" / "pbt.json").read_text()
    again = tune(settings(tmp_path, workers=1))
    assert (tmp_path / "out" / "pbt.json").read_text() == state  # resumed after its last round: nothing to do
    assert again["best"] == first["best"]
    assert (tmp_path / "out" / "best_model.zip").exists()


def test_pbt_refuses_a_hyperparameter_a_running_agent_cannot_take(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("hyperparams:\n  buffer_size: {low: 1000, high: 5000}\n", encoding="utf-8")
    with pytest.raises(TuneError, match="'buffer_size' cannot change on a running agent"):
        tune(
            TuneSettings(
                "dqn", "CartPole-v1", str(space), str(tmp_path / "out"), sampler="population_based_training"
            )
        )
    assert not (tmp_path / "out").exists()


def test_population_params_are_checked():
    with pytest.raises(ValueError, match="quantile"):
        catalog.create("population_based_training:quantile=0.9")
    with pytest.raises(ValueError, match="factors"):
        catalog.create("population_based_training:factors=[0.0]")


def test_a_perturbed_integer_stays_on_its_grid_and_moves():
    rng = np.random.default_rng(1)
    dims = {"batch_size": Dimension("hp.batch_size", 32, 256, step=32)}
    params = PopulationParams(resample_probability=0.0, factors=[0.9, 1.1])
    for _ in range(20):
        value = perturb({"batch_size": 64}, dims, params, rng)["batch_size"]
        assert value in (32, 96)  # 64 · 0.9 or 64 · 1.1 rounds back to 64: one step down or up instead
