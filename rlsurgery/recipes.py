"""Recipes: an algorithm, its surgeries and hyperparameters per environment, in YAML.

A recipe file (``agents/*.yaml``, or a path to a user's own) has::

    algo: dqn                         # a surgical agent (rlsurgery.agents.ALGORITHMS)
    description: one line
    surgeries: [double_q_learning, {prioritized_replay: {alpha: 0.5}}, ...]
    exploration: [ucb_bonus: {c: 1.0}]   # exploration surgeries (``--explore`` replaces them)
    defaults: {policy: MlpPolicy, n_timesteps: 100000, learning_rate: ..., ...}
    hyperparams:
      CartPole-v1: {n_timesteps: 50000, ..., surgeries: {distributional_rl: {v_max: 100}}}

``defaults`` apply to every environment, the entry of the environment (if any) on top,
so a recipe runs on any compatible Gymnasium id. ``n_timesteps``, ``n_envs``, ``policy``
and ``env_kwargs`` describe the run; every other key is a constructor argument of the
agent. A per-env ``surgeries`` mapping changes parameters of the recipe's surgeries (or
adds surgeries). Every problem is reported with the file and line before anything is built.

The recipe's *exploration* is its ``exploration:`` entries plus any exploration surgery in
``surgeries`` (e.g. rainbow's ``noisy_nets``); ``explore=[...]`` (``--explore`` on the
command line) replaces all of it, so one flag swaps how any recipe explores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from rlsurgery import catalog
from rlsurgery.agents import ALGORITHMS
from rlsurgery.core.errors import RecipeError, SurgeryError
from rlsurgery.core.plain_data import plain_data_class
from rlsurgery.core.spec import SurgerySpec, parse_spec, parse_specs
from rlsurgery.core.yamlfile import bundled_names, check_keys, find_yaml, read_yaml
from rlsurgery.hyperparams import check_hyperparams, hyperparam_problem

TOP_KEYS = ("algo", "description", "surgeries", "exploration", "defaults", "hyperparams")


def available_recipes() -> list[str]:
    """Names of the bundled recipes."""
    return bundled_names("agents")


def find_recipe(name: str | Path) -> Path:
    """Path of a recipe given by name (``rainbow``) or path (``my/recipe.yaml``)."""
    return find_yaml(name, "agents", "recipe")


@dataclass
class Recipe:
    """A parsed, validated recipe file."""

    name: str
    path: Path
    algo: str
    description: str
    surgeries: list[SurgerySpec]
    defaults: dict[str, Any]
    hyperparams: dict[str, dict[str, Any]]
    exploration: list[SurgerySpec] = field(default_factory=list)

    def base_specs(self, explore: Any = None) -> list[SurgerySpec]:
        """The recipe's surgeries with its exploration, or with ``explore`` in place of it."""
        if explore is None:
            return _merge_specs(self.surgeries, self.exploration)
        kept = [s for s in self.surgeries if not is_exploration(s.key)]
        return _merge_specs(kept, exploration_specs(explore))

    @property
    def algorithm(self) -> type[BaseAlgorithm]:
        """The surgical agent class of ``algo``."""
        return ALGORITHMS[self.algo]

    def resolve(self, env_id: str, **overrides: Any) -> ResolvedRecipe:
        """Settings for ``env_id``: defaults, the env's entry, then ``overrides``.

        ``overrides`` may hold hyperparameters, run keys, ``explore`` (exploration specs that
        replace the recipe's exploration), ``surgeries`` (specs added, or merged into a recipe
        surgery of the same key), ``remove`` (keys to drop), and ``seed``, ``device``,
        ``verbose``, ``tensorboard_log``.
        """
        settings = {**self.defaults, **self.hyperparams.get(env_id, {})}
        env_surgeries = settings.pop("surgeries", None) or {}
        overrides = dict(overrides)
        explore = overrides.pop("explore", None)
        env_specs = [SurgerySpec(k, dict(v or {})) for k, v in env_surgeries.items()]
        extra = unique_specs(overrides.pop("surgeries", None), SURGERIES_SOURCE)
        if explore is None:
            specs = _merge_specs(self.base_specs(), env_specs)
        else:
            # the recipe's exploration goes; per-env settings of a chosen key are its defaults,
            # the parameters given with explore win
            chosen = exploration_specs(explore)
            chosen_keys = {c.key for c in chosen}
            twice = [s.key for s in extra if s.key in chosen_keys]
            if twice:
                raise RecipeError(
                    f"{twice[0]} is given both in {EXPLORE_SOURCE} and in {SURGERIES_SOURCE}; give it once"
                )
            kept = [s for s in self.surgeries if not is_exploration(s.key)]
            specs = _merge_specs(kept, [s for s in env_specs if not is_exploration(s.key)])
            specs = _merge_specs(specs, _merge_specs([s for s in env_specs if s.key in chosen_keys], chosen))
        remove = set(overrides.pop("remove", None) or [])
        unknown_removed = remove - {s.key for s in _merge_specs(specs, extra)}
        specs = [s for s in _merge_specs(specs, extra) if s.key not in remove]
        if unknown_removed:
            raise RecipeError(f"{self.name}: cannot remove {sorted(unknown_removed)}: not in the recipe")
        if overrides.get("env_kwargs"):  # given env arguments go over the recipe's, key by key
            overrides["env_kwargs"] = {**(settings.get("env_kwargs") or {}), **overrides["env_kwargs"]}
        settings.update(overrides)
        settings = check_hyperparams(self.algorithm, settings, f"{self.name} ({env_id})", RecipeError)
        run = {k: settings.pop(k) for k in ("n_timesteps", "n_envs", "policy", "env_kwargs") if k in settings}
        for spec in specs:
            catalog.create(spec)  # validates keys and parameters now
        return ResolvedRecipe(
            recipe=self.name,
            env_id=env_id,
            algo=self.algo,
            policy=run.get("policy") or default_policy(env_id, run.get("env_kwargs")),
            n_timesteps=int(run.get("n_timesteps", 100_000)),
            n_envs=int(run.get("n_envs", 1)),
            env_kwargs=dict(run.get("env_kwargs") or {}),
            surgeries=specs,
            kwargs=settings,
        )


def default_policy(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> str:
    """The SB3 policy for ``env_id``'s observations, when a recipe names none (as rl-zoo3 users
    expect): ``MultiInputPolicy`` for Dict observations, ``CnnPolicy`` for images, else ``MlpPolicy``.

    >>> default_policy("CartPole-v1"), default_policy("rlsurgery/BitFlip-v0")
    ('MlpPolicy', 'MultiInputPolicy')
    """
    from stable_baselines3.common.preprocessing import is_image_space

    env = gym.make(env_id, **dict(env_kwargs or {}))
    try:
        space = env.observation_space
    finally:
        env.close()
    if isinstance(space, gym.spaces.Dict):
        return "MultiInputPolicy"
    return "CnnPolicy" if is_image_space(space) else "MlpPolicy"


#: catalog section of the exploration surgeries
EXPLORATION_SECTION = 22


def is_exploration(key: str) -> bool:
    """Whether ``key`` is an exploration surgery (catalog section 22, or attaches to exploration)."""
    entry = catalog.get(key)
    return entry.surgery is not None and (
        EXPLORATION_SECTION in entry.sections or "exploration" in entry.attaches_to
    )


def exploration_keys() -> list[str]:
    """The catalog keys of the implemented exploration surgeries."""
    return [e.key for e in catalog.entries(status="implemented") if is_exploration(e.key)]


#: how the two override lists are named in messages (Python keyword, command-line flag)
SURGERIES_SOURCE = "surgeries (--surgery)"
EXPLORE_SOURCE = "explore (--explore)"


def unique_specs(specs: Any, source: str) -> list[SurgerySpec]:
    """Parse ``specs``, refusing a key given twice: which parameters would win is not obvious.

    (A key that is also a recipe surgery is not a repeat: its parameters override the recipe's.)

    >>> unique_specs(["double_q_learning", "double_q_learning"], "--surgery")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    rlsurgery.core.errors.RecipeError: --surgery: double_q_learning is given twice ...
    """
    parsed = parse_specs(specs)
    seen: dict[str, SurgerySpec] = {}
    for spec in parsed:
        if spec.key in seen:
            raise RecipeError(
                f"{source}: {spec.key} is given twice ({seen[spec.key]}, then {spec}); "
                "give each surgery once with all its parameters"
            )
        seen[spec.key] = spec
    return parsed


def exploration_specs(explore: Any) -> list[SurgerySpec]:
    """The specs of ``explore`` (``--explore``): exploration surgeries only, each key once."""
    chosen = unique_specs(explore, EXPLORE_SOURCE)
    for spec in chosen:
        if not is_exploration(spec.key):
            raise RecipeError(
                f"{EXPLORE_SOURCE}: {spec.key} is not an exploration surgery; add it with --surgery "
                f"(surgeries=), or explore with one of {', '.join(exploration_keys())}"
            )
    return chosen


def _merge_specs(base: Sequence[SurgerySpec], extra: Sequence[SurgerySpec]) -> list[SurgerySpec]:
    """``base`` with ``extra`` merged in: same key -> parameters updated, new key -> appended."""
    out = list(base)
    for spec in extra:
        for i, old in enumerate(out):
            if old.key == spec.key:
                out[i] = SurgerySpec(old.key, {**old.params, **spec.params})
                break
        else:
            out.append(spec)
    return out


def _resolve_policy_kwargs(policy_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Turn class names in YAML (``activation_fn: Tanh``) into classes."""
    out = dict(policy_kwargs or {})
    if isinstance(out.get("activation_fn"), str):
        out["activation_fn"] = getattr(th.nn, out["activation_fn"])
    if isinstance(out.get("optimizer_class"), str):
        out["optimizer_class"] = getattr(th.optim, out["optimizer_class"])
    return out


@plain_data_class
class LinearDecay:
    """The rl-baselines3-zoo's ``lin_X`` schedule: X · progress_remaining (X at the start, 0 at the end).

    >>> LinearDecay(0.2)(0.5)
    0.1
    """

    def __init__(self, initial: float) -> None:
        self.initial = float(initial)

    def __call__(self, progress_remaining: float) -> float:
        return self.initial * progress_remaining

    def __repr__(self) -> str:
        return f"LinearDecay({self.initial})"


def _resolve_schedules(kwargs: dict[str, Any], where: str) -> None:
    """Turn ``"lin_X"`` strings (zoo notation) into :class:`LinearDecay` schedules, in place."""
    for name, value in kwargs.items():
        if isinstance(value, str) and value.startswith("lin_"):
            try:
                kwargs[name] = LinearDecay(float(value[4:]))
            except ValueError:
                raise RecipeError(
                    f"{where}: {name}: cannot read the schedule {value!r} (expected lin_<number>)"
                ) from None


@dataclass
class ResolvedRecipe:
    """Everything needed to build an agent for one environment."""

    recipe: str
    env_id: str
    algo: str
    policy: str
    n_timesteps: int
    n_envs: int
    env_kwargs: dict[str, Any]
    surgeries: list[SurgerySpec]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def make_env(self, seed: int | None = None, monitor_dir: str | None = None) -> VecEnv:
        """The training VecEnv (``n_envs`` copies, each Monitor-wrapped)."""
        return make_vec_env(
            self.env_id,
            n_envs=self.n_envs,
            seed=seed,
            monitor_dir=monitor_dir,
            env_kwargs=self.env_kwargs or None,
        )

    def build(self, env: Any = None) -> BaseAlgorithm:
        """Build the agent (``env``: a ready environment, else one made from ``env_id``)."""
        kwargs = dict(self.kwargs)
        kwargs["policy_kwargs"] = _resolve_policy_kwargs(kwargs.get("policy_kwargs"))
        _resolve_schedules(kwargs, f"{self.recipe} ({self.env_id})")
        if env is None:
            env = self.make_env(seed=kwargs.get("seed"))
        model = ALGORITHMS[self.algo](
            self.policy, env, surgeries=[s.as_dict() for s in self.surgeries], **kwargs
        )
        model.rls_env_id = self.env_id  # type: ignore[attr-defined]
        model.rls_recipe = self.recipe  # type: ignore[attr-defined]
        model.rls_env_kwargs = dict(self.env_kwargs)  # type: ignore[attr-defined]
        return model

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly settings (written next to a trained model)."""
        return {
            "recipe": self.recipe,
            "env_id": self.env_id,
            "algo": self.algo,
            "policy": self.policy,
            "n_timesteps": self.n_timesteps,
            "n_envs": self.n_envs,
            "env_kwargs": self.env_kwargs,
            "surgeries": [s.as_dict() for s in self.surgeries],
            "hyperparams": self.kwargs,
        }


def load_recipe(name: str | Path) -> Recipe:
    """Read and validate a recipe; errors name the file and line."""
    path = find_recipe(name)
    data, fail = read_yaml(path)

    if not isinstance(data, dict):
        raise fail("a recipe must be a mapping with 'algo', 'surgeries', 'defaults' and 'hyperparams'")
    check_keys(data, TOP_KEYS, fail, "recipe")
    algo = data.get("algo")
    if algo not in ALGORITHMS:
        raise fail(f"'algo' must be one of {', '.join(ALGORITHMS)} (got {algo!r})", "algo")
    raw_surgeries = data.get("surgeries") or []
    if not isinstance(raw_surgeries, list):
        raise fail("'surgeries' must be a list", "surgeries")
    specs = []
    for i, raw in enumerate(raw_surgeries):
        try:
            spec = parse_spec(raw)
            catalog.create(spec)
        except SurgeryError as exc:
            raise fail(str(exc), "surgeries", i) from None
        _refuse_repeat(spec, specs, "surgeries", fail, i)
        specs.append(spec)
    raw_exploration = data.get("exploration") or []
    if not isinstance(raw_exploration, list):
        raw_exploration = [raw_exploration]
    exploration = []
    for i, raw in enumerate(raw_exploration):
        try:
            spec = parse_spec(raw)
            catalog.create(spec)
        except SurgeryError as exc:
            raise fail(str(exc), "exploration", i) from None
        if not is_exploration(spec.key):
            raise fail(
                f"{spec.key} is not an exploration surgery; list it under 'surgeries'", "exploration", i
            )
        _refuse_repeat(spec, exploration, "exploration", fail, i)
        _refuse_repeat(spec, specs, "surgeries", fail, i, where="exploration")
        exploration.append(spec)
    defaults = data.get("defaults") or {}
    hyperparams = data.get("hyperparams") or {}
    if not isinstance(defaults, dict):
        raise fail("'defaults' must be a mapping", "defaults")
    if not isinstance(hyperparams, dict) or not all(isinstance(v, dict) for v in hyperparams.values()):
        raise fail("'hyperparams' must map environment ids to mappings", "hyperparams")
    algorithm = ALGORITHMS[algo]
    for where, block, key_path in [("defaults", defaults, ("defaults",))] + [
        (env_id, block, ("hyperparams", env_id)) for env_id, block in hyperparams.items()
    ]:
        problem = hyperparam_problem(algorithm, {k: v for k, v in block.items() if k != "surgeries"})
        if problem is not None:
            raise fail(f"{where}: {problem.message}", *key_path, *problem.path)
        env_surgeries = block.get("surgeries") or {}
        if not isinstance(env_surgeries, dict):
            raise fail(
                "a per-env 'surgeries' entry must map surgery keys to parameters", *key_path, "surgeries"
            )
        for key, params in env_surgeries.items():
            try:
                base = next((s for s in [*specs, *exploration] if s.key == key), SurgerySpec(key))
                catalog.create(SurgerySpec(key, {**base.params, **(params or {})}))
            except SurgeryError as exc:
                raise fail(str(exc), *key_path, "surgeries", key) from None
    return Recipe(
        name=path.stem,
        path=path,
        algo=algo,
        description=str(data.get("description", "")),
        surgeries=specs,
        defaults=dict(defaults),
        hyperparams={str(k): dict(v) for k, v in hyperparams.items()},
        exploration=exploration,
    )


def _refuse_repeat(
    spec: SurgerySpec, earlier: Sequence[SurgerySpec], listed: str, fail: Any, i: int, where: str = ""
) -> None:
    """A recipe lists each surgery once (which of two parameter sets would win is not obvious)."""
    if any(s.key == spec.key for s in earlier):
        place = f"both under '{where}' and under '{listed}'" if where else f"twice under '{listed}'"
        raise fail(f"{spec.key} is listed {place}; list it once with all its parameters", where or listed, i)


def make(recipe: str | Path, env_id: str, *, env: Any = None, **overrides: Any) -> BaseAlgorithm:
    """Build an agent from a recipe for ``env_id``.

    :param recipe: a bundled recipe name (``"dqn"``, ``"rainbow"``) or a YAML path
    :param env_id: a Gymnasium id; recipes without an entry for it use their defaults
    :param env: a ready environment to use instead of making one from ``env_id``
    :param overrides: hyperparameters, ``seed``, ``device``, ``surgeries`` to add or
        change, ``remove`` (surgery keys to drop), ``explore`` (exploration surgeries that
        replace the recipe's), ``n_envs``
    :return: the surgical agent, not yet trained

    >>> import rlsurgery as rls
    >>> model = rls.make("rainbow", "CartPole-v1", seed=0, learning_starts=100)
    >>> sorted(record["key"] for record in model.surgery_log)[:2]
    ['distributional_rl', 'double_q_learning']
    """
    return load_recipe(recipe).resolve(env_id, **overrides).build(env=env)
