"""Benchmark: compression surgeries on trained policies, the return-vs-size-vs-latency frontier (issue 22).

Source policies (``docs/bench-data/models/``, trained once with ``rlsurgery train``): DQN on
CartPole-v1 and LunarLander-v3, PPO on LunarLander-v3, SAC on Pendulum-v1. Each variant applies one
surgery to a fresh load of the policy, with or without a short fine-tune (``--ft-steps`` per policy,
``--seeds`` seeds of fine-tuning; the variants without one are deterministic and run once), and
measures on the result: greedy return over ``--episodes`` episodes (eval seed 10001), parameters,
deployed weight bytes, the ONNX file's bytes, and the median latency of one greedy ``predict`` at
batch 1 and 256 in PyTorch and of one ONNX Runtime run of the exported policy (one thread).

    python scripts/bench/compression_frontier.py --out docs/bench-data/compression_frontier.jsonl
    python scripts/bench/compression_frontier.py --report docs/bench-data/compression_frontier.jsonl \\
        --plots docs/img

The LoRA study (``--lora``) adapts the LunarLander-v3 DQN (or, ``--lora-policy``, the PPO policy) to a
changed LunarLander (``--lora-target``: ``wind``, ``enable_wind=True, wind_power=15``; ``wind20``, the
same at 20; ``gravity2``, ``gravity=-2``): no fine-tune, full fine-tuning and LoRA (rank 4 on the DQN,
1 on PPO's small networks: under 10% of the parameters trainable), ``--seeds`` seeds each,
``--lora-steps`` steps at the source's learning rate or a share of it (the variant's name), after
``--lora-learning-starts`` steps of replay refill; the goal is LoRA's gain ≥ 90% of full
fine-tuning's gain, the gain measured from the source's return on the changed env.

    python scripts/bench/compression_frontier.py --lora --lora-target gravity2 --lora-steps 30000 \
        --lora-learning-starts 10000 --out docs/bench-data/compression_lora_gravity.jsonl

One JSON line per (policy, variant, seed) in ``--out``; a rerun skips the lines already there.
Fine-tuning keeps the source's hyperparameters, except: off-policy agents start with an empty
replay and ``learning_starts = FT_LEARNING_STARTS`` (5000); DQN's exploration is held at its final
ε; the learning rate is ``FT_LR_FACTOR[policy]`` times the source's (0.01 for the DQNs, whose zoo
learning rates are high and which forget on a fresh replay; 0.1 for PPO and SAC). The ``-distill``
variants fine-tune instead by regressing the uncompressed source's outputs (Q-values, logits or
actions; MSE) on ``DISTILL_STATES`` states of the compressed policy's own rollouts, in 5 rounds
(``rlsurgery.distillation.core.distill``), with no reward used.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from results_log import ResultsLog

MODELS = Path(__file__).resolve().parents[2] / "docs" / "bench-data" / "models"
#: policy name -> (zip, env id)
POLICIES = {
    "cartpole-dqn": ("cartpole-dqn-dense.zip", "CartPole-v1"),
    "lunarlander-dqn": ("lunarlander-dqn-dense.zip", "LunarLander-v3"),
    "lunarlander-ppo": ("lunarlander-ppo.zip", "LunarLander-v3"),
    "pendulum-sac": ("pendulum-sac.zip", "Pendulum-v1"),
}
#: fine-tuning env steps per policy
FT_STEPS = {
    "cartpole-dqn": 20_000,
    "lunarlander-dqn": 20_000,
    "lunarlander-ppo": 32_768,
    "pendulum-sac": 8_000,
}
#: variant -> (surgery specs applied before the fine-tune, specs after it, the fine-tune: False (none),
#: True (RL on the env, see fine_tune) or "distill" (see distill_from_source))
VARIANTS: dict[str, tuple[list[str], list[str], bool | str]] = {
    "fp32": ([], [], False),
    "ptq-int8": (["post_training_quantization"], [], False),
    "ptq-int8-pct": (["post_training_quantization:observer=percentile,percentile=99.9"], [], False),
    "dynamic-int8": (["dynamic_quantization"], [], False),
    "fp16": (["mixed_precision:dtype=float16,tolerance=0.001"], [], False),
    "bf16": (["mixed_precision:dtype=bfloat16,tolerance=0.01"], [], False),
    "svd-30": (["svd_decomposition:rank={svd_rank}"], [], False),
    "ternary": (["ternary_networks"], [], False),
    "ternary-all": (["ternary_networks:keep_ends=False"], [], False),
    "fp32-ft": ([], [], True),
    "svd-30-ft": (["svd_decomposition:rank={svd_rank}"], [], True),
    "qat-int8-ft": (["quantization_aware_training"], ["post_training_quantization"], True),
    "ternary-ft": (["ternary_networks"], [], True),
    "ternary-all-ft": (["ternary_networks:keep_ends=False"], [], True),
    "binary-ft": (["binary_networks"], [], True),
    # SVD's factors start far from a good policy on LunarLander: fine-tuned at 10x the rate above
    "svd-30-ft-lr10": (["svd_decomposition:rank={svd_rank}"], [], True),
    # "distill": fine-tuned by regressing the uncompressed policy's outputs on the compressed one's states
    "svd-30-distill": (["svd_decomposition:rank={svd_rank}"], [], "distill"),
    "ternary-distill": (["ternary_networks"], [], "distill"),
    # one int8 scale per layer (4 bytes a row fewer), with and without the fp32 heads
    "ptq-int8-tensor": (["post_training_quantization:weight_scales=tensor"], [], False),
    "ptq-int8-tensor-all": (["post_training_quantization:weight_scales=tensor,keep_heads=False"], [], False),
    "dynamic-int8-tensor-all": (["dynamic_quantization:weight_scales=tensor,keep_heads=False"], [], False),
}
KEY = ("policy", "variant", "seed")
EVAL_SEED = 10_001
#: fine-tuning's learning rate, as a share of the source's (a trained policy, a short budget)
FT_LR_FACTOR = {"cartpole-dqn": 0.01, "lunarlander-dqn": 0.01, "lunarlander-ppo": 0.1, "pendulum-sac": 0.1}
#: off-policy fine-tuning first fills the empty replay with this many steps of the (surgically changed) policy
FT_LEARNING_STARTS = 5000
#: distillation fine-tuning: states of the compressed policy's rollouts, labelled by the source policy
DISTILL_STATES = 20_000


def load(policy: str):
    import rlsurgery as rls

    return rls.load(MODELS / POLICIES[policy][0], device="cpu")


def svd_rank(policy: str, share: float = 0.30) -> int:
    """The largest fixed rank at which ``svd_decomposition`` leaves at most ``share`` of the parameters."""
    import rlsurgery as rls
    from rlsurgery.pruning.neurons import parameter_count

    total = parameter_count(load(policy))

    def fits(rank: int) -> bool:
        model = load(policy)
        rls.operate(model, f"svd_decomposition:rank={rank}")
        return parameter_count(model) <= share * total

    low, high = 1, 256  # the parameter count grows with the rank: bisect for the largest that fits
    if not fits(low):
        raise RuntimeError(f"no rank keeps {share:.0%} of {policy}'s parameters")
    while low < high:
        mid = (low + high + 1) // 2
        low, high = (mid, high) if fits(mid) else (low, mid - 1)
    return low


def fine_tune(
    model: Any,
    env_id: str,
    steps: int,
    seed: int,
    lr_factor: float,
    env_kwargs: dict | None = None,
    learning_starts: int = FT_LEARNING_STARTS,
) -> None:
    """Train ``model`` on for ``steps`` env steps on fresh envs of ``env_id`` (see the module docstring)."""
    from stable_baselines3.common.env_util import make_vec_env

    from rlsurgery.envs import ensure_registered

    ensure_registered(env_id)
    model.set_random_seed(seed)
    model.set_env(make_vec_env(env_id, n_envs=getattr(model, "n_envs", 1), seed=seed, env_kwargs=env_kwargs))
    if hasattr(model, "replay_buffer"):
        model.learning_starts = learning_starts
    if hasattr(model, "exploration_final_eps"):
        eps = model.exploration_final_eps
        model.exploration_schedule = lambda _progress: eps
        model.exploration_rate = eps
    lr = lr_factor * model.lr_schedule(1.0)
    model.lr_schedule = lambda _progress: lr
    model.learn(steps, reset_num_timesteps=True, progress_bar=False)


def distill_from_source(model: Any, policy: str, seed: int) -> None:
    """Fine-tune the compressed ``model`` to regress the uncompressed source policy's outputs (Q-values,
    logits or actions) on ``DISTILL_STATES`` states of its own rollouts (5 rounds, DAgger-style)."""
    import gymnasium as gym
    import torch.nn.functional as F

    from rlsurgery.distillation.core import DistillationFields, distill
    from rlsurgery.envs import ensure_registered

    env_id = POLICIES[policy][1]
    ensure_registered(env_id)
    fields = DistillationFields(steps=DISTILL_STATES, rounds=5, epochs=5, learning_rate=1e-3, seed=seed)
    with gym.make(env_id) as env:
        distill(model, load(policy), env, lambda _obs, teacher, student: F.mse_loss(student, teacher), fields)


def measure(model: Any, env_id: str, episodes: int, env_kwargs: dict | None = None) -> dict[str, Any]:
    from rlsurgery.export import export
    from rlsurgery.measure import onnx_latency_ms, parameter_counts, predict_latency_ms
    from rlsurgery.nets.layout import online_networks
    from rlsurgery.nets.size import weight_bytes
    from rlsurgery.training import evaluate_model

    returns = evaluate_model(model, env_id, episodes=episodes, seed=EVAL_SEED, env_kwargs=env_kwargs)
    params, _ = parameter_counts(model)
    with tempfile.TemporaryDirectory() as folder:
        onnx_bytes = export(model, Path(folder) / "policy.onnx").stat().st_size
    ort = onnx_latency_ms(model, (1, 256), repeats=50) or {}
    return {
        "mean_return": returns["mean_return"],
        "std_return": returns["std_return"],
        "params": params,
        "trainable_params": sum(
            p.numel() for net in online_networks(model).values() for p in net.parameters() if p.requires_grad
        ),
        "weight_bytes": weight_bytes(model),
        "onnx_bytes": onnx_bytes,
        "latency_ms_b1": predict_latency_ms(model, 1, repeats=50),
        "latency_ms_b256": predict_latency_ms(model, 256, repeats=50),
        "ort_latency_ms_b1": ort.get(1),
        "ort_latency_ms_b256": ort.get(256),
    }


def run_variant(task: tuple) -> dict[str, Any]:
    policy, variant, seed, episodes, ft_steps, rank = task
    import torch as th

    import rlsurgery as rls

    th.set_num_threads(1)
    start = time.perf_counter()
    before, after, tuned = VARIANTS[variant]
    env_id = POLICIES[policy][1]
    model = load(policy)
    for spec in before:
        model = rls.operate(model, spec.format(svd_rank=rank))
    if tuned == "distill":
        distill_from_source(model, policy, seed)
    elif tuned:
        factor = FT_LR_FACTOR[policy] * (10.0 if variant.endswith("-lr10") else 1.0)
        fine_tune(model, env_id, ft_steps, seed, factor)
    for spec in after:
        model = rls.operate(model, spec)
    record = {
        "policy": policy,
        "variant": variant,
        "seed": seed,
        "env_id": env_id,
        "surgeries": [spec.format(svd_rank=rank) for spec in before + after],
    }
    steps = DISTILL_STATES if tuned == "distill" else ft_steps if tuned else 0
    record.update(ft_steps=steps, fine_tune="distill" if tuned == "distill" else "rl" if tuned else None)
    record.update(measure(model, env_id, episodes))
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


#: the changed envs of the LoRA study (``--lora-target``): LunarLander-v3 constructor arguments
LORA_TARGETS = {
    "wind": {"enable_wind": True, "wind_power": 15.0},
    "gravity2": {"gravity": -2.0},
    "wind20": {"enable_wind": True, "wind_power": 20.0},
}
#: variant -> (surgeries before fine-tuning, None: no fine-tuning; learning rate, a share of the source's)
LORA_VARIANTS: dict[str, tuple[list[str] | None, float]] = {
    "source": (None, 0.0),
    "full-ft": ([], 1.0),
    "lora-r4-ft": (["low_rank_adaptation:rank=4"], 1.0),
    "full-ft-lr0.1": ([], 0.1),
    "lora-r4-ft-lr0.1": (["low_rank_adaptation:rank=4"], 0.1),
    "lora-r4-ft-lr0.3": (["low_rank_adaptation:rank=4"], 0.3),
    # PPO's [64, 64] networks: rank 1 keeps the trainable share under 10% (rank 2: 10.9%)
    "lora-r1-ft": (["low_rank_adaptation:rank=1"], 1.0),
    "lora-r1-ft-lr3": (["low_rank_adaptation:rank=1"], 3.0),
}


def run_lora(task: tuple) -> dict[str, Any]:
    policy, variant, seed, episodes, steps, target, learning_starts = task
    import torch as th

    import rlsurgery as rls

    th.set_num_threads(1)
    start = time.perf_counter()
    model = load(policy)
    specs, lr_factor = LORA_VARIANTS[variant]
    env_kwargs = LORA_TARGETS[target]
    for spec in specs or []:
        model = rls.operate(model, spec)
    if specs is not None:
        fine_tune(model, "LunarLander-v3", steps, seed, lr_factor, env_kwargs, learning_starts)
    record = {
        "policy": f"{policy}-{target}",
        "variant": variant,
        "seed": seed,
        "env_kwargs": env_kwargs,
    }
    record.update(
        ft_steps=0 if specs is None else steps,
        learning_starts=learning_starts,
        **measure(model, "LunarLander-v3", episodes, env_kwargs),
    )
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def tasks(args: argparse.Namespace, done: set) -> tuple[list, Any]:
    if args.lora:
        variants = args.variants.split(",") if args.variants else list(LORA_VARIANTS)
        out = [
            (
                args.lora_policy,
                v,
                s,
                args.episodes,
                args.lora_steps,
                args.lora_target,
                args.lora_learning_starts,
            )
            for v in variants
            for s in (range(args.seeds) if LORA_VARIANTS[v][0] is not None else [0])
            if (f"{args.lora_policy}-{args.lora_target}", v, s) not in done
        ]
        return out, run_lora
    out = []
    for policy in args.policies.split(","):
        rank = svd_rank(policy)
        for variant in args.variants.split(",") if args.variants else VARIANTS:
            seeds = range(args.seeds) if VARIANTS[variant][2] else [0]
            out += [
                (policy, variant, s, args.episodes, FT_STEPS[policy], rank)
                for s in seeds
                if (policy, variant, s) not in done
            ]
    return out, run_variant


def report(path: str, plots: str | None) -> None:
    log = ResultsLog(path, KEY)
    rows = log.rows()
    by: dict[tuple, list[dict]] = {}
    for row in rows:
        by.setdefault((row["policy"], row["variant"]), []).append(row)
    for policy in dict.fromkeys(r["policy"] for r in rows):
        base = by.get((policy, "fp32")) or by.get((policy, "source"))
        base_return = float(np.median([r["mean_return"] for r in base])) if base else float("nan")
        base_bytes = base[0]["weight_bytes"] if base else float("nan")
        print(f"\n{policy} (fp32 greedy return {base_return:.1f})")
        print(
            "| variant | seeds | return (median, min–max) | vs fp32 (÷, or − if negative) | params | "
            "weight bytes | ÷ bytes | ONNX bytes | PyTorch ms b1 / b256 | ORT ms b1 / b256 |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for (p, variant), group in by.items():
            if p != policy:
                continue
            returns = [r["mean_return"] for r in group]
            med = float(np.median(returns))
            first = group[0]
            ort = (
                f"{np.median([r['ort_latency_ms_b1'] for r in group]):.3f} / "
                f"{np.median([r['ort_latency_ms_b256'] for r in group]):.3f}"
                if first.get("ort_latency_ms_b1") is not None
                else "-"
            )
            print(
                f"| {variant} | {len(group)} | {med:.1f} ({min(returns):.1f}–{max(returns):.1f}) | "
                f"{vs_base(med, base_return)} | {first['params']} | {first['weight_bytes']} | "
                f"{base_bytes / first['weight_bytes']:.2f} | {first['onnx_bytes']} | "
                f"{np.median([r['latency_ms_b1'] for r in group]):.3f} / "
                f"{np.median([r['latency_ms_b256'] for r in group]):.3f} | {ort} |"
            )
        if plots:
            plot(policy, {v: g for (p, v), g in by.items() if p == policy}, Path(plots))


def vs_base(value: float, base: float) -> str:
    """``value`` against the fp32 return: their ratio, or their difference where the return is negative."""
    return f"{value / base:.3f}" if base > 0 else f"{value - base:+.1f}"


def plot(policy: str, groups: dict[str, list[dict]], folder: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for variant, group in groups.items():
        returns = [r["mean_return"] for r in group]
        x = group[0]["weight_bytes"]
        med = float(np.median(returns))
        marker = "s" if group[0]["ft_steps"] else "o"
        ax.errorbar(
            [x],
            [med],
            yerr=[[med - min(returns)], [max(returns) - med]],
            fmt=marker,
            capsize=3,
            label=variant,
        )
        ax.annotate(variant, (x, med), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("deployed weight bytes (log)")
    ax.set_ylabel("greedy return (median over seeds, min–max)")
    ax.set_title(f"{policy}: return vs size (squares: fine-tuned)")
    ax.grid(alpha=0.3)
    folder.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(folder / f"compression-{policy}.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="docs/bench-data/compression_frontier.jsonl")
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--variants", default="", help="comma-separated (default: all)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--lora", action="store_true", help="the LoRA adaptation study instead")
    parser.add_argument("--lora-steps", type=int, default=20_000)
    parser.add_argument("--lora-target", choices=sorted(LORA_TARGETS), default="wind")
    parser.add_argument(
        "--lora-policy", choices=["lunarlander-dqn", "lunarlander-ppo"], default="lunarlander-dqn"
    )
    parser.add_argument(
        "--lora-learning-starts", type=int, default=FT_LEARNING_STARTS, help="replay refill before training"
    )
    parser.add_argument("--report", metavar="JSONL", help="print the tables of a results file")
    parser.add_argument("--plots", metavar="DIR", help="with --report: write one frontier plot per policy")
    args = parser.parse_args()
    if args.report:
        report(args.report, args.plots)
        return
    log = ResultsLog(args.out, KEY)
    todo, worker = tasks(args, log.done())
    print(f"{len(todo)} runs to do", flush=True)
    start = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for record in pool.imap_unordered(worker, todo):
            log.append(record)
            print(
                f"[{time.perf_counter() - start:7.0f}s] {record['policy']} {record['variant']} seed "
                f"{record['seed']}: return {record['mean_return']:.1f}, {record['weight_bytes']} B, "
                f"{record['seconds']} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
