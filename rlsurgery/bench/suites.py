"""Suites: named sets of environments with budgets, evaluation settings and the scores
that normalize results for aggregation (``envs/*.yaml``).

A suite file has::

    description: one line
    defaults: {steps: 100000, eval_freq: 10000, n_eval_episodes: 10}   # for every env
    envs:
      CartPole-v1:
        steps: 50000                 # training budget of every run on this env
        eval_freq: 5000              # greedy evaluation every eval_freq env steps
        n_eval_episodes: 10
        random_score: 23.68          # mean return of a uniformly random policy
        reference_score: 500.0       # a published score: normalized = (s - random) / (ref - random)
        reference_source: where the reference comes from
        env_kwargs: {}               # gymnasium.make arguments (max_episode_steps, ...)
        requires: box2d              # an rlsurgery extra the env needs
      DeepSea-20:                    # a label: the same Gymnasium id with other arguments
        id: rlsurgery/DeepSea-v0
        env_kwargs: {size: 20}

An entry's key is its name in run ids, tables and plots; ``id`` (default: the key) is the
Gymnasium id that is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rlsurgery.bench.results import EnvScores
from rlsurgery.core.checks import check_int, check_optional_int
from rlsurgery.core.errors import StudyError
from rlsurgery.core.yamlfile import bundled_names, check_keys, find_yaml, read_yaml
from rlsurgery.envs import EXTRAS

ENV_KEYS = (
    "id",
    "steps",
    "eval_freq",
    "n_eval_episodes",
    "random_score",
    "reference_score",
    "reference_source",
    "env_kwargs",
    "requires",
)
SUITE_KEYS = ("description", "defaults", "envs")


@dataclass(frozen=True)
class EnvSettings:
    """How every run of a study trains and evaluates on one environment.

    ``steps`` / ``eval_freq`` of ``None``: the recipe's ``n_timesteps``, and a tenth of it.
    ``name`` labels the entry when it differs from the Gymnasium id (two sizes of one env).
    """

    env_id: str
    steps: int | None = None
    eval_freq: int | None = None
    n_eval_episodes: int = 10
    random_score: float | None = None
    reference_score: float | None = None
    reference_source: str = ""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    requires: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        check_optional_int(self.steps, f"{self.label}: steps", 1, error=StudyError)
        check_optional_int(self.eval_freq, f"{self.label}: eval_freq", 1, error=StudyError)
        check_int(self.n_eval_episodes, f"{self.label}: n_eval_episodes", 1, error=StudyError)

    @property
    def label(self) -> str:
        """The entry's name in run ids, tables and plots (the Gymnasium id unless named)."""
        return self.name or self.env_id

    @property
    def scores(self) -> EnvScores:
        """The normalization facts."""
        return EnvScores(self.label, self.random_score, self.reference_score, self.reference_source)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``name`` only when set, so unnamed entries hash as before)."""
        named = {"name": self.name} if self.name is not None else {}
        return {
            **named,
            "env_id": self.env_id,
            "steps": self.steps,
            "eval_freq": self.eval_freq,
            "n_eval_episodes": self.n_eval_episodes,
            "random_score": self.random_score,
            "reference_score": self.reference_score,
            "reference_source": self.reference_source,
            "env_kwargs": dict(self.env_kwargs),
            "requires": self.requires,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvSettings:
        """Inverse of :meth:`as_dict`."""
        return cls(**{k: v for k, v in data.items() if k in ("env_id", "name", *ENV_KEYS) and k != "id"})

    def with_overrides(self, **overrides: Any) -> EnvSettings:
        """A copy with the given (non-``None``) fields replaced."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class Suite:
    """A parsed suite file."""

    name: str
    path: Path
    description: str
    envs: list[EnvSettings]

    @property
    def env_ids(self) -> list[str]:
        """The entries' names (Gymnasium ids unless named), in file order."""
        return [e.label for e in self.envs]


def available_suites() -> list[str]:
    """Names of the bundled suites (``envs/*.yaml``)."""
    return bundled_names("envs")


def _positive_int(value: Any, name: str, fail: Any, *key_path: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise fail(f"{name} must be a positive integer (got {value!r})", *key_path)
    return value


def _number(value: Any, name: str, fail: Any, *key_path: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise fail(f"{name} must be a number (got {value!r})", *key_path)
    return float(value)


def parse_env_settings(key: str, raw: dict[str, Any], fail: Any, *key_path: Any) -> EnvSettings:
    """Validate one environment entry named ``key`` (``raw``: defaults already merged in)."""
    check_keys(raw, ENV_KEYS, fail, "environment", *key_path)
    env_id = str(raw.get("id") or key)
    requires = raw.get("requires")
    if requires is not None and requires not in EXTRAS:
        raise fail(f"requires must be one of {', '.join(EXTRAS)} (got {requires!r})", *key_path, "requires")
    env_kwargs = raw.get("env_kwargs") or {}
    if not isinstance(env_kwargs, dict):
        raise fail("env_kwargs must be a mapping", *key_path, "env_kwargs")
    random_score = _number(raw.get("random_score"), "random_score", fail, *key_path, "random_score")
    reference = _number(raw.get("reference_score"), "reference_score", fail, *key_path, "reference_score")
    if random_score is not None and reference is not None and reference == random_score:
        raise fail("reference_score must differ from random_score", *key_path, "reference_score")
    return EnvSettings(
        env_id=env_id,
        steps=_positive_int(raw.get("steps"), "steps", fail, *key_path, "steps"),
        eval_freq=_positive_int(raw.get("eval_freq"), "eval_freq", fail, *key_path, "eval_freq"),
        n_eval_episodes=_positive_int(raw.get("n_eval_episodes", 10), "n_eval_episodes", fail, *key_path)
        or 10,
        random_score=random_score,
        reference_score=reference,
        reference_source=str(raw.get("reference_source") or ""),
        env_kwargs=dict(env_kwargs),
        requires=requires,
        name=key if env_id != key else None,
    )


def load_suite(name: str | Path) -> Suite:
    """Read and validate a suite (bundled name or YAML path); errors name file and line."""
    path = find_yaml(name, "envs", "suite", StudyError)
    data, fail = read_yaml(path, StudyError)
    if not isinstance(data, dict) or not isinstance(data.get("envs"), dict) or not data["envs"]:
        raise fail("a suite must be a mapping with a non-empty 'envs' mapping")
    check_keys(data, SUITE_KEYS, fail, "suite")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise fail("'defaults' must be a mapping", "defaults")
    check_keys(defaults, ENV_KEYS, fail, "defaults", "defaults")
    envs = []
    for env_id, raw in data["envs"].items():
        if raw is not None and not isinstance(raw, dict):
            raise fail(f"the entry of {env_id} must be a mapping", "envs", env_id)
        envs.append(parse_env_settings(str(env_id), {**defaults, **(raw or {})}, fail, "envs", env_id))
    return Suite(name=path.stem, path=path, description=str(data.get("description", "")), envs=envs)


def known_env_settings(env_id: str) -> EnvSettings:
    """The settings of ``env_id`` (an entry name or a Gymnasium id) from the first bundled suite
    that lists it, else defaults (budget from the recipe, no normalization scores)."""
    for name in available_suites():
        for env in load_suite(name).envs:
            if env.label == env_id:
                return env
    return EnvSettings(env_id=env_id)
