"""Cost of one DQN update with each value surgery (issue 21): milliseconds per gradient update.

Every variant is a SurgicalDQN at the rl-baselines3-zoo CartPole-v1 settings (batch 64, net_arch
[256, 256]) with one surgery of the ``rainbow`` recipe, or all six; ``sb3_dqn`` is SB3's DQN. Each
model first collects ``learning_starts + 200`` steps (a filled buffer, the logger set up), then
``train(updates)`` is timed on every variant in turn, ``--repeats`` rounds with the order rotated,
one torch thread; the median time per update is kept, and each variant's ratio to ``sb3_dqn`` in
the same round. This isolates the update (the surgeries' math); whole runs (acting and collection
included) are timed by ``dqn_cartpole.py --workers 1``.

    python scripts/bench/value_speed.py --repeats 7 --out docs/bench-data/value_speed.jsonl
    python scripts/bench/value_speed.py --report docs/bench-data/value_speed.jsonl
    python scripts/bench/value_speed.py --profile rainbow     # cProfile of 200 updates, top 25
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import platform
import pstats
import statistics
import subprocess
import time
from typing import Any

import torch as th
from dqn_cartpole import ZOO
from results_log import ResultsLog

RAINBOW = (
    "double_q_learning",
    "dueling_architecture",
    "distributional_rl",
    "prioritized_replay",
    "n_step_returns:n=3",
    "noisy_nets",
)
VARIANTS: dict[str, tuple[str, ...] | None] = {
    "sb3_dqn": None,
    "surgical_dqn": (),
    **{spec.split(":")[0]: (spec,) for spec in RAINBOW},
    "rainbow": RAINBOW,
}


def build(variant: str, seed: int) -> Any:
    """The model of ``variant``, its buffer filled."""
    kwargs: dict[str, Any] = dict(ZOO, policy_kwargs=dict(net_arch=[256, 256]), seed=seed)
    surgeries = VARIANTS[variant]
    if surgeries is None:
        from stable_baselines3 import DQN

        model = DQN("MlpPolicy", "CartPole-v1", **kwargs)
    else:
        from rlsurgery import SurgicalDQN

        model = SurgicalDQN("MlpPolicy", "CartPole-v1", surgeries=list(surgeries), **kwargs)
    return model.learn(ZOO["learning_starts"] + 200)


def measure(variants: list[str], repeats: int, updates: int, seed: int) -> dict[str, list[float]]:
    """ms per update of each variant, one value per round (the first round warms up, not kept)."""
    models = {name: build(name, seed) for name in variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(repeats + 1):
        shift = round_ % len(variants)
        for name in variants[shift:] + variants[:shift]:
            start = time.perf_counter()
            models[name].train(gradient_steps=updates, batch_size=ZOO["batch_size"])
            if round_:
                times[name].append((time.perf_counter() - start) / updates * 1000)
    return times


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip()


def report(log: ResultsLog) -> None:
    rows = log.rows()
    print("| variant | ms / update (median) | ratio to sb3_dqn (median, range) |\n| --- | --- | --- |")
    base = {r["round"]: r["ms"] for r in rows if r["variant"] == "sb3_dqn"}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        mine = [r for r in rows if r["variant"] == variant]
        ratios = [r["ms"] / base[r["round"]] for r in mine if r["round"] in base]
        ms = statistics.median(r["ms"] for r in mine)
        shown = f"{statistics.median(ratios):.2f} ({min(ratios):.2f}–{max(ratios):.2f})" if ratios else "-"
        print(f"| {variant} | {ms:.2f} | {shown} |")


def profile(variant: str, updates: int) -> None:
    model = build(variant, 0)
    model.train(gradient_steps=20, batch_size=ZOO["batch_size"])
    profiler = cProfile.Profile()
    profiler.enable()
    model.train(gradient_steps=updates, batch_size=ZOO["batch_size"])
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--updates", type=int, default=128, help="updates per timing (the zoo's gradient_steps)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-results/value_speed.jsonl")
    parser.add_argument("--report", help="only print the table of an existing results file")
    parser.add_argument("--profile", help="cProfile 200 updates of this variant")
    args = parser.parse_args()
    th.set_num_threads(1)
    if args.report:
        report(ResultsLog(args.report, key=("variant", "round", "commit")))
        return
    if args.profile:
        profile(args.profile, 200)
        return
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    log = ResultsLog(args.out, key=("variant", "round", "commit"))
    stamp = dict(commit=commit(), date=datetime.date.today().isoformat(), machine=platform.node())
    for name, values in measure(variants, args.repeats, args.updates, args.seed).items():
        for round_, ms in enumerate(values):
            log.append({"variant": name, "round": round_, "ms": ms, "updates": args.updates, **stamp})
    report(log)


if __name__ == "__main__":
    main()
