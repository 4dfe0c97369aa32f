"""Benchmark (issue 23, HPO 1): grid vs random vs TPE vs TPE + Hyperband on equal compute.

PPO on CartPole-v1 at a short budget (``--steps`` per seed, the zoo's settings otherwise), the
search space ``scripts/bench/hpo_space.yaml`` (the same discrete space for every tuner, so that grid
search covers it exactly), ``--seeds-per-trial`` seeds per trial, ``--trials`` trials per tuner
run, ``--reps`` repetitions of each tuner (sampler seeds 0 … reps − 1). Each tuner run is one
``rlsurgery tune`` folder under ``--out`` (``TUNER-repR/tune.db``), so an interrupted benchmark
resumes where it stopped: rerun the same command.

    python scripts/bench/hpo_tuners.py --out docs/bench-data/hpo
    python scripts/bench/hpo_tuners.py --out docs/bench-data/hpo --report
    python scripts/bench/hpo_tuners.py --out docs/bench-data/hpo --final    # 10 fresh seeds per tuner
    # the second pass: the area under the evaluation curve, which does not saturate at 500
    python scripts/bench/hpo_tuners.py --out docs/bench-data/hpo-auc --metric auc --reps 3

The report gives, per tuner run, the best value and the compute it took (environment steps
trained, summed over trials and seeds: a pruned trial counts the steps it reached), and per tuner
the median over repetitions of the compute at which it first reached random search's final best.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: tuner -> (sampler, pruner)
TUNERS = {
    "grid": ("grid", "none"),
    "random": ("random", "none"),
    "tpe": ("tpe", "none"),
    "tpe-hyperband": ("bayesian_optimization:n_startup_trials=8", "hyperband"),
}


def run(args: argparse.Namespace) -> None:
    from rlsurgery.tune import TuneSettings, tune

    for rep in range(args.reps):
        for name, (sampler, pruner) in TUNERS.items():
            out = Path(args.out) / f"{name}-rep{rep}"
            if (out / "tune.json").exists():
                continue
            start = time.perf_counter()
            settings = TuneSettings(
                recipe="ppo",
                env_id="CartPole-v1",
                space=str(HERE / "hpo_space.yaml"),
                out=str(out),
                sampler=sampler,
                pruner=pruner,
                trials=args.trials,
                seeds_per_trial=args.seeds_per_trial,
                steps=args.steps,
                eval_freq=args.steps // 5,
                n_eval_episodes=5,
                workers=args.workers,
                seed=rep,
                final_seeds=0,
                metric=args.metric,
            )
            summary = tune(settings)
            print(
                f"{name} rep {rep}: best {summary['best']['value']:.1f} (trial {summary['best']['trial']}), "
                f"{summary['trials']}, {time.perf_counter() - start:.0f} s",
                flush=True,
            )


def trial_compute(trial, seeds: int) -> int:
    """Environment steps a trial trained: the last step it reported, times its seeds."""
    return (max(trial.intermediate_values) if trial.intermediate_values else 0) * seeds


def curves(out: Path, seeds: int) -> dict[str, list[tuple[int, float]]]:
    """Per tuner run: (cumulative compute, best value so far) after each finished trial, in order."""
    import optuna

    found = {}
    for folder in sorted(out.glob("*-rep*")):
        if not (folder / "tune.json").exists():
            continue  # a tuner run still going (or killed): counted once it has finished
        study = optuna.load_study(study_name="tune", storage=f"sqlite:///{folder / 'tune.db'}")
        compute, best, points = 0, float("-inf"), []
        for trial in sorted(study.trials, key=lambda t: t.datetime_start or 0):
            compute += trial_compute(trial, seeds)
            if trial.value is not None:
                best = max(best, trial.value)
            points.append((compute, best))
        found[folder.name] = points
    return found


def report(args: argparse.Namespace) -> None:
    import numpy as np

    found = curves(Path(args.out), args.seeds_per_trial)
    print("| tuner run | trials | best | compute (M env steps) |")
    print("|---|---|---|---|")
    for name, points in found.items():
        print(f"| {name} | {len(points)} | {points[-1][1]:.1f} | {points[-1][0] / 1e6:.2f} |")
    targets = [found[n][-1][1] for n in found if n.startswith("random-")]
    if not targets:
        return
    target = float(np.median(targets))
    random_compute = float(np.median([found[n][-1][0] for n in found if n.startswith("random-")]))
    print(
        f"\nrandom search's final best (median over reps): {target:.1f} at {random_compute / 1e6:.2f} M steps"
    )
    for tuner in TUNERS:
        reached = []
        for name, points in found.items():
            if name.rsplit("-rep", 1)[0] == tuner:
                hit = next((c for c, b in points if b >= target), None)
                reached.append(hit)
        shares = [h / random_compute if h is not None else float("inf") for h in reached]
        print(f"{tuner}: compute to reach it, share of random's: {json.dumps([round(s, 2) for s in shares])}")


def final(args: argparse.Namespace) -> None:
    """Per tuner, its best configuration over the repetitions against the recipe's defaults on
    ``--final-seeds`` fresh seeds (seeds 0 …; the tuning seeds are 1000 +), through the study harness;
    prints rliable's probability of improvement. Folders ``OUT/final-TUNER``."""
    from rlsurgery.tune import TuneSettings
    from rlsurgery.tune.tuner import final_check

    checked: dict[str, str] = {}  # a best configuration already checked -> the tuner that found it
    for tuner in TUNERS:
        runs = [json.loads(f.read_text()) for f in sorted(Path(args.out).glob(f"{tuner}-rep*/tune.json"))]
        if not runs:
            continue
        best = max(runs, key=lambda r: r["best"]["value"])
        key = json.dumps(best["best"]["config"], sort_keys=True)
        if key in checked:
            print(f"{tuner}: the same best configuration as {checked[key]} (checked there)", flush=True)
            continue
        checked[key] = tuner
        settings = TuneSettings(
            recipe="ppo",
            env_id="CartPole-v1",
            space=str(HERE / "hpo_space.yaml"),
            out=str(Path(args.out) / f"final-{tuner}"),
            steps=args.steps,
            eval_freq=args.steps // 5,
            n_eval_episodes=10,
            final_seeds=args.final_seeds,
            metric=args.metric,
            workers=args.workers,
        )
        check = final_check(settings, Path(best["best_recipe"]), args.workers)
        rows = {r["variant"]: r for r in check["tables"]["per_env"]}
        improvement = check["tables"]["improvement_auc" if args.metric == "auc" else "improvement"][0]
        print(
            f"{tuner}: best {best['best']['config']['hyperparams']} "
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
    parser.add_argument("--out", default="docs/bench-data/hpo")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--trials", type=int, default=36)
    parser.add_argument("--seeds-per-trial", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--final-seeds", type=int, default=10)
    parser.add_argument(
        "--metric",
        choices=("final", "auc"),
        default="final",
        help="what trials score (and the check compares)",
    )
    parser.add_argument("--report", action="store_true", help="the tuner runs' best values and compute")
    parser.add_argument(
        "--final", action="store_true", help="each tuner's best against the defaults, fresh seeds"
    )
    args = parser.parse_args()
    if args.report:
        report(args)
    elif args.final:
        final(args)
    else:
        run(args)


if __name__ == "__main__":
    main()
