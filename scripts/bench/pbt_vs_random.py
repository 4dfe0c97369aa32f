"""Benchmark (issue 23, HPO 2): population-based training vs random search on equal agent-steps.

PPO on CartPole-v1 (the zoo's settings otherwise), the continuous space
``scripts/bench/pbt_space.yaml``, ``--steps`` per agent. PBT trains a population of ``--population``
members for ``--steps`` each, exploiting / exploring every ``--interval`` steps; random search
trains ``--population`` trials of one seed for ``--steps`` each: the same agent-steps
(population × steps). ``--reps`` repetitions (sampler seeds 0 … reps − 1), each one
``rlsurgery tune`` folder under ``--out`` (``METHOD-repR``), so an interrupted benchmark resumes.

    python scripts/bench/pbt_vs_random.py --out docs/bench-data/pbt-vs-random
    python scripts/bench/pbt_vs_random.py --out docs/bench-data/pbt-vs-random --report
    python scripts/bench/pbt_vs_random.py --out docs/bench-data/pbt-vs-random --final   # 10 fresh seeds

The report gives each run's best value (PBT: its best member's last evaluation; random: its best
trial's) and the agent-steps it trained. ``--final`` re-runs each method's best configuration (PBT:
its best member's final hyperparameters, not the schedule that produced them) against the recipe's
defaults on fresh seeds through the study harness.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("pbt", "random")


def settings_for(method: str, rep: int, args: argparse.Namespace, final_seeds: int = 0):
    from rlsurgery.tune import TuneSettings

    sampler = (
        f"population_based_training:population={args.population},interval={args.interval}"
        if method == "pbt"
        else "random"
    )
    return TuneSettings(
        recipe="ppo",
        env_id="CartPole-v1",
        space=str(HERE / "pbt_space.yaml"),
        out=str(Path(args.out) / f"{method}-rep{rep}"),
        sampler=sampler,
        trials=args.population,
        seeds_per_trial=1,
        steps=args.steps,
        eval_freq=args.interval,
        n_eval_episodes=5,
        workers=args.workers,
        seed=rep,
        final_seeds=final_seeds,
    )


def run(args: argparse.Namespace) -> None:
    from rlsurgery.tune import tune

    for rep in range(args.reps):
        for method in METHODS:
            settings = settings_for(method, rep, args)
            if (Path(settings.out) / "tune.json").exists():
                continue
            start = time.perf_counter()
            summary = tune(settings)
            print(
                f"{method} rep {rep}: best {summary['best']['value']:.1f}, "
                f"{time.perf_counter() - start:.0f} s"
            )


def report(args: argparse.Namespace) -> None:
    print("| run | best value | agent-steps (M) |")
    print("|---|---|---|")
    for method in METHODS:
        for folder in sorted(Path(args.out).glob(f"{method}-rep*")):
            summary_path = folder / "tune.json"
            if summary_path.exists():
                summary = json.loads(summary_path.read_text())
                steps = args.population * args.steps
                print(f"| {folder.name} | {summary['best']['value']:.1f} | {steps / 1e6:.2f} |")


def final(args: argparse.Namespace) -> None:
    from rlsurgery.tune.tuner import final_check

    for method in METHODS:
        runs = [json.loads(f.read_text()) for f in sorted(Path(args.out).glob(f"{method}-rep*/tune.json"))]
        if not runs:
            continue
        best = max(runs, key=lambda r: r["best"]["value"])
        settings = settings_for(method, 0, args, final_seeds=args.final_seeds)
        settings.out = str(Path(args.out) / f"final-{method}")
        check = final_check(settings, Path(best["best_recipe"]), args.workers)
        rows = {r["variant"]: r for r in check["tables"]["per_env"]}
        improvement = check["tables"]["improvement"][0]
        print(
            f"{method}: best {best['best']['config']['hyperparams']} "
            f"(tuning value {best['best']['value']:.1f}); "
            f"fresh seeds: tuned {rows['tuned']['mean']:.1f} vs defaults {rows['defaults']['mean']:.1f}, "
            f"P(tuned > defaults) = {improvement['probability']:.2f} "
            f"[{improvement['probability_low']:.2f}, {improvement['probability_high']:.2f}]",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="docs/bench-data/pbt-vs-random")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--interval", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--final-seeds", type=int, default=10)
    parser.add_argument("--report", action="store_true")
    parser.add_argument("--final", action="store_true")
    args = parser.parse_args()
    if args.report:
        report(args)
    elif args.final:
        final(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
