"""SAM: the update uses the gradient at θ + ρ g/‖g‖, computed on the update's own batch."""

from __future__ import annotations

import pytest
import torch as th

from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.optim.sam import sam_gradient

KW = dict(
    learning_starts=20, batch_size=16, buffer_size=500, train_freq=1, policy_kwargs=dict(net_arch=[16, 16])
)


def test_sam_takes_the_gradient_at_the_ascended_point():
    # on a quadratic L(θ) = ½ θᵀAθ: g = Aθ, ε = ρ g/‖g‖, g_SAM = A(θ + ε); θ itself unchanged
    a = th.tensor([[3.0, 1.0], [1.0, 2.0]])
    theta = th.nn.Parameter(th.tensor([1.0, -2.0]))
    loss_fn = lambda: 0.5 * theta @ a @ theta  # noqa: E731
    loss_fn().backward()
    g = a @ theta.detach()
    eps = 0.1 * g / g.norm()
    perturbed = sam_gradient([theta], loss_fn, rho=0.1)
    th.testing.assert_close(theta.grad, a @ (theta.detach() + eps))
    th.testing.assert_close(theta.detach(), th.tensor([1.0, -2.0]))
    assert perturbed == pytest.approx(float(0.5 * (theta.detach() + eps) @ a @ (theta.detach() + eps)))
    # inside DQN: each update's loss is evaluated twice (the second time at the perturbed point)
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, surgeries=["sam:rho=0.05"], **KW)
    calls = []
    original = model.loss_of
    model.loss_of = lambda batch: calls.append(1) or original(batch)
    model.learn(30)
    assert model._n_updates == 10 and len(calls) == 20
    plain = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **KW).learn(30)
    assert not th.equal(model.q_net.q_net[0].weight, plain.q_net.q_net[0].weight)  # a different step
    SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, n_epochs=1, surgeries=["sam"]
    ).learn(64)
    with pytest.raises(IncompatibleSurgeryError, match="sam: a plain SB3 DQN"):
        from stable_baselines3 import DQN

        from rlsurgery.catalog import create

        create("sam").validate(DQN("MlpPolicy", "CartPole-v1"))
