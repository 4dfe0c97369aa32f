"""Train and evaluate runs: what ``rlsurgery train`` and ``rlsurgery evaluate`` do.

A run folder holds ``model.zip``, the Monitor CSV(s), TensorBoard logs (``tb/``), the
resolved settings (``config.json``) and the final greedy evaluation (``evaluation.json``).
An existing, non-empty run folder is never written into without ``force=True``, and
every setting is validated before the folder is touched.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from rlsurgery.agents import ALGORITHMS
from rlsurgery.agents.convert import surgical
from rlsurgery.core.checks import MAX_SEED, check_int, check_optional_int
from rlsurgery.core.errors import RecipeError, SurgeryError
from rlsurgery.envs import ensure_registered
from rlsurgery.io import load
from rlsurgery.recipes import load_recipe
from rlsurgery.zoo import write_zoo_settings, zoo_env_name, zoo_run_dir


class RunFolderError(SurgeryError):
    """The run folder exists and holds files (pass ``force`` to write into it), or is a file."""


def default_run_dir(recipe: str, env_id: str, seed: int) -> Path:
    """``runs/<recipe>-<env>-seed<seed>``."""
    return Path("runs") / f"{Path(recipe).stem}-{env_id.replace('/', '_')}-seed{seed}"


def evaluate_model(
    model: BaseAlgorithm,
    env_id: str,
    episodes: int = 20,
    seed: int = 0,
    deterministic: bool = True,
    env_kwargs: dict[str, Any] | None = None,
    wrap: Any = None,
    env_wrapper: Any = None,
) -> dict[str, Any]:
    """Greedy returns of ``model`` over ``episodes`` episodes of a fresh ``env_id`` env.

    The evaluation env is seeded with ``seed`` and independent of the training env;
    ``env_kwargs`` are the environment's constructor arguments (as in training); ``wrap``, if
    given, wraps the VecEnv (an rl-zoo3 run's frame stack and saved ``VecNormalize``), and
    ``env_wrapper`` each env (an rl-zoo3 run's ``env_wrapper``).

    :raises SettingError: ``episodes`` < 1 or a negative ``seed``
    :raises EnvironmentNotAvailableError: an unknown ``env_id``
    """
    episodes = check_int(episodes, "episodes", 1)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    ensure_registered(env_id)
    env = make_vec_env(env_id, n_envs=1, seed=seed, env_kwargs=env_kwargs or None, wrapper_class=env_wrapper)
    if wrap is not None:
        env = wrap(env)
    try:
        returns, lengths = evaluate_policy(
            model, env, n_eval_episodes=episodes, deterministic=deterministic, return_episode_rewards=True
        )
    finally:
        env.close()
    returns_arr = np.asarray(returns, dtype=float)
    return {
        "env_id": env_id,
        "episodes": int(episodes),
        "deterministic": deterministic,
        "eval_seed": int(seed),
        "mean_return": float(returns_arr.mean()),
        "std_return": float(returns_arr.std()),
        "min_return": float(returns_arr.min()),
        "max_return": float(returns_arr.max()),
        "returns": [float(r) for r in returns_arr],
        "lengths": [int(n) for n in lengths],
    }


def train_run(
    recipe: str,
    env_id: str,
    *,
    surgeries: list[Any] | None = None,
    explore: list[Any] | None = None,
    steps: int | None = None,
    seed: int = 0,
    out: str | Path | None = None,
    device: str = "auto",
    force: bool = False,
    eval_episodes: int = 20,
    progress_bar: bool = True,
    verbose: int = 0,
    overrides: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    trained_agent: str | Path | None = None,
    save_freq: int | None = None,
    tensorboard_log: str | Path | None = None,
    zoo_layout: bool = False,
) -> dict[str, Any]:
    """Train ``recipe`` on ``env_id``, save everything into the run folder, evaluate.

    :param recipe: recipe name or YAML path
    :param env_id: Gymnasium id
    :param surgeries: extra surgery specs (same key as a recipe surgery: its parameters change)
    :param explore: exploration surgery specs that replace the recipe's exploration (``--explore``)
    :param steps: training budget (default: the recipe's ``n_timesteps``)
    :param seed: seed of the agent and training env (evaluation uses ``seed + 10_000``)
    :param out: run folder (default ``runs/<recipe>-<env>-seed<seed>``)
    :param device: torch device
    :param force: allow writing into an existing, non-empty run folder
    :param eval_episodes: greedy evaluation episodes after training
    :param progress_bar: show a progress bar while training
    :param verbose: SB3 verbosity
    :param overrides: other hyperparameter overrides (``--hyperparams``), checked against the
        recipe's algorithm before anything is built
    :param env_kwargs: keyword arguments of the env, over the recipe's (``--env-kwargs``)
    :param trained_agent: a saved model (zip or run folder) to go on training, its surgeries kept,
        instead of a fresh agent (``--trained-agent``; same algorithm as the recipe)
    :param save_freq: save a checkpoint ``checkpoints/rl_model_<steps>_steps.zip`` every this many
        env steps (``--save-freq``, as rl-zoo3 names them)
    :param tensorboard_log: TensorBoard folder (default ``<run folder>/tb``)
    :param zoo_layout: write the run as rl-zoo3 does, so that its ``enjoy``, ``record_video`` and
        plotting scripts read it: ``out`` (default ``logs``) is the log folder, the run goes to
        ``out/ALGO/ENV_N`` (the next N) with the model as ``ENV.zip`` and ``ENV/args.yml``,
        ``ENV/config.yml`` beside it
    :return: the evaluation record (also written to ``evaluation.json``)
    :raises SettingError: ``steps`` or ``eval_episodes`` < 1, a negative ``seed``, ``verbose`` not 0-2
    :raises RunFolderError: ``out`` is a file, or a folder with files (without ``force``)
    """
    steps = check_optional_int(steps, "steps", 1)
    seed = check_int(seed, "seed", 0, MAX_SEED)
    eval_episodes = check_int(eval_episodes, "eval_episodes", 1)
    verbose = check_int(verbose, "verbose", 0, 2)
    save_freq = check_optional_int(save_freq, "save_freq", 1)
    if trained_agent is not None and not Path(trained_agent).exists():
        raise FileNotFoundError(f"trained_agent: no model at {trained_agent}")
    if zoo_layout:
        algo = load_recipe(recipe).algo
        run_dir = zoo_run_dir(Path(out) if out is not None else Path("logs"), algo, env_id)
    else:
        run_dir = Path(out) if out is not None else default_run_dir(recipe, env_id, seed)
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"run folder {run_dir} is a file; choose another --out")
    ensure_registered(env_id)
    extra = dict(overrides or {})
    own_arguments = ("surgeries", "explore", "seed", "device", "verbose", "tensorboard_log")
    owned = [k for k in extra if k in own_arguments]
    if owned:
        raise SurgeryError(
            f"overrides: {owned[0]} is set by its own argument of train_run (and option of rlsurgery train)"
        )
    if explore:
        extra["explore"] = list(explore)
    if env_kwargs:  # before the recipe picks a default policy: some envs need their arguments to be made
        extra["env_kwargs"] = {**(extra.get("env_kwargs") or {}), **dict(env_kwargs)}
    resolved = load_recipe(recipe).resolve(
        env_id, surgeries=surgeries, seed=seed, device=device, verbose=verbose, **extra
    )
    resolved.env_kwargs = {**resolved.env_kwargs, **dict(env_kwargs or {})}
    budget = check_int(steps if steps is not None else int(resolved.n_timesteps), "steps", 1)
    if run_dir.exists() and any(run_dir.iterdir()) and not force:
        raise RunFolderError(
            f"run folder {run_dir} already holds files; pass --force to write into it, or choose --out"
        )
    existing = set(run_dir.iterdir()) if run_dir.exists() else set()
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        resolved.kwargs["tensorboard_log"] = str(tensorboard_log or run_dir / "tb")
        env = resolved.make_env(seed=seed, monitor_dir=str(run_dir))
        model = resolved.build(env=env) if trained_agent is None else _go_on(trained_agent, resolved, env)
    except BaseException:
        _remove_new_files(run_dir, existing, created)
        raise
    config = {**resolved.as_dict(), "steps": budget, "seed": seed, "device": str(model.device)}
    (run_dir / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    try:
        start = time.perf_counter()
        checkpoints = (
            CheckpointCallback(max(save_freq // resolved.n_envs, 1), str(run_dir / "checkpoints"))
            if save_freq
            else None
        )
        model.learn(
            budget,
            callback=checkpoints,
            progress_bar=progress_bar,
            tb_log_name=Path(str(resolved.recipe)).stem,
            reset_num_timesteps=trained_agent is None,
        )
        wall = time.perf_counter() - start
        model_path = run_dir / (f"{zoo_env_name(env_id)}.zip" if zoo_layout else "model.zip")
        model.save(model_path)
        if zoo_layout:
            write_zoo_settings(run_dir / zoo_env_name(env_id), resolved, budget, seed)
    finally:
        env.close()
    evaluation = evaluate_model(
        model, env_id, episodes=eval_episodes, seed=seed + 10_000, env_kwargs=resolved.env_kwargs
    )
    evaluation.update(
        {
            "recipe": resolved.recipe,
            "seed": seed,
            "n_timesteps": int(model.num_timesteps),
            "train_wall_time_s": round(wall, 2),
            "surgeries": [r["key"] for r in getattr(model, "surgery_log", [])],
            "run_dir": str(run_dir),
            "model_path": str(model_path),
        }
    )
    (run_dir / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    return evaluation


def _go_on(path: str | Path, resolved: Any, env: Any) -> BaseAlgorithm:
    """The saved model at ``path`` with the training ``env``, to go on training (its surgeries and
    counters kept); its algorithm must be the recipe's."""
    model = load(path, env=env, device=resolved.kwargs.get("device", "auto"))
    expected = ALGORITHMS[resolved.algo]
    if not isinstance(model, (expected, expected.__bases__[-1])):
        raise RecipeError(
            f"--trained-agent: {path} holds a {type(model).__name__}, the recipe {resolved.recipe} "
            f"trains a {expected.__name__}"
        )
    model = surgical(model)
    model.tensorboard_log = resolved.kwargs["tensorboard_log"]
    return model


def _remove_new_files(run_dir: Path, existing: set[Path], created: bool) -> None:
    """Undo a failed start: remove what this run wrote, never what was there before."""
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for path in set(run_dir.iterdir()) - existing:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
