"""Activation surgeries (catalog section 4): swap the non-linearities of the networks.

Hendrycks & Gimpel 2016 (GELU, https://arxiv.org/abs/1606.08415); He et al. 2015 (PReLU,
https://arxiv.org/abs/1502.01852); Dugas et al. 2001 (softplus)::

    activation_replacement   every activation module of the chosen kind (ReLU, Tanh, ELU, GELU, SiLU,
                             LeakyReLU, Softplus; ``any``: all of them) becomes ``to``
    learnable_activation     ReLU → PReLU(x) = max(0, x) + a · min(0, x), a learnt from a₀ (a₀ = 0: ReLU)
    smooth_approximation     ReLU → Softplus_β(x) = log(1 + e^{βx}) / β   (|Softplus_β − ReLU| ≤ log 2 / β)

Applied to the online networks and their targets (targets copied from the online ones);
optimizers are rebuilt over the new parameters (PReLU slopes). Replayed on ``load``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.nets import replace_modules, transform_networks
from rlsurgery.nets.roles import find_networks

#: activation modules by name
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
}
ActivationName = Literal["relu", "tanh", "elu", "gelu", "silu", "leaky_relu", "softplus"]


class ActivationSurgery(Surgery):
    """Shared plumbing: replace matching activation modules everywhere, refuse when none match."""

    attaches_to = (Attachment.NETWORK,)
    families = ("dqn", *ON_POLICY_FAMILIES, "trpo", "sac", "td3")
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
            names = ", ".join(c.__name__ for c in self.replaces)
            raise IncompatibleSurgeryError(
                f"{self.key}: {type(agent).__name__}'s networks have no {names} activation to replace "
                "(set policy_kwargs activation_fn, e.g. th.nn.ReLU)"
            )

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        transform_networks(
            agent, lambda net: replace_modules(net, lambda _n, m: self.matches(m), lambda _n, m: self.make(m))
        )


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
    proof="tests/nets/test_activations.py::test_replacements_change_the_modules_and_the_function_as_stated"
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

    def make(self, old: nn.Module) -> nn.Module:
        return ACTIVATIONS[self.params.to]()


@dataclass
class LearnableParams:
    init: float = param(0.0, "a₀: initial negative slope (0: the network computes exactly what ReLU did)")
    per_channel: bool = param(False, "one slope per unit instead of one per layer")


@register(
    proof="tests/nets/test_activations.py::test_replacements_change_the_modules_and_the_function_as_stated"
)
class LearnableActivation(ActivationSurgery):
    """ReLU → PReLU with a learnt negative slope (function-preserving with a₀ = 0)."""

    key = "learnable_activation"
    Params = LearnableParams
    replaces = (nn.ReLU,)
    params: LearnableParams

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        self.check_has_activations(agent)

        def prelu_for(net: nn.Module) -> None:
            # one slope per layer, or per unit: the width is the output size of the Linear before it
            previous: list[int] = []
            widths: dict[str, int] = {}
            for name, module in net.named_modules():
                if isinstance(module, nn.Linear):
                    previous.append(module.out_features)
                elif self.matches(module):
                    widths[name] = previous[-1] if previous else 1
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
    proof="tests/nets/test_activations.py::test_replacements_change_the_modules_and_the_function_as_stated"
)
class SmoothApproximation(ActivationSurgery):
    """ReLU → Softplus_β(x) = log(1 + e^{βx}) / β."""

    key = "smooth_approximation"
    Params = SmoothParams
    replaces = (nn.ReLU,)
    params: SmoothParams

    def make(self, old: nn.Module) -> nn.Module:
        return nn.Softplus(beta=self.params.beta)
