"""The architecture-search samplers of ``rlsurgery tune`` and the space's ``architecture`` section."""

from __future__ import annotations

import collections
import textwrap

import numpy as np
import optuna
import pytest
import torch as th

from rlsurgery import catalog
from rlsurgery.tune import evolution
from rlsurgery.tune.evolution import MUTATED_ATTR, PARENT_ATTR
from rlsurgery.tune.objective import TrialBudget
from rlsurgery.tune.space import Dimension, SearchSpace, TuneError, load_space
from tests.breakage import assert_proof_fails_when, replaced

optuna.logging.set_verbosity(optuna.logging.WARNING)
BUDGET = TrialBudget(steps=900, eval_freq=100)
CHOICES = {
    "depth": (1, 2, 3),
    "width": (16, 32, 64, 128),
    "activation": ("default", "tanh", "elu"),
    "normalization": ("none", "layer_normalization"),
    "skip": (False, True),
    "dropout": (0.0, 0.1),
}
SPACE = SearchSpace(architecture={f"arch.{k}": Dimension(f"arch.{k}", choices=v) for k, v in CHOICES.items()})
ARCH = [f"arch.{k}" for k in CHOICES]


def score(trial: optuna.Trial) -> float:
    """A synthetic score: wide, two layers, tanh, layer norm are best (one unit each)."""
    config = SPACE.suggest(trial)
    kwargs, keys = config.hyperparams["policy_kwargs"], {s.key for s in config.surgeries}
    return (
        float(kwargs["net_arch"] == [128, 128])
        + float(any(s.params.get("to") == "tanh" for s in config.surgeries))
        + float("layer_normalization" in keys)
        + 0.01 * trial.number  # a later trial scores a little higher: the oldest are not the worst
    )


def run(key: str, trials: int, seed: int = 0) -> optuna.Study:
    study = optuna.create_study(direction="maximize", sampler=catalog.create(key).build(SPACE, BUDGET, seed))
    study.optimize(score, n_trials=trials)
    return study


def check_evolution():
    p = 8
    study = run(f"evolutionary_nas:population_size={p},sample_size=3", trials=40)
    trials = study.trials
    assert all(PARENT_ATTR not in t.system_attrs for t in trials[:p])  # the first population is random
    for t in trials[p:]:
        assert PARENT_ATTR in t.system_attrs, t.number  # every later trial is a child
        latest = {m.number for m in trials[t.number - p : t.number]}  # the P latest when t was sampled
        parent = trials[t.system_attrs[PARENT_ATTR]]
        assert parent.number in latest  # parents come from the latest P only: the oldest aged out
        changed = [n for n in ARCH if t.params[n] != parent.params[n]]
        assert changed == [t.system_attrs[MUTATED_ATTR]]  # exactly one architecture choice mutated
    # the population keeps its size and drops the oldest even when it is the best
    members = evolution.population(trials, p)
    assert [m.number for m in members] == list(range(40 - p, 40))
    best_early = max(trials[:p], key=lambda t: t.value)
    assert best_early.number not in {m.number for m in members}
    # tournaments of S = 3 out of P = 8: parents are often not the population's best
    not_best = 0
    for t in trials[p:]:
        latest = trials[t.number - p : t.number]
        not_best += t.system_attrs[PARENT_ATTR] != max(latest, key=lambda m: m.value).number
    assert not_best >= 5
    # the best early trial was a parent while it was young, and never after it aged out
    parents = [t.system_attrs[PARENT_ATTR] for t in trials[p:]]
    assert all(t_number - parent <= p for t_number, parent in zip(range(p, 40), parents))
    # and evolution finds the good architectures more often than chance
    late = trials[-16:]
    assert np.mean([t.params["arch.activation"] == "tanh" for t in late]) > 0.5


def test_evolution_keeps_the_population_size_and_ages_out_the_oldest():
    check_evolution()


def fittest(trials, size):  # a genetic algorithm's population: the best, not the latest
    finished = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return sorted(sorted(finished, key=lambda t: -t.value)[:size], key=lambda t: t.number)


@pytest.mark.parametrize(
    "breakage",
    [
        replaced(evolution, "population", fittest),
        replaced(evolution, "mutate", lambda params, choices, rng: (dict(params), "")),  # clones
        replaced(
            evolution.RegularizedEvolutionSampler, "sample_relative", lambda self, study, trial, space: {}
        ),  # random search
        replaced(
            evolution, "tournament", lambda members, size, maximize, rng: max(members, key=lambda t: t.value)
        ),
    ],
    ids=["fittest-survive", "no-mutation", "random-draws", "whole-population-tournament"],
)
def test_the_evolution_proof_fails_when_broken(breakage):
    assert_proof_fails_when(breakage, check_evolution)


def check_random_nas():
    study = run("random_search_nas", trials=240, seed=1)
    for name, values in CHOICES.items():
        counts = collections.Counter(t.params[f"arch.{name}"] for t in study.trials)
        assert set(counts) == set(values)  # every choice drawn
        assert min(counts.values()) > 0.5 * 240 / len(values)  # roughly uniformly
    later = study.trials[-80:]
    assert np.mean([t.params["arch.activation"] == "tanh" for t in later]) < 0.5  # the scores steer nothing


def test_random_search_nas_draws_architectures_uniformly():
    check_random_nas()


def test_the_random_nas_proof_fails_on_evolution():
    def evolve(self, space, budget, seed):
        return evolution.RegularizedEvolutionSampler(space, 8, 3, seed)

    from rlsurgery.tune.methods.random_search_nas import RandomSearchNAS

    assert_proof_fails_when(replaced(RandomSearchNAS, "build", evolve), check_random_nas)


def test_an_architecture_becomes_net_arch_and_network_surgeries():
    space = SearchSpace(
        hyperparams={"learning_rate": 1e-3},
        architecture={f"arch.{k}": Dimension(f"arch.{k}", choices=v) for k, v in CHOICES.items()},
        base_policy_kwargs={"activation_fn": "Tanh", "net_arch": [256, 256]},
    )
    fixed = {"arch.depth": 3, "arch.width": 32, "arch.activation": "elu", "arch.normalization": "layer_normalization",
             "arch.skip": True, "arch.dropout": 0.1}  # fmt: skip
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    study.enqueue_trial(fixed)
    trial = study.ask()
    config = space.suggest(trial)
    assert config.hyperparams["policy_kwargs"] == {"activation_fn": "Tanh", "net_arch": [32, 32, 32]}
    assert [(s.key, s.params) for s in config.surgeries] == [
        ("activation_replacement", {"to": "elu"}),
        ("layer_normalization", {}),
        ("skip_connection_addition", {}),
        ("dropout", {"p": 0.1}),
    ]
    for spec in config.surgeries:
        catalog.create(spec)


def write(tmp_path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "text, match",
    [
        ("architecture:\n  depth: [1, 2]\n", "together"),
        ("architecture:\n  depth: [1, 0]\n  width: [8]\n", "positive integers"),
        ("architecture:\n  normalization: [none, dropout]\n", "not a normalization key"),
        ("architecture:\n  activation: [relu, sine]\n", "activation"),
        ("architecture:\n  dropout: [0.0, 1.5]\n", "dropout"),
        ("architecture:\n  colour: [red]\n", "colour"),
        ("architecture:\n  skip: [true]\nsurgeries:\n  skip_connection_addition: {}\n", "keep one"),
    ],
)
def test_a_bad_architecture_fails_with_its_line(tmp_path, text, match):
    with pytest.raises(TuneError, match=match) as info:
        load_space(write(tmp_path, text), "dqn")
    assert "space.yaml" in str(info.value)


def test_the_nas_samplers_refuse_a_space_without_architecture():
    with pytest.raises(TuneError, match="no 'architecture' section"):
        catalog.create("evolutionary_nas").build(
            SearchSpace({"gamma": Dimension("hp.gamma", 0.9, 0.99)}), BUDGET, 0
        )


def test_a_space_file_with_an_architecture_loads(tmp_path):
    path = write(
        tmp_path,
        """
        hyperparams:
          learning_rate: {low: 1.0e-4, high: 1.0e-2, log: true}
        architecture:
          depth: [1, 2]
          width: [16, 32]
          activation: [default, tanh]
        """,
    )
    space = load_space(path, "dqn")
    assert sorted(d.name for d in space.dimensions()) == [
        "arch.activation",
        "arch.depth",
        "arch.width",
        "hp.learning_rate",
    ]


@pytest.mark.slow
def test_an_evolution_tune_ends_with_a_recipe_of_its_best_architecture(tmp_path, capsys):
    import json

    from rlsurgery.cli import main
    from rlsurgery.recipes import load_recipe

    space = write(
        tmp_path, "architecture:\n  depth: [1, 2]\n  width: [8, 16]\n  activation: [default, tanh]\n"
    )
    code = main(
        ["tune", "dqn", "CartPole-v1", "--space", str(space), "--sampler", "evolutionary_nas:population_size=2,sample_size=1",
         "--trials", "3", "--steps", "200", "--eval-freq", "200", "--n-eval-episodes", "1", "--final-seeds", "1",
         "--out", str(tmp_path / "out"), "--json"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    config = summary["best"]["config"]
    net_arch = config["hyperparams"]["policy_kwargs"]["net_arch"]
    assert net_arch in ([8], [16], [8, 8], [16, 16])
    resolved = load_recipe(summary["best_recipe"]).resolve("CartPole-v1")
    assert resolved.kwargs["policy_kwargs"]["net_arch"] == net_arch
    assert [s.key for s in resolved.surgeries] == [s["key"] for s in config["surgeries"]]
    model = resolved.build(env=resolved.make_env(seed=0))  # rlsurgery train takes it
    hidden = [m.out_features for m in model.q_net.q_net if isinstance(m, th.nn.Linear)][:-1]
    assert hidden == net_arch


def test_a_searched_cell_is_one_choice_per_edge(tmp_path):
    path = write(tmp_path, "architecture:\n  cell: [linear_relu, identity, zero]\n  repeats: [1, 3]\n")
    space = load_space(path, "dqn")
    assert sorted(space.architecture) == ["arch.cell_0", "arch.cell_1", "arch.cell_2", "arch.repeats"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(0))
    study.enqueue_trial(
        {"arch.cell_0": "zero", "arch.cell_1": "linear_relu", "arch.cell_2": "identity", "arch.repeats": 3}
    )
    (spec,) = space.suggest(study.ask()).surgeries
    assert (spec.key, spec.params) == (
        "cell_based_nas",
        {"operations": ["zero", "linear_relu", "identity"], "nodes": 2, "repeats": 3},
    )
    catalog.create(spec)
    with pytest.raises(TuneError, match="unknown operation"):
        load_space(write(tmp_path, "architecture:\n  cell: [linear_relu, conv3x3]\n"), "dqn")
    with pytest.raises(TuneError, match="give 'cell'"):
        load_space(write(tmp_path, "architecture:\n  repeats: [1, 2]\n"), "dqn")


def test_an_architecture_that_cannot_build_fails_before_any_trial(tmp_path):
    from rlsurgery.tune import TuneSettings, tune

    # cells keep one hidden width, and the space fixes a net_arch of two widths
    text = "hyperparams:\n  policy_kwargs: {net_arch: [64, 32]}\narchitecture:\n  cell: [linear_relu, identity]\n"
    settings = TuneSettings("ppo", "CartPole-v1", str(write(tmp_path, text)), str(tmp_path / "out"), trials=1)
    with pytest.raises(
        TuneError, match=r"space.yaml:[34]: the architecture cannot be used with ppo .*widths"
    ):
        tune(settings)
    assert not (tmp_path / "out" / "tune.db").exists()
