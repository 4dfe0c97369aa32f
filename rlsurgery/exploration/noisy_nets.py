"""Noisy networks: exploration by learned, factorised Gaussian noise on the weights.

Fortunato et al. 2018, https://arxiv.org/abs/1706.10295 (factorised Gaussian noise)::

    y = (μ_w + σ_w ⊙ ε_w) x + μ_b + σ_b ⊙ ε_b
    ε_w = f(ε_out) f(ε_in)ᵀ,   ε_b = f(ε_out),   f(x) = sgn(x) √|x|,   ε_in, ε_out ~ N(0, I)
    init: μ ~ U[−1/√p, 1/√p],  σ = σ₀ / √p   (p = fan-in)

DQN family: the surgery replaces the linear layers of the Q head (``scope: all`` also
those of the features extractor) in the online and target networks, turns ε-greedy off
and acts greedily on a fresh noise sample at every environment step; both networks draw
new noise after every gradient update.

PPO and A2C (NoisyNet-A3C of the paper): the policy's ``action_net`` (``scope: all`` also the
policy branch of ``mlp_extractor``) becomes noisy; one noise sample is drawn at the start
of each rollout and kept through the rollout and the updates on it, so the log-probabilities
of the loss are those of the policy that acted.

Deterministic predictions (evaluation) use the mean weights μ, so they are reproducible.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
import torch as th
from torch import nn
from torch.nn import functional as F

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.core.surgery import ON_POLICY_FAMILIES, Attachment, Surgery
from rlsurgery.nets import replace_modules, transform_networks
from rlsurgery.nets.modules import modules_of_type

if TYPE_CHECKING:
    from rlsurgery.agents.dqn import SurgicalDQN
    from rlsurgery.core.batch import Batch


def scaled_noise(size: int, device: th.device) -> th.Tensor:
    """f(ε) = sgn(ε) √|ε| with ε ~ N(0, I)."""
    eps = th.randn(size, device=device)
    return eps.abs().sqrt_().copysign_(eps)


class NoisyLinear(nn.Module):
    """Linear layer with factorised Gaussian weight noise.

    :param in_features: fan-in p
    :param out_features: fan-out q
    :param sigma0: σ₀ of the initial noise scale σ = σ₀ / √p
    :param bias: whether to learn a bias
    """

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5, bias: bool = True) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.sigma0 = sigma0
        self.weight_mu = nn.Parameter(th.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(th.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(th.empty(out_features)) if bias else None
        self.bias_sigma = nn.Parameter(th.empty(out_features)) if bias else None
        self.register_buffer("eps_in", th.zeros(in_features))
        self.register_buffer("eps_out", th.zeros(out_features))
        #: use μ + σ ε (True) or the mean weights μ only (False)
        self.noise_enabled = True
        self.reset_parameters()
        self.reset_noise()

    def reset_parameters(self) -> None:
        """μ ~ U[−1/√p, 1/√p], σ = σ₀/√p."""
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight_mu, -bound, bound)
        nn.init.constant_(self.weight_sigma, self.sigma0 * bound)
        if self.bias_mu is not None:
            nn.init.uniform_(self.bias_mu, -bound, bound)
            nn.init.constant_(self.bias_sigma, self.sigma0 * bound)

    @th.no_grad()
    def reset_noise(self) -> None:
        """Draw new ε_in and ε_out."""
        self.set_noise(scaled_noise(self.in_features + self.out_features, self.eps_in.device))

    @th.no_grad()
    def set_noise(self, noise: th.Tensor) -> None:
        """ε_in, ε_out = the first ``in_features`` and the next ``out_features`` values of ``noise``
        (already scaled by f)."""
        self.eps_in.copy_(noise[: self.in_features])
        self.eps_out.copy_(noise[self.in_features : self.in_features + self.out_features])

    #: inputs of at most this many rows skip building the noisy weight matrix (see :meth:`forward`)
    FACTORISED_ROWS: ClassVar[int] = 8

    def forward(self, x: th.Tensor) -> th.Tensor:
        """y = (μ_w + σ_w ε_w) x + μ_b + σ_b ε_b (or the mean layer when noise is off).

        For a few rows (acting: one per env) the same y is computed as
        μ_w x + ε_out ⊙ (σ_w (ε_in ⊙ x)) + μ_b + σ_b ε_b, which needs no (q, p) weight matrix
        ε_w = ε_out ε_inᵀ: two matrix-vector products instead of two passes over q·p weights."""
        if not self.noise_enabled:
            return F.linear(x, self.weight_mu, self.bias_mu)
        if x.numel() <= self.FACTORISED_ROWS * self.in_features:
            bias = None if self.bias_mu is None else th.addcmul(self.bias_mu, self.bias_sigma, self.eps_out)
            noise = F.linear(x * self.eps_in, self.weight_sigma) * self.eps_out
            return F.linear(x, self.weight_mu, bias) + noise
        weight = th.addcmul(self.weight_mu, self.weight_sigma, th.outer(self.eps_out, self.eps_in))
        bias = None if self.bias_mu is None else th.addcmul(self.bias_mu, self.bias_sigma, self.eps_out)
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sigma0={self.sigma0}"


@th.no_grad()
def reset_noise(module: nn.Module) -> None:
    """Resample the noise of every :class:`NoisyLinear` inside ``module``: one draw for all of them."""
    layers = modules_of_type(module, NoisyLinear)
    if not layers:
        return
    noise = scaled_noise(sum(m.in_features + m.out_features for m in layers), layers[0].eps_in.device)
    start = 0
    for m in layers:
        m.set_noise(noise[start:])
        start += m.in_features + m.out_features


@contextlib.contextmanager
def noise_disabled(module: nn.Module) -> Iterator[None]:
    """Use the mean weights μ of every :class:`NoisyLinear` inside ``module`` for a while."""
    layers = modules_of_type(module, NoisyLinear)
    previous = [m.noise_enabled for m in layers]
    for m in layers:
        m.noise_enabled = False
    try:
        yield
    finally:
        for m, flag in zip(layers, previous):
            m.noise_enabled = flag


def to_noisy(layer: nn.Linear, sigma0: float) -> NoisyLinear:
    """A freshly initialised :class:`NoisyLinear` with the shape of ``layer``."""
    return NoisyLinear(layer.in_features, layer.out_features, sigma0=sigma0, bias=layer.bias is not None)


@dataclass
class NoisyNetsParams:
    sigma0: float = param(0.5, "σ₀: initial noise scale, σ = σ₀/√fan_in", gt=0.0)
    scope: Literal["head", "all"] = param(
        "head", "noisy layers in the Q head (PPO: action_net) only, or also in the features / policy MLP"
    )


@register(
    proof="tests/exploration/test_noisy_nets.py::test_noise_draws_differ_frozen_is_deterministic_sigma_gets_grad"
)
class NoisyNets(Surgery):
    """Replace linear layers by factorised-Gaussian noisy layers; act greedily on the noise."""

    key = "noisy_nets"
    cost_note = (
        "a fresh factorised noise sample and the noisy weight μ + σ ⊙ ε_out ε_inᵀ per forward pass,"
        " and twice the parameters of the noisy layers (σ) for the optimizer"
    )
    sb3_representable = False  # noisy layers instead of SB3's Linear layers
    attaches_to = (Attachment.NETWORK, Attachment.EXPLORATION)
    Params = NoisyNetsParams
    families = ("dqn", *ON_POLICY_FAMILIES)
    stages: ClassVar[dict[str, tuple[str, ...]]] = {
        "dqn": ("act", "after_update"),
        **{family: ("act", "on_rollout_start") for family in ON_POLICY_FAMILIES},
    }
    selects_actions = True
    build_order = 30  # after distributional (10) and dueling (20): makes the layers they built noisy
    params: NoisyNetsParams

    def configure(self, agent: SurgicalDQN) -> None:
        if agent.algorithm_family == "dqn":  # the noise explores: ε-greedy is off
            agent.exploration_initial_eps = 0.0
            agent.exploration_final_eps = 0.0

    def modify_networks(self, agent: SurgicalDQN) -> None:
        sigma0 = self.params.sigma0
        if agent.algorithm_family in ON_POLICY_FAMILIES:
            prefixes = (
                ("action_net",) if self.params.scope == "head" else ("action_net", "mlp_extractor.policy_net")
            )

            def noisify_policy(policy: nn.Module) -> None:
                replace_modules(
                    policy,
                    lambda n, m: (
                        isinstance(m, nn.Linear) and any(n == p or n.startswith(p + ".") for p in prefixes)
                    ),
                    lambda _n, m: to_noisy(m, sigma0),
                )

            transform_networks(agent, noisify_policy)
            return

        def noisify(net: nn.Module) -> None:
            roots = [net.q_net] if self.params.scope == "head" else [net]
            for root in roots:
                replace_modules(
                    root, lambda _n, m: isinstance(m, nn.Linear), lambda _n, m: to_noisy(m, sigma0)
                )

        transform_networks(agent, noisify)
        for net in (agent.policy.q_net, agent.policy.q_net_target):
            reset_noise(net)  # independent noise in the two networks

    def act(
        self,
        agent: SurgicalDQN,
        observation: np.ndarray | dict[str, np.ndarray],
        state: Any,
        episode_start: np.ndarray | None,
        deterministic: bool,
    ) -> tuple[np.ndarray, Any]:
        """DQN: greedy on a fresh noise sample; PPO/A2C: a sample of the policy under the rollout's
        noise. Deterministic predictions use the mean weights."""
        if deterministic:
            with noise_disabled(agent.policy):
                return agent.policy.predict(observation, state, episode_start, deterministic=True)
        if agent.algorithm_family in ON_POLICY_FAMILIES:
            return agent.policy.predict(observation, state, episode_start, deterministic=False)
        reset_noise(agent.policy.q_net)
        return agent.policy.predict(observation, state, episode_start, deterministic=True)

    def on_rollout_start(self, agent: Any) -> None:
        """PPO/A2C: one noise sample for the coming rollout and the updates on it."""
        reset_noise(agent.policy)

    def after_update(self, agent: SurgicalDQN, batch: Batch) -> None:
        """New noise in both networks for the next update."""
        reset_noise(agent.q_net)
        reset_noise(agent.q_net_target)
