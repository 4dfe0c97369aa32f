"""Repairs of the networks themselves: BatchNorm statistics and lost plasticity.

Ioffe & Szegedy 2015 (BN statistics); Sokar et al. 2023 (ReDo, https://arxiv.org/abs/2302.12902);
Ash & Adams 2020 (shrink and perturb, https://arxiv.org/abs/1910.08475); Nikishin et al. 2022
(resets against the primacy bias, https://arxiv.org/abs/2205.07802)::

    batch_norm_re_calibration  running μ, σ² of every BatchNorm recomputed as the plain average over
                               ``batches`` batches of the agent's recent observations (e.g. after a
                               surgery changed what feeds them); targets copy them
    dormant_neuron_reset       every F env steps, hidden units with score s_i ≤ τ (see
                               activation_statistics) get fresh incoming weights and zero outgoing ones
                               (outputs unchanged at the reset), their optimizer moments cleared
    shrink_and_perturb         every F env steps: θ ← λ θ + σ θ_fresh (θ_fresh a fresh initialisation)
    periodic_reset             every F env steps: the output layer of every head (and with layers = k,
                               the last k − 1 hidden layers of each MLP) re-initialised, their
                               optimizer state cleared

Run on a trained model (``rls.operate``), at a step (``at_step``), or periodically during training
(``every`` > 0 for the plasticity repairs). Targets follow their online networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_BATCH, param
from rlsurgery.core.state import ResultState
from rlsurgery.core.surgery import Attachment, Surgery
from rlsurgery.nets import sync_targets
from rlsurgery.nets.data import layer_outputs, recent_observations
from rlsurgery.nets.layout import layout_of, online_networks, target_pairs
from rlsurgery.nets.masks import PRUNABLE, output_layer_names, trained_weight
from rlsurgery.nets.mlp import mlp_stacks
from rlsurgery.nets.modules import fresh_copy
from rlsurgery.nets.step_hooks import optimizers_by_role
from rlsurgery.nets.surgery import NETWORK_FAMILIES
from rlsurgery.runtime.callbacks import EveryStep


def clear_optimizer_state(agent: BaseAlgorithm, params: list[th.Tensor]) -> None:
    """Drop the optimizer state (moments) of ``params``: stale statistics would undo a reset."""
    for optimizer in optimizers_by_role(agent).values():
        for p in params:
            optimizer.state.pop(p, None)


class Repair(Surgery):
    """Shared plumbing: on a trained model, at a step, or every ``every`` env steps; recorded."""

    attaches_to = (Attachment.NETWORK, Attachment.POST_TRAINING)
    families = NETWORK_FAMILIES
    operates_in_place = True
    params: Any

    def run(self, agent: BaseAlgorithm) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define run()")

    def transform(self, model: BaseAlgorithm, env_id: str | None) -> BaseAlgorithm:
        """Repair ``model`` now (``operate`` records it; it joins the agent's surgeries, so its
        periodic callback comes back)."""
        self.run(model)
        return model

    def callback(self, agent: BaseAlgorithm) -> Any:
        """Every ``every`` env steps, when set."""
        every = getattr(self.params, "every", 0)
        if not every:
            return None
        return EveryStep(
            lambda model: self.run(model) if model.num_timesteps % every < model.n_envs else None
        )


@dataclass
class RecalibrationParams:
    batches: int = param(8, "batches of recent observations to average over", ge=1, le=1000)
    batch_size: int = param(256, "observations per batch", ge=2, le=MAX_BATCH)


@register(proof="tests/repair/test_plasticity.py::test_batch_norm_recalibration_uses_the_plain_average")
class BatchNormReCalibration(Repair):
    """Recompute every BatchNorm's running statistics from the agent's recent observations."""

    key = "batch_norm_re_calibration"
    Params = RecalibrationParams
    params: RecalibrationParams

    def run(self, agent: BaseAlgorithm) -> None:
        norms = [
            m
            for net in online_networks(agent).values()
            for m in net.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        if not norms:
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no BatchNorm layer"
            )
        observations = recent_observations(agent, self.params.batches * self.params.batch_size, self.key)
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches below
        modes = {m: m.training for m in agent.policy.modules()}
        agent.policy.set_training_mode(True)
        try:
            with th.no_grad():
                for chunk in observations.split(self.params.batch_size):
                    if len(chunk) > 1:
                        for m in norms:
                            m.train(True)
                        _forward(agent, chunk)
        finally:
            for m, momentum in zip(norms, momenta):
                m.momentum = momentum
            for module, mode in modes.items():
                module.training = mode
        for online, target in target_pairs(agent):  # the targets get the statistics, not the weights
            batch_norms = [m for m in online.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            target_norms = [m for m in target.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
            for a, b in zip(batch_norms, target_norms):
                b.running_mean.copy_(a.running_mean)
                b.running_var.copy_(a.running_var)
                b.num_batches_tracked.copy_(a.num_batches_tracked)


def _forward(agent: BaseAlgorithm, obs: th.Tensor) -> None:
    """One forward pass of the online networks in their current mode."""
    layout_of(agent).forward(agent.policy, obs)


@dataclass
class ReDoParams:
    tau: float = param(0.025, "τ: a unit with normalised score s_i ≤ τ is dormant", ge=0.0)
    samples: int = param(256, "recent observations the scores are measured on", ge=2, le=MAX_BATCH)
    every: int = param(0, "env steps between two resets during training (0: only when applied)", ge=0)


@register(
    proof="tests/repair/test_plasticity.py::test_redo_resets_dormant_units_without_changing_the_outputs",
    name="Dormant Neuron Reset (ReDo)",
    sections=(30,),
    translation="s_i = E|h_i| / mean_j E|h_j| ≤ τ ⇒ w_in(i) ← fresh, w_out(i) ← 0",
    description="Recycle dormant neurons: fresh incoming, zero outgoing weights (plasticity repair)",
)
class DormantNeuronReset(Repair):
    """ReDo: re-initialise the incoming weights of dormant hidden units and zero their outgoing weights."""

    key = "dormant_neuron_reset"
    Params = ReDoParams
    params: ReDoParams
    State = ResultState

    def run(self, agent: BaseAlgorithm) -> None:
        observations = recent_observations(agent, self.params.samples, self.key)
        places = [
            (s, i)
            for net in online_networks(agent).values()
            for s in mlp_stacks(net)
            for i in range(len(s.hidden))
        ]
        outputs = layer_outputs(agent, [s.block(i)[-1] for s, i in places], observations)
        reset = 0
        with th.no_grad():
            for (stack, i), h in zip(places, outputs):
                per_unit = h.abs().reshape(-1, h.shape[-1]).mean(0)
                dormant = per_unit / per_unit.mean().clamp(min=1e-12) <= self.params.tau
                if not dormant.any():
                    continue
                layer = stack.linear(i)
                weight = trained_weight(layer)  # weight_orig under a pruning mask: the mask is kept
                fresh = nn.Linear(layer.in_features, layer.out_features).to(weight.device)
                weight[dormant] = fresh.weight[dormant]
                layer.bias[dormant] = fresh.bias[dormant]
                readers = [trained_weight(r) for r in stack.readers(i)]
                for reader in readers:
                    reader[:, dormant] = 0.0
                clear_optimizer_state(agent, [weight, layer.bias, *readers])
                reset += int(dormant.sum())
        sync_targets(agent)
        result = self.state(agent).result
        result["reset_units"] = result.get("reset_units", 0) + reset


@dataclass
class ShrinkPerturbParams:
    shrink: float = param(0.8, "λ: weights are scaled by λ", gt=0.0, le=1.0)
    perturb: float = param(0.01, "σ: weight of a fresh initialisation added", ge=0.0)
    every: int = param(0, "env steps between two applications during training (0: only when applied)", ge=0)


@register(
    proof="tests/repair/test_plasticity.py::test_shrink_and_perturb_is_lambda_theta_plus_sigma_fresh",
    name="Shrink and Perturb",
    sections=(30,),
    translation="θ ← λ θ + σ θ_fresh",
    description="Shrink the weights and add a little fresh initialisation (warm-starting plasticity)",
)
class ShrinkAndPerturb(Repair):
    """θ ← λθ + σ·θ_fresh on every online network (targets follow)."""

    key = "shrink_and_perturb"
    Params = ShrinkPerturbParams
    params: ShrinkPerturbParams

    def run(self, agent: BaseAlgorithm) -> None:
        with th.no_grad():
            for net in online_networks(agent).values():
                fresh = fresh_parameters(net)
                for name, p in net.named_parameters():
                    p.mul_(self.params.shrink).add_(fresh[name].to(p.device), alpha=self.params.perturb)
        sync_targets(agent)


@dataclass
class PeriodicResetParams:
    layers: int = param(1, "1: the output layer of every head; k: also the last k − 1 hidden layers", ge=1)
    every: int = param(0, "env steps between two resets during training (0: only when applied)", ge=0)


@register(
    proof="tests/repair/test_plasticity.py::test_periodic_reset_redraws_the_last_layers_and_clears_their_optimizer_state",
    name="Periodic Reset",
    sections=(30,),
    translation="every F steps: last k layers ← fresh initialisation",
    description="Reset the last layers periodically against the primacy bias",
)
class PeriodicReset(Repair):
    """Re-initialise the output layers of every head and the last ``layers − 1`` hidden layers of each
    MLP (their optimizer state cleared); pruning masks are kept."""

    key = "periodic_reset"
    Params = PeriodicResetParams
    params: PeriodicResetParams

    def run(self, agent: BaseAlgorithm) -> None:
        with th.no_grad():
            for net in online_networks(agent).values():
                for layer in last_layers(net, self.params.layers):
                    fresh = _fresh_like(layer)
                    trained_weight(layer).copy_(fresh.weight)
                    if layer.bias is not None:
                        layer.bias.copy_(fresh.bias)
                    clear_optimizer_state(agent, [trained_weight(layer), layer.bias])
        sync_targets(agent)


def last_layers(net: nn.Module, k: int) -> list[nn.Module]:
    """The output layers of every head (Q values, action and value heads, each critic), and the last
    k − 1 hidden Linear layers of each MLP before them."""
    chosen = [net.get_submodule(n) for n in sorted(output_layer_names(net))]
    if k > 1:
        for stack in mlp_stacks(net):
            hidden = [stack.linear(i) for i in range(len(stack.hidden))]
            chosen += hidden[max(0, len(hidden) - (k - 1)) :]
    return chosen


def _fresh_like(layer: nn.Module) -> nn.Module:
    """A freshly initialised Linear / Conv2d of the shape of ``layer`` (masked or not)."""
    weight = trained_weight(layer)
    if isinstance(layer, nn.Conv2d):
        fresh: nn.Module = nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            bias=layer.bias is not None,
        )
    else:
        fresh = nn.Linear(weight.shape[1], weight.shape[0], bias=layer.bias is not None)
    return fresh.to(device=weight.device, dtype=weight.dtype)


def fresh_parameters(net: nn.Module) -> dict[str, th.Tensor]:
    """A fresh initialisation of every parameter of ``net`` by name (the ``weight_orig`` of masked layers
    included); other modules (norms, PReLU …) from their own ``reset_parameters`` (none: unchanged)."""
    fresh: dict[str, th.Tensor] = {}
    for name, module in net.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if not own:
            continue
        prefix = f"{name}." if name else ""
        if isinstance(module, PRUNABLE):
            new = _fresh_like(module)
            fresh[prefix + ("weight_orig" if "weight_orig" in own else "weight")] = new.weight.detach()
            if module.bias is not None:
                fresh[prefix + "bias"] = new.bias.detach()
            continue
        copy_ = fresh_copy(module) if hasattr(module, "reset_parameters") else module
        for key, value in copy_.named_parameters(recurse=False):
            fresh[prefix + key] = value.detach()
    return fresh
