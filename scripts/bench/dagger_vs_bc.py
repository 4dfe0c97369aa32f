"""Benchmark: DAgger vs plain behaviour cloning at an equal number of expert labels (issue 5).

The expert is a trained CartPole DQN (``docs/bench-data/models/cartpole-dqn-dense.zip``,
500 ± 0). Demonstrations are gathered on CartPole with a short horizon (``--horizon``
steps per episode, default 100), so that a learner which only saw the expert's early
states must still balance for the 500 steps of the evaluation env.

For each seed and each DAgger budget (``--iterations``, one episode per iteration):

- ``dagger``: ``dagger:expert=...,iterations=N,episodes=1`` on a fresh ``SurgicalPPO``
  (the first iteration rolls out the expert, the later ones the β-mixture of expert and
  learner, every visited state labelled by the expert); its data set has L labels;
- ``bc``: ``behavior_cloning`` on the first L labelled pairs of consecutive expert episodes
  (the same horizon, the same fit: epochs, batch size, learning rate), no held-out split.

Both learners are then evaluated greedily for 20 episodes of CartPole-v1 (seed 10_000 +
seed). One JSON line per (budget, seed, method) in ``--out``; a rerun skips the lines
already there.

    python scripts/bench/dagger_vs_bc.py --seeds 10 --out docs/bench-data/dagger_vs_bc.jsonl
    python scripts/bench/dagger_vs_bc.py --report docs/bench-data/dagger_vs_bc.jsonl

(Not a study of the study harness: BC's label budget is read from the DAgger run of the same
seed, and the learners are evaluated on another env (500 steps) than the one they imitate on
(``--horizon``); the harness's runs are independent and evaluate on their own env.)
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from results_log import ResultsLog

EXPERT = "docs/bench-data/models/cartpole-dqn-dense.zip"
EVAL_ENV = "CartPole-v1"
KEY = ("iterations", "seed", "method")
#: the surgery behind each method (its state holds the number of expert labels)
KEYS = {"bc": "behavior_cloning", "dagger": "dagger"}


def short_cartpole(horizon: int) -> str:
    """Register (once) CartPole with ``horizon`` steps per episode; return its id."""
    env_id = f"rlsurgery-bench/CartPole-h{horizon}-v1"
    if env_id not in gym.registry:
        gym.register(
            env_id, entry_point="gymnasium.envs.classic_control:CartPoleEnv", max_episode_steps=horizon
        )
    return env_id


def expert_pairs(env_id: str, expert_path: str, labels: int, seed: int, folder: Path) -> Path:
    """The first ``labels`` pairs of consecutive expert episodes, as an ``.npz``."""
    from rlsurgery.io import load_saved_model
    from rlsurgery.policy.imitation import rollouts

    expert = load_saved_model(expert_path)
    env = gym.make(env_id)
    obs, actions, episode = [], [], 0
    while sum(len(a) for a in actions) < labels:
        data, _, _ = rollouts(env, expert, 1, seed + episode)
        obs.append(data.observations)
        actions.append(data.actions)
        episode += 1
    env.close()
    path = folder / f"bc-{seed}-{labels}.npz"
    np.savez(path, observations=np.concatenate(obs)[:labels], actions=np.concatenate(actions)[:labels])
    return path


def run(args: argparse.Namespace, iterations: int, seed: int, log: ResultsLog) -> None:
    from rlsurgery import SurgicalPPO
    from rlsurgery.training import evaluate_model

    th.set_num_threads(1)
    env_id = short_cartpole(args.horizon)
    fit = f"epochs={args.epochs},batch_size=64,learning_rate={args.learning_rate},seed={seed}"
    start = time.perf_counter()
    dagger = SurgicalPPO(
        "MlpPolicy",
        env_id,
        seed=seed,
        surgeries=[f"dagger:expert={args.expert},iterations={iterations},episodes=1,beta={args.beta},{fit}"],
    )
    labels = dagger.surgery_state["dagger"].result["pairs"]
    learners = [("dagger", dagger, time.perf_counter() - start)]
    with tempfile.TemporaryDirectory() as tmp:
        npz = expert_pairs(env_id, args.expert, labels, seed, Path(tmp))
        start = time.perf_counter()
        bc = SurgicalPPO(
            "MlpPolicy", env_id, seed=seed, surgeries=[f"behavior_cloning:expert={npz},holdout=0.0,{fit}"]
        )
        learners.append(("bc", bc, time.perf_counter() - start))
    done = log.done()
    for method, model, wall in learners:
        if (iterations, seed, method) in done:
            continue
        evaluation = evaluate_model(model, EVAL_ENV, episodes=20, seed=10_000 + seed)
        log.append(
            {
                "iterations": iterations,
                "horizon": args.horizon,
                "seed": seed,
                "method": method,
                "labels": model.surgery_state["dagger" if method == "dagger" else "behavior_cloning"].result[
                    "pairs"
                ],
                "mean_return": evaluation["mean_return"],
                "std_return": evaluation["std_return"],
                "fit_wall_s": round(wall, 1),
            }
        )


def report(log: ResultsLog) -> None:
    rows = log.rows()
    print(
        "| DAgger iterations | expert labels (median) | method | median return | mean ± std over seeds "
        "| seeds at 500 | seeds |"
    )
    print("|---|---|---|---|---|---|---|")
    for iterations in sorted({r["iterations"] for r in rows}):
        for method in ("bc", "dagger"):
            sel = [r for r in rows if r["iterations"] == iterations and r["method"] == method]
            if not sel:
                continue
            returns = np.array([r["mean_return"] for r in sel])
            labels = np.median([r["labels"] for r in sel])
            print(
                f"| {iterations} | {labels:.0f} | {method} | {np.median(returns):.1f} | "
                f"{returns.mean():.1f} ± {returns.std():.1f} | {int((returns >= 500).sum())} | {len(sel)} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expert", default=EXPERT, help="the expert model (.zip)")
    parser.add_argument(
        "--iterations", default="2,4,8", help="DAgger budgets: iterations of one episode each"
    )
    parser.add_argument("--horizon", type=int, default=100, help="steps per demonstration episode")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--out", default="docs/bench-data/dagger_vs_bc.jsonl")
    parser.add_argument("--report", metavar="JSONL", help="print the table of a results file and exit")
    args = parser.parse_args()
    log = ResultsLog(args.report or args.out, key=KEY)
    if not args.report:
        for iterations in (int(i) for i in args.iterations.split(",")):
            for seed in range(args.seeds):
                if {(iterations, seed, "bc"), (iterations, seed, "dagger")} <= log.done():
                    continue
                run(args, iterations, seed, log)
    report(log)


if __name__ == "__main__":
    main()
