"""Overhead of each diagnostic on training speed (issue 7): steps per second with and without it.

DQN (zoo CartPole-v1 settings, 20k steps) alone, then with each diagnostic logging every 1,000
updates, ``--seeds`` pairs each, measured back to back (the order alternates between pairs, so that a
drift in machine speed affects both alike). Three readings per pair:

- ``ratios``: wall-clock steps per second with the diagnostic over without it;
- ``cpu_ratios``: the same with the process's CPU time (``time.process_time``), which time the
  process spends waiting for a busy core does not inflate;
- ``inside_fractions``: the share of the diagnostic run's wall time spent inside the diagnostic's
  own code (its optimizer step hooks and its per-step callback, timed around each call). It does
  not depend on how fast the machine is that moment, so it resolves a few per cent where the two
  ratios, each a quotient of two separately timed runs, swing by ±10% on a shared machine.

One JSON line per diagnostic (``docs/bench-data/diagnostics_overhead.jsonl``) with the medians over
pairs, the first a control (plain against plain: the noise floor of the ratios); a rerun skips the
diagnostics already in the file for the same steps and seeds. Goal of the issue: a speed ratio
≥ 0.95 (≤ 5% overhead).

    python scripts/bench/diagnostics_overhead.py --steps 20000 --seeds 5
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch as th
from results_log import ResultsLog

import rlsurgery as rls
from rlsurgery.runtime.callbacks import EveryStep

METHOD = "timed"  # these three readings (earlier lines of the file, "wall clock", have only ratios)
CONTROL = "none (control)"  # plain against plain: how far the ratios swing with no diagnostic at all
DIAGNOSTICS = [
    CONTROL,
    "gradient_monitoring:log_every=1000",
    "activation_statistics:log_every=1000",
    "weight_histograms:log_every=1000",
    "gradient_noise:window=20,log_every=1000",
]


@dataclass
class Timing:
    wall_s: float
    cpu_s: float
    inside_s: float


class InsideTimer:
    """Adds up the time spent in an agent's step hooks and in ``EveryStep`` callbacks.

    The plain recipe has neither, so with one diagnostic attached everything timed is its own.
    """

    def __init__(self) -> None:
        self.seconds = 0.0

    def timed(self, function: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return call

    def attach(self, model: Any) -> None:
        hooks = getattr(model, "_rls_step_hooks", [])
        hooks[:] = [(order, self.timed(hook)) for order, hook in hooks]  # read at each optimizer step


def train(spec: str | None, steps: int, seed: int) -> Timing:
    surgeries = [spec] if spec and spec != CONTROL else []
    model = rls.make("dqn", "CartPole-v1", seed=seed, surgeries=surgeries)
    timer = InsideTimer()
    timer.attach(model)
    original = EveryStep._on_step
    EveryStep._on_step = timer.timed(original)  # type: ignore[method-assign]
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        model.learn(steps)
        return Timing(time.perf_counter() - wall, time.process_time() - cpu, timer.seconds)
    finally:
        EveryStep._on_step = original  # type: ignore[method-assign]


def measure(spec: str, steps: int, seeds: int) -> dict[str, Any]:
    """``seeds`` pairs (plain, with ``spec``), alternating which runs first."""
    ratios, cpu_ratios, fractions = [], [], []
    for seed in range(seeds):
        if seed % 2 == 0:
            plain, with_it = train(None, steps, seed), train(spec, steps, seed)
        else:
            with_it, plain = train(spec, steps, seed), train(None, steps, seed)
        ratios.append(plain.wall_s / with_it.wall_s)
        cpu_ratios.append(plain.cpu_s / with_it.cpu_s)
        fractions.append(with_it.inside_s / with_it.wall_s)
        print(
            f"  {spec} seed {seed}: ratio {ratios[-1]:.3f}, cpu {cpu_ratios[-1]:.3f}, "
            f"inside {fractions[-1]:.4f}"
        )
    return {
        "diagnostic": spec,
        "steps": steps,
        "seeds": seeds,
        "ratios": ratios,
        "median_ratio": statistics.median(ratios),
        "cpu_ratios": cpu_ratios,
        "median_cpu_ratio": statistics.median(cpu_ratios),
        "inside_fractions": fractions,
        "median_inside_fraction": statistics.median(fractions),
        "method": METHOD,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {th.get_num_threads()} torch thread(s)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=5, help="pairs of runs per diagnostic")
    parser.add_argument("--out", type=Path, default=Path("docs/bench-data/diagnostics_overhead.jsonl"))
    args = parser.parse_args()
    th.set_num_threads(1)
    log = ResultsLog(args.out, key=("diagnostic", "steps", "seeds", "method"))
    done = log.done()
    for spec in DIAGNOSTICS:
        if (spec, args.steps, args.seeds, METHOD) in done:
            print(f"{spec}: already in {args.out}")
            continue
        line = measure(spec, args.steps, args.seeds)
        print(
            f"{spec}: median ratio {line['median_ratio']:.3f}, cpu {line['median_cpu_ratio']:.3f}, "
            f"inside {line['median_inside_fraction']:.2%}"
        )
        log.append(line)


if __name__ == "__main__":
    main()
