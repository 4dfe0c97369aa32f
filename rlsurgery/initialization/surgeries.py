"""Weight initialization surgeries (catalog section 13): re-draw the weights of the networks.

Glorot & Bengio 2010 (http://proceedings.mlr.press/v9/glorot10a.html), He et al. 2015
(https://arxiv.org/abs/1502.01852), Saxe et al. 2014 (https://arxiv.org/abs/1312.6120)::

    xavier_initialization      W ~ U(−a, a), a = gain·sqrt(6/(fan_in+fan_out)): Var = 2gain²/(fan_in+fan_out)
    he_initialization          W ~ N(0, 2 / fan_in)            (ReLU networks; fan_out with mode=fan_out)
    orthogonal_initialization  W = gain · Q, Q semi-orthogonal: W Wᵀ = gain² I when fan_out ≤ fan_in

Biases are set to zero. Applied once when the agent is built (not replayed on ``load``: the
saved weights are restored), at a step (``at_step``: a reset of
the networks mid-training, with the optimizer state of the re-drawn weights cleared), or to
a trained model (``rls.operate``). Target networks are copied from the online ones.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError, ParameterError
from rlsurgery.core.params import MAX_BATCH, param
from rlsurgery.core.state import ResultState
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.io import load_saved_model
from rlsurgery.nets.data import layer_outputs, sample_observations
from rlsurgery.nets.layout import target_pairs
from rlsurgery.nets.masks import prunable_layers
from rlsurgery.nets.step_hooks import optimizers_by_role
from rlsurgery.nets.transfer import copy_policy_weights
from rlsurgery.zoo import is_model_source


class InitializationSurgery(Surgery):
    """Shared plumbing: which layers, when, the optimizer and target bookkeeping."""

    State: ClassVar[type | None] = ResultState

    attaches_to = (Attachment.NETWORK, Attachment.POST_TRAINING)
    families = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac", "td3")
    build_order = 80  # after the layer-building surgeries, before pruning masks (90)
    operates_in_place = True
    needs_surgical_agent = False  # re-draws a plain SB3 model too (unrecorded)
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
                # stale Adam moments would undo the reset
                for optimizer in optimizers_by_role(agent).values():
                    for p in (weight, layer.bias):
                        if p is not None:
                            optimizer.state.pop(p, None)
        for online, target in target_pairs(agent):
            target.load_state_dict(online.state_dict())

    def after_build(self, agent: BaseAlgorithm) -> None:
        """Re-draw once on a fresh agent (on ``load`` the saved weights are the truth)."""
        self.reinitialize(agent)

    def transform(self, model: BaseAlgorithm, env_id: str | None) -> BaseAlgorithm:
        """Re-draw a model's weights in place (``operate`` records it)."""
        self.reinitialize(model)
        return model


@dataclass
class GainParams:
    gain: float = param(1.0, "scale of the weights", gt=0.0)
    include_output: bool = param(True, "also the output layers")


@register(proof="tests/initialization/test_initialization.py::test_measured_variances_and_orthogonality")
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


@register(proof="tests/initialization/test_initialization.py::test_measured_variances_and_orthogonality")
class HeInitialization(InitializationSurgery):
    """W ~ N(0, 2/fan), zero biases (Kaiming normal for ReLU)."""

    key = "he_initialization"
    Params = HeParams

    def init_weight(self, weight: th.Tensor) -> None:
        nn.init.kaiming_normal_(weight, mode=self.params.mode, nonlinearity="relu")


@register(proof="tests/initialization/test_initialization.py::test_measured_variances_and_orthogonality")
class OrthogonalInitialization(InitializationSurgery):
    """W = gain · (semi-)orthogonal matrix, zero biases."""

    key = "orthogonal_initialization"
    Params = GainParams

    def init_weight(self, weight: th.Tensor) -> None:
        nn.init.orthogonal_(weight, gain=self.params.gain)


@dataclass
class PreTrainingParams:
    source: str = param(doc="a saved model (.zip) whose weights are copied where name and shape match")


@register(
    proof="tests/initialization/test_initialization.py::test_pre_training_copies_matching_weights_and_reports"
)
class PreTrainingInitialization(Surgery):
    """Start from another saved model's weights: every tensor whose name and shape match is copied.

    Transfer by name and shape (Yosinski et al. 2014, https://arxiv.org/abs/1411.1792): the
    policy's state dict is matched entry by entry against the source's; what matched, what
    had another shape and what the source lacked is reported in its state's ``result``.
    Runs once on a fresh agent (or in place on a trained one with ``rls.operate``); the copied
    weights are then saved with the model like any others.
    """

    key = "pre_training_initialization"
    State: ClassVar[type | None] = ResultState
    attaches_to = (Attachment.NETWORK,)
    Params = PreTrainingParams
    families = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac", "td3")
    operates_in_place = True
    needs_surgical_agent = False  # copies into a plain SB3 model too (unrecorded)
    params: PreTrainingParams

    def validate(self, agent: BaseAlgorithm) -> None:
        super().validate(agent)
        from pathlib import Path

        path = Path(self.params.source)
        if getattr(agent, "_rls_fresh", False) and not is_model_source(path):
            raise ParameterError(
                f"{self.key}: parameter 'source' must be an existing .zip file or a run folder "
                f"(rlsurgery or rl-zoo3) (got {self.params.source!r})"
            )

    def after_build(self, agent: BaseAlgorithm) -> None:
        self.copy_weights(agent)

    def copy_weights(self, agent: BaseAlgorithm) -> dict[str, list[str]]:
        """Copy matching tensors from the source policy; return (and store) the report.

        Pruning masks are looked through on either side: a masked layer's ``weight_orig`` takes the
        source's ``weight`` (the target keeps its own mask), and a pruned source gives its
        effective weight ``weight_orig * weight_mask`` to an unmasked target.
        """
        source = load_saved_model(self.params.source).policy.state_dict()
        report = copy_policy_weights(agent.policy, source)
        report = {k: report[k] for k in ("copied", "shape_mismatch", "missing_in_source")}
        if report["missing_in_source"] or report["shape_mismatch"]:
            warnings.warn(
                f"{self.key}: {len(report['copied'])} tensors copied from {self.params.source}; not copied: "
                f"{len(report['shape_mismatch'])} of another shape, {len(report['missing_in_source'])} "
                "missing in the source (see the surgery's state)",
                stacklevel=2,
            )
        for optimizer in optimizers_by_role(agent).values():
            optimizer.state.clear()  # moments of the old weights do not apply to the copied ones
        self.state(agent).result = report
        return report

    def transform(self, model: BaseAlgorithm, env_id: str | None) -> BaseAlgorithm:
        """Copy matching weights into a trained model, in place (``operate`` records it)."""
        self.copy_weights(model)
        return model


@dataclass
class LSUVParams:
    samples: int = param(
        1024, "observations collected with random actions to calibrate on", ge=8, le=MAX_BATCH
    )
    tolerance: float = param(0.02, "stop scaling a layer once |Var(output) − 1| is below this", gt=0.0)
    max_iterations: int = param(10, "scaling passes per layer at most", ge=1)
    seed: int = param(0, "seed of the calibration rollout")
    include_output: bool = param(False, "also the output layers (usually kept at their own scale)")


@register(proof="tests/initialization/test_initialization.py::test_lsuv_gives_unit_output_variance_per_layer")
class LayerSequentialInitialization(InitializationSurgery):
    """LSUV: orthogonal weights, then each layer in turn scaled to unit output variance on real data.

    Mishkin & Matas 2016 (https://arxiv.org/abs/1511.06422)::

        W ← orthogonal; for each layer l in order: W_l ← W_l / sqrt(Var(y_l)) until |Var(y_l) − 1| < tol

    The data are observations of the agent's environment under random actions.
    """

    key = "layer_sequential_initialization"
    Params = LSUVParams
    params: LSUVParams

    def init_weight(self, weight: th.Tensor) -> None:
        nn.init.orthogonal_(weight)

    def reinitialize(self, agent: BaseAlgorithm) -> None:
        super().reinitialize(agent)
        observations = sample_observations(agent, self.params.samples, self.params.seed, self.key)
        layers = [m for _, m in prunable_layers(agent, include_output=self.params.include_output)]
        variances = []
        with th.no_grad():
            for layer in layers:
                weight = layer.weight_orig if hasattr(layer, "weight_orig") else layer.weight
                for _ in range(self.params.max_iterations):
                    (out,) = layer_outputs(agent, [layer], observations) or [None]
                    if out is None:
                        break
                    variance = out.var().item()
                    if abs(variance - 1) < self.params.tolerance or variance == 0:
                        break
                    weight.div_(variance**0.5)
                (out,) = layer_outputs(agent, [layer], observations) or [th.zeros(1)]
                variances.append(out.var().item())
        for online, target in target_pairs(agent):
            target.load_state_dict(online.state_dict())
        self.state(agent).result = {"output_variances": variances}
