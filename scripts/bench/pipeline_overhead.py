"""Cost of the stage pipeline (issue 19): a surgical agent with no surgeries against its SB3 parent.

Both compute the same numbers (the equivalence tests check it bit for bit), so what the surgical
agent costs more is the stage dispatch around SB3's math. Per agent and seed, the two run back to
back in this process (the order alternates between seeds, so that a drift of the machine's speed
affects both alike), one torch thread, and two readings are taken:

- ``learn``: wall time of the whole ``learn(steps)`` call (environment steps, acting and updates);
- ``train``: wall time inside ``train()`` only (the update, where the pipeline is), summed over the
  run; it is less diluted by the shared collection code.

With ``--micro``, a third reading isolates the update: both agents are trained to the same point
(the same replay data), then ``train(gradient_steps)`` is timed on each in turn, ``--repeats``
times alternating, one torch thread, and the median time per update is kept (``micro_*_ms``).

Agents (rl-baselines3-zoo settings for the env, smaller networks for SAC so that a run is short):

* ``dqn``  CartPole-v1, the zoo's DQN settings (batch 64, train_freq 256, gradient_steps 128)
* ``sac``  Pendulum-v1, the zoo's SAC settings (lr 1e-3), net_arch [64, 64], batch 256
* ``ppo``  CartPole-v1, SB3's defaults (n_steps 2048, batch 64, 10 epochs), 8 rollouts (no ``--micro``)

One JSON line per (agent, seed) in ``--out`` (a rerun skips what is done); ``--report`` prints the
medians and ranges of the ratios. Goal of the issue: surgical / SB3 ≤ 1.05.

    python scripts/bench/pipeline_overhead.py --agents dqn,sac --seeds 6 \
        --out docs/bench-data/pipeline_overhead.jsonl
    python scripts/bench/pipeline_overhead.py --report docs/bench-data/pipeline_overhead.jsonl
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import time
from typing import Any

import torch as th
from dqn_cartpole import ZOO
from results_log import ResultsLog
from stable_baselines3 import DQN, PPO, SAC

from rlsurgery import SurgicalDQN, SurgicalPPO, SurgicalSAC

AGENTS: dict[str, dict[str, Any]] = {
    "dqn": dict(
        classes=(DQN, SurgicalDQN),
        env="CartPole-v1",
        steps=20_000,
        kwargs=dict(ZOO, policy_kwargs=dict(net_arch=[256, 256])),
    ),
    "sac": dict(
        classes=(SAC, SurgicalSAC),
        env="Pendulum-v1",
        steps=2_000,
        kwargs=dict(
            learning_rate=1e-3, learning_starts=500, batch_size=256, policy_kwargs=dict(net_arch=[64, 64])
        ),
    ),
    "ppo": dict(classes=(PPO, SurgicalPPO), env="CartPole-v1", steps=16_384, kwargs=dict(batch_size=64)),
}


def timed_run(cls: type, env_id: str, steps: int, kwargs: dict[str, Any], seed: int) -> tuple[float, float]:
    """(learn seconds, seconds inside train()) of one run."""
    model = cls(
        "MlpPolicy",
        env_id,
        seed=seed,
        **{k: (dict(v) if isinstance(v, dict) else v) for k, v in kwargs.items()},
    )
    inside = [0.0]
    train = model.train

    def timed_train(*args: Any, **kw: Any) -> None:
        start = time.perf_counter()
        train(*args, **kw)
        inside[0] += time.perf_counter() - start

    model.train = timed_train  # type: ignore[method-assign]
    start = time.perf_counter()
    model.learn(steps)
    return time.perf_counter() - start, inside[0]


def micro(agent: str, seed: int, repeats: int, updates: int) -> dict[str, float]:
    """Median ms per update of ``train(updates)`` for SB3 and the surgical agent, alternating."""
    spec = AGENTS[agent]
    models = {}
    for name, cls in zip(("sb3", "surgical"), spec["classes"]):
        kwargs = {k: (dict(v) if isinstance(v, dict) else v) for k, v in spec["kwargs"].items()}
        model = cls("MlpPolicy", spec["env"], seed=seed, **kwargs)
        model.learn(spec["kwargs"]["learning_starts"] + 200)  # a filled buffer, the logger set up
        models[name] = model
    times: dict[str, list[float]] = {"sb3": [], "surgical": []}
    batch_size = spec["kwargs"]["batch_size"]
    for repeat in range(repeats + 1):
        for name in ("sb3", "surgical") if repeat % 2 else ("surgical", "sb3"):
            start = time.perf_counter()
            models[name].train(gradient_steps=updates, batch_size=batch_size)
            if repeat:  # the first round warms up
                times[name].append((time.perf_counter() - start) / updates * 1000)
    return {f"micro_{name}_ms": statistics.median(values) for name, values in times.items()}


def report(log: ResultsLog) -> None:
    rows = log.rows()
    for agent in sorted({r["agent"] for r in rows}):
        mine = [r for r in rows if r["agent"] == agent]
        for reading in ("learn", "train", "micro"):
            unit = "ms" if reading == "micro" else "s"
            rows_with = [r for r in mine if f"{reading}_sb3_{unit}" in r]
            if not rows_with:
                continue
            ratios = [r[f"{reading}_surgical_{unit}"] / r[f"{reading}_sb3_{unit}"] for r in rows_with]
            print(
                f"{agent:4s} {reading:5s} surgical/SB3: median {statistics.median(ratios):.3f} "
                f"(range {min(ratios):.3f}-{max(ratios):.3f}, {len(ratios)} seeds; "
                f"SB3 median {statistics.median(r[f'{reading}_sb3_{unit}'] for r in rows_with):.2f} {unit})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", default="dqn,sac")
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--out", default="bench-results/pipeline_overhead.jsonl")
    parser.add_argument("--report", help="only print the table of an existing results file")
    parser.add_argument("--micro", action="store_true", help="time train() alone (see above)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--updates", type=int, default=200)
    args = parser.parse_args()
    if args.report:
        report(ResultsLog(args.report, key=("agent", "seed", "steps")))
        return
    th.set_num_threads(1)
    log = ResultsLog(args.out, key=("agent", "seed", "steps"))
    if args.micro:
        for seed in range(args.seeds):
            for agent in args.agents.split(","):
                if (agent, seed, "micro") in log.done():
                    continue
                record = {"agent": agent, "seed": seed, "steps": "micro", "updates": args.updates}
                record.update(micro(agent, seed, args.repeats, args.updates))
                record.update(date=datetime.date.today().isoformat(), machine=platform.node())
                log.append(record)
                print(record, flush=True)
        report(log)
        return
    for seed in range(args.seeds):
        for agent in args.agents.split(","):
            spec = AGENTS[agent]
            if (agent, seed, spec["steps"]) in log.done():
                continue
            sb3_cls, surgical_cls = spec["classes"]
            order = [("sb3", sb3_cls), ("surgical", surgical_cls)]
            if seed % 2:
                order.reverse()
            record: dict[str, Any] = {
                "agent": agent,
                "seed": seed,
                "steps": spec["steps"],
                "first": order[0][0],
            }
            for name, cls in order:
                learn_s, train_s = timed_run(cls, spec["env"], spec["steps"], spec["kwargs"], seed)
                record[f"learn_{name}_s"], record[f"train_{name}_s"] = learn_s, train_s
            record.update(
                date=datetime.date.today().isoformat(), machine=platform.node(), torch=th.__version__
            )
            log.append(record)
            print(record, flush=True)
    report(log)


if __name__ == "__main__":
    main()
