"""Domain-adversarial training (DANN): a domain classifier on the features, its gradient reversed.

Ganin et al. 2016, https://arxiv.org/abs/1505.07818. With φ the acting network's last hidden layer and
D a small classifier (a hidden layer of ``hidden`` units) giving P(target | φ), the loss of the acting
role gains::

    λ · [BCE(D(R(φ(s_source))), 0) + BCE(D(R(φ(s_target))), 1)]
    R: the gradient-reversal layer, R(z) = z forward, ∂R/∂z = −μ·I backward

so D learns to tell the domains apart while the reversed gradient moves φ to make them alike. D has
its own Adam optimizer (``classifier_lr``), stepped right after each update's backward pass (the
``before_step`` stage); it lives in the agent's ``rls_modules`` and is saved with it. Its accuracy on
the latest batches is logged as ``train/dann_domain_accuracy`` (chance, 0.5, when the features are
aligned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
import torch.nn.functional as F
from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.adaptation.target import AdaptationSurgery, TargetFields
from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.layout import layout_of
from rlsurgery.nets.step_hooks import record


@dataclass
class DANNParams(TargetFields):
    weight: float = param(1.0, "λ: weight of the domain-classification term", ge=0.0)
    reversal: float = param(1.0, "μ: scale of the reversed gradient at the features", ge=0.0)
    hidden: int = param(64, "hidden units of the domain classifier", ge=1)
    classifier_lr: float = param(1e-3, "learning rate of the domain classifier's Adam", gt=0.0)


class GradientReversal(th.autograd.Function):
    """Identity forward; the gradient times −μ backward."""

    @staticmethod
    def forward(ctx: Any, z: th.Tensor, scale: float) -> th.Tensor:
        ctx.scale = scale
        return z.view_as(z)

    @staticmethod
    def backward(ctx: Any, grad: th.Tensor) -> tuple[th.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(z: th.Tensor, scale: float) -> th.Tensor:
    """R(z): z, with its gradient multiplied by −``scale``."""
    return GradientReversal.apply(z, scale)


def domain_loss(classifier: nn.Module, source: th.Tensor, target: th.Tensor) -> tuple[th.Tensor, float]:
    """BCE of the classifier on source (label 0) and target (label 1) features; and its accuracy."""
    logits = classifier(th.cat([source, target])).squeeze(-1)
    labels = th.cat([th.zeros(len(source)), th.ones(len(target))]).to(logits.device)
    accuracy = float(((logits > 0).float() == labels).float().mean())
    return F.binary_cross_entropy_with_logits(logits, labels), accuracy


@register(
    proof="tests/adaptation/test_adaptation.py::test_dann_reverses_the_gradient_and_confuses_the_classifier"
)
class DomainAdversarialTraining(AdaptationSurgery):
    """A domain classifier on the features, trained through a gradient-reversal layer."""

    key = "domain_adversarial_training"
    stages = ("aux_loss", "before_step")
    Params = DANNParams
    params: DANNParams
    build_order = 95  # after the network surgeries: the classifier reads the final latent width

    def modify_networks(self, agent: BaseAlgorithm) -> None:
        obs = th.as_tensor(agent.observation_space.sample()[None], device=agent.device).float()
        with th.no_grad():
            width = layout_of(agent).latent(agent.policy, obs).shape[-1]
        classifier = nn.Sequential(
            nn.Linear(width, self.params.hidden), nn.ReLU(), nn.Linear(self.params.hidden, 1)
        )
        agent.rls_modules[self.key] = classifier.to(agent.device)
        self._optimizer = th.optim.Adam(classifier.parameters(), lr=self.params.classifier_lr)

    def aux_loss(self, agent: BaseAlgorithm, role: str, batch: Any) -> th.Tensor | None:
        batches = self.update_batches(agent, role, batch)
        if batches is None:
            return None
        latent = layout_of(agent).latent
        features = [reverse_gradient(latent(agent.policy, x), self.params.reversal) for x in batches]
        loss, accuracy = domain_loss(agent.rls_modules[self.key], *features)
        record(agent, "train/dann_domain_accuracy", accuracy)
        return self.params.weight * loss

    def before_step(self, agent: BaseAlgorithm, role: str, batch: Any, loss: th.Tensor) -> None:
        """Step the classifier on the gradient the update's backward pass gave it."""
        classifier = agent.rls_modules[self.key]
        if any(p.grad is not None for p in classifier.parameters()):
            self._optimizer.step()
            self._optimizer.zero_grad()
