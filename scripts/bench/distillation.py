"""Benchmark: distil trained teachers into students of 1/4 and 1/16 of their size (issue 5).

For each env and seed: train a PPO teacher with the ``ppo`` recipe (the zoo settings, or
``--teacher-steps``), then ``rls.operate(teacher, "policy_distillation", net_arch=[h, h])``
with the widths h whose students have about 1/4 and 1/16 of the teacher's policy
parameters; evaluate teacher and students for 20 greedy episodes on a separate env (seed
10_000 + seed). One JSON line per (env, seed, model) in ``--out``; a rerun skips the lines
already there.

    python scripts/bench/distillation.py --envs CartPole-v1,LunarLander-v3 --seeds 5 \\
        --out docs/bench-data/distillation.jsonl
    python scripts/bench/distillation.py --report docs/bench-data/distillation.jsonl

(Not a study of the study harness: a student needs its teacher first, which the harness's
independent runs do not express.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch as th
from results_log import ResultsLog

FRACTIONS = {"quarter": 1 / 4, "sixteenth": 1 / 16}
KEY = ("env_id", "seed", "model")


def policy_size(env_id: str, width: int) -> int:
    """Parameters of a PPO MlpPolicy with two hidden layers of ``width`` (policy and value)."""
    from stable_baselines3 import PPO

    return sum(
        p.numel()
        for p in PPO("MlpPolicy", env_id, policy_kwargs=dict(net_arch=[width, width])).policy.parameters()
    )


def width_for(env_id: str, target: float) -> int:
    """The hidden width whose policy size is closest to ``target`` parameters."""
    return min(range(1, 257), key=lambda w: abs(policy_size(env_id, w) - target))


def run(env_id: str, seed: int, teacher_steps: int | None, distill_steps: int, log: ResultsLog) -> None:
    import rlsurgery as rls
    from rlsurgery.distillation.core import count_parameters
    from rlsurgery.distillation.surgeries import distillation_report
    from rlsurgery.training import evaluate_model

    th.set_num_threads(1)
    start = time.perf_counter()
    teacher = rls.make("ppo", env_id, seed=seed)
    resolved = rls.load_recipe("ppo").resolve(env_id)
    teacher.learn(teacher_steps or resolved.n_timesteps)
    rows = [("teacher", teacher, time.perf_counter() - start)]
    teacher_size = count_parameters(teacher)
    for name, fraction in FRACTIONS.items():
        width = width_for(env_id, fraction * teacher_size)
        t0 = time.perf_counter()
        student = rls.operate(
            teacher,
            "policy_distillation",
            env_id=env_id,
            net_arch=[width, width],
            steps=distill_steps,
            seed=seed,
        )
        rows.append((f"student_{name}", student, time.perf_counter() - t0))
    done = log.done()
    for name, model, wall in rows:
        if (env_id, seed, name) in done:
            continue
        evaluation = evaluate_model(model, env_id, episodes=20, seed=10_000 + seed)
        log.append(
            {
                "env_id": env_id,
                "seed": seed,
                "model": name,
                "parameters": count_parameters(model),
                "teacher_parameters": teacher_size,
                "mean_return": evaluation["mean_return"],
                "std_return": evaluation["std_return"],
                "agreement": (distillation_report(model) or {}).get("agreement"),
                "wall_s": round(wall, 1),
            }
        )


def report(log: ResultsLog) -> None:
    rows = log.rows()
    print(
        "| env | model | parameters (share of teacher) | median return | mean ± std over seeds "
        "| median agreement with teacher | seeds |"
    )
    print("|---|---|---|---|---|---|---|")
    for env_id in dict.fromkeys(r["env_id"] for r in rows):
        for model in dict.fromkeys(r["model"] for r in rows if r["env_id"] == env_id):
            sel = [r for r in rows if r["env_id"] == env_id and r["model"] == model]
            returns = np.array([r["mean_return"] for r in sel])
            agreements = [r["agreement"] for r in sel if r.get("agreement") is not None]
            agreement = f"{np.median(agreements):.3f}" if agreements else "—"
            share = sel[0]["parameters"] / sel[0]["teacher_parameters"]
            print(
                f"| {env_id} | {model} | {sel[0]['parameters']:,} ({share:.3f}) | {np.median(returns):.1f} | "
                f"{returns.mean():.1f} ± {returns.std():.1f} | {agreement} | {len(sel)} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--envs", default="CartPole-v1")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--teacher-steps", type=int, default=None, help="default: the ppo recipe's budget")
    parser.add_argument("--distill-steps", type=int, default=20_000)
    parser.add_argument("--out", default="docs/bench-data/distillation.jsonl")
    parser.add_argument("--report", metavar="JSONL", help="print the table of a results file and exit")
    args = parser.parse_args()
    log = ResultsLog(args.report or args.out, key=KEY)
    if not args.report:
        for env_id in args.envs.split(","):
            for seed in range(args.seeds):
                models = ["teacher", *(f"student_{n}" for n in FRACTIONS)]
                if {(env_id, seed, m) for m in models} <= log.done():
                    continue
                run(env_id, seed, args.teacher_steps, args.distill_steps, log)
    report(log)


if __name__ == "__main__":
    main()
