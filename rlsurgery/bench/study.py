"""Studies: variants × environments × seeds, described in YAML or on the command line.

A study file (``rlsurgery compare STUDY.yaml``)::

    name: dqn-vs-rainbow
    description: one line
    suite: classic                 # a bundled suite or a suite YAML path, and/or
    envs: [CartPole-v1]            # env ids (a mapping id -> settings overrides also works)
    seeds: 5                       # 5 -> seeds 0..4, or an explicit list [0, 7, 9]
    steps: 20000                   # optional: one budget for every env
    eval_freq: 5000                # optional overrides of the suite's evaluation settings
    n_eval_episodes: 10
    baseline: dqn                  # probability of improvement is measured against it
    device: cpu
    metrics: [train/loss]          # optional: logger values kept per run ("train/": a prefix)
    variants:
      dqn: {recipe: dqn}
      rainbow: {recipe: rainbow}
      rainbow-no-per: {recipe: rainbow, remove: [prioritized_replay]}
      rainbow-fast: {recipe: rainbow, hyperparams: {learning_rate: 0.001},
                     surgeries: ["n_step_returns:n=5"]}

``variants`` may also be a list of recipe names. A variant is a recipe plus optional
surgery overrides: ``explore`` replaces the recipe's exploration (as ``--explore``),
``surgeries`` adds surgeries or changes a recipe surgery's parameters, ``remove`` drops
recipe surgeries, ``hyperparams`` overrides hyperparameters.

``metrics`` names values of SB3's logger (``train/approx_kl``, ``train/loss``, a surgery's own
``train/kl_beta`` ...) to keep for every run, each time the agent dumps its logs; an entry
ending in ``/`` keeps every key under that prefix. They go to the store's ``metrics`` table and
the report's "Training metrics" table.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym

from rlsurgery import catalog
from rlsurgery.bench.suites import EnvSettings, known_env_settings, load_suite, parse_env_settings
from rlsurgery.core.checks import MAX_SEED, check_int, int_problem
from rlsurgery.core.errors import StudyError, SurgeryError
from rlsurgery.core.spec import parse_specs
from rlsurgery.core.yamlfile import check_keys, read_yaml
from rlsurgery.envs import ensure_registered, require_extra
from rlsurgery.hyperparams import Problem, hyperparam_problem
from rlsurgery.recipes import exploration_specs, find_recipe, load_recipe, unique_specs

STUDY_KEYS = (
    "name",
    "description",
    "suite",
    "envs",
    "seeds",
    "steps",
    "eval_freq",
    "n_eval_episodes",
    "baseline",
    "device",
    "variants",
    "save_models",
    "metrics",
    "tasks",
    "reference",
)
#: the label of a task-sequence run's env (its runs are ``VARIANT|sequence|SEED``)
SEQUENCE_LABEL = "sequence"
VARIANT_KEYS = ("recipe", "explore", "surgeries", "remove", "hyperparams")


@dataclass
class Variant:
    """A recipe plus surgery and hyperparameter overrides, under a name."""

    name: str
    recipe: str
    surgeries: list[Any] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    explore: list[Any] | None = None
    """exploration specs replacing the recipe's exploration (None: keep the recipe's)"""

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``explore`` only when set, so older run configs keep their hash)."""
        out = {
            "name": self.name,
            "recipe": self.recipe,
            "surgeries": [s.as_dict() for s in parse_specs(self.surgeries)],
            "remove": list(self.remove),
            "hyperparams": dict(self.hyperparams),
        }
        if self.explore is not None:
            out["explore"] = [s.as_dict() for s in parse_specs(self.explore)]
        return out

    def overrides(self) -> dict[str, Any]:
        """Keyword arguments of :meth:`rlsurgery.recipes.Recipe.resolve` for this variant."""
        out = {"surgeries": list(self.surgeries), "remove": list(self.remove), **self.hyperparams}
        if self.explore is not None:
            out["explore"] = list(self.explore)
        return out


SCORE_KEYS = ("random_score", "reference_score", "reference_source")
"""Env entries that only normalize results: a run is the same run whatever they say."""


def config_hash(
    variant: dict[str, Any], env: dict[str, Any], seed: int, tasks: list[dict[str, Any]] | None = None
) -> str:
    """The hash that identifies a run's configuration: its variant, env settings and seed (and a
    sequence run's tasks).

    The env's normalization scores are left out, so that correcting a suite's random or
    reference score re-normalizes a stored study instead of making its runs "changed".
    """
    trained_on = {k: v for k, v in env.items() if k not in SCORE_KEYS}
    content: dict[str, Any] = {"variant": variant, "env": trained_on, "seed": seed}
    if tasks:  # only then, so that the runs of other studies keep their hash
        content["tasks"] = [{k: v for k, v in t.items() if k not in SCORE_KEYS} for t in tasks]
    payload = json.dumps(content, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class RunSpec:
    """One training run of a study: everything a worker needs, JSON-serializable."""

    run_id: str
    variant: dict[str, Any]
    env: dict[str, Any]
    seed: int
    device: str = "auto"
    model_path: str | None = None
    metrics: list[str] = field(default_factory=list)
    """logger keys (or prefixes ending in ``/``) whose values the worker keeps"""
    tasks: list[dict[str, Any]] | None = None
    """a sequence run: the tasks one agent trains through in order (env settings), else None"""

    @property
    def config_hash(self) -> str:
        """Identifies the run's configuration (a changed configuration is a different run)."""
        return config_hash(self.variant, self.env, self.seed, self.tasks)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (what workers receive)."""
        out = {
            "run_id": self.run_id,
            "variant": self.variant,
            "env": self.env,
            "seed": self.seed,
            "device": self.device,
            "model_path": self.model_path,
            "metrics": list(self.metrics),
        }
        if self.tasks:
            out["tasks"] = [dict(t) for t in self.tasks]
        return out


@dataclass
class StudySpec:
    """Variants × environments × seeds, with evaluation settings and a baseline."""

    name: str
    variants: list[Variant]
    envs: list[EnvSettings]
    seeds: list[int]
    baseline: str | None = None
    description: str = ""
    device: str = "auto"
    save_models: bool = False
    metrics: list[str] = field(default_factory=list)
    """logger keys (or prefixes ending in ``/``) kept for every run"""
    command_line: bool | None = False
    """built from command-line options (``compare --agents``, ``ablate``), not a study file: its
    variants and environments are part of what the study is, so its folder takes no others
    (``None``: not known, for a study stored before this was recorded)"""
    tasks: list[EnvSettings] = field(default_factory=list)
    """a task-sequence study: one agent per variant and seed trains through these in order (its
    ``envs`` is then the one sequence entry, :func:`sequence_env`)"""
    reference: str | None = None
    """a task-sequence study's variant also trained on each task alone, from scratch: the reference
    of forward transfer (runs ``VARIANT|TASK|SEED``)"""

    def __post_init__(self) -> None:
        if not self.variants:
            raise StudyError("a study needs at least one variant")
        if self.tasks:
            self.envs = [sequence_env(self.tasks)]
        if not self.envs:
            raise StudyError("a study needs at least one environment")
        if not self.seeds:
            raise StudyError("seeds must be >= 1")
        names = [v.name for v in self.variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise StudyError(f"variant names must be unique (repeated: {', '.join(duplicates)})")
        for seed in self.seeds:
            check_int(seed, "seeds: each seed", 0, MAX_SEED, StudyError)
        if len(set(self.seeds)) != len(self.seeds):
            raise StudyError(f"seeds must be distinct (got {self.seeds})")
        if self.baseline is not None and self.baseline not in names:
            raise StudyError(f"baseline {self.baseline!r} is not one of the variants ({', '.join(names)})")
        self.metrics = check_metric_keys(self.metrics)
        if self.tasks:
            labels = [t.label for t in self.tasks]
            if len(set(labels)) != len(labels) or SEQUENCE_LABEL in labels:
                raise StudyError(f"tasks need distinct labels other than {SEQUENCE_LABEL!r} (got {labels})")
            missing = [t.label for t in self.tasks if not t.steps]
            if missing:
                raise StudyError(f"tasks: each task needs its steps ({', '.join(missing)} has none)")
        if self.reference is not None and (not self.tasks or self.reference not in names):
            raise StudyError(
                f"reference {self.reference!r} must be one of the variants of a study with tasks "
                f"({', '.join(names)})"
            )

    @property
    def variant_names(self) -> list[str]:
        """Variant names in study order."""
        return [v.name for v in self.variants]

    def runs(self, out_dir: str | Path | None = None) -> list[RunSpec]:
        """Every run, in variant, env, seed order (``out_dir``: where models are saved); a task-sequence
        study: one sequence run per variant and seed, then the reference variant on each task alone."""
        pairs = [(variant, env) for variant in self.variants for env in self.envs]
        if self.reference is not None:
            reference = next(v for v in self.variants if v.name == self.reference)
            pairs += [(reference, task) for task in self.tasks]
        tasks = [t.as_dict() for t in self.tasks] or None
        runs = []
        for variant, env in pairs:
            for seed in self.seeds:
                run_id = f"{variant.name}|{env.label}|{seed}"
                model_path = None
                if self.save_models and out_dir is not None:
                    safe = run_id.replace("|", "__").replace("/", "_")
                    model_path = str(Path(out_dir) / "models" / f"{safe}.zip")
                sequence = tasks if env.label == SEQUENCE_LABEL and self.tasks else None
                runs.append(
                    RunSpec(
                        run_id,
                        variant.as_dict(),
                        env.as_dict(),
                        seed,
                        self.device,
                        model_path,
                        list(self.metrics),
                        sequence,
                    )
                )
        return runs

    def validate(self, build: bool = True) -> None:
        """Check every variant on every environment before any run starts.

        Resolves each recipe with its overrides (keys, parameters, hyperparameters), checks
        each environment id and extra, and with ``build`` constructs each agent once on its
        environment, so that surgery/space mismatches fail now.
        """
        trained_on = self.tasks or self.envs
        for env in trained_on:
            if env.requires:
                require_extra(env.requires, env.env_id)
            ensure_registered(env.env_id)
        if self.tasks:
            check_shared_spaces(self.tasks)
        for variant in self.variants:
            recipe = load_recipe(variant.recipe)
            for env in trained_on:
                where = f"variant {variant.name!r} on {env.label}"
                try:
                    resolved = recipe.resolve(
                        env.env_id,
                        seed=0,
                        device="cpu",
                        env_kwargs=merged_env_kwargs(recipe, env),
                        **variant.overrides(),
                    )
                    if build and (env is trained_on[0] or not self.tasks):  # a sequence's agent: task 0's
                        if "buffer_size" in resolved.kwargs:
                            resolved.kwargs["buffer_size"] = min(int(resolved.kwargs["buffer_size"]), 1000)
                        resolved.n_envs = 1
                        model = resolved.build()
                        model.get_env().close()
                except SurgeryError as exc:
                    raise StudyError(f"{where}: {exc}") from None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (stored in the study folder)."""
        return {
            "name": self.name,
            "description": self.description,
            "variants": [v.as_dict() for v in self.variants],
            "envs": [e.as_dict() for e in self.envs],
            "seeds": list(self.seeds),
            "baseline": self.baseline,
            "device": self.device,
            "save_models": self.save_models,
            "metrics": list(self.metrics),
            "command_line": self.command_line,
            **(
                {"tasks": [t.as_dict() for t in self.tasks], "reference": self.reference}
                if self.tasks
                else {}
            ),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySpec:
        """Inverse of :meth:`as_dict`."""
        return cls(
            name=data["name"],
            description=data.get("description", ""),
            variants=[Variant(**v) for v in data["variants"]],
            envs=[EnvSettings.from_dict(e) for e in data["envs"]],
            seeds=list(data["seeds"]),
            baseline=data.get("baseline"),
            device=data.get("device", "auto"),
            save_models=bool(data.get("save_models", False)),
            metrics=list(data.get("metrics") or []),
            command_line=data.get("command_line"),
            tasks=[EnvSettings.from_dict(t) for t in data.get("tasks") or []],
            reference=data.get("reference"),
        )


def sequence_env(tasks: list[EnvSettings]) -> EnvSettings:
    """The one env entry of a task-sequence study: task 0's id, the sequence's total budget."""
    first = tasks[0]
    return EnvSettings(
        env_id=first.env_id,
        name=SEQUENCE_LABEL,
        steps=sum(int(t.steps or 0) for t in tasks),
        eval_freq=first.eval_freq,
        n_eval_episodes=first.n_eval_episodes,
        env_kwargs=dict(first.env_kwargs),
        requires=first.requires,
    )


def check_shared_spaces(tasks: list[EnvSettings]) -> None:
    """Every task of a sequence has task 0's observation and action spaces (one agent acts on all)."""
    spaces = []
    for task in tasks:
        env = gym.make(task.env_id, **task.env_kwargs)
        spaces.append((env.observation_space, env.action_space))
        env.close()
    for task, (observations, actions) in zip(tasks[1:], spaces[1:]):
        if (observations, actions) != spaces[0]:
            raise StudyError(
                f"tasks: {task.label} has spaces {observations}, {actions}; the first task has "
                f"{spaces[0][0]}, {spaces[0][1]} (one agent trains on every task)"
            )


def check_metric_keys(metrics: Any) -> list[str]:
    """A study's ``metrics``: logger keys like ``train/approx_kl``, or prefixes like ``train/``.

    :raises StudyError: not a list of non-empty strings
    """
    if metrics is None:
        return []
    if isinstance(metrics, str) or not isinstance(metrics, list | tuple):
        raise StudyError(f"metrics must be a list of logger keys such as train/loss (got {metrics!r})")
    bad = [m for m in metrics if not isinstance(m, str) or not m.strip() or m != m.strip()]
    if bad:
        raise StudyError(f"metrics must be logger keys such as train/loss (bad entry: {bad[0]!r})")
    return list(dict.fromkeys(metrics))


def merged_env_kwargs(recipe: Any, env: EnvSettings) -> dict[str, Any]:
    """The recipe's ``env_kwargs`` for ``env``, with the suite's on top."""
    settings = {**recipe.defaults, **recipe.hyperparams.get(env.env_id, {})}
    return {**(settings.get("env_kwargs") or {}), **env.env_kwargs}


def seed_list(seeds: int | list[int]) -> list[int]:
    """``5`` -> ``[0, 1, 2, 3, 4]``; a list is checked and kept."""
    if isinstance(seeds, bool):
        raise StudyError(f"seeds must be a positive integer or a list of integers (got {seeds!r})")
    if isinstance(seeds, int):
        if seeds < 1:
            raise StudyError(f"seeds must be >= 1 (got {seeds})")
        return list(range(seeds))
    if isinstance(seeds, list | tuple) and seeds and all(int_problem(s, 0, MAX_SEED) is None for s in seeds):
        return list(seeds)
    raise StudyError(
        f"seeds must be a positive integer or a non-empty list of seeds from 0 to {MAX_SEED} (got {seeds!r})"
    )


def select_envs(
    suite: str | Path | None,
    env_ids: list[str] | None,
    env_overrides: dict[str, dict[str, Any]] | None = None,
    **common: Any,
) -> list[EnvSettings]:
    """Environment settings from a suite and/or env ids, with ``common`` overrides
    (``steps``, ``eval_freq``, ``n_eval_episodes``) applied to all."""
    if suite is None and not env_ids:
        raise StudyError("give a suite or at least one environment id")
    by_id: dict[str, EnvSettings] = {}
    if suite is not None:
        by_id = {e.label: e for e in load_suite(suite).envs}
    chosen = list(env_ids) if env_ids else list(by_id)
    envs = []
    for env_id in chosen:
        env = by_id.get(env_id) or known_env_settings(env_id)
        extra = (env_overrides or {}).get(env_id) or {}
        if extra:
            data = {**env.as_dict(), **{k: v for k, v in extra.items() if k != "id"}}
            if extra.get("id") and extra["id"] != env_id:  # a labelled entry: another id under this name
                data.update(env_id=str(extra["id"]), name=env_id)
            env = EnvSettings.from_dict(data)
        envs.append(env.with_overrides(**common))
    return envs


def ablation_variants(recipe: str, add_one: bool = False) -> list[Variant]:
    """The recipe, the recipe minus each of its surgeries (leave-one-out), and with
    ``add_one`` the base algorithm alone and with each surgery alone."""
    loaded = load_recipe(recipe)
    keys = [s.key for s in loaded.base_specs()]  # surgeries and exploration entries
    if not keys:
        raise StudyError(f"recipe {recipe!r} has no surgeries to ablate")
    name = loaded.name
    variants = [Variant(name, recipe)]
    variants += [Variant(f"{name}-no-{key}", recipe, remove=[key]) for key in keys]
    if add_one:
        variants.append(Variant(f"{name}-none", recipe, remove=list(keys)))
        variants += [
            Variant(f"{name}-only-{key}", recipe, remove=[k for k in keys if k != key]) for key in keys
        ]
    return variants


def _recipe_reference(recipe: str, base: Path) -> str:
    """A recipe name stays a name; a recipe file becomes an absolute path (workers run elsewhere)."""
    candidate = Path(recipe)
    if candidate.suffix in (".yaml", ".yml") and not candidate.is_absolute():
        candidate = base / candidate
        return str(find_recipe(candidate).resolve())
    find_recipe(recipe)
    return recipe


def _variant_hyperparam_problem(recipe: str, hyperparams: dict[str, Any]) -> Problem | None:
    """The first bad entry of a variant's ``hyperparams`` for its recipe's algorithm (names and values;
    the override keys of a variant, such as ``surgeries``, have their own entries)."""
    owned = [k for k in hyperparams if k in VARIANT_KEYS]
    if owned:
        return Problem((owned[0],), f"{owned[0]} is a variant entry of its own, not a hyperparameter")
    return hyperparam_problem(load_recipe(recipe).algorithm, hyperparams)


def _study_tasks(data: dict[str, Any], fail: Any, common: dict[str, Any]) -> list[EnvSettings]:
    """A study file's ``tasks``: an ordered mapping label -> env settings (``id``, ``steps``,
    ``env_kwargs``, scores …), each checked as an ``envs`` entry; none without the key."""
    raw_tasks = data.get("tasks")
    if raw_tasks is None:
        return []
    if "envs" in data or "suite" in data:
        raise fail("give either 'tasks' (a sequence) or 'envs'/'suite', not both", "tasks")
    if not isinstance(raw_tasks, dict) or len(raw_tasks) < 2:
        raise fail("'tasks' must be a mapping of at least two tasks (label -> {id, steps, ...})", "tasks")
    tasks = []
    for label, raw in raw_tasks.items():
        if not isinstance(raw, dict):
            raise fail(f"the entry of task {label} must be a mapping", "tasks", label)
        task = parse_env_settings(str(label), raw, fail, "tasks", label)
        tasks.append(task.with_overrides(**{k: v for k, v in common.items() if getattr(task, k) is None}))
    return tasks


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file; every problem names the file and line."""
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file not found: {path}")
    data, fail = read_yaml(path, StudyError)
    if not isinstance(data, dict):
        raise fail("a study must be a mapping with 'variants', 'seeds' and 'suite' or 'envs'")
    check_keys(data, STUDY_KEYS, fail, "study")
    raw_variants = data.get("variants")
    if isinstance(raw_variants, list):
        raw_variants = {str(v): {"recipe": str(v)} for v in raw_variants}
    if not isinstance(raw_variants, dict) or not raw_variants:
        raise fail(
            "'variants' must be a non-empty mapping (name -> {recipe: ...}) or list of recipes", "variants"
        )
    variants = []
    for name, raw in raw_variants.items():
        raw = raw or {}
        if not isinstance(raw, dict):
            raise fail(f"variant {name!r} must be a mapping", "variants", name)
        check_keys(raw, VARIANT_KEYS, fail, "variant", "variants", name)
        try:
            recipe = _recipe_reference(str(raw.get("recipe", name)), path.parent)
            surgeries = raw.get("surgeries") or []
            if not isinstance(surgeries, list):
                raise StudyError("'surgeries' must be a list of surgery specs")
            for spec in unique_specs(surgeries, "surgeries"):
                catalog.create(spec)  # unknown keys and bad parameters fail here, with the line
            remove = raw.get("remove") or []
            if not isinstance(remove, list):
                raise StudyError("'remove' must be a list of surgery keys")
            hyperparams = raw.get("hyperparams") or {}
            if not isinstance(hyperparams, dict):
                raise StudyError("'hyperparams' must be a mapping")
            explore = raw.get("explore")
            if explore is not None:
                explore = explore if isinstance(explore, list) else [explore]
                for spec in exploration_specs(explore):
                    catalog.create(spec)
            problem = _variant_hyperparam_problem(recipe, hyperparams)
        except SurgeryError as exc:
            raise fail(f"variant {name!r}: {exc}", "variants", name) from None
        if problem is not None:
            raise fail(f"variant {name!r}: {problem.message}", "variants", name, "hyperparams", *problem.path)
        variants.append(
            Variant(str(name), recipe, surgeries, [str(k) for k in remove], dict(hyperparams), explore)
        )
    raw_envs = data.get("envs")
    env_overrides: dict[str, dict[str, Any]] = {}
    if isinstance(raw_envs, dict):
        for env_id, raw in raw_envs.items():
            if raw is not None and not isinstance(raw, dict):
                raise fail(f"the entry of {env_id} must be a mapping", "envs", env_id)
            parse_env_settings(str(env_id), raw or {}, fail, "envs", env_id)
            env_overrides[str(env_id)] = raw or {}
        env_ids = list(env_overrides)
    elif raw_envs is None or isinstance(raw_envs, list):
        env_ids = [str(e) for e in raw_envs or []]
    else:
        raise fail("'envs' must be a list of env ids or a mapping", "envs")
    common = {}
    for key in ("steps", "eval_freq", "n_eval_episodes"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise fail(f"{key} must be a positive integer (got {value!r})", key)
        common[key] = value
    tasks = _study_tasks(data, fail, common)
    suite = data.get("suite")
    if suite is not None and Path(str(suite)).suffix in (".yaml", ".yml"):
        suite = str((path.parent / str(suite)).resolve())
    try:
        envs = [] if tasks else select_envs(suite, env_ids, env_overrides, **common)
        seeds = seed_list(data.get("seeds", 1))
    except SurgeryError as exc:
        key = "seeds" if "seeds" in str(exc) else ("suite" if "suite" in data else "envs")
        raise fail(str(exc), key) from None
    try:
        return StudySpec(
            name=str(data.get("name") or path.stem),
            description=str(data.get("description", "")),
            variants=variants,
            envs=envs,
            seeds=seeds,
            baseline=data.get("baseline"),
            device=str(data.get("device", "auto")),
            save_models=bool(data.get("save_models", False)),
            metrics=data.get("metrics") or [],
            tasks=tasks,
            reference=data.get("reference"),
        )
    except StudyError as exc:
        key = next((k for k in ("baseline", "metrics", "reference", "tasks") if k in str(exc)), "variants")
        raise fail(str(exc), key) from None


def default_workers() -> int:
    """One worker per core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
