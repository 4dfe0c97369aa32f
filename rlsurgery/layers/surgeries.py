"""Layer and block surgeries (catalog section 3): deepen, shorten, widen and rewire the MLPs.

Net2Net (Chen et al. 2016, https://arxiv.org/abs/1511.05641); residual connections (He et al.
2016, https://arxiv.org/abs/1512.03385); dense connections (Huang et al. 2017,
https://arxiv.org/abs/1608.06993)::

    layer_addition            after hidden layer l: h ↦ φ(I·h + 0), φ idempotent (ReLU): outputs unchanged
    layer_removal             drop hidden layer l, readers fold it in: W_r ← W_r·W_l, b_r ← b_r + W_r·b_l
    skip_connection_addition  block g ↦ u_{l+1} = S·u_l + f(u_l), f(x) = g(x) − C·x: S the identity (a
                              projection [I 0] where widths differ), C = S at first (outputs unchanged)
    dense_connection          block j reads [h_{j−1}, x, h_1 … h_{j−2}], new weights 0 (outputs unchanged)
    width_scaling             every hidden width h ↦ round(factor·h): widening copies units and splits
                              their outgoing weights (outputs unchanged); narrowing keeps the most active
                              units (as neuron_pruning)
    block_replacement         hidden layer l ↦ a freshly initialised Linear(width) + activation

They edit every MLP stack of every network (see :mod:`rlsurgery.nets.mlp`): DQN's Q network,
PPO/A2C's policy and value MLPs, SAC/TD3's actor and critics; target networks get the same
edit and keep their own weights (a lagging target stays what it was, function-wise), and the
optimizers are rebuilt over the new parameters. They run first among the network
surgeries (``build_order`` 20), on a fresh agent, at a step, or on a trained model
(``rls.operate``), and are replayed on ``load``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import MAX_BATCH, MAX_COPIES, MAX_WIDTH, param
from rlsurgery.nets.blocks import DenseConnections, Residual
from rlsurgery.nets.data import sample_observations
from rlsurgery.nets.mlp import (
    IDEMPOTENT,
    MLPStack,
    extend_inputs,
    insert_identity_layer,
    refill,
    remove_hidden_layer,
    replace_hidden_block,
    swap,
)
from rlsurgery.nets.modules import ACTIVATIONS, ActivationName
from rlsurgery.nets.surgery import StructuralSurgery
from rlsurgery.nets.units import activation_scores, resize_hidden_layers


@dataclass
class LayerAdditionParams:
    position: int = param(-1, "hidden layer after which the new layers go (negative: from the end)")
    count: int = param(1, "number of identity layers to add", ge=1, le=MAX_COPIES)
    activation: Literal["auto", "none"] = param(
        "auto", "auto: the layer's own activation when idempotent (ReLU); none: a linear layer"
    )


@register(proof="tests/layers/test_layers.py::test_function_preserving_morphisms_keep_outputs")
class LayerAddition(StructuralSurgery):
    """Insert identity-initialised hidden layers (Net2DeeperNet): outputs unchanged."""

    key = "layer_addition"
    Params = LayerAdditionParams
    params: LayerAdditionParams
    repeatable = True

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        def add(net: nn.Module, stack: MLPStack) -> None:
            i = self.hidden_index(stack, self.params.position)
            activation = stack.activation(i)
            new_activation = None
            if self.params.activation == "auto" and activation is not None:
                if not isinstance(activation, IDEMPOTENT):
                    raise ValueError(
                        f"{type(activation).__name__} after layer {i} of {stack.name or 'the MLP'} is not "
                        "idempotent, so an identity layer followed by it would change the outputs; use "
                        "activation=none (a linear layer) or skip_connection_addition"
                    )
                new_activation = type(activation)
            for _ in range(self.params.count):
                insert_identity_layer(stack, i, None if new_activation is None else new_activation())

        self.edit(agent, add)


@dataclass
class LayerRemovalParams:
    position: int = param(-1, "hidden layer to remove (negative: from the end)")


@register(proof="tests/layers/test_layers.py::test_layer_removal_folds_the_layer_into_its_readers")
class LayerRemoval(StructuralSurgery):
    """Remove a hidden layer; its readers absorb its linear map (exact when its activation was linear)."""

    key = "layer_removal"
    Params = LayerRemovalParams
    params: LayerRemovalParams
    repeatable = True

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        self.edit(
            agent,
            lambda net, stack: remove_hidden_layer(
                net, stack, self.hidden_index(stack, self.params.position)
            ),
        )


@dataclass
class SkipParams:
    projection: bool = param(
        False,
        "also wrap layers whose input and output widths differ (a learnt projection shortcut, "
        "initialised to the rectangular identity)",
    )
    correction: Literal["full", "diagonal"] = param(
        "full",
        "C, which cancels the shortcut at insertion: a learnt width×width matrix (full: one more "
        "matrix product per block and sample, about 2× a block's multiply-adds), or one learnt scale "
        "per unit (diagonal: O(width))",
    )


@register(proof="tests/layers/test_layers.py::test_function_preserving_morphisms_keep_outputs")
class SkipConnectionAddition(StructuralSurgery):
    """Wrap hidden blocks g as residual blocks y = S x + f(x), f(x) = g(x) − C x: outputs unchanged.

    S is the identity where the block's input and output widths match; with ``projection=true``
    blocks whose widths differ are wrapped too, S then being a learnt projection initialised to
    the rectangular identity [I 0] (the shared coordinates pass, the rest is cut or zero-padded).
    The learnt correction C starts equal to S, so y = g(x) at insertion; a dropped branch
    (``stochastic_depth``) gives y = S x. See :class:`~rlsurgery.nets.blocks.Residual`.
    """

    key = "skip_connection_addition"
    cost_note = (
        "the default full correction C is one more width×width matrix product per wrapped block, "
        "forward and backward; correction=diagonal keeps outputs unchanged at insertion for "
        "O(width)"
    )
    Params = SkipParams
    params: SkipParams
    build_order = 25  # after the layer and width edits: wrapped blocks are opaque to them

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        wrapped = []

        def wrap(net: nn.Module, stack: MLPStack) -> None:
            for i in reversed(range(len(stack.hidden))):
                layer = stack.linear(i)
                if layer.in_features == layer.out_features or self.params.projection:
                    replace_hidden_block(
                        stack,
                        i,
                        lambda block, a=layer: Residual(
                            nn.Sequential(*block), a.in_features, a.out_features, self.params.correction
                        ),
                    )
                    wrapped.append(stack.name)

        self.edit(agent, wrap)
        if not wrapped:
            raise IncompatibleSurgeryError(
                f"{self.key}: no hidden layer of {type(agent).__name__} has equal input and output widths; "
                "pass projection=true to wrap them with a projection shortcut"
            )


@register(proof="tests/layers/test_layers.py::test_function_preserving_morphisms_keep_outputs")
class DenseConnection(StructuralSurgery):
    """Every hidden block reads all earlier outputs (DenseNet-style), new weights zero: outputs unchanged."""

    key = "dense_connection"
    build_order = 25

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        def densify(net: nn.Module, stack: MLPStack) -> None:
            n = len(stack.hidden)
            if n < 2:
                return
            blocks, extra = [], 0
            for i in range(n):
                block = stack.block(i)
                if i > 0:
                    block = [extend_inputs(block[0], extra), *block[1:]]
                blocks.append(nn.Sequential(*block))
                extra += stack.linear(i).in_features if i == 0 else stack.linear(i - 1).out_features
            first, last = stack.hidden[0], stack.hidden[-1] + len(stack.block(n - 1))
            modules = list(stack.seq)
            refill(stack.seq, [*modules[:first], DenseConnections(blocks), *modules[last:]])

        if all(len(s.hidden) < 2 for s in self.stacks(agent)):
            raise IncompatibleSurgeryError(f"{self.key}: needs an MLP with at least two hidden layers")
        self.edit(agent, densify)


@dataclass
class WidthParams:
    factor: float = param(
        2.0,
        f"new width = round(factor · width) for every hidden layer (at most {MAX_WIDTH})",
        gt=0.0,
        le=64.0,
    )
    samples: int = param(512, "observations to score units on when narrowing", ge=8, le=MAX_BATCH)
    seed: int = param(0, "seed of the unit copies (widening) and of the scoring rollout (narrowing)")

    def check(self) -> None:
        """A factor that changes something."""
        if self.factor == 1.0:
            raise ValueError("'factor' must differ from 1")


@register(proof="tests/layers/test_layers.py::test_width_scaling_widens_exactly_and_narrows_by_activity")
class WidthScaling(StructuralSurgery):
    """Scale every hidden width: widening is function-preserving (Net2WiderNet), narrowing keeps the most
    active units (neuron pruning by mean |activation| on the agent's own states)."""

    key = "width_scaling"
    cost_note = (
        "a wider network: factor² (4× by default) the multiply-adds and parameters of every hidden-"
        "to-hidden layer"
    )
    Params = WidthParams
    params: WidthParams
    repeatable = True

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        widest = max(w for s in self.stacks(agent) for w in s.widths)
        if round(self.params.factor * widest) > MAX_WIDTH:
            raise IncompatibleSurgeryError(
                f"{self.key}: factor={self.params.factor} makes the widest hidden layer ({widest} units) "
                f"{round(self.params.factor * widest)} units wide; at most {MAX_WIDTH}"
            )
        scores = None
        if self.params.factor < 1 and not replay:
            observations = sample_observations(
                agent, self.params.samples, self.params.seed, self.key, "agent"
            )
            scores = activation_scores(agent, observations)
        factor = self.params.factor
        try:
            self.state(agent).result["widths"] = resize_hidden_layers(
                agent, lambda s, i: max(1, round(factor * s.linear(i).out_features)), scores, self.params.seed
            )
        except (TypeError, ValueError) as error:
            raise IncompatibleSurgeryError(f"{self.key}: {error}") from error


@dataclass
class BlockReplacementParams:
    position: int = param(-1, "hidden layer to replace (negative: from the end)")
    width: int = param(0, "width of the new layer (0: the same width)", ge=0, le=MAX_WIDTH)
    activation: Literal["same", "relu", "tanh", "elu", "gelu", "silu", "leaky_relu", "softplus"] = param(
        "same", "activation of the new layer (same: the replaced layer's)"
    )


@register(proof="tests/layers/test_layers.py::test_block_replacement_swaps_one_block")
class BlockReplacement(StructuralSurgery):
    """Replace one hidden block by a freshly initialised Linear(width) + activation; the layers reading it
    are re-initialised when the width changes. Other layers keep their weights; targets are copied from
    the online networks."""

    key = "block_replacement"
    Params = BlockReplacementParams
    params: BlockReplacementParams

    @property
    def sb3_representable(self) -> bool:  # type: ignore[override]
        """A block of the same width and activation is a re-initialised layer of SB3's network."""
        return self.params.width == 0 and self.params.activation == "same"

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        def replace(net: nn.Module, stack: MLPStack) -> None:
            i = self.hidden_index(stack, self.params.position)
            layer = stack.linear(i)
            width = self.params.width or layer.out_features
            name: ActivationName | None = None if self.params.activation == "same" else self.params.activation
            old_activation = stack.activation(i)
            activation = ACTIVATIONS[name]() if name else (type(old_activation)() if old_activation else None)
            new = [nn.Linear(layer.in_features, width)] + ([activation] if activation is not None else [])
            readers = stack.readers(i)
            replace_hidden_block(stack, i, lambda _block: nn.Sequential(*new), unwrap=True)
            if width != layer.out_features:
                for reader in readers:
                    fresh = nn.Linear(width, reader.out_features, bias=reader.bias is not None)
                    swap(net, reader, fresh)
                    stack.output_readers = [fresh if r is reader else r for r in stack.output_readers]

        self.edit(agent, replace, copy_targets=True)  # the new block is drawn once, for online and target
