"""Cost of every surgery (issue 21): a short standard run with the surgery, timed against the plain agent.

For every implemented catalog key, on the first agent of its families in the order DQN, PPO, SAC, A2C,
TD3, TRPO, a *standard run* is timed: the agent built with that one surgery, then ``learn(steps)``
(both timed: what some surgeries do at build time, e.g. distillation or behaviour cloning,
counts). The same run of the agent without surgeries is
timed before every block of ``--plain-every`` keys and after the last, and a key's ratio is its time
over the mean of the plain runs around it. ``--rounds`` rounds, the key order reversed on odd rounds;
one torch thread, one process, nothing else should run. Memory: ``rlsurgery.measure.memory_bytes``
after the run (networks, optimizer states, buffers, surgery state), with the surgery minus without.

Standard runs (``CONFIGS``): DQN on CartPole-v1 at the rl-baselines3-zoo settings (5k steps, of which
1k before learning: 2,000 updates of batch 64 on [256, 256]); PPO on CartPole-v1 (n_steps 512, 5
rollouts). A surgery that CartPole's spaces refuse is run on the first of a tiny image env (CnnPolicy,
for image-only surgeries), BitFlip (goal observations, HER) and the Chain MDP (tabular) that builds.
Surgeries that need an expert, a teacher or a checkpoint get one made here (see ``rlsurgery.examples``).

    python scripts/bench/surgery_costs.py --rounds 2 --out docs/bench-data/surgery_costs.jsonl
    python scripts/bench/surgery_costs.py --report docs/bench-data/surgery_costs.jsonl \
        --summary rlsurgery/data/surgery_costs.json       # the table; the file docs/surgeries.md reads
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import platform
import statistics
import subprocess
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch as th
from dqn_cartpole import ZOO
from results_log import ResultsLog

FAMILY_ORDER = ("dqn", "ppo", "sac", "a2c", "td3", "trpo")
IMAGE_ENV = "rlsurgery-bench/TinyImage-v0"


class TinyImageEnv(gym.Env):
    """36x36 grey images of noise, 2 actions, reward 1 for action 1, 20 steps: the smallest env a
    CnnPolicy takes, for surgeries that only act on images."""

    observation_space = gym.spaces.Box(0, 255, (36, 36, 1), dtype=np.uint8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self.np_random.integers(0, 256, (36, 36, 1), dtype=np.uint8), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        obs = self.np_random.integers(0, 256, (36, 36, 1), dtype=np.uint8)
        return obs, float(action == 1), False, self._t >= 20, {}


@dataclass(frozen=True)
class Config:
    """One standard run: agent, policy, env, steps and the agent's keyword arguments."""

    name: str
    family: str
    policy: str
    env: str
    steps: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    """the run in words, for docs/surgeries.md"""


DQN_KWARGS = dict(ZOO, policy_kwargs=dict(net_arch=[256, 256]))
SMALL_CNN = dict(features_extractor_kwargs=dict(features_dim=64), net_arch=[64])
CONFIGS = {
    c.name: c
    for c in (
        Config(
            "dqn-cartpole",
            "dqn",
            "MlpPolicy",
            "CartPole-v1",
            5000,
            DQN_KWARGS,
            "DQN, CartPole-v1, 5k steps at the zoo settings",
        ),
        Config(
            "dqn-image",
            "dqn",
            "CnnPolicy",
            IMAGE_ENV,
            3000,
            dict(ZOO, buffer_size=10_000, policy_kwargs=SMALL_CNN),
            "DQN (CnnPolicy), a 36x36 image env, 3k steps",
        ),
        Config(
            "dqn-bitflip",
            "dqn",
            "MultiInputPolicy",
            "rlsurgery/BitFlip-v0",
            3000,
            DQN_KWARGS,
            "DQN, BitFlip (goal observations), 3k steps",
        ),
        Config(
            "dqn-chain",
            "dqn",
            "MlpPolicy",
            "rlsurgery/Chain-v0",
            3000,
            DQN_KWARGS,
            "DQN, Chain MDP, 3k steps",
        ),
        Config(
            "ppo-cartpole",
            "ppo",
            "MlpPolicy",
            "CartPole-v1",
            2560,
            dict(n_steps=512, batch_size=64),
            "PPO, CartPole-v1, 5 rollouts of 512 steps",
        ),
    )
}
#: where a surgery goes when CartPole refuses it, by family
FALLBACKS = {"dqn": ("dqn-image", "dqn-bitflip", "dqn-chain")}


def make_agent(config: Config, surgeries: list[str] | None, seed: int) -> Any:
    import rlsurgery as rls

    cls = {"dqn": rls.SurgicalDQN, "ppo": rls.SurgicalPPO}[config.family]
    return cls(config.policy, config.env, seed=seed, surgeries=surgeries, **config.kwargs)


def specs_for(key: str, config: Config, folder: Path) -> list[str]:
    """The surgery specs of ``key``'s run on ``config`` (companions first, paths filled in: see
    :mod:`rlsurgery.examples`)."""
    from rlsurgery.examples import REQUIRED_PARAMS, example_specs, save_cartpole_expert

    required = REQUIRED_PARAMS.get(key, "")
    expert = save_cartpole_expert(folder) if "{expert}" in required else None
    checkpoint = None
    if "{checkpoint}" in required:
        checkpoint = folder / f"{config.name}-checkpoint.zip"
        if not checkpoint.exists():
            make_agent(config, None, seed=1).save(checkpoint)
    return example_specs(key, expert=expert, checkpoint=checkpoint)


def config_for(key: str, folder: Path) -> tuple[Config, list[str]] | str:
    """The first standard run ``key`` builds on, and its specs; or why none does."""
    from rlsurgery import catalog
    from rlsurgery.core.errors import SurgeryError

    families = catalog.get(key).surgery.families
    family = next((f for f in FAMILY_ORDER if f in families), None)
    if family is None or f"{family}-cartpole" not in CONFIGS:
        return f"no standard run for its agents {families}"
    reasons = []
    for name in (f"{family}-cartpole", *FALLBACKS.get(family, ())):
        config = CONFIGS[name]
        specs = specs_for(key, config, folder)
        try:
            make_agent(config, specs, seed=0)
        except (SurgeryError, ValueError, TypeError) as exc:
            reasons.append(f"{name}: {str(exc).splitlines()[0]}")
            continue
        return config, specs
    return "; ".join(reasons)


#: multiplies every standard run's steps (``--scale``: a quick check of the script, not a measurement)
SCALE = 1.0


def timed_run(config: Config, specs: list[str] | None, seed: int) -> dict[str, Any]:
    """Build and ``learn(config.steps)`` (timed together: some surgeries work at build time, e.g.
    distillation and behaviour cloning), memory after the run."""
    from rlsurgery.measure import memory_bytes

    gc.collect()
    start = time.perf_counter()
    model = make_agent(config, specs, seed)
    model.learn(int(config.steps * SCALE))
    wall = time.perf_counter() - start
    result = {"wall_s": wall, "bytes": memory_bytes(model)}
    del model
    gc.collect()
    return result


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip()


def measure(keys: list[str], rounds: int, plain_every: int, log: ResultsLog) -> None:
    done = log.done()
    stamp = dict(commit=commit(), date=datetime.date.today().isoformat(), machine=platform.node())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        plans: dict[str, list[tuple[str, list[str]]]] = {}
        for key in keys:
            found = config_for(key, folder)
            if isinstance(found, str):
                if (key, "-", -1) not in done:
                    log.append({"key": key, "config": "-", "round": -1, "skipped": found, **stamp})
                print(f"{key}: not timed ({found})", flush=True)
                continue
            config, specs = found
            plans.setdefault(config.name, []).append((key, specs))
        for round_ in range(rounds):
            for name, plan in plans.items():
                config = CONFIGS[name]
                plan = plan if round_ % 2 == 0 else plan[::-1]
                blocks = [plan[i : i + plain_every] for i in range(0, len(plan), plain_every)]
                for index in range(len(blocks) + 1):
                    plain_key = f"plain#{index}"
                    if (plain_key, name, round_) not in done:
                        row = timed_run(config, None, seed=round_)
                        log.append({"key": plain_key, "config": name, "round": round_, **row, **stamp})
                    if index == len(blocks):
                        break
                    for key, specs in blocks[index]:
                        if (key, name, round_) in done:
                            continue
                        try:
                            row = timed_run(config, specs, seed=round_)
                        except Exception as exc:  # a failing run is reported, the rest goes on
                            traceback.print_exc()
                            row = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0]}"}
                        log.append(
                            {"key": key, "config": name, "round": round_, "specs": specs, "block": index}
                            | row
                            | stamp
                        )
                        shown = f"{row['wall_s']:.1f}s" if "wall_s" in row else row["error"]
                        print(f"round {round_} {name} {key}: {shown}", flush=True)


def summarize(log: ResultsLog) -> dict[str, dict[str, Any]]:
    """Per key: the standard run, the median and range of its time ratios, the extra memory."""
    rows = log.rows()
    plain: dict[tuple[str, int], dict[int, dict]] = {}
    for r in rows:
        if r["key"].startswith("plain#"):
            plain.setdefault((r["config"], r["round"]), {})[int(r["key"][6:])] = r
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["key"].startswith("plain#"):
            continue
        entry = out.setdefault(r["key"], {"ratios": [], "extra_bytes": []})
        if "skipped" in r:
            entry["skipped"] = r["skipped"]
            continue
        entry.update(config=r["config"], specs=r.get("specs"), commit=r["commit"], date=r["date"])
        if "error" in r:
            entry["error"] = r["error"]
            continue
        around = plain.get((r["config"], r["round"]), {})
        refs = [around[i] for i in (r["block"], r["block"] + 1) if i in around]
        if not refs:
            continue
        entry["ratios"].append(r["wall_s"] / statistics.mean(x["wall_s"] for x in refs))
        entry["extra_bytes"].append(r["bytes"] - statistics.mean(x["bytes"] for x in refs))
    summary = {}
    for key, entry in sorted(out.items()):
        item: dict[str, Any] = {
            k: entry[k] for k in ("config", "skipped", "error", "commit", "date") if k in entry
        }
        if "config" in entry and entry["config"] in CONFIGS:
            item["run"] = CONFIGS[entry["config"]].label
        if entry["ratios"]:
            ratios = entry["ratios"]
            item.update(
                ratio=round(statistics.median(ratios), 3),
                ratio_min=round(min(ratios), 3),
                ratio_max=round(max(ratios), 3),
                runs=len(ratios),
                extra_mb=round(statistics.median(entry["extra_bytes"]) / 1e6, 2),
            )
            if entry.get("specs") and len(entry["specs"]) > 1:
                item["with"] = [s.split(":")[0] for s in entry["specs"][:-1]]
        summary[key] = item
    return summary


def report(summary: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| key | standard run | time / plain (median, range) | extra memory (MB) |",
        "| --- | --- | --- | --- |",
    ]
    timed = sorted((k for k in summary if "ratio" in summary[k]), key=lambda k: -summary[k]["ratio"])
    for key in timed:
        s = summary[key]
        extra = f" (with {', '.join(s['with'])})" if s.get("with") else ""
        lines.append(
            f"| `{key}`{extra} | {s['config']} | {s['ratio']:.2f} ({s['ratio_min']:.2f}–{s['ratio_max']:.2f})"
            f" | {s['extra_mb']:+.2f} |"
        )
    for key, s in summary.items():
        if "ratio" not in s:
            lines.append(
                f"| `{key}` | {s.get('config', '-')} | not timed: {s.get('skipped') or s.get('error')} | |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keys", help="comma-separated keys (default: every implemented key)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--plain-every", type=int, default=6, help="keys between two plain runs")
    parser.add_argument("--out", default="bench-results/surgery_costs.jsonl")
    parser.add_argument("--scale", type=float, default=1.0, help="steps x this (quick checks only)")
    parser.add_argument(
        "--report",
        help="only print the table of existing results files (comma-separated; a later file's keys "
        "replace an earlier one's)",
    )
    parser.add_argument("--summary", help="with --report: write the per-key summary JSON here")
    args = parser.parse_args()
    th.set_num_threads(1)
    if not gym.registry.get(IMAGE_ENV):
        gym.register(IMAGE_ENV, entry_point=TinyImageEnv)
    from rlsurgery import catalog
    from rlsurgery.envs import ensure_registered

    for config in CONFIGS.values():
        ensure_registered(config.env)
    if args.report:
        summary: dict[str, dict[str, Any]] = {}
        for path in args.report.split(","):  # a later file's keys replace an earlier file's (re-measured)
            summary.update(summarize(ResultsLog(path, key=("key", "config", "round"))))
        print(report(summary))
        if args.summary:
            Path(args.summary).write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
        return
    global SCALE
    SCALE = args.scale
    keys = args.keys.split(",") if args.keys else [e.key for e in catalog.entries(status="implemented")]
    measure(keys, args.rounds, args.plain_every, ResultsLog(args.out, key=("key", "config", "round")))


if __name__ == "__main__":
    main()
