"""Benchmark (issue 24, 2): domain adaptation from CartPole-v1 to a miscalibrated sensor, no target rewards.

The source is CartPole-v1; the target is the same task seen through ``rlsurgery/Shifted-v0`` (a fixed
scale and offset of the observation, ``--scale`` / ``--offset``). Every method trains a DQN (the dqn
recipe, its zoo settings) on the source for ``--steps`` with the target's *observations* only (rollouts
of its current policy), and is then evaluated greedily on the source and on the target
(``backtranslation``: through its learnt map). ``unadapted`` is the plain DQN. ``--seeds`` seeds each,
one run per (method, seed) in a pool of ``--workers`` processes; each result is written as it comes
(``--out``/results.jsonl), so an interrupted benchmark resumes.

    python scripts/bench/domain_adaptation.py --out docs/bench-data/domain-adaptation
    python scripts/bench/domain_adaptation.py --out docs/bench-data/domain-adaptation --report

The goal (issue 24): the best method keeps ≥ 80% of its source return on the target where the unadapted
policy keeps < 50%. The report gives, per method, the median over seeds of the source return, the
target return and their ratio.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
from pathlib import Path

METHODS = {
    "unadapted": "",
    "feature-alignment-mmd": "feature_alignment:method=mmd",
    "feature-alignment-coral": "feature_alignment:method=coral",
    "dann": "domain_adversarial_training",
    "self-training": "self_training:round_every=10000",
    "co-training": "co_training:view_a=[0,1]",
    "backtranslation": "backtranslation",
}


def target_kwargs(args: argparse.Namespace) -> dict:
    return {"env_id": "CartPole-v1", "scale": list(args.scale), "offset": list(args.offset)}


def one_run(job: tuple[str, int, dict]) -> dict:
    import gymnasium as gym
    import torch as th
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor

    import rlsurgery as rls

    th.set_num_threads(1)
    method, seed, options = job
    target = target_kwargs(argparse.Namespace(**options))
    spec = METHODS[method]
    surgeries = []
    if spec:
        shared = f"target_env=rlsurgery/Shifted-v0,target_env_kwargs={json.dumps(target)}"
        surgeries = [f"{spec}{',' if ':' in spec else ':'}{shared}"]
    start = time.perf_counter()
    model = rls.make("dqn", "CartPole-v1", seed=seed, surgeries=surgeries)
    model.learn(options["steps"])
    episodes = options["episodes"]
    source_env = Monitor(gym.make("CartPole-v1"))
    source_env.reset(seed=50_000 + seed)
    target_env = Monitor(gym.make("rlsurgery/Shifted-v0", **target))
    target_env.reset(seed=60_000 + seed)
    if method == "backtranslation":  # the agent acts through the learnt map
        target_env = Monitor(model.surgeries[0].translating(model, target_env.env))
    source_return, _ = evaluate_policy(model, source_env, n_eval_episodes=episodes, deterministic=True)
    target_return, _ = evaluate_policy(model, target_env, n_eval_episodes=episodes, deterministic=True)
    return {
        "method": method,
        "seed": seed,
        "source_return": float(source_return),
        "target_return": float(target_return),
        "ratio": float(target_return / max(source_return, 1e-9)),
        "wall_s": time.perf_counter() - start,
        "steps": int(model.num_timesteps),
        "options": options,
    }


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = set()
    if results.exists():
        done = {(r["method"], r["seed"]) for r in map(json.loads, results.read_text().splitlines())}
    options = {"steps": args.steps, "episodes": args.episodes, "scale": args.scale, "offset": args.offset}
    jobs = [(m, s, options) for s in range(args.seeds) for m in args.methods if (m, s) not in done]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool, results.open("a") as file:
        for record in pool.imap_unordered(one_run, jobs):
            file.write(json.dumps(record) + "\n")
            file.flush()
            print(
                f"{record['method']} seed {record['seed']}: source {record['source_return']:.1f}, "
                f"target {record['target_return']:.1f} ({record['wall_s']:.0f} s)",
                flush=True,
            )


def report(args: argparse.Namespace) -> None:
    import numpy as np

    records = [json.loads(line) for line in (Path(args.out) / "results.jsonl").read_text().splitlines()]
    print("| method | seeds | source return (median) | target return (median) | target / source (median) |")
    print("|---|---|---|---|---|")
    for method in METHODS:
        mine = [r for r in records if r["method"] == method]
        if not mine:
            continue
        median = {
            k: float(np.median([r[k] for r in mine])) for k in ("source_return", "target_return", "ratio")
        }
        print(
            f"| {method} | {len(mine)} | {median['source_return']:.1f} | {median['target_return']:.1f} | "
            f"{median['ratio']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", type=float, nargs=4, default=[1.0, 1.0, 3.0, 1.0])
    parser.add_argument("--offset", type=float, nargs=4, default=[0.0, 0.0, 0.1, 0.0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--report", action="store_true", help="print the table of the results so far")
    args = parser.parse_args()
    report(args) if args.report else run(args)


if __name__ == "__main__":
    main()
