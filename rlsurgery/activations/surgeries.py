"""Activation surgeries (catalog section 4): swap the non-linearities of the networks.

Hendrycks & Gimpel 2016 (GELU, https://arxiv.org/abs/1606.08415); He et al. 2015 (PReLU,
https://arxiv.org/abs/1502.01852); Dugas et al. 2001 (softplus)::

    activation_replacement   every activation module of the chosen kind (ReLU, Tanh, ELU, GELU, SiLU,
                             LeakyReLU, Softplus; ``any``: all of them) becomes ``to``
    learnable_activation     ReLU → PReLU(x) = max(0, x) + a · min(0, x), a learnt from a₀ (a₀ = 0: ReLU)
    smooth_approximation     ReLU → Softplus_β(x) = log(1 + e^{βx}) / β   (|Softplus_β − ReLU| ≤ log 2 / β)
    adaptive_activation      each activation → Σ_k softmax(a)_k f_k(x) over candidates f_k, a learnt per layer
                             (Manessi & Rozza 2018, https://arxiv.org/abs/1805.09206); the layer's choice
                             is argmax_k a_k
    gating_addition          after each hidden activation: h ↦ 2σ(W h + b) ⊙ h, W = b = 0 at first
                             (the gate is exactly 1: outputs unchanged)
    attention_mechanism      after each MLP's last hidden layer: residual self-attention over the
                             features cut into tokens, output projection zero-initialised (unchanged)

Applied to the online networks and their targets (targets copied from the online ones);
optimizers are rebuilt over the new parameters (PReLU slopes, mixture logits, gates). At build
time, at a step or on a trained model (``rls.operate``); replayed on ``load``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.nets import replace_modules, transform_networks
from rlsurgery.nets.blocks import FeatureAttention, Gate
from rlsurgery.nets.layout import find_networks, online_networks
from rlsurgery.nets.mlp import mlp_stacks, refill
from rlsurgery.nets.modules import ACTIVATIONS, ActivationName
from rlsurgery.nets.surgery import NetworkSurgery

#: activation modules by name


def activation_widths(net: nn.Module, matches: Callable[[nn.Module], bool]) -> dict[str, int]:
    """Name -> width of every matching activation module: the output size of the Linear before it."""
    previous: list[int] = []
    widths: dict[str, int] = {}
    for name, module in net.named_modules():
        if isinstance(module, nn.Linear):
            previous.append(module.out_features)
        elif matches(module):
            widths[name] = previous[-1] if previous else 1
    return widths


class ActivationSurgery(NetworkSurgery):
    """Shared plumbing: replace matching activation modules everywhere, refuse when none match."""

    sb3_representable = False  # activations (and gates) SB3's activation_fn does not build

    build_order = (
        40  # after value-head surgeries, before noisy layers (30 is earlier: they touch Linear only)
    )
    #: the activation classes this surgery replaces
    replaces: ClassVar[tuple[type[nn.Module], ...]] = ()

    def matches(self, module: nn.Module) -> bool:
        return type(module) in self.replaces

    def make(self, old: nn.Module) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must define make()")

    def check_has_activations(self, agent: BaseAlgorithm) -> None:
        """Refuse (before any training) networks without an activation this surgery replaces."""
        nets = find_networks(agent)
        if not any(self.matches(m) for net in nets.values() for m in net.modules()):
            raise IncompatibleSurgeryError(self.missing_message(agent, present_activations(nets.values())))

    def missing_message(self, agent: BaseAlgorithm, present: list[str]) -> str:
        """Why nothing matches, naming what the networks have."""
        names = ", ".join(c.__name__ for c in self.replaces)
        return (
            f"{self.key}: {type(agent).__name__}'s networks have no {names} activation to replace "
            f"(they have: {', '.join(present) or 'none'}; set policy_kwargs activation_fn, e.g. th.nn.ReLU)"
        )

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        self.check_has_activations(agent)
        transform_networks(
            agent, lambda net: replace_modules(net, lambda _n, m: self.matches(m), lambda _n, m: self.make(m))
        )


def present_activations(nets: Iterable[nn.Module]) -> list[str]:
    """The kinds of activation modules in ``nets``: catalog names (``relu``, ``tanh`` …), else class names."""
    names = {cls: name for name, cls in ACTIVATIONS.items()}
    found = {
        names.get(type(m), type(m).__name__)
        for net in nets
        for m in net.modules()
        if type(m) in names or isinstance(m, (nn.PReLU, AdaptiveActivation))
    }
    return sorted(found)


@dataclass
class ReplacementParams:
    to: ActivationName = param("gelu", "the new activation")
    source: Literal["any", "relu", "tanh", "elu", "gelu", "silu", "leaky_relu", "softplus"] = param(
        "any", "which activations to replace (any: all of them)"
    )

    def check(self) -> None:
        """A replacement must change something."""
        if self.source == self.to:
            raise ValueError(f"'source' and 'to' are both {self.to!r}")


@register(
    proof="tests/activations/test_activations.py::test_replacements_change_the_modules_and_the_function_as_stated"
)
class ActivationReplacement(ActivationSurgery):
    """Swap one activation for another (ReLU → GELU, Tanh → SiLU, …) in every network."""

    key = "activation_replacement"
    Params = ReplacementParams
    params: ReplacementParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        src = self.params.source
        candidates = tuple(ACTIVATIONS.values()) if src == "any" else (ACTIVATIONS[src],)
        self.replaces = tuple(c for c in candidates if c is not ACTIVATIONS[self.params.to])

    def missing_message(self, agent: BaseAlgorithm, present: list[str]) -> str:
        source, to = self.params.source, self.params.to
        wanted = f"source={source!r}" if source != "any" else f"source='any' (every activation but {to!r})"
        return (
            f"{self.key}: parameter 'source': {wanted} matches no activation of {type(agent).__name__}'s "
            f"networks, so nothing would be replaced; they have: {', '.join(present) or 'no activation'}"
        )

    def make(self, old: nn.Module) -> nn.Module:
        return ACTIVATIONS[self.params.to]()


@dataclass
class LearnableParams:
    init: float = param(0.0, "a₀: initial negative slope (0: the network computes exactly what ReLU did)")
    per_channel: bool = param(False, "one slope per unit instead of one per layer")


@register(
    proof="tests/activations/test_activations.py::test_replacements_change_the_modules_and_the_function_as_stated"
)
class LearnableActivation(ActivationSurgery):
    """ReLU → PReLU with a learnt negative slope (function-preserving with a₀ = 0)."""

    key = "learnable_activation"
    Params = LearnableParams
    replaces = (nn.ReLU,)
    params: LearnableParams

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        self.check_has_activations(agent)

        def prelu_for(net: nn.Module) -> None:
            # one slope per layer, or per unit: the width is the output size of the Linear before it
            widths = activation_widths(net, self.matches)
            replace_modules(
                net,
                lambda _n, m: self.matches(m),
                lambda n, _m: nn.PReLU(
                    widths.get(n, 1) if self.params.per_channel else 1, init=self.params.init
                ),
            )

        transform_networks(agent, prelu_for)


@dataclass
class SmoothParams:
    beta: float = param(
        10.0, "β: sharpness; Softplus_β approaches ReLU as β grows (error ≤ log 2 / β)", gt=0.0
    )


@register(
    proof="tests/activations/test_activations.py::test_replacements_change_the_modules_and_the_function_as_stated"
)
class SmoothApproximation(ActivationSurgery):
    """ReLU → Softplus_β(x) = log(1 + e^{βx}) / β."""

    key = "smooth_approximation"
    Params = SmoothParams
    replaces = (nn.ReLU,)
    params: SmoothParams

    def make(self, old: nn.Module) -> nn.Module:
        return nn.Softplus(beta=self.params.beta)


class AdaptiveActivation(nn.Module):
    """σ(x) = Σ_k softmax(a)_k f_k(x): a learnt mixture of candidate activations (one logit per candidate)."""

    def __init__(self, candidates: list[str], start: str, start_logit: float) -> None:
        super().__init__()
        self.candidates = list(candidates)
        self.functions = nn.ModuleList([ACTIVATIONS[c]() for c in self.candidates])
        logits = th.zeros(len(self.candidates))
        logits[self.candidates.index(start)] = start_logit
        self.logits = nn.Parameter(logits)

    def weights(self) -> th.Tensor:
        return th.softmax(self.logits, dim=0)

    def forward(self, x: th.Tensor) -> th.Tensor:
        weights = self.weights()
        out = weights[0] * self.functions[0](x)
        for w, f in zip(weights[1:], self.functions[1:]):
            out = th.addcmul(out, w, f(x))  # one fused multiply-add per further candidate
        return out

    @property
    def choice(self) -> str:
        """The candidate with the largest weight."""
        return self.candidates[int(self.logits.argmax())]


@dataclass
class AdaptiveParams:
    candidates: list[str] = param(["relu", "tanh", "silu"], "candidate activations f_k of every layer")
    start_logit: float = param(
        4.0, "initial logit of each layer's current activation (others 0): its initial share of the mix"
    )

    def check(self) -> None:
        """Known, distinct candidates."""
        unknown = [c for c in self.candidates if c not in ACTIVATIONS]
        if unknown or len(set(self.candidates)) != len(self.candidates) or len(self.candidates) < 2:
            raise ValueError(
                f"'candidates' must be at least two distinct names among {', '.join(ACTIVATIONS)} "
                f"(got {self.candidates})"
            )


@register(proof="tests/activations/test_activations.py::test_adaptive_gated_and_attention_blocks")
class AdaptiveActivationSurgery(ActivationSurgery):
    """Every activation becomes a learnt mixture of candidates; each layer ends up with its own choice.

    ``chosen_activations(agent)`` lists the current choice of every layer.
    """

    key = "adaptive_activation"
    cost_note = (
        "every activation evaluates all K candidate functions (3 by default) and mixes them by a "
        "softmax, forward and backward: K element-wise functions where the plain network has one"
    )
    Params = AdaptiveParams
    params: AdaptiveParams

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.replaces = tuple(ACTIVATIONS.values())

    def make(self, old: nn.Module) -> nn.Module:
        start = next(name for name, cls in ACTIVATIONS.items() if type(old) is cls)
        candidates = self.params.candidates + ([start] if start not in self.params.candidates else [])
        return AdaptiveActivation(candidates, start, self.params.start_logit)


def chosen_activations(agent: BaseAlgorithm) -> dict[str, str]:
    """Layer name -> the activation each adaptive layer of the online networks currently favours."""
    return {
        f"{role}.{name}": module.choice
        for role, net in online_networks(agent).items()
        for name, module in net.named_modules()
        if isinstance(module, AdaptiveActivation)
    }


@register(proof="tests/activations/test_activations.py::test_adaptive_gated_and_attention_blocks")
class GatingAddition(ActivationSurgery):
    """A multiplicative gate 2σ(W h + b) ⊙ h after every hidden activation (starts at exactly 1)."""

    key = "gating_addition"
    cost_note = (
        "each gate is a width×width layer of its own (2σ(W h + b)): one more matrix product per "
        "hidden layer, forward and backward"
    )
    build_order = 45  # after the activation swaps, so the gates follow the final activations

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.replaces = (*ACTIVATIONS.values(), nn.PReLU, AdaptiveActivation)

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        self.check_has_activations(agent)

        def gate(net: nn.Module) -> None:
            widths = activation_widths(net, self.matches)
            replace_modules(
                net, lambda _n, m: self.matches(m), lambda n, m: nn.Sequential(m, Gate(widths[n]))
            )

        transform_networks(agent, gate)


@dataclass
class AttentionParams:
    tokens: int = param(8, "tokens the features are cut into (must divide the width)", ge=2)
    heads: int = param(1, "attention heads (must divide the token size)", ge=1)


@register(proof="tests/activations/test_activations.py::test_adaptive_gated_and_attention_blocks")
class AttentionMechanism(NetworkSurgery):
    """Residual self-attention over the last hidden features of every MLP (zero-initialised: unchanged).

    The attention weights of the last forward pass are kept on each block (``last_attention``).
    """

    key = "attention_mechanism"
    cost_note = (
        "a self-attention block (query, key, value and output projections, a softmax over the "
        "tokens) after the last hidden layer of every MLP"
    )
    sb3_representable = False  # an attention block inside the MLP
    Params = AttentionParams
    params: AttentionParams
    build_order = 46

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        p = self.params
        stacks = [s for net in online_networks(agent).values() for s in mlp_stacks(net)]
        if not stacks:
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no MLP hidden layer"
            )
        for stack in stacks:
            width = stack.widths[-1]
            if width % p.tokens or (width // p.tokens) % p.heads:
                raise IncompatibleSurgeryError(
                    f"{self.key}: the last hidden layer of {stack.name} has {width} units: not "
                    f"{p.tokens} tokens of a size divisible by heads={p.heads}"
                )

        def attend(net: nn.Module) -> None:
            for stack in mlp_stacks(net):
                i = len(stack.hidden) - 1
                at = stack.hidden[i] + len(stack.block(i))
                modules = list(stack.seq)
                block = FeatureAttention(stack.widths[-1], p.tokens, p.heads)
                refill(stack.seq, [*modules[:at], block, *modules[at:]])

        transform_networks(agent, attend)
