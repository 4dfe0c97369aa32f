"""Weight initialization surgeries (catalog section 13): re-draw the weights of the networks.

Glorot & Bengio 2010 (http://proceedings.mlr.press/v9/glorot10a.html), He et al. 2015
(https://arxiv.org/abs/1502.01852), Saxe et al. 2014 (https://arxiv.org/abs/1312.6120)::

    xavier_initialization      W ~ U(−a, a), a = gain·sqrt(6/(fan_in+fan_out)): Var = 2gain²/(fan_in+fan_out)
    he_initialization          W ~ N(0, 2 / fan_in)            (ReLU networks; fan_out with mode=fan_out)
    orthogonal_initialization  W = gain · Q, Q semi-orthogonal: W Wᵀ = gain² I when fan_out ≤ fan_in

Biases are set to zero. Applied when the agent is built, at a step (``at_step``: a reset of
the networks mid-training, with the optimizer state of the re-drawn weights cleared), or to
a trained model (``rls.operate``). Target networks are copied from the online ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.nets.masks import prunable_layers
from rlsurgery.nets.roles import target_pairs


def optimizers_of(model: BaseAlgorithm) -> list[th.optim.Optimizer]:
    """Every optimizer of the model's networks (policy, or actor and critic)."""
    found = []
    for owner in (model.policy, getattr(model, "actor", None), getattr(model, "critic", None)):
        optimizer = getattr(owner, "optimizer", None)
        if optimizer is not None and optimizer not in found:
            found.append(optimizer)
    return found


class InitializationSurgery(Surgery):
    """Shared plumbing: which layers, when, the optimizer and target bookkeeping."""

    attaches_to = (Attachment.NETWORK, Attachment.POST_TRAINING)
    families = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac", "td3")
    build_order = 80  # after the layer-building surgeries, before pruning masks (90)
    operates_in_place = True
    params: Any

    def init_weight(self, weight: th.Tensor) -> None:
        """Re-draw ``weight`` in place."""
        raise NotImplementedError(f"{type(self).__name__} must define init_weight()")

    def reinitialize(self, agent: BaseAlgorithm) -> None:
        """Re-draw every Linear/Conv2d weight of the online networks, zero the biases, sync targets."""
        layers = [m for _, m in prunable_layers(agent, include_output=self.params.include_output)]
        if not layers:
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__} has no Linear or Conv2d layer"
            )
        with th.no_grad():
            for layer in layers:
                weight = layer.weight_orig if hasattr(layer, "weight_orig") else layer.weight
                self.init_weight(weight)
                if layer.bias is not None:
                    layer.bias.zero_()
                for optimizer in optimizers_of(agent):  # stale Adam moments would undo the reset
                    for p in (weight, layer.bias):
                        if p is not None:
                            optimizer.state.pop(p, None)
        for online, target in target_pairs(agent):
            target.load_state_dict(online.state_dict())

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        self.reinitialize(agent)

    def operate(self, model: BaseAlgorithm, env_id: str | None = None) -> BaseAlgorithm:
        """Re-draw a model's weights in place (recorded in its provenance log)."""
        self.reinitialize(model)
        log = getattr(model, "surgery_log", None)
        if log is not None:
            from rlsurgery.agents.surgical import surgery_record

            log.append(surgery_record(self, step=model.num_timesteps, applied="operate"))
        return model


@dataclass
class GainParams:
    gain: float = param(1.0, "scale of the weights", gt=0.0)
    include_output: bool = param(True, "also the output layers")


@register(proof="tests/nets/test_initialization.py::test_measured_variances_and_orthogonality")
class XavierInitialization(InitializationSurgery):
    """W ~ U(±gain·sqrt(6/(fan_in + fan_out))), zero biases."""

    key = "xavier_initialization"
    Params = GainParams

    def init_weight(self, weight: th.Tensor) -> None:
        nn.init.xavier_uniform_(weight, gain=self.params.gain)


@dataclass
class HeParams:
    mode: str = param("fan_in", "fan_in (forward variance) or fan_out (backward)")
    include_output: bool = param(True, "also the output layers")

    def check(self) -> None:
        """fan_in or fan_out."""
        if self.mode not in ("fan_in", "fan_out"):
            raise ValueError(f"'mode' must be 'fan_in' or 'fan_out' (got {self.mode!r})")


@register(proof="tests/nets/test_initialization.py::test_measured_variances_and_orthogonality")
class HeInitialization(InitializationSurgery):
    """W ~ N(0, 2/fan), zero biases (Kaiming normal for ReLU)."""

    key = "he_initialization"
    Params = HeParams

    def init_weight(self, weight: th.Tensor) -> None:
        nn.init.kaiming_normal_(weight, mode=self.params.mode, nonlinearity="relu")


@register(proof="tests/nets/test_initialization.py::test_measured_variances_and_orthogonality")
class OrthogonalInitialization(InitializationSurgery):
    """W = gain · (semi-)orthogonal matrix, zero biases."""

    key = "orthogonal_initialization"
    Params = GainParams

    def init_weight(self, weight: th.Tensor) -> None:
        nn.init.orthogonal_(weight, gain=self.params.gain)
