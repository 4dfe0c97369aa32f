"""Overhead of each diagnostic on training speed (issue 7): steps per second with and without it.

DQN (zoo CartPole-v1 settings, 20k steps) alone, then with each diagnostic logging every 1,000
updates, 3 seeds each, interleaved (plain, diagnostic, plain, ...) so that machine load affects both
alike; the result is the median over seeds of (steps/s with) / (steps/s without), one JSON line per
diagnostic. Goal of the issue: ≥ 0.95 (≤ 5% overhead).

    python scripts/bench/diagnostics_overhead.py --steps 20000 --seeds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch as th

import rlsurgery as rls

DIAGNOSTICS = [
    "gradient_monitoring:log_every=1000",
    "activation_statistics:log_every=1000",
    "weight_histograms:log_every=1000",
    "gradient_noise:window=20,log_every=1000",
]


def steps_per_second(spec: str | None, steps: int, seed: int) -> float:
    model = rls.make("dqn", "CartPole-v1", seed=seed, surgeries=[spec] if spec else [])
    start = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/bench-data/diagnostics_overhead.jsonl"))
    args = parser.parse_args()
    th.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a", encoding="utf-8") as out:
        for spec in DIAGNOSTICS:
            ratios = []
            for seed in range(args.seeds):
                plain = steps_per_second(None, args.steps, seed)
                ratios.append(steps_per_second(spec, args.steps, seed) / plain)
            line = {
                "diagnostic": spec,
                "steps": args.steps,
                "ratios": ratios,
                "median_ratio": statistics.median(ratios),
            }
            print(json.dumps(line))
            out.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
