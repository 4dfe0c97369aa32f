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
    periodic_reset             every F env steps: the last ``layers`` Linear layers of each network
                               re-initialised, their optimizer state cleared

Run on a trained model (``rls.operate``), at a step (``at_step``), or periodically during training
(``every`` > 0 for the plasticity repairs). Targets follow their online networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.agents.scheduled import EveryStep
from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import Attachment, Surgery
from rlsurgery.nets import sync_targets
from rlsurgery.nets.data import layer_outputs, recent_observations
from rlsurgery.nets.initialization import optimizers_of
from rlsurgery.nets.mlp import mlp_stacks
from rlsurgery.nets.modules import fresh_copy
from rlsurgery.nets.roles import online_networks
from rlsurgery.nets.surgery import NETWORK_FAMILIES


def clear_optimizer_state(agent: BaseAlgorithm, params: list[th.Tensor]) -> None:
    """Drop the optimizer state (moments) of ``params``: stale statistics would undo a reset."""
    for optimizer in optimizers_of(agent):
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

    def operate(self, model: BaseAlgorithm, env_id: str | None = None) -> BaseAlgorithm:
        """Repair ``model`` now (recorded in its provenance log)."""
        self.validate(model)
        self.run(model)
        from rlsurgery.agents.surgical import record_operation

        record_operation(model, self)
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
    batches: int = param(8, "batches of recent observations to average over", ge=1)
    batch_size: int = param(256, "observations per batch", ge=2)


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
        sync_targets(agent)


def _forward(agent: BaseAlgorithm, obs: th.Tensor) -> None:
    """One forward pass of the online networks in their current mode."""
    policy = agent.policy
    if hasattr(policy, "q_net"):
        policy.q_net(obs)
    elif hasattr(policy, "critic") and hasattr(policy, "actor"):
        policy.critic(obs, policy.actor(obs))
    else:
        policy.evaluate_actions(obs, policy._predict(obs, deterministic=True))


@dataclass
class ReDoParams:
    tau: float = param(0.025, "τ: a unit with normalised score s_i ≤ τ is dormant", ge=0.0)
    samples: int = param(256, "recent observations the scores are measured on", ge=2)
    every: int = param(0, "env steps between two resets during training (0: only when applied)", ge=0)


@register(
    proof="tests/repair/test_plasticity.py::test_redo_shrink_perturb_and_resets",
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
                fresh = nn.Linear(layer.in_features, layer.out_features).to(layer.weight.device)
                layer.weight[dormant] = fresh.weight[dormant]
                layer.bias[dormant] = fresh.bias[dormant]
                for reader in stack.readers(i):
                    reader.weight[:, dormant] = 0.0
                clear_optimizer_state(
                    agent, [layer.weight, layer.bias, *(r.weight for r in stack.readers(i))]
                )
                reset += int(dormant.sum())
        sync_targets(agent)
        agent.rls_reset_units = getattr(agent, "rls_reset_units", 0) + reset  # type: ignore[attr-defined]


@dataclass
class ShrinkPerturbParams:
    shrink: float = param(0.8, "λ: weights are scaled by λ", gt=0.0, le=1.0)
    perturb: float = param(0.01, "σ: weight of a fresh initialisation added", ge=0.0)
    every: int = param(0, "env steps between two applications during training (0: only when applied)", ge=0)


@register(
    proof="tests/repair/test_plasticity.py::test_redo_shrink_perturb_and_resets",
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
                fresh = dict(fresh_copy(net).named_parameters())
                for name, p in net.named_parameters():
                    p.mul_(self.params.shrink).add_(fresh[name].to(p.device), alpha=self.params.perturb)
        sync_targets(agent)


@dataclass
class PeriodicResetParams:
    layers: int = param(1, "last Linear layers of each network to re-initialise", ge=1)
    every: int = param(0, "env steps between two resets during training (0: only when applied)", ge=0)


@register(
    proof="tests/repair/test_plasticity.py::test_redo_shrink_perturb_and_resets",
    name="Periodic Reset",
    sections=(30,),
    translation="every F steps: last k layers ← fresh initialisation",
    description="Reset the last layers periodically against the primacy bias",
)
class PeriodicReset(Repair):
    """Re-initialise the last ``layers`` Linear layers of every online network (and their optimizer state)."""

    key = "periodic_reset"
    Params = PeriodicResetParams
    params: PeriodicResetParams

    def run(self, agent: BaseAlgorithm) -> None:
        for net in online_networks(agent).values():
            linears = [m for m in net.modules() if type(m) is nn.Linear]
            for layer in linears[-self.params.layers :]:
                layer.reset_parameters()
                clear_optimizer_state(agent, [p for p in layer.parameters()])
        sync_targets(agent)
