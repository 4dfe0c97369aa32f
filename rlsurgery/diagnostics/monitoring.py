"""Training diagnostics (catalog section 29): what the networks and gradients look like while training.

Sokar et al. 2023 (dormant neurons, https://arxiv.org/abs/2302.12902); McCandlish et al. 2018
(gradient noise scale, https://arxiv.org/abs/1812.06162)::

    gradient_monitoring     ‖∂L/∂θ_l‖₂ per layer l, as the optimizer receives it (after the agent's
                            own clipping), every ``log_every`` updates
    activation_statistics   per activation layer, on the agent's own recent observations: mean,
                            variance, dead fraction (units whose output is 0 on every sample) and
                            dormant fraction: s_i = E|h_i| / ((1/H) Σ_j E|h_j|) ≤ τ
    weight_histograms       per layer: TensorBoard histograms of the weights, and mean, std, min,
                            max, |w| mean and exact-zero fraction
    gradient_noise          B_simple = tr(Σ) / |G|² from k consecutive update gradients g_1..g_k of
                            batch B:  |G_B|² = mean_i |g_i|²,  |G_kB|² = |mean_i g_i|²,
                            |G|² ≈ (k|G_kB|² − |G_B|²)/(k − 1),  tr(Σ) ≈ Bk(|G_B|² − |G_kB|²)/(k − 1)
                            (consecutive updates stand in for one big batch, as the parameters move
                            little within k updates)

Everything is logged through SB3's logger (``train/...``, TensorBoard included) every
``log_every`` updates, and the latest values are kept in each diagnostic's state
(``model.surgery_state[key].latest``: norms by layer, statistics by layer, noise scale by role).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_BATCH, MAX_COPIES, param
from rlsurgery.nets.data import layer_outputs, recent_observations
from rlsurgery.nets.layout import online_networks
from rlsurgery.nets.masks import PRUNABLE, effective_weight
from rlsurgery.nets.modules import ACTIVATIONS
from rlsurgery.nets.optimizer_surgery import OptimizerSurgery
from rlsurgery.nets.step_hooks import add_step_hook, record, trainable_parameters
from rlsurgery.runtime.callbacks import EveryStep


def per_layer_grad_norms(named: list[tuple[str, th.Tensor]]) -> dict[str, float]:
    """‖g‖₂ per layer (parameters grouped by their name without the last component)."""
    squares: dict[str, float] = {}
    for name, p in named:
        if p.grad is not None:
            layer = name.rpartition(".")[0] or name
            squares[layer] = squares.get(layer, 0.0) + float(p.grad.detach().pow(2).sum())
    return {layer: value**0.5 for layer, value in squares.items()}


def activation_stats(h: th.Tensor, tau: float) -> dict[str, float]:
    """mean, var, dead and dormant fractions of a batch of activations (batch, units)."""
    h = h.detach().reshape(h.shape[0], -1)
    per_unit = h.abs().mean(0)
    score = per_unit / per_unit.mean().clamp(min=1e-12)
    return {
        "mean": float(h.mean()),
        "var": float(h.var()),
        "dead": float((h.abs() <= 1e-8).all(0).float().mean()),
        "dormant": float((score <= tau).float().mean()),
    }


def gradient_noise_scale(gradients: list[th.Tensor], batch_size: int) -> dict[str, float]:
    """B_simple, |G|² and tr(Σ) from k ≥ 2 gradients, each the mean over a batch of ``batch_size``."""
    k = len(gradients)
    if k < 2:
        raise ValueError("need at least two gradients")
    stacked = th.stack([g.flatten().double() for g in gradients])
    small = float(stacked.pow(2).sum(1).mean())  # |G_B|²
    big = float(stacked.mean(0).pow(2).sum())  # |G_kB|²
    g2 = (k * big - small) / (k - 1)
    trace = batch_size * k * (small - big) / (k - 1)
    return {"b_simple": trace / g2 if g2 > 0 else float("inf"), "g2": g2, "trace": trace}


@dataclass
class DiagnosticState:
    updates: dict[str, int] = field(default_factory=dict)
    """optimizer role -> updates counted"""
    latest: dict[str, Any] = field(default_factory=dict)
    """the latest values measured, by layer (gradient norms, activation or weight statistics) or by
    role (gradient noise)"""


class Diagnostic(OptimizerSurgery):
    """Shared plumbing: an update counter, logging every ``log_every`` updates."""

    params: Any
    State: ClassVar[type] = DiagnosticState

    def due(self, agent: BaseAlgorithm, role: str) -> bool:
        """Count one update of ``role``; True every ``log_every`` of them (the first one included)."""
        updates = self.state(agent).updates
        updates[role] = updates.get(role, 0) + 1
        return (updates[role] - 1) % self.params.log_every == 0

    def every_log_updates(self, action: Any) -> EveryStep:
        """A callback running ``action(agent)`` once the agent has made ``log_every`` more updates."""
        state = {"next": 0}

        def check(model: BaseAlgorithm) -> None:
            if model._n_updates >= state["next"] and model._n_updates > 0:
                state["next"] = model._n_updates + self.params.log_every
                action(model)

        return EveryStep(check)


@dataclass
class GradientMonitoringParams:
    log_every: int = param(1000, "updates between two records", ge=1)


@register(proof="tests/diagnostics/test_monitoring.py::test_gradient_norms_and_noise_scale")
class GradientMonitoring(Diagnostic):
    """Per-layer gradient norms, as the optimizer receives them."""

    key = "gradient_monitoring"
    Params = GradientMonitoringParams
    params: GradientMonitoringParams

    def install(self, agent: BaseAlgorithm) -> None:
        names = {
            id(p): f"{role}.{n}"
            for role, net in online_networks(agent).items()
            for n, p in net.named_parameters()
        }

        def monitor(model: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
            if not self.due(model, role):
                return
            named = [
                (names.get(id(p), f"{role}.param{i}"), p)
                for i, p in enumerate(trainable_parameters(optimizer))
            ]
            norms = per_layer_grad_norms(named)
            self.state(model).latest.update(norms)
            for layer, norm in norms.items():
                record(model, f"train/grad_norm/{layer}", norm)

        add_step_hook(agent, monitor, order=25)


@dataclass
class ActivationParams:
    log_every: int = param(1000, "updates between two records", ge=1)
    samples: int = param(256, "recent observations the statistics are measured on", ge=2, le=MAX_BATCH)
    tau: float = param(0.025, "τ: dormancy threshold on the normalised score", ge=0.0)


def activation_modules(agent: BaseAlgorithm) -> dict[str, nn.Module]:
    """Activation modules of the online networks by ``role.name``."""
    kinds = (*ACTIVATIONS.values(), nn.PReLU)
    return {
        f"{role}.{name}": module
        for role, net in online_networks(agent).items()
        for name, module in net.named_modules()
        if isinstance(module, kinds)
    }


@register(proof="tests/diagnostics/test_monitoring.py::test_dead_and_dormant_units_are_counted")
class ActivationStatistics(Diagnostic):
    """Mean, variance, dead and dormant fractions of every activation layer."""

    key = "activation_statistics"
    family_notes: ClassVar[dict[str, str]] = {}  # measures every network, not through the optimizer
    Params = ActivationParams
    params: ActivationParams

    def measure(self, agent: BaseAlgorithm) -> dict[str, dict[str, float]]:
        """The statistics now, on the agent's recent observations (kept as the state's ``latest``)."""
        modules = activation_modules(agent)
        outputs = layer_outputs(
            agent, list(modules.values()), recent_observations(agent, self.params.samples, self.key)
        )
        stats = {name: activation_stats(out, self.params.tau) for name, out in zip(modules, outputs)}
        self.state(agent).latest = stats
        for name, values in stats.items():
            for stat, value in values.items():
                record(agent, f"train/activation/{name}/{stat}", value)
        return stats

    def install(self, agent: BaseAlgorithm) -> None:
        if not activation_modules(agent):
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no activation layer"
            )

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Measures every ``log_every`` updates."""
        return self.every_log_updates(self.measure)


@dataclass
class HistogramParams:
    log_every: int = param(10_000, "updates between two records", ge=1)
    png_dir: str = param("", "also write a PNG of the histograms into this folder (empty: no PNG)")


@register(proof="tests/diagnostics/test_monitoring.py::test_weight_statistics_and_histograms")
class WeightHistograms(Diagnostic):
    """Weight histograms in TensorBoard and summary statistics per layer (optionally PNGs)."""

    key = "weight_histograms"
    family_notes: ClassVar[dict[str, str]] = {}  # measures every network, not through the optimizer
    Params = HistogramParams
    params: HistogramParams

    def snapshot(self, agent: BaseAlgorithm) -> dict[str, dict[str, float]]:
        """Statistics of every weight tensor now (also written to TensorBoard / PNG when set up)."""
        weights = {
            f"{role}.{name}": effective_weight(m)
            for role, net in online_networks(agent).items()
            for name, m in net.named_modules()
            if isinstance(m, PRUNABLE)
        }
        stats = {
            name: {
                "mean": float(w.mean()),
                "std": float(w.std()),
                "min": float(w.min()),
                "max": float(w.max()),
                "abs_mean": float(w.abs().mean()),
                "zero_fraction": float((w == 0).float().mean()),
            }
            for name, w in weights.items()
        }
        self.state(agent).latest = stats
        logger = getattr(agent, "_logger", None)
        for format_ in getattr(logger, "output_formats", []) if logger is not None else []:
            writer = getattr(format_, "writer", None)
            if writer is not None:
                for name, w in weights.items():
                    writer.add_histogram(f"weights/{name}", w.cpu().numpy(), agent.num_timesteps)
        if self.params.png_dir:
            self.write_png(weights, agent.num_timesteps)
        return stats

    def write_png(self, weights: dict[str, th.Tensor], step: int) -> None:
        from pathlib import Path

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        folder = Path(self.params.png_dir)
        folder.mkdir(parents=True, exist_ok=True)
        fig, axes = plt.subplots(1, len(weights), figsize=(3 * len(weights), 2.6), squeeze=False)
        for ax, (name, w) in zip(axes[0], weights.items()):
            ax.hist(w.flatten().cpu().numpy(), bins=50)
            ax.set_title(name, fontsize=8)
        fig.suptitle(f"weights at step {step}")
        fig.tight_layout()
        fig.savefig(folder / f"weights_{step:09d}.png", dpi=80)
        plt.close(fig)

    def install(self, agent: BaseAlgorithm) -> None:
        """Nothing to hook: the callback records."""

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Records every ``log_every`` updates."""
        return self.every_log_updates(self.snapshot)


@dataclass
class NoiseParams:
    window: int = param(20, "k: consecutive update gradients per estimate (all kept)", ge=2, le=MAX_COPIES)
    log_every: int = param(1000, "updates between two estimates (each uses the next k updates)", ge=1)

    def check(self) -> None:
        """k ≤ log_every."""
        if self.window > self.log_every:
            raise ValueError(f"'window' must be <= 'log_every' (got {self.window} > {self.log_every})")


@register(proof="tests/diagnostics/test_monitoring.py::test_gradient_norms_and_noise_scale")
class GradientNoise(Diagnostic):
    """The gradient noise scale B_simple = tr(Σ)/|G|² (the batch size beyond which bigger batches stop
    helping), from consecutive update gradients."""

    key = "gradient_noise"
    Params = NoiseParams
    params: NoiseParams

    def install(self, agent: BaseAlgorithm) -> None:
        buffers: dict[str, list[th.Tensor]] = {}

        def collect(model: BaseAlgorithm, role: str, optimizer: th.optim.Optimizer) -> None:
            if self.due(model, role):
                buffers[role] = []
            if role not in buffers:
                return
            parameters = trainable_parameters(optimizer)
            buffers[role].append(th.cat([p.grad.detach().flatten() for p in parameters]).cpu())
            if len(buffers[role]) == self.params.window:
                estimate = gradient_noise_scale(buffers.pop(role), int(getattr(model, "batch_size", 1)))
                self.state(model).latest[role] = estimate
                record(model, f"train/gradient_noise_scale_{role}", estimate["b_simple"])

        add_step_hook(agent, collect, order=26)
