"""The population-based training loop of ``rlsurgery tune --sampler population_based_training``.

Each round, every member trains ``interval`` more steps as one task of the study backends (the
local process pool, or Ray with ``--backend ray``), is evaluated (greedy, on its own evaluation env)
and saved with its replay buffer under ``OUT/pbt/member_I/round_R.zip``; then the driver decides who
copies whom and how the copies' hyperparameters change
(:mod:`rlsurgery.tune.methods.population_based_training`). A copy starts the next round from the
top member's files, so nothing is overwritten; ``OUT/pbt.json`` holds the population after each
round, and a rerun of the same command resumes after the last finished round.
"""

from __future__ import annotations

import json
import math
import socket
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from rlsurgery.core.spec import SurgerySpec
from rlsurgery.tune.methods.population_based_training import PERTURBABLE, exploit_pairs, perturb
from rlsurgery.tune.objective import TUNE_SEEDS_FROM
from rlsurgery.tune.space import Config, Dimension, SearchSpace, TuneError

STATE_FILE = "pbt.json"


def check_space(space: SearchSpace) -> None:
    """PBT perturbs hyperparameters on running agents: only those an agent takes while it runs."""
    if space.architecture:
        raise TuneError(
            "population_based_training: members copy each other's weights, so they cannot differ in "
            "architecture; drop 'architecture' or use another --sampler (evolutionary_nas, random_search_nas)"
        )
    for name, value in space.hyperparams.items():
        if isinstance(value, Dimension) and name not in PERTURBABLE:
            raise TuneError(
                f"population_based_training: hyperparameter {name!r} cannot change on a running agent "
                f"(searchable: {', '.join(PERTURBABLE)}); fix it, or use another --sampler"
            )


def apply_hyperparams(model: Any, hyperparams: dict[str, Any]) -> None:
    """Set ``hyperparams`` on a running agent (the schedules they feed rebuilt)."""
    import torch as th
    from stable_baselines3.common.utils import LinearSchedule

    for name, value in hyperparams.items():
        if not hasattr(model, name):
            continue  # a fixed setting of another algorithm's: nothing to change
        setattr(model, name, value)
        if name in ("gamma", "gae_lambda") and getattr(model, "rollout_buffer", None) is not None:
            setattr(model.rollout_buffer, name, value)  # PPO / A2C compute returns there
        if name == "ent_coef" and getattr(model, "ent_coef_optimizer", True) is None:
            model.ent_coef_tensor = th.tensor(float(value), device=model.device)  # SAC's fixed coefficient
        if name == "learning_rate":
            model._setup_lr_schedule()
        elif name == "exploration_final_eps":
            model.exploration_schedule = LinearSchedule(
                model.exploration_initial_eps, value, model.exploration_fraction
            )


def train_member(run: dict[str, Any]) -> dict[str, Any]:
    """One member's round (a backend task): build or load, set its hyperparameters, train
    ``interval`` steps on the whole budget's schedules, evaluate, save."""
    start = time.perf_counter()
    try:
        return _train_member(run, start)
    except Exception:
        return {"run_id": run["run_id"], "status": "failed", "error": traceback.format_exc()}


def _train_member(run: dict[str, Any], start: float) -> dict[str, Any]:
    import torch as th
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from rlsurgery.bench.worker import EVAL_SEED_OFFSET
    from rlsurgery.envs import ensure_registered
    from rlsurgery.io import load
    from rlsurgery.recipes import load_recipe
    from rlsurgery.tune.objective import WholeBudget

    th.set_num_threads(1)
    ensure_registered(run["env_id"])
    seed, config = int(run["seed"]), run["config"]
    resolved = load_recipe(run["recipe"]).resolve(
        run["env_id"],
        surgeries=config["surgeries"],
        remove=config.get("remove", []),
        seed=seed,
        device=run["device"],
        verbose=0,
        **config["hyperparams"],
    )
    env = resolved.make_env(seed=seed + 7919 * run["round"])
    eval_env = make_vec_env(
        run["env_id"], n_envs=1, seed=EVAL_SEED_OFFSET + seed, env_kwargs=resolved.env_kwargs or None
    )
    try:
        if run["source"] is None:
            model = resolved.build(env=env)
        else:
            model = load(run["source"], env=env, device=run["device"])
            replay = Path(run["source"]).with_suffix(".replay.pkl")
            if replay.exists():
                model.load_replay_buffer(replay)
            apply_hyperparams(model, config["hyperparams"])
        target = min((run["round"] + 1) * run["interval"], run["total"])  # the steps trained, not asked for
        model.learn(
            max(target - model.num_timesteps, 1),
            callback=WholeBudget(run["total"]),
            reset_num_timesteps=run["source"] is None,
        )
        score, _ = evaluate_policy(
            model, eval_env, n_eval_episodes=run["n_eval_episodes"], deterministic=True
        )
        target = Path(run["target"])
        target.parent.mkdir(parents=True, exist_ok=True)
        model.save(target)
        if hasattr(model, "replay_buffer") and model.replay_buffer is not None:
            model.save_replay_buffer(target.with_suffix(".replay.pkl"))
    finally:
        env.close()
        eval_env.close()
    return {
        "run_id": run["run_id"],
        "status": "done",
        "score": float(score),
        "steps": int(model.num_timesteps),
        "wall_s": time.perf_counter() - start,
        "host": socket.gethostname(),
    }


def _write_state(out: Path, state: dict[str, Any]) -> None:
    partial = out / (STATE_FILE + ".partial")
    partial.write_text(json.dumps(state, indent=1, default=str) + "\n", encoding="utf-8")
    partial.replace(out / STATE_FILE)


def initial_population(space: SearchSpace, size: int, seed: int) -> list[dict[str, Any]]:
    """``size`` independent draws from the space (Optuna's random sampler through the ask interface)."""
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [space.suggest(study.ask()).as_dict() for _ in range(size)]


def run_pbt(settings: Any, space: SearchSpace, method: Any, search_key: dict[str, Any]) -> dict[str, Any]:
    """Run (or resume) the population of ``method`` (a ``PopulationBasedTraining``); return the state."""
    from rlsurgery.bench.runner import make_backend

    check_space(space)
    p = method.params
    budget = settings.budget()
    out = Path(settings.out)
    rounds = math.ceil(budget.steps / p.interval)
    state_path = out / STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        if state.get("search") != search_key:
            raise TuneError(f"{out}: this folder holds another population-based search; use another --out")
    else:
        members = initial_population(space, p.population, settings.seed)
        state = {
            "search": search_key,
            "rounds_done": 0,
            "rounds": rounds,
            "members": [
                {
                    "id": i,
                    "seed": TUNE_SEEDS_FROM + i,
                    "config": c,
                    "model": None,
                    "scores": [],
                    "history": [],
                }
                for i, c in enumerate(members)
            ],
        }
        _write_state(out, state)
    dimensions = {n: v for n, v in space.hyperparams.items() if isinstance(v, Dimension)}
    rng = np.random.default_rng(settings.seed + 104_729 * state["rounds_done"])
    backend = make_backend(settings.backend, settings.workers, settings.ray_address)
    try:
        while state["rounds_done"] < rounds:
            r = state["rounds_done"]
            tasks = [
                {
                    "run_id": f"round{r}-member{m['id']}",
                    "round": r,
                    "recipe": settings.recipe,
                    "env_id": settings.env_id,
                    "config": m["config"],
                    "seed": m["seed"],
                    "source": m["model"],
                    "target": str((out / "pbt" / f"member_{m['id']}" / f"round_{r}.zip").resolve()),
                    "interval": p.interval,  # round r trains up to min((r + 1) · interval, total) steps
                    "total": budget.steps,
                    "n_eval_episodes": budget.n_eval_episodes,
                    "device": settings.device,
                }
                for m in state["members"]
            ]
            results = {}
            for kind, result in backend.execute(tasks, task=train_member):
                if kind == "finished":
                    results[result["run_id"]] = result
            failed = [r_ for r_ in results.values() if r_["status"] != "done"]
            if failed:
                raise TuneError(
                    f"population_based_training: {failed[0]['run_id']} failed:\n{failed[0]['error']}"
                )
            for member, task in zip(state["members"], tasks):
                member["model"] = task["target"]
                member["scores"].append(results[task["run_id"]]["score"])
            if r + 1 < rounds:
                scores = [m["scores"][-1] for m in state["members"]]
                for low, high in exploit_pairs(scores, p.quantile, rng).items():
                    loser, winner = state["members"][low], state["members"][high]
                    hyper = perturb(winner["config"]["hyperparams"], dimensions, p, rng)
                    loser["config"] = {**winner["config"], "hyperparams": hyper}
                    loser["model"] = winner["model"]
                    loser["history"].append(
                        {
                            "round": r,
                            "copied": winner["id"],
                            "from": winner["config"]["hyperparams"],
                            "hyperparams": hyper,
                        }
                    )
            state["rounds_done"] = r + 1
            _write_state(out, state)
    finally:
        backend.shutdown()
    return state


def best_member(state: dict[str, Any]) -> tuple[dict[str, Any], Config]:
    """The member with the highest last score, and its final configuration."""
    best = max(state["members"], key=lambda m: (m["scores"][-1], -m["id"]))
    specs = [
        SurgerySpec(s["key"], {k: v for k, v in s.items() if k != "key"}) for s in best["config"]["surgeries"]
    ]
    return best, Config(dict(best["config"]["hyperparams"]), specs, list(best["config"].get("remove", [])))
