"""Every bad value is refused before any work starts: hyperparameters (train --hyperparams, recipe
files, study files, Python overrides), surgery parameters that size memory, a surgery key given
twice, and --explore with a key that does not explore. Each refusal names the field and what it
accepts, exits 2 without a traceback, and leaves the disk as it was."""

from __future__ import annotations

import json
import textwrap

import pytest

import rlsurgery as rls
from rlsurgery.agents import ALGORITHMS
from rlsurgery.bench.study import load_study
from rlsurgery.core.errors import ParameterError, RecipeError, StudyError, SurgeryError
from rlsurgery.hyperparams import (
    constructor_parameters,
    hyperparam_problem,
    parse_hyperparam_value,
    parse_hyperparams,
    rule_for,
)
from rlsurgery.recipes import available_recipes, load_recipe
from rlsurgery.training import train_run
from tests.hardening.files import assert_refused, folder_digest, run_cli

TRAIN = ("train", "dqn", "CartPole-v1", "--no-progress", "--eval-episodes", "1", "--steps", "50")


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--hyperparams", "learning_rate:fast"], ["learning_rate", "'fast'", "a number >= 0", "lin_"]),
        (["--hyperparams", "batch_size:abc"], ["batch_size", "'abc'", "an integer >= 1"]),
        (
            ["--hyperparams", "policy_kwargs:dict(net_arch=abc)"],
            ["policy_kwargs: net_arch", "'abc'", "layer widths"],
        ),
        (["--hyperparams", "gamma:2.5"], ["gamma", "2.5", "in [0, 1]"]),
        (["--hyperparams", "buffer_size:-1"], ["buffer_size", "-1", "[1, "]),
        (["--hyperparams", "train_freq:(4, 'steps')"], ["train_freq", "'step' | 'episode'"]),
        (["--hyperparams", "exploration_final_eps:1.5"], ["exploration_final_eps", "in [0, 1]"]),
        (["--hyperparams", "gradient_steps:0"], ["gradient_steps", "or -1"]),
        (["--hyperparams", "n_envs:100000"], ["n_envs", "1024"]),
        (["--hyperparams", "net_arch:[64]"], ["net_arch", "policy_kwargs"]),
        (["--hyperparams", "learning_rat:0.1"], ["learning_rat", "did you mean 'learning_rate'"]),
        (["--hyperparams", "policy_kwargs:dict(activation_fn=nn.Tanhh)"], ["activation_fn", "'Tanhh'"]),
        (["--hyperparams", "gamma"], ["--hyperparams", "NAME:VALUE"]),
        (["--hyperparams", "gamma:0.9", "gamma:0.95"], ["--hyperparams", "gamma", "twice"]),
        (["--hyperparams", "seed:3"], ["--hyperparams", "seed", "--seed"]),
        (["--surgery", "n_step_returns:n=1000000000"], ["n_step_returns", "'n'", "<= 1000"]),
        (["--surgery", "distributional_rl:n_atoms=100000"], ["distributional_rl", "'n_atoms'", "<= 1024"]),
        (
            ["--hyperparams", "buffer_size:100", "--surgery", "n_step_returns:n=200"],
            ["n_step_returns", "n=200", "buffer_size (100)"],
        ),
        (
            ["--surgery", "n_step_returns:n=3", "--surgery", "n_step_returns:n=5"],
            ["--surgery", "n_step_returns", "twice"],
        ),
        (
            ["--explore", "double_q_learning"],
            ["--explore", "double_q_learning", "not an exploration surgery"],
        ),
        (
            ["--explore", "boltzmann_exploration", "--explore", "boltzmann_exploration:initial=2.0"],
            ["--explore", "boltzmann_exploration", "twice"],
        ),
        (
            ["--explore", "boltzmann_exploration", "--surgery", "boltzmann_exploration:initial=2.0"],
            ["--explore", "--surgery", "boltzmann_exploration"],
        ),
    ],
    ids=lambda value: (
        " ".join(value) if isinstance(value, list) and value and value[0].startswith("--") else ""
    ),
)
def test_train_refuses_bad_values_before_training(capsys, tmp_path, args, names):
    out = tmp_path / "run"
    result = run_cli(capsys, *TRAIN, "--out", out, *args)
    flag = ["--hyperparams"] if args[0] == "--hyperparams" and "--surgery" not in args else []
    assert_refused(result, *names, *flag)
    assert folder_digest(out) == {}


def test_hyperparams_values_are_read_never_run(capsys, tmp_path):
    marker = tmp_path / "ran"
    result = run_cli(
        capsys,
        *TRAIN,
        "--out",
        tmp_path / "run",
        "--hyperparams",
        f"learning_rate:__import__('os').system('touch {marker}')",
    )
    assert_refused(result, "learning_rate")
    assert not marker.exists()
    assert parse_hyperparam_value("exec('1')") == "exec('1')"


def test_train_with_good_hyperparams_runs(capsys, tmp_path):
    out = tmp_path / "run"
    result = run_cli(
        capsys,
        *TRAIN,
        "--out",
        out,
        "--hyperparams",
        "learning_rate:1e-3",
        "batch_size:16",
        "buffer_size:1000",
        "learning_starts:10",
        "train_freq:(4, 'step')",
        "policy_kwargs:dict(net_arch=[16], activation_fn=nn.Tanh)",
    )
    assert result.code == 0, result.err
    config = json.loads((out / "config.json").read_text())
    assert config["hyperparams"]["batch_size"] == 16
    assert config["hyperparams"]["policy_kwargs"] == {"net_arch": [16], "activation_fn": "Tanh"}


def write(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


RECIPE = "algo: dqn\ndefaults:\n  policy: MlpPolicy\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (RECIPE + "  gamma: 2.5\n", r"recipe.yaml:4: defaults: gamma: 2.5 is not a number in \[0, 1\]"),
        (
            RECIPE + "  learning_rate: fast\n",
            r"recipe.yaml:4: defaults: learning_rate: 'fast' is not a number >= 0",
        ),
        (RECIPE + "  learning_rate: 1e-3\n", r"recipe.yaml:4: .*YAML reads 1e-3 as text, write 1.0e-3"),
        (
            RECIPE + "  batch_size: abc\n",
            r"recipe.yaml:4: defaults: batch_size: 'abc' is not an integer >= 1",
        ),
        (
            RECIPE + "  policy_kwargs:\n    activation_fn: Tanh\n    net_arch: abc\n",
            r"recipe.yaml:6: defaults: policy_kwargs: net_arch: 'abc' is not a list of layer widths",
        ),
        (
            RECIPE + "hyperparams:\n  CartPole-v1:\n    n_timesteps: 1000\n    buffer_size: -1\n",
            r"recipe.yaml:7: CartPole-v1: buffer_size: -1 is not an integer in \[1, ",
        ),
        (RECIPE + "  n_envs: 0\n", r"recipe.yaml:4: defaults: n_envs: 0 is not an integer in \[1, 1024\]"),
        (
            RECIPE + "  policy: CnnPolicy\n",
            r"recipe.yaml:4: 'policy' is given twice in one mapping \(first on line 3\)",
        ),
        (
            RECIPE + "  gamma: 0.9\n  gamma: 0.95\n",
            r"recipe.yaml:5: 'gamma' is given twice in one mapping \(first on line 4\)",
        ),
        (
            "algo: dqn\nsurgeries:\n  - n_step_returns: {n: 3}\n  - n_step_returns: {n: 5}\n",
            r"recipe.yaml:4: n_step_returns is listed twice under 'surgeries'",
        ),
        (
            "algo: dqn\nsurgeries: [noisy_nets]\nexploration: [noisy_nets]\n",
            r"recipe.yaml:3: noisy_nets is listed both under 'exploration' and under 'surgeries'",
        ),
        (
            "algo: dqn\nsurgeries:\n  - n_step_returns: {n: 1000000000}\n",
            r"recipe.yaml:3: n_step_returns: parameter 'n' must be <= 1000",
        ),
    ],
    ids=[
        "gamma",
        "learning-rate-word",
        "learning-rate-yaml-text",
        "batch-size",
        "net-arch",
        "buffer-size-per-env",
        "n-envs",
        "policy-twice",
        "yaml-key-twice",
        "surgery-twice",
        "surgery-and-exploration",
        "n-step-memory",
    ],
)
def test_recipe_files_with_bad_values_name_the_line(tmp_path, text, match):
    path = write(tmp_path, text, "recipe.yaml")
    with pytest.raises(RecipeError, match=match):
        load_recipe(str(path))


def test_train_with_a_bad_recipe_file_names_the_line(capsys, tmp_path):
    path = write(tmp_path, RECIPE + "  gamma: 2.5\n", "recipe.yaml")
    out = tmp_path / "run"
    assert_refused(
        run_cli(capsys, "train", path, "CartPole-v1", "--out", out), "recipe.yaml:4", "gamma", "[0, 1]"
    )
    assert folder_digest(out) == {}


STUDY = """
name: bad
envs: [CartPole-v1]
seeds: 1
steps: 100
variants:
  good: {recipe: dqn}
"""


@pytest.mark.parametrize(
    ("variant", "names"),
    [
        (
            "  fast:\n    recipe: dqn\n    hyperparams: {gamma: 2.5}\n",
            ["study.yaml:9", "'fast'", "gamma", "[0, 1]"],
        ),
        (
            "  fast:\n    recipe: ppo\n    hyperparams:\n      n_epochs: 0\n",
            ["study.yaml:10", "n_epochs", "an integer >= 1"],
        ),
        (
            "  fast:\n    recipe: dqn\n    hyperparams:\n      policy_kwargs: {net_arch: abc}\n",
            ["study.yaml:10", "policy_kwargs: net_arch"],
        ),
        (
            "  fast:\n    recipe: dqn\n    hyperparams: {surgeries: []}\n",
            ["study.yaml:9", "surgeries", "variant entry"],
        ),
        (
            "  fast:\n    recipe: dqn\n    surgeries: ['n_step_returns:n=3', 'n_step_returns:n=5']\n",
            ["study.yaml:8", "n_step_returns", "twice"],
        ),
        (
            "  fast:\n    recipe: dqn\n    explore: double_q_learning\n",
            ["study.yaml:8", "double_q_learning", "explore"],
        ),
        (
            "  fast:\n    recipe: dqn\n    surgeries: ['n_step_returns:n=1000000000']\n",
            ["study.yaml:8", "n_step_returns", "<= 1000"],
        ),
        # each value alone is fine: the pair fails when the study checks every variant up front
        (
            "  fast:\n    recipe: dqn\n    hyperparams: {buffer_size: 100}\n    surgeries: ['n_step_returns:n=200']\n",
            ["'fast'", "n_step_returns", "buffer_size (100)"],
        ),
    ],
    ids=[
        "gamma",
        "n-epochs",
        "net-arch",
        "surgeries-as-hyperparam",
        "surgery-twice",
        "explore",
        "n-step",
        "pair",
    ],
)
def test_studies_refuse_before_the_first_run(capsys, tmp_path, variant, names):
    study = write(tmp_path, STUDY + variant, "study.yaml")
    out = tmp_path / "study"
    before = folder_digest(tmp_path)
    result = run_cli(capsys, "compare", study, "--out", out, "--no-progress", "--workers", "1")
    assert_refused(result, *names)
    assert folder_digest(tmp_path) == before and not out.exists()


def test_study_file_value_errors_are_study_errors(tmp_path):
    study = write(
        tmp_path, STUDY + "  fast:\n    recipe: dqn\n    hyperparams: {batch_size: abc}\n", "study.yaml"
    )
    with pytest.raises(
        StudyError, match=r"study.yaml:9: variant 'fast': batch_size: 'abc' is not an integer"
    ):
        load_study(study)


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        (
            {"learning_rate": "fast"},
            RecipeError,
            r"dqn \(CartPole-v1\): learning_rate: 'fast' is not a number >= 0",
        ),
        ({"batch_size": "abc"}, RecipeError, r"batch_size: 'abc' is not an integer >= 1"),
        ({"policy_kwargs": {"net_arch": "abc"}}, RecipeError, r"policy_kwargs: net_arch: 'abc'"),
        ({"gamma": 2.5}, RecipeError, r"gamma: 2.5 is not a number in \[0, 1\]"),
        ({"buffer_size": -1}, RecipeError, r"buffer_size: -1 is not an integer in \[1, "),
        ({"seed": -1}, RecipeError, r"seed: -1 is not an integer in \[0, "),
        ({"device": "gpu"}, RecipeError, r"device: 'gpu' is not 'auto', 'cpu'"),
        (
            {"surgeries": ["n_step_returns:n=2", "n_step_returns:n=4"]},
            RecipeError,
            r"n_step_returns is given twice",
        ),
        (
            {"explore": ["dueling_architecture"]},
            RecipeError,
            r"explore \(--explore\): dueling_architecture is not an",
        ),
        (
            {"surgeries": ["n_step_returns:n=1000000000"]},
            ParameterError,
            r"n_step_returns: parameter 'n' must be <= 1000",
        ),
    ],
    ids=["lr", "batch", "net-arch", "gamma", "buffer", "seed", "device", "twice", "explore", "n-step"],
)
def test_python_overrides_are_checked(overrides, error, match):
    with pytest.raises(error, match=match):
        rls.make("dqn", "CartPole-v1", **overrides)


def test_train_run_overrides_cannot_shadow_its_arguments(tmp_path):
    with pytest.raises(SurgeryError, match="overrides: seed is set by its own argument"):
        train_run("dqn", "CartPole-v1", out=tmp_path / "run", overrides={"seed": 1})
    assert folder_digest(tmp_path / "run") == {}


def test_the_table_covers_every_constructor_parameter():
    missing = {
        name: [p for p in constructor_parameters(algo) if rule_for(algo, p) is None]
        for name, algo in ALGORITHMS.items()
    }
    assert missing == {name: [] for name in ALGORITHMS}


@pytest.mark.parametrize(
    ("algo", "settings"),
    [
        (
            "dqn",
            {"learning_rate": "lin_1e-3", "train_freq": [1, "episode"], "gradient_steps": -1, "tau": 0.5},
        ),
        (
            "dqn",
            {
                "buffer_size": 1e4,
                "policy_kwargs": {"net_arch": [], "optimizer_class": "RMSprop"},
                "seed": None,
            },
        ),
        (
            "ppo",
            {
                "clip_range": "lin_0.2",
                "clip_range_vf": None,
                "target_kl": 0.02,
                "policy_kwargs": {"net_arch": {"pi": [64], "vf": [64]}},
            },
        ),
        (
            "sac",
            {
                "ent_coef": "auto_0.1",
                "target_entropy": -2.0,
                "learning_rate": lambda progress: 1e-3 * progress,
            },
        ),
        ("sac", {"ent_coef": 0.05, "policy_kwargs": {"n_critics": 3, "log_std_init": -1}}),
        ("td3", {"policy_delay": 3, "target_policy_noise": 0.1, "train_freq": (1, "step")}),
        ("a2c", {"use_rms_prop": False, "rms_prop_eps": 1e-5, "n_steps": 8, "device": "cpu"}),
        ("trpo", {"cg_max_steps": 10, "line_search_shrinking_factor": 0.5, "n_envs": 2, "env_kwargs": {}}),
    ],
)
def test_good_hyperparams_pass(algo, settings):
    assert hyperparam_problem(ALGORITHMS[algo], settings) is None


@pytest.mark.parametrize("name", available_recipes())
def test_every_bundled_recipe_passes_the_checker(name):
    recipe = load_recipe(name)
    for env_id in [*recipe.hyperparams, "CartPole-v1"]:
        settings = {**recipe.defaults, **recipe.hyperparams.get(env_id, {})}
        settings.pop("surgeries", None)
        assert hyperparam_problem(recipe.algorithm, settings) is None, (name, env_id)


def test_parse_hyperparams_reads_zoo_notation():
    parsed = parse_hyperparams(
        [
            "learning_rate:0.001",
            "batch_size:64",
            "policy_kwargs:dict(net_arch=[64, 64], activation_fn=th.nn.ReLU)",
            "train_freq:[4, episode]",
            "use_sde:True",
            "target_kl:None",
            "clip_range:lin_0.1",
            "gamma:-0.5",
        ]
    )
    assert parsed == {
        "learning_rate": 0.001,
        "batch_size": 64,
        "policy_kwargs": {"net_arch": [64, 64], "activation_fn": "ReLU"},
        "train_freq": [4, "episode"],
        "use_sde": True,
        "target_kl": None,
        "clip_range": "lin_0.1",
        "gamma": -0.5,
    }
