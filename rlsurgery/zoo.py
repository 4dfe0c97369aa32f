"""rl-baselines3-zoo run folders as models: ``logs/ALGO/ENV_N/`` wherever a model zip is accepted.

rl-zoo3's ``train`` writes a run folder ``logs/dqn/CartPole-v1_1/`` holding the model
(``CartPole-v1.zip``, and ``best_model.zip`` with evaluations), and beside it a folder named
after the env with ``args.yml`` (the command's arguments: ``env``, ``env_kwargs``, ...) and
``config.yml`` (the hyperparameters: ``normalize``, ``frame_stack``, ``env_wrapper``, ...), plus
``vecnormalize.pkl`` when observations were normalised. :func:`find_zoo_run` reads such a folder
(or the zip inside it) into a :class:`ZooRun`: the model file, the env id and its keyword
arguments, so that ``rlsurgery evaluate logs/dqn/CartPole-v1_1`` needs no ``--env``.

The zoo writes its YAML with Python tags (``!!python/object/apply:collections.OrderedDict``);
:func:`read_zoo_yaml` reads that one tag as a mapping with a safe loader and refuses any other.
``vecnormalize.pkl`` is a pickle: it is read only with the opt-in (``--trust``), like a model zip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlsurgery.core.errors import ModelFileError, UntrustedModelError
from rlsurgery.core.model_zip import OPT_IN, is_file_object, zips_trusted

ORDERED_DICT_TAG = "tag:yaml.org,2002:python/object/apply:collections.OrderedDict"


class _ZooLoader(yaml.SafeLoader):
    """A safe loader that also reads the zoo's OrderedDict tag (a list of pairs) as a dict."""


def _ordered_dict(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    arguments = loader.construct_sequence(node, deep=True)  # type: ignore[arg-type]
    pairs = (
        arguments[0] if len(arguments) == 1 and isinstance(arguments[0], list) else None
    )  # OrderedDict(pairs)
    if pairs is None or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
        raise yaml.constructor.ConstructorError(None, None, "an OrderedDict of pairs", node.start_mark)
    return {str(k): v for k, v in pairs}


_ZooLoader.add_constructor(ORDERED_DICT_TAG, _ordered_dict)


def read_zoo_yaml(path: Path) -> dict[str, Any]:
    """An rl-zoo3 ``args.yml`` / ``config.yml`` as a dict (safe: no Python object is built)."""
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_ZooLoader)
    except yaml.YAMLError as exc:
        raise ModelFileError(f"{path}: not an rl-zoo3 settings file ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path}: an rl-zoo3 settings file must be a mapping")
    return data


@dataclass
class ZooRun:
    """What an rl-zoo3 run folder says about its model."""

    folder: Path
    model: Path
    algo: str
    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    hyperparams: dict[str, Any] = field(default_factory=dict)
    vecnormalize: Path | None = None

    def env_wrapper(self) -> Any:
        """The run's ``env_wrapper`` (a callable wrapping each env), or None. The wrappers are named by
        module path in ``config.yml``, and importing what a file names can run code: needs the opt-in."""
        if not self.hyperparams.get("env_wrapper"):
            return None
        if not zips_trusted():
            raise UntrustedModelError(
                f"{self.folder}: the run wraps its env in {self.hyperparams['env_wrapper']!r}, classes that "
                f"its config.yml names (importing them can run code); {OPT_IN}"
            )
        from rl_zoo3.utils import get_wrapper_class

        return get_wrapper_class(self.hyperparams)

    def wrap(self, venv: Any) -> Any:
        """``venv`` as the run trained on it: observations normalised with the saved statistics
        (``vecnormalize.pkl``), then frames stacked (``frame_stack``), in rl-zoo3's order."""
        from stable_baselines3.common.vec_env import VecFrameStack

        venv = self.load_vecnormalize(venv)
        frames = self.hyperparams.get("frame_stack")
        return VecFrameStack(venv, int(frames)) if frames else venv

    def load_vecnormalize(self, venv: Any) -> Any:
        """``venv`` wrapped in the run's saved ``VecNormalize`` (statistics frozen, rewards raw), or
        ``venv`` itself when the run did not normalise. The file is a pickle: needs the opt-in."""
        if self.vecnormalize is None:
            return venv
        if not zips_trusted():
            raise UntrustedModelError(
                f"{self.vecnormalize}: the run normalised observations, and its statistics are a pickle, "
                f"which can run code from the file; {OPT_IN}"
            )
        from stable_baselines3.common.vec_env import VecNormalize

        normalized = VecNormalize.load(str(self.vecnormalize), venv)
        normalized.training = False
        normalized.norm_reward = False
        return normalized


def _settings_folder(folder: Path) -> Path | None:
    """The env-named subfolder holding ``args.yml``, if ``folder`` is a zoo run folder."""
    candidates = [p.parent for p in folder.glob("*/args.yml")]
    return candidates[0] if len(candidates) == 1 else None


def find_zoo_run(path: str | Path) -> ZooRun | None:
    """The rl-zoo3 run that ``path`` is (its folder) or belongs to (a zip in it), or ``None``."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    settings = _settings_folder(folder)
    if settings is None:
        return None
    args = read_zoo_yaml(settings / "args.yml")
    config = read_zoo_yaml(settings / "config.yml") if (settings / "config.yml").is_file() else {}
    env_id = args.get("env")
    if not isinstance(env_id, str) or not env_id:
        raise ModelFileError(f"{settings / 'args.yml'}: names no environment ('env')")
    if path.is_dir():
        candidates = [folder / f"{settings.name}.zip", folder / "best_model.zip"]
        model = next((c for c in candidates if c.is_file()), None)
        if model is None:
            raise ModelFileError(f"{folder}: an rl-zoo3 run folder without its model ({candidates[0].name})")
    else:
        model = path
    env_kwargs = args.get("env_kwargs") or {}
    if not isinstance(env_kwargs, dict):
        raise ModelFileError(f"{settings / 'args.yml'}: env_kwargs must be a mapping")
    stats = settings / "vecnormalize.pkl"
    return ZooRun(
        folder=folder,
        model=model,
        algo=str(args.get("algo", "")),
        env_id=env_id,
        env_kwargs=dict(env_kwargs),
        hyperparams=config,
        vecnormalize=stats if stats.is_file() else None,
    )


def model_source(path: str | Path) -> tuple[Path, ZooRun | None]:
    """The model zip that ``path`` names, and its rl-zoo3 run if it is one: a zip, a zoo run folder
    (its model), or an rlsurgery run folder (its ``model.zip``)."""
    if is_file_object(path):  # an open zip: nothing beside it to read
        return path, None  # type: ignore[return-value]
    path = Path(path)
    zoo = find_zoo_run(path) if path.exists() else None
    if zoo is not None:
        return zoo.model, zoo
    if path.is_dir():
        if (path / "model.zip").is_file():
            return path / "model.zip", None
        raise ModelFileError(f"{path} is a folder, not a model zip (nor an rlsurgery or rl-zoo3 run folder)")
    return path, None


def record_zoo_env(model: Any, zoo: ZooRun | None) -> Any:
    """``model`` with the run's env id and keyword arguments recorded where the zip has none
    (an SB3 zip does not say which env it was trained on; the zoo's ``args.yml`` does)."""
    if zoo is not None and not getattr(model, "rls_env_id", None):
        model.rls_env_id = zoo.env_id
        model.rls_env_kwargs = dict(zoo.env_kwargs)
    return model


def zoo_env_name(env_id: str) -> str:
    """The name rl-zoo3 gives ``env_id`` in paths (``/`` becomes ``-``)."""
    return env_id.replace("/", "-")


def zoo_run_dir(log_folder: Path, algo: str, env_id: str) -> Path:
    """The next run folder rl-zoo3 would use: ``log_folder/algo/ENV_N``, N one above the highest."""
    name = zoo_env_name(env_id)
    taken = [
        int(suffix)
        for p in (log_folder / algo).glob(f"{name}_*")
        if (suffix := p.name[len(name) + 1 :]).isdigit()
    ]
    return log_folder / algo / f"{name}_{max(taken, default=0) + 1}"


#: constructor arguments that describe the run, not the agent (not written to config.yml)
_RUN_ARGUMENTS = ("tensorboard_log", "device", "verbose", "seed")


def write_zoo_settings(folder: Path, resolved: Any, steps: int, seed: int) -> None:
    """``args.yml`` and ``config.yml`` of a run, as rl-zoo3's ``enjoy`` and scripts read them (plain
    YAML mappings; the hyperparameters as the recipe resolved them, classes by name)."""
    folder.mkdir(parents=True, exist_ok=True)
    hyperparams = {
        "policy": resolved.policy,
        "n_timesteps": steps,
        **({"n_envs": resolved.n_envs} if resolved.n_envs != 1 else {}),
        **{
            k: _yaml_value(v)
            for k, v in resolved.kwargs.items()
            if k not in ("tensorboard_log", "device", "verbose", "seed")
        },
    }
    args = {
        "algo": resolved.algo,
        "env": resolved.env_id,
        "env_kwargs": dict(resolved.env_kwargs) or None,
        "n_timesteps": steps,
        "seed": seed,
        "trained_by": "rlsurgery",
        "recipe": resolved.recipe,
        "surgeries": [s.as_dict() for s in resolved.surgeries],
    }
    (folder / "config.yml").write_text(yaml.safe_dump(hyperparams, sort_keys=True), encoding="utf-8")
    (folder / "args.yml").write_text(yaml.safe_dump(_yaml_value(args), sort_keys=True), encoding="utf-8")


def _yaml_value(value: Any) -> Any:
    """``value`` as plain YAML data: classes and callables by name, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _yaml_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_value(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, type):
        return value.__name__
    return repr(value)


def write_zoo_copy(model: Any, source: str | Path, log_folder: str | Path) -> Path:
    """Save ``model`` (operated on the model at ``source``) as a new rl-zoo3 run in ``log_folder``,
    ``log_folder/ALGO/ENV_N/ENV.zip``, with the settings of ``source``'s zoo run copied beside it
    (``args.yml``, ``config.yml``, ``vecnormalize.pkl``), or written from what the model records.
    Returns the model file."""
    import shutil

    zoo = find_zoo_run(source) if Path(source).exists() else None
    env_id = zoo.env_id if zoo is not None else getattr(model, "rls_env_id", None)
    if not env_id:
        raise ModelFileError(
            f"{source}: the model records no environment, so it has no zoo run name; pass --env"
        )
    algo = zoo.algo if zoo is not None and zoo.algo else _algo_name(model)
    run = zoo_run_dir(Path(log_folder), algo, env_id)
    settings = run / zoo_env_name(env_id)
    if zoo is not None:
        shutil.copytree(_settings_folder(zoo.folder), settings)  # type: ignore[arg-type]
    else:
        settings.mkdir(parents=True)
        args = {
            "algo": algo,
            "env": env_id,
            "env_kwargs": dict(getattr(model, "rls_env_kwargs", None) or {}) or None,
        }
        (settings / "args.yml").write_text(yaml.safe_dump(args), encoding="utf-8")
        (settings / "config.yml").write_text(yaml.safe_dump({"policy": "MlpPolicy"}), encoding="utf-8")
    path = run / f"{zoo_env_name(env_id)}.zip"
    model.save(path)
    return path


def _algo_name(model: Any) -> str:
    """rl-zoo3's name of ``model``'s algorithm (``dqn``, ``ppo``, ...): its SB3 class, lower case."""
    from stable_baselines3.common.base_class import BaseAlgorithm

    sb3 = next(
        c for c in type(model).__mro__ if c.__module__.startswith(("stable_baselines3.", "sb3_contrib."))
    )
    return sb3.__name__.lower() if issubclass(sb3, BaseAlgorithm) else type(model).__name__.lower()


def is_model_source(path: str | Path) -> bool:
    """Whether ``path`` names a model: an existing ``.zip``, or an rlsurgery / rl-zoo3 run folder
    with its model (what the surgeries that read a teacher, an expert or a source accept)."""
    try:
        model, _ = model_source(path)
    except (ModelFileError, OSError):
        return False
    return model.suffix == ".zip" and model.is_file()
