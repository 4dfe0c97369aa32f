"""Network layouts: where each agent family keeps its networks, declared once.

A :class:`NetworkLayout` says, for one family of SB3 policies, which networks it holds by *role*
(``q`` and its ``q_target`` for the DQN family; ``policy`` — the whole ``ActorCriticPolicy`` under
one optimizer — for PPO, A2C and TRPO; ``actor``, ``critic`` and their targets for SAC and TD3),
which optimizer each network is trained by, where its feature extractor and output layer are, which
BatchNorm statistics SB3 copies into the targets, and how to run one forward pass over all online
networks. Every helper that needs a network asks the layout; none guesses attributes. A new family
(an ensemble of K members, a transformer policy) adds one layout and the network surgeries work on it.

The layout of a model is the one its surgical agent class declares (``LAYOUT``), or, for a plain
SB3 model, the one registered for its policy's class (:func:`layout_of`).

>>> from stable_baselines3 import DQN
>>> layout = layout_of(DQN("MlpPolicy", "CartPole-v1"))
>>> layout.name, [role.name for role in layout.roles], layout.optimizer_owners
('dqn', ['q', 'q_target'], {'policy': ''})
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.dqn.policies import DQNPolicy
from stable_baselines3.sac.policies import SACPolicy
from stable_baselines3.td3.policies import TD3Policy
from torch import nn


@dataclass(frozen=True)
class NetworkRole:
    """Where a network lives on a model: the attribute path from the policy."""

    name: str
    path: str
    """attribute path below ``model.policy`` (empty: the policy itself)"""
    target_of: str | None = None
    """for a target network: the role it tracks"""


def resolve(policy: nn.Module, path: str) -> Any:
    """The attribute at dotted ``path`` below ``policy`` (the policy itself for an empty path)."""
    obj: Any = policy
    for part in filter(None, path.split(".")):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class NetworkLayout:
    """How the policies of one agent family hold their networks."""

    name: str
    """the layout's name (``dqn``, ``qrdqn``, ``actor_critic``, ``sac``, ``td3``)"""
    roles: tuple[NetworkRole, ...]
    """online networks and their targets"""
    acting: str
    """the role that chooses actions (the one imitation and distillation train)"""
    kind: str
    """what the acting network outputs: ``q`` (values per action), ``distribution`` or ``actor``
    (a deterministic or squashed-Gaussian action)"""
    optimizer_owners: dict[str, str]
    """optimizer role -> path of the module whose ``.optimizer`` it is, in the order an update
    steps them (the first is the default role of the loss probes)"""
    extractor_owner: str
    """path of the acting network's feature extractor's owner (``extract_features`` is its method)"""
    extractor_attribute: str
    """attribute of that owner holding the extractor"""
    bn_stats: dict[str, str] = field(default_factory=dict)
    """SB3 algorithm attribute listing running statistics -> path of the network they belong to"""
    forward_all: Callable[[Any, th.Tensor], Any] = lambda policy, obs: None
    """one forward pass of every online network on ``obs``"""
    latent: Callable[[Any, th.Tensor], th.Tensor] = lambda policy, obs: obs
    """the acting network's last hidden layer (the input of its output layer)"""

    # ------------------------------------------------------------------ networks
    def networks(self, policy: nn.Module) -> dict[str, nn.Module]:
        """Role name -> network module, targets included."""
        return {role.name: resolve(policy, role.path) for role in self.roles}

    def online(self, policy: nn.Module) -> dict[str, nn.Module]:
        """The trained networks (no target copies)."""
        return {r.name: resolve(policy, r.path) for r in self.roles if r.target_of is None}

    def target_pairs(self, policy: nn.Module) -> list[tuple[nn.Module, nn.Module]]:
        """(online, target) module pairs that must stay consistent."""
        nets = self.networks(policy)
        return [(nets[r.target_of], nets[r.name]) for r in self.roles if r.target_of is not None]

    def acting_network(self, policy: nn.Module) -> nn.Module:
        """The network that chooses actions."""
        return self.networks(policy)[self.acting]

    # ------------------------------------------------------------------ optimizers
    def optimizers(self, policy: nn.Module) -> dict[str, th.optim.Optimizer]:
        """Optimizer role -> optimizer (``policy``; or ``actor`` and ``critic``)."""
        return {role: resolve(policy, path).optimizer for role, path in self.optimizer_owners.items()}

    def set_optimizer(self, policy: nn.Module, role: str, optimizer: th.optim.Optimizer) -> None:
        """Install ``optimizer`` as the optimizer of ``role``."""
        resolve(policy, self.optimizer_owners[role]).optimizer = optimizer

    def optimizer_networks(self, policy: nn.Module) -> dict[str, list[nn.Module]]:
        """Optimizer role -> the online networks whose parameters it trains."""
        online = self.online(policy)
        if list(self.optimizer_owners) == ["policy"]:
            return {"policy": list(online.values())}
        return {role: [online[role]] for role in self.optimizer_owners}

    # ------------------------------------------------------------------ inputs and outputs
    def features(self, policy: nn.Module, obs: th.Tensor) -> th.Tensor:
        """The acting network's features of ``obs``."""
        owner = resolve(policy, self.extractor_owner)
        return owner.extract_features(obs, getattr(owner, self.extractor_attribute))

    def feature_extractor(self, policy: nn.Module) -> nn.Module:
        """The acting network's feature extractor."""
        return getattr(resolve(policy, self.extractor_owner), self.extractor_attribute)

    def outputs(self, policy: nn.Module, obs: th.Tensor, discrete: bool) -> th.Tensor:
        """What the acting network outputs at ``obs``: Q-values, action logits (a distribution
        over ``discrete`` actions) or deterministic actions, shape (B, ·)."""
        if self.kind == "q":
            return self.acting_network(policy)(obs)
        if self.kind == "distribution" and discrete:
            return policy.get_distribution(obs).distribution.logits
        return policy._predict(obs, deterministic=True)

    def forward(self, policy: nn.Module, obs: th.Tensor) -> None:
        """One forward pass of every online network (for statistics and forward hooks)."""
        self.forward_all(policy, obs)


def _actor_critic_forward(policy: Any, obs: th.Tensor) -> None:
    policy.evaluate_actions(obs, policy._predict(obs, deterministic=True))


def _q_latent(policy: Any, obs: th.Tensor) -> th.Tensor:
    q_net = policy.q_net
    return q_net.q_net[:-1](q_net.extract_features(obs, q_net.features_extractor))


def _actor_critic_latent(policy: Any, obs: th.Tensor) -> th.Tensor:
    features = policy.extract_features(obs, policy.pi_features_extractor)
    return policy.mlp_extractor.forward_actor(features)


DQN_LAYOUT = NetworkLayout(
    name="dqn",
    roles=(NetworkRole("q", "q_net"), NetworkRole("q_target", "q_net_target", target_of="q")),
    acting="q",
    kind="q",
    optimizer_owners={"policy": ""},
    extractor_owner="q_net",
    extractor_attribute="features_extractor",
    bn_stats={"batch_norm_stats": "q_net", "batch_norm_stats_target": "q_net_target"},
    forward_all=lambda policy, obs: policy.q_net(obs),
    latent=_q_latent,
)

QRDQN_LAYOUT = NetworkLayout(
    name="qrdqn",
    roles=(NetworkRole("q", "quantile_net"), NetworkRole("q_target", "quantile_net_target", target_of="q")),
    acting="q",
    kind="q",
    optimizer_owners={"policy": ""},
    extractor_owner="quantile_net",
    extractor_attribute="features_extractor",
    forward_all=lambda policy, obs: policy.quantile_net(obs),
)

ACTOR_CRITIC_LAYOUT = NetworkLayout(
    name="actor_critic",
    roles=(NetworkRole("policy", ""),),
    acting="policy",
    kind="distribution",
    optimizer_owners={"policy": ""},
    extractor_owner="",
    extractor_attribute="pi_features_extractor",
    forward_all=_actor_critic_forward,
    latent=_actor_critic_latent,
)

_SAC_ROLES = (
    NetworkRole("actor", "actor"),
    NetworkRole("critic", "critic"),
    NetworkRole("critic_target", "critic_target", target_of="critic"),
)

SAC_LAYOUT = NetworkLayout(
    name="sac",
    roles=_SAC_ROLES,
    acting="actor",
    kind="actor",
    optimizer_owners={"critic": "critic", "actor": "actor"},
    extractor_owner="actor",
    extractor_attribute="features_extractor",
    bn_stats={"batch_norm_stats": "critic", "batch_norm_stats_target": "critic_target"},
    forward_all=lambda policy, obs: policy.critic(obs, policy.actor(obs)),
    latent=lambda policy, obs: policy.actor.latent_pi(
        policy.actor.extract_features(obs, policy.actor.features_extractor)
    ),
)

TD3_LAYOUT = NetworkLayout(
    name="td3",
    roles=(*_SAC_ROLES, NetworkRole("actor_target", "actor_target", target_of="actor")),
    acting="actor",
    kind="actor",
    optimizer_owners={"critic": "critic", "actor": "actor"},
    extractor_owner="actor",
    extractor_attribute="features_extractor",
    bn_stats={
        "critic_batch_norm_stats": "critic",
        "critic_batch_norm_stats_target": "critic_target",
        "actor_batch_norm_stats": "actor",
        "actor_batch_norm_stats_target": "actor_target",
    },
    forward_all=lambda policy, obs: policy.critic(obs, policy.actor(obs)),
    # μ = Linear, ReLU, …, Linear, Tanh: the latent is everything before the last Linear
    latent=lambda policy, obs: policy.actor.mu[:-2](
        policy.actor.extract_features(obs, policy.actor.features_extractor)
    ),
)

#: the layout of a plain SB3 model, by its policy's class (most specific first)
_BY_POLICY_CLASS: list[tuple[type, NetworkLayout]] = [
    (DQNPolicy, DQN_LAYOUT),
    (ActorCriticPolicy, ACTOR_CRITIC_LAYOUT),
    (SACPolicy, SAC_LAYOUT),
    (TD3Policy, TD3_LAYOUT),
]
try:  # sb3-contrib's QR-DQN, when installed
    from sb3_contrib.qrdqn.policies import QRDQNPolicy

    _BY_POLICY_CLASS.insert(0, (QRDQNPolicy, QRDQN_LAYOUT))
except ImportError:  # pragma: no cover - sb3-contrib is a dependency
    pass


def register_layout(policy_class: type, layout: NetworkLayout) -> None:
    """Give the policies of ``policy_class`` (and its subclasses) ``layout``."""
    _BY_POLICY_CLASS.insert(0, (policy_class, layout))


def layout_of(model: BaseAlgorithm | BasePolicy) -> NetworkLayout:
    """The network layout of ``model`` (a model or its policy); ``TypeError`` for unknown layouts."""
    declared = getattr(type(model), "LAYOUT", None)
    if isinstance(declared, NetworkLayout):
        return declared
    policy = getattr(model, "policy", model)
    for cls, layout in _BY_POLICY_CLASS:
        if isinstance(policy, cls):
            return layout
    raise TypeError(f"rlsurgery.nets does not know the network layout of {type(policy).__name__} yet")


# ---------------------------------------------------------------------- model-level shorthands
def roles_of(model: BaseAlgorithm) -> tuple[NetworkRole, ...]:
    """The network roles of ``model``."""
    return layout_of(model).roles


def find_networks(model: BaseAlgorithm) -> dict[str, nn.Module]:
    """Role name -> network module, e.g. ``{"q": ..., "q_target": ...}`` for DQN."""
    return layout_of(model).networks(model.policy)


def online_networks(model: BaseAlgorithm) -> dict[str, nn.Module]:
    """The trained networks (no target copies)."""
    return layout_of(model).online(model.policy)


def target_pairs(model: BaseAlgorithm) -> list[tuple[nn.Module, nn.Module]]:
    """(online, target) module pairs that must stay consistent."""
    return layout_of(model).target_pairs(model.policy)


def acting_parameters(model: BaseAlgorithm) -> list[nn.Parameter]:
    """The parameters of the network that chooses actions (what imitation and distillation fit)."""
    return list(layout_of(model).acting_network(model.policy).parameters())


def sync_acting_targets(model: BaseAlgorithm) -> None:
    """Load the target copies of the acting network from it (after a supervised fit: a DQN's
    ``q_target``; the critics' targets are left alone)."""
    layout = layout_of(model)
    nets = layout.networks(model.policy)
    for role in layout.roles:
        if role.target_of == layout.acting:
            nets[role.name].load_state_dict(nets[layout.acting].state_dict())
