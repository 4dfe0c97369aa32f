from __future__ import annotations

import textwrap

import pytest

import rlsurgery as rls
from rlsurgery.core.errors import ParameterError, RecipeError
from rlsurgery.recipes import available_recipes, load_recipe, make


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_bundled_recipes_load_and_resolve():
    assert {"dqn", "rainbow"} <= set(available_recipes())
    rainbow = load_recipe("rainbow")
    assert [s.key for s in rainbow.surgeries] == [
        "double_q_learning",
        "dueling_architecture",
        "distributional_rl",
        "prioritized_replay",
        "n_step_returns",
        "noisy_nets",
    ]
    cartpole = rainbow.resolve("CartPole-v1")
    assert cartpole.n_timesteps == 50_000
    c51 = next(s for s in cartpole.surgeries if s.key == "distributional_rl")
    assert c51.params["v_max"] == 100.0 and c51.params["n_atoms"] == 51  # per-env override merged
    dqn = load_recipe("dqn").resolve("CartPole-v1")
    assert dqn.kwargs["learning_rate"] == 2.3e-3 and dqn.kwargs["policy_kwargs"] == {"net_arch": [256, 256]}


def test_unknown_env_uses_defaults():
    resolved = load_recipe("dqn").resolve("Pendulum-v1")
    assert resolved.n_timesteps == load_recipe("dqn").defaults["n_timesteps"]


def test_overrides_add_change_and_remove_surgeries():
    resolved = load_recipe("rainbow").resolve(
        "CartPole-v1",
        surgeries=["prioritized_replay:alpha=0.7", "target_network:mode=polyak"],
        remove=["noisy_nets"],
        batch_size=32,
    )
    keys = [s.key for s in resolved.surgeries]
    assert "noisy_nets" not in keys and keys[-1] == "target_network"
    per = next(s for s in resolved.surgeries if s.key == "prioritized_replay")
    assert per.params == {"alpha": 0.7, "beta": 0.4}
    assert resolved.kwargs["batch_size"] == 32
    with pytest.raises(RecipeError, match="cannot remove"):
        load_recipe("dqn").resolve("CartPole-v1", remove=["noisy_nets"])
    with pytest.raises(ParameterError, match="prioritized_replay: parameter 'alpha'"):
        load_recipe("rainbow").resolve("CartPole-v1", surgeries=["prioritized_replay:alpha=2"])


def test_make_builds_the_agent():
    model = rls.make("rainbow", "CartPole-v1", seed=1, learning_starts=10, buffer_size=500)
    assert isinstance(model, rls.SurgicalDQN)
    assert model.rls_env_id == "CartPole-v1" and model.rls_recipe == "rainbow"
    assert model.batch_size == 64 and model.n_steps == 3
    assert model.q_net.readout.support[-1].item() == 100.0


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("algo: dqn\nsurgeries: [double_q_learning\n", RecipeError, r"recipe.yaml:3: malformed YAML"),
        (
            "algo: dqn\nsurgery: []\n",
            RecipeError,
            r"recipe.yaml:2: unknown recipe entry 'surgery'; did you mean 'surgeries'",
        ),
        ("algo: dqnn\n", RecipeError, r"recipe.yaml:1: 'algo' must be one of dqn"),
        (
            "algo: dqn\nsurgeries:\n  - double_q_learning\n  - prioritised_replay\n",
            RecipeError,
            r"recipe.yaml:4: unknown surgery 'prioritised_replay'; did you mean 'prioritized_replay'",
        ),
        (
            "algo: dqn\nsurgeries:\n  - distributional_rl: {n_atoms: 1}\n",
            RecipeError,
            r"recipe.yaml:3: distributional_rl: parameter 'n_atoms' must be >= 2",
        ),
        (
            "algo: dqn\ndefaults:\n  policy: MlpPolicy\n  learning_rat: 0.001\n",
            RecipeError,
            r"recipe.yaml:4: defaults: unknown hyperparameter 'learning_rat' for SurgicalDQN; "
            r"did you mean 'learning_rate'",
        ),
        (
            "algo: dqn\nsurgeries: [distributional_rl]\nhyperparams:\n  CartPole-v1:\n"
            "    surgeries:\n      distributional_rl: {v_min: 3, v_max: 1}\n",
            RecipeError,
            r"recipe.yaml:6: distributional_rl: parameter 'v_min' must be < 'v_max'",
        ),
        ("- just\n- a list\n", RecipeError, r"recipe.yaml:1: a recipe must be a mapping"),
        (
            "algo: dqn\nexploration:\n  - double_q_learning\n",
            RecipeError,
            r"recipe.yaml:3: double_q_learning is not an exploration surgery",
        ),
        (
            "algo: ppo\nexploration:\n  - curiosity_driven: {variant: ngu}\n",
            RecipeError,
            r"recipe.yaml:3: curiosity_driven: parameter 'variant' must be one of",
        ),
    ],
    ids=[
        "yaml-syntax",
        "top-key",
        "algo",
        "surgery-key",
        "surgery-param",
        "hyperparam",
        "env-surgery-param",
        "not-mapping",
        "exploration-not-exploring",
        "exploration-param",
    ],
)
def test_malformed_recipes_report_file_and_line(tmp_path, text, error, match):
    path = write(tmp_path, text)
    with pytest.raises(error, match=match):
        load_recipe(str(path))


def test_unknown_recipe_name_suggests():
    with pytest.raises(RecipeError, match="unknown recipe 'rainbw'; did you mean 'rainbow'"):
        load_recipe("rainbw")


def test_user_recipe_path_and_policy_kwargs_classes(tmp_path):
    path = write(
        tmp_path,
        """
        algo: dqn
        surgeries: [double_q_learning]
        defaults:
          n_timesteps: 1000
          learning_starts: 10
          buffer_size: 500
          policy_kwargs: {net_arch: [8], activation_fn: Tanh}
        """,
    )
    model = rls.make(str(path), "CartPole-v1", seed=0)
    assert any(type(m).__name__ == "Tanh" for m in model.q_net.modules())


@pytest.mark.slow
def test_rainbow_recipe_learns_cartpole():
    from rlsurgery.training import evaluate_model

    model = rls.make("rainbow", "CartPole-v1", seed=0)
    model.learn(20_000)
    # a random policy scores about 22; the full 50k-step benchmark reaches 475+ on 10 of 10 seeds
    assert evaluate_model(model, "CartPole-v1", episodes=10, seed=123)["mean_return"] >= 150


def test_explore_replaces_the_recipe_exploration():
    # rainbow explores with noisy_nets (in its surgeries): --explore swaps it out
    swapped = load_recipe("rainbow").resolve("CartPole-v1", explore=["boltzmann_exploration:initial=2.0"])
    keys = [s.key for s in swapped.surgeries]
    assert "noisy_nets" not in keys and keys[-1] == "boltzmann_exploration"
    assert swapped.surgeries[-1].params == {"initial": 2.0}
    # dqn-ucb explores with its exploration entry; a strategy plus an intrinsic reward replace it
    recipe = load_recipe("dqn-ucb")
    assert [s.key for s in recipe.resolve("CartPole-v1").surgeries] == ["ucb_bonus"]
    both = recipe.resolve("CartPole-v1", explore=["epsilon_greedy_annealing", "curiosity_driven:variant=icm"])
    assert [s.key for s in both.surgeries] == ["epsilon_greedy_annealing", "curiosity_driven"]
    model = make("ppo-rnd", "CartPole-v1", seed=0, explore=["noisy_nets", "ucb_bonus:beta=0.05"], n_envs=1)
    assert [r["key"] for r in model.surgery_log] == ["noisy_nets", "ucb_bonus"]


def test_zoo_linear_schedules_in_recipes():
    model = make("ppo", "CartPole-v1", seed=0)
    assert model.learning_rate(1.0) == pytest.approx(1e-3) and model.learning_rate(0.5) == pytest.approx(5e-4)
    assert model.clip_range(0.25) == pytest.approx(0.05)


def test_explore_parameters_win_over_the_recipe_per_env_settings(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text(
        "algo: dqn\nexploration: [epsilon_greedy_annealing]\nhyperparams:\n  CartPole-v1:\n"
        "    surgeries:\n      epsilon_greedy_annealing: {final: 0.1, fraction: 0.3}\n"
    )
    recipe = load_recipe(str(path))
    assert recipe.resolve("CartPole-v1").surgeries[0].params == {"final": 0.1, "fraction": 0.3}
    swapped = recipe.resolve("CartPole-v1", explore=["epsilon_greedy_annealing:final=0.01"])
    assert swapped.surgeries[0].params == {"final": 0.01, "fraction": 0.3}  # per-env default, explicit wins
    other = recipe.resolve("CartPole-v1", explore=["boltzmann_exploration"])
    assert [s.key for s in other.surgeries] == ["boltzmann_exploration"]


def test_recipe_surgery_with_at_step(tmp_path):
    path = tmp_path / "sparse.yaml"
    path.write_text(
        "algo: dqn\nsurgeries:\n  - magnitude_pruning: {amount: 0.8, at_step: 500}\n"
        "defaults: {learning_starts: 100, policy_kwargs: {net_arch: [16]}}\n"
    )
    model = make(str(path), "CartPole-v1", seed=0)
    assert model.surgery_log[0]["applied"] == "scheduled" and model.surgery_log[0]["step"] == 500
