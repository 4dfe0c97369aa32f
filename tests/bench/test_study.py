"""Suites and study specifications: parsing, expansion into runs, and bad input."""

from __future__ import annotations

import pytest

from rlsurgery.bench.study import StudySpec, Variant, ablation_variants, load_study, seed_list, select_envs
from rlsurgery.bench.suites import available_suites, known_env_settings, load_suite
from rlsurgery.core.errors import EnvironmentNotAvailableError, StudyError
from rlsurgery.recipes import load_recipe
from tests.bench.study_helpers import write_tiny_study


def test_bundled_suites_load_with_normalization_facts():
    assert {"classic", "minatar"} <= set(available_suites())
    classic = load_suite("classic")
    assert classic.env_ids == ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3"]
    for env in classic.envs:
        assert env.steps and env.eval_freq and env.n_eval_episodes >= 1
        assert env.random_score is not None and env.reference_score is not None
        assert env.reference_score > env.random_score
        assert "rl-baselines3-zoo" in env.reference_source
    assert load_suite("classic").envs[3].requires == "box2d"
    minatar = load_suite("minatar")
    assert all(e.requires == "minatar" and e.env_kwargs == {"max_episode_steps": 10000} for e in minatar.envs)


def test_env_outside_a_suite_takes_known_settings():
    assert known_env_settings("Acrobot-v1").reference_score == pytest.approx(-76.639)
    unknown = known_env_settings("Pendulum-v1")
    assert unknown.steps is None and unknown.reference_score is None


def test_study_yaml_expands_to_runs(tmp_path):
    spec = load_study(write_tiny_study(tmp_path, seeds=3, variants=("a", "b")))
    assert spec.variant_names == ["a", "b"] and spec.seeds == [0, 1, 2] and spec.baseline == "a"
    runs = spec.runs()
    assert len(runs) == 6 and len({r.run_id for r in runs}) == 6
    assert runs[0].env["steps"] == 600 and runs[0].env["eval_freq"] == 300
    assert runs[0].variant["hyperparams"]["learning_starts"] == 100
    # the configuration hash changes with the configuration, not with the run order
    again = load_study(write_tiny_study(tmp_path, seeds=3, variants=("a", "b"))).runs()
    assert [r.config_hash for r in again] == [r.config_hash for r in runs]
    longer = load_study(write_tiny_study(tmp_path, seeds=3, steps=800, variants=("a", "b"))).runs()
    assert longer[0].config_hash != runs[0].config_hash


def test_variants_with_surgery_overrides(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "suite: classic\nenvs: [CartPole-v1]\nseeds: [3, 5]\nvariants:\n"
        "  rainbow-no-per: {recipe: rainbow, remove: [prioritized_replay]}\n"
        "  dqn-double: {recipe: dqn, surgeries: [double_q_learning]}\n"
    )
    spec = load_study(path)
    assert spec.seeds == [3, 5] and [e.env_id for e in spec.envs] == ["CartPole-v1"]
    assert spec.envs[0].steps == 50_000  # the suite's budget
    spec.validate(build=True)  # builds each variant once on its env


def test_explore_variants_swap_exploration_and_keep_old_hashes(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "suite: exploration\nenvs: [Chain]\nseeds: 1\nvariants:\n"
        "  eps: {recipe: dqn}\n"
        "  ucb: {recipe: dqn, explore: ['ucb_bonus:c=1.0']}\n"
        "  rnd: {recipe: dqn, explore: {curiosity_driven: {variant: rnd}}}\n"
    )
    spec = load_study(path)
    eps, ucb, rnd = spec.variants
    assert "explore" not in eps.as_dict()  # unchanged form: configs of earlier studies keep their hash
    assert ucb.as_dict()["explore"] == [{"key": "ucb_bonus", "c": 1.0}]
    assert rnd.overrides()["explore"] == [{"curiosity_driven": {"variant": "rnd"}}]
    spec.validate(build=True)
    path.write_text(
        "suite: exploration\nenvs: [Chain]\nvariants:\n  x: {recipe: dqn, explore: [ucb_bonus:c=-1]}\n"
    )
    with pytest.raises(StudyError, match=r"s\.yaml:4: variant 'x': ucb_bonus: parameter 'c' must be >= 0.0"):
        load_study(path)


def test_ablation_covers_exploration_entries():
    names = [v.name for v in ablation_variants("dqn-ucb")]
    assert names == ["dqn-ucb", "dqn-ucb-no-ucb_bonus"]
    resolved = load_recipe("dqn-ucb").resolve("CartPole-v1", remove=["ucb_bonus"])
    assert resolved.surgeries == []


def test_ablation_variants_leave_one_out_and_add_one():
    keys = [
        "double_q_learning",
        "dueling_architecture",
        "distributional_rl",
        "prioritized_replay",
        "n_step_returns",
        "noisy_nets",
    ]
    loo = ablation_variants("rainbow")
    assert [v.name for v in loo] == ["rainbow"] + [f"rainbow-no-{k}" for k in keys]
    assert all(v.remove == [k] for v, k in zip(loo[1:], keys))
    both = ablation_variants("rainbow", add_one=True)
    none = next(v for v in both if v.name == "rainbow-none")
    assert sorted(none.remove) == sorted(keys)
    only = next(v for v in both if v.name == "rainbow-only-noisy_nets")
    assert sorted(only.remove) == sorted(k for k in keys if k != "noisy_nets")
    with pytest.raises(StudyError, match="no surgeries to ablate"):
        ablation_variants("dqn")


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            "variants: [dqn]\nenvs: [CartPole-v1]\nseedz: 3\n",
            3,
            "unknown study entry 'seedz'; did you mean 'seeds'",
        ),
        ("variants: [dqn]\nenvs: [CartPole-v1]\nseeds: 0\n", 3, "seeds must be >= 1"),
        ("variants: [dqn]\nenvs: [CartPole-v1]\nseeds: -2\n", 3, "seeds must be >= 1"),
        (
            "variants:\n  a: {recipe: rainbo}\nenvs: [CartPole-v1]\n",
            2,
            "unknown recipe 'rainbo'; did you mean 'rainbow'",
        ),
        ("variants:\n  a: {recipe: dqn, surgerys: []}\nenvs: [CartPole-v1]\n", 2, "did you mean 'surgeries'"),
        ("variants:\n  a: {recipe: dqn, surgeries: [double_q]}\nenvs: [CartPole-v1]\n", 2, "double_q"),
        ("variants: [dqn]\nsuite: clasic\n", 2, "unknown suite 'clasic'; did you mean 'classic'"),
        ("variants: [dqn]\nenvs: [CartPole-v1]\nsteps: 0\n", 3, "steps must be a positive integer"),
        (
            "variants: [dqn]\nenvs: [CartPole-v1]\nbaseline: ppo\n",
            3,
            "baseline 'ppo' is not one of the variants",
        ),
        ("variants: [dqn]\nenvs:\n  CartPole-v1: {step: 10}\n", 3, "did you mean 'steps'"),
        ("variants: [dqn]\nenvs: [CartPole-v1]\nmetrics: train/loss\n", 3, "metrics must be a list"),
        ("variants: [dqn]\nenvs: [CartPole-v1]\nmetrics: ['']\n", 3, "bad entry: ''"),
        ("variants: [dqn\nenvs: [CartPole-v1]\n", 2, "malformed YAML"),
    ],
)
def test_bad_study_files_name_file_and_line(tmp_path, body, line, message):
    path = tmp_path / "study.yaml"
    path.write_text(body)
    with pytest.raises(StudyError) as info:
        load_study(path)
    assert str(info.value).startswith(f"{path}:{line}:"), str(info.value)
    assert message in str(info.value)


def test_bad_environment_and_variant_fail_before_any_run(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("variants: [dqn]\nenvs: [CartPole-v2]\nseeds: 1\n")
    with pytest.raises(
        EnvironmentNotAvailableError, match=r"unknown environment id 'CartPole-v2'.*CartPole-v1"
    ):
        load_study(path).validate()
    envs = select_envs(None, ["Pendulum-v1"])
    spec = StudySpec("x", [Variant("dqn", "dqn")], envs, [0])
    with pytest.raises(StudyError, match="variant 'dqn' on Pendulum-v1"):
        spec.validate()


def test_spec_rules():
    envs = select_envs(None, ["CartPole-v1"])
    with pytest.raises(StudyError, match="unique"):
        StudySpec("x", [Variant("a", "dqn"), Variant("a", "rainbow")], envs, [0])
    with pytest.raises(StudyError, match="seeds must be >= 1"):
        seed_list(0)
    with pytest.raises(StudyError, match="give a suite"):
        select_envs(None, None)
    spec = StudySpec("x", [Variant("a", "dqn")], envs, [0, 1], baseline="a")
    assert StudySpec.from_dict(spec.as_dict()).as_dict() == spec.as_dict()


def test_labelled_entries_run_one_gymnasium_id_with_other_arguments(tmp_path):
    suite = load_suite("exploration")
    assert suite.env_ids == ["DeepSea-10", "DeepSea-20", "Chain", "MountainCar-v0"]
    deep20 = known_env_settings("DeepSea-20")
    assert deep20.env_id == "rlsurgery/DeepSea-v0" and deep20.env_kwargs == {"size": 20}
    assert deep20.reference_score == pytest.approx(1 - 19 * 0.01 / 20)
    # unnamed entries serialize as before (stored configuration hashes stay valid)
    assert "name" not in known_env_settings("CartPole-v1").as_dict()
    path = tmp_path / "study.yaml"
    path.write_text(
        "variants: [dqn]\nseeds: 1\nsteps: 200\nenvs:\n"
        "  Sea-4: {id: rlsurgery/DeepSea-v0, env_kwargs: {size: 4}}\n"
        "  Sea-6: {id: rlsurgery/DeepSea-v0, env_kwargs: {size: 6}}\n"
    )
    spec = load_study(path)
    assert [r.run_id for r in spec.runs()] == ["dqn|Sea-4|0", "dqn|Sea-6|0"]
    assert [e.env_kwargs["size"] for e in spec.envs] == [4, 6]
    spec.validate()
    assert StudySpec.from_dict(spec.as_dict()).runs()[1].config_hash == spec.runs()[1].config_hash
