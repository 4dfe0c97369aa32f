"""Benchmark: wall time of the same 8-run study with 1 and 2 local workers, and on a local Ray
with 2 CPUs (issue 3, docs/benchmarks.md).

The study: plain ``dqn`` on CartPole-v1, 8 seeds x ``--steps`` steps each (evaluation every
quarter of the budget, 5 episodes). Each configuration runs the whole study into a fresh
folder; the time measured is ``run_study`` without the report (workers' start-up included).
Configurations are interleaved over ``--repeats`` rounds (order rotated each round), so slow
drifts of the machine affect all alike; ratios are medians over rounds.

    python scripts/bench/study_scaling.py --steps 8000 --repeats 3 --out docs/bench-data/study_scaling.jsonl
    python scripts/bench/study_scaling.py --steps 20000 --repeats 3 --configs local-2,ray-2 \
        --out docs/bench-data/study_scaling.jsonl
    python scripts/bench/study_scaling.py --report --out docs/bench-data/study_scaling.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from rlsurgery.bench import StudySpec, Variant, run_study, select_envs

CONFIGS = {"local-1": ("local", 1), "local-2": ("local", 2), "ray-2": ("ray", 2)}


def study(steps: int) -> StudySpec:
    envs = select_envs(None, ["CartPole-v1"], steps=steps, eval_freq=steps // 4, n_eval_episodes=5)
    return StudySpec("scaling", [Variant("dqn", "dqn")], envs, seeds=list(range(8)), device="cpu")


def time_config(name: str, steps: int) -> float:
    backend, workers = CONFIGS[name]
    folder = Path(tempfile.mkdtemp(prefix=f"scaling-{name}-"))
    try:
        start = time.perf_counter()
        run_study(study(steps), folder, backend=backend, workers=workers, progress=False, report=False)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if backend == "ray":
            import ray

            ray.shutdown()


def report(rows: list[dict]) -> None:
    by_round: dict[tuple[int, int], dict[str, float]] = {}
    for row in rows:
        by_round.setdefault((row["steps"], row["round"]), {})[row["config"]] = row["wall_s"]
    for steps in sorted({s for s, _ in by_round}):
        print(f"-- {steps} steps per run")
        rounds = [r for (s, _), r in sorted(by_round.items()) if s == steps]
        for name in CONFIGS:
            walls = [r[name] for r in rounds if name in r]
            if walls:
                runs = ", ".join(f"{w:.1f}" for w in walls)
                print(f"{name:<8} median {np.median(walls):7.1f} s   runs: {runs}")
        _print_ratio("speed-up local-1 / local-2", rounds, "local-1", "local-2")
        _print_ratio("ray-2 / local-2 wall time", rounds, "ray-2", "local-2")


def _print_ratio(label: str, rounds: list[dict[str, float]], top: str, bottom: str) -> None:
    values = [r[top] / r[bottom] for r in rounds if top in r and bottom in r]
    if values:
        print(f"{label}: median {np.median(values):.2f} (range {min(values):.2f}-{max(values):.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="bench-results/study_scaling.jsonl")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="subset of " + ", ".join(CONFIGS))
    parser.add_argument("--report", action="store_true", help="only print the report of --out")
    args = parser.parse_args()
    out = Path(args.out)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    if not args.report:
        out.parent.mkdir(parents=True, exist_ok=True)
        names = [n for n in args.configs.split(",") if n]
        for round_ in range(args.repeats):
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            for name in order:
                wall = time_config(name, args.steps)
                row = {
                    "round": round_,
                    "config": name,
                    "steps": args.steps,
                    "wall_s": wall,
                    "machine": f"{platform.node()} ({platform.machine()})",
                    "date": time.strftime("%Y-%m-%d"),
                }
                print(f"round {round_} {name}: {wall:.1f} s", flush=True)
                rows.append(row)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    report(rows)


if __name__ == "__main__":
    main()
