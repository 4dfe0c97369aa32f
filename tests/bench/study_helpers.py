"""A tiny study used by the runner, resume and Ray tests: seconds per run."""

from __future__ import annotations

import textwrap
from pathlib import Path

TINY_HYPERPARAMS = (
    "{learning_starts: 100, buffer_size: 5000, batch_size: 32, train_freq: 50, gradient_steps: 10,"
    " policy_kwargs: {net_arch: [16]}}"
)


def write_tiny_study(
    folder: Path, seeds: int = 2, steps: int = 600, variants: tuple[str, ...] = ("dqn",)
) -> Path:
    """A study YAML of ``variants`` x CartPole-v1 x ``seeds`` with tiny networks and budgets."""
    lines = [
        "name: tiny",
        "envs: [CartPole-v1]",
        f"seeds: {seeds}",
        f"steps: {steps}",
        f"eval_freq: {steps // 2}",
        "n_eval_episodes: 2",
        "device: cpu",
        f"baseline: {variants[0]}",
        "variants:",
    ]
    lines += [f"  {v}: {{recipe: dqn, hyperparams: {TINY_HYPERPARAMS}}}" for v in variants]
    path = folder / "tiny.yaml"
    path.write_text(textwrap.dedent("\n".join(lines)) + "\n")
    return path
