from __future__ import annotations

import math

import pytest
import torch as th
from sb3_contrib.common.utils import quantile_huber_loss as sb3_quantile_huber_loss

from rlsurgery import SurgicalDQN
from rlsurgery.core.batch import Batch
from rlsurgery.value import distributional
from rlsurgery.value.distributional import (
    CategoricalReadout,
    DistributionalRL,
    categorical_cross_entropy,
    categorical_projection,
    quantile_huber_loss,
    quantile_midpoints,
)
from tests.breakage import assert_proof_fails_when, replaced, wrapped

SUPPORT = th.tensor([0.0, 1.0, 2.0])


def project(probs, reward, done=0.0, gamma=1.0, support=SUPPORT):
    return categorical_projection(th.tensor([probs]), th.tensor([reward]), th.tensor([done]), gamma, support)[
        0
    ]


@pytest.mark.parametrize(
    ("probs", "reward", "done", "gamma", "expected"),
    [
        ([0.0, 1.0, 0.0], 0.5, 0.0, 1.0, [0.0, 0.5, 0.5]),  # 1.5 splits evenly between atoms 1 and 2
        ([0.0, 1.0, 0.0], 0.25, 0.0, 1.0, [0.0, 0.75, 0.25]),  # 1.25: 3/4 to atom 1
        ([1.0, 0.0, 0.0], 1.0, 0.0, 1.0, [0.0, 1.0, 0.0]),  # lands exactly on an atom
        ([0.2, 0.3, 0.5], 5.0, 0.0, 1.0, [0.0, 0.0, 1.0]),  # beyond v_max: clipped onto the last atom
        ([0.2, 0.3, 0.5], -5.0, 0.0, 1.0, [1.0, 0.0, 0.0]),  # below v_min: clipped onto the first atom
        ([0.2, 0.3, 0.5], 1.25, 1.0, 1.0, [0.0, 0.75, 0.25]),  # terminal: every atom collapses to r
        ([0.5, 0.0, 0.5], 0.0, 0.0, 0.5, [0.5, 0.5, 0.0]),  # γ = 0.5: atoms 0, 0.5, 1
    ],
)
def test_c51_projection_hand_computed(probs, reward, done, gamma, expected):
    th.testing.assert_close(project(probs, reward, done, gamma), th.tensor(expected))


def test_projection_conserves_mass_and_handles_batches():
    gen = th.Generator().manual_seed(0)
    support = th.linspace(-10, 10, 51)
    probs = th.softmax(th.randn(64, 51, generator=gen), dim=1)
    rewards = th.randn(64, 1, generator=gen) * 20
    dones = (th.rand(64, 1, generator=gen) < 0.3).float()
    discounts = th.full((64, 1), 0.99**3)
    projected = categorical_projection(probs, rewards, dones, discounts, support)
    th.testing.assert_close(projected.sum(dim=1), th.ones(64))
    assert (projected >= 0).all()
    # the mean moves to E[clip(r + γz)] for samples whose shifted support stays inside
    inside = (
        ((rewards.squeeze(1) + 0.99**3 * 10) < 10)
        & ((rewards.squeeze(1) - 0.99**3 * 10) > -10)
        & (dones.squeeze(1) == 0)
    )
    expected_mean = rewards.squeeze(1) + 0.99**3 * (probs * support).sum(1)
    th.testing.assert_close((projected * support).sum(1)[inside], expected_mean[inside], rtol=0, atol=1e-4)


def dense_projection(next_probs, rewards, dones, discounts, support):
    """The definition, m_i = Σ_j [1 - |Tz_j - z_i| / Δz]_0^1 p_j, as a dense (B, K, K) kernel."""
    shifted = (rewards.view(-1, 1) + (1 - dones.view(-1, 1)) * discounts * support).clamp(
        support[0], support[-1]
    )
    kernel = (1 - (shifted.unsqueeze(1) - support.view(1, -1, 1)).abs() / (support[1] - support[0])).clamp(
        min=0
    )
    return th.bmm(kernel, next_probs.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("n_atoms", [2, 3, 51])
def test_projection_is_the_triangle_kernel_of_the_definition(n_atoms):
    gen = th.Generator().manual_seed(n_atoms)
    support = th.linspace(-10, 10, n_atoms)
    probs = th.softmax(th.randn(256, n_atoms, generator=gen), dim=1)
    rewards = th.randn(256, 1, generator=gen) * 8
    rewards[:32] = th.round(rewards[:32])  # shifted atoms that land exactly on an atom
    rewards[32:40] = th.tensor([-30.0, 30.0]).repeat(4).view(-1, 1)  # the whole mass beyond an end
    dones = (th.rand(256, 1, generator=gen) < 0.2).float()
    discounts = th.full((256, 1), 0.99)
    discounts[:32] = 1.0
    projected = categorical_projection(probs, rewards, dones, discounts, support)
    expected = dense_projection(probs, rewards, dones, discounts, support)
    th.testing.assert_close(projected, expected, rtol=0, atol=1e-5)  # linspace's atoms: round-off
    assert (projected >= 0).all()


def test_cross_entropy_matches_definition():
    logits = th.randn(4, 5)
    target = th.softmax(th.randn(4, 5), dim=1)
    expected = -(target * th.log(th.softmax(logits, dim=1))).sum(dim=1)
    th.testing.assert_close(categorical_cross_entropy(logits, target), expected)


@pytest.mark.parametrize("n_quantiles", [1, 10, 32])
def test_quantile_huber_loss_matches_sb3_contrib(n_quantiles):
    gen = th.Generator().manual_seed(n_quantiles)
    current = th.randn(8, n_quantiles, generator=gen) * 3
    target = th.randn(8, n_quantiles, generator=gen) * 3
    ours = quantile_huber_loss(current, target)
    assert ours.shape == (8,)
    th.testing.assert_close(ours.mean(), sb3_quantile_huber_loss(current, target, sum_over_quantiles=True))


def test_quantile_midpoints():
    th.testing.assert_close(quantile_midpoints(4), th.tensor([0.125, 0.375, 0.625, 0.875]))


def projected_by_hand(probs, reward, done, gamma, support):
    """C51's Algorithm 1 (Bellemare et al. 2017), one atom at a time: Tz_j = clip(r + (1 − d) γ z_j),
    b = (Tz_j − v_min) / Δz, its mass split between the neighbouring atoms ⌊b⌋ and ⌈b⌉."""
    v_min, v_max, dz = float(support[0]), float(support[-1]), float(support[1] - support[0])
    m = [0.0] * len(support)
    for z, p in zip(support.tolist(), probs.tolist()):
        b = (min(max(reward + (1 - done) * gamma * z, v_min), v_max) - v_min) / dz
        low, up = math.floor(b), math.ceil(b)
        if low == up:
            m[low] += p
        else:
            m[low] += p * (up - b)
            m[up] += p * (b - low)
    return m


def check_c51_agent_target_is_the_projected_bellman_update():
    """In the agent's loss: the current distribution is the online logits of the taken actions; the
    target is the target network's distribution at a* = argmax_a E[Z_target(s', a)], shifted by
    r + (1 − d) γ z and projected on the support (by hand, atom by atom); the loss is the cross-entropy."""
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        gamma=0.9,
        policy_kwargs=dict(net_arch=[16]),
        surgeries=["distributional_rl:n_atoms=5,v_min=0,v_max=4"],
    )
    readout = model.q_net.readout
    assert isinstance(readout, CategoricalReadout)
    with th.no_grad():  # online ≠ target, so the test sees which network the target comes from
        for q in model.q_net.parameters():
            q.add_(th.randn_like(q))
    gen = th.Generator().manual_seed(0)
    obs, next_obs = th.randn(6, 4, generator=gen), th.randn(6, 4, generator=gen) * 3
    actions = th.tensor([[0], [1], [0], [1], [0], [1]])
    rewards = th.tensor([[0.3], [1.7], [-0.6], [5.0], [0.0], [2.2]])  # below / beyond the support too
    dones = th.tensor([[0.0], [0.0], [0.0], [0.0], [1.0], [0.0]])
    outputs = model.q_net.outputs(obs)
    assert outputs.shape == (6, 2, 5)
    th.testing.assert_close(model.q_net(obs), (th.softmax(outputs, -1) * th.arange(5.0)).sum(-1))
    batch = Batch(obs, actions, next_obs, rewards, dones, 0.9)
    loss = model.compute_loss(batch)
    with th.no_grad():
        current = model.q_net.outputs(obs)[th.arange(6), actions.squeeze(1)]
        next_probs = th.softmax(model.q_net_target.outputs(next_obs), dim=-1)  # (B, A, K)
        a_star = (next_probs * readout.support).sum(-1).argmax(1)
        expected = th.tensor(
            [
                projected_by_hand(
                    next_probs[b, a_star[b]], float(rewards[b]), float(dones[b]), 0.9, readout.support
                )
                for b in range(6)
            ]
        )
    th.testing.assert_close(batch.current.detach(), current)
    th.testing.assert_close(batch.target, expected)
    cross_entropy = -(expected * th.log_softmax(current, dim=-1)).sum(-1)
    th.testing.assert_close(batch.elementwise_loss.detach(), cross_entropy)
    th.testing.assert_close(batch.td_error, cross_entropy)
    assert loss.ndim == 0 and float(loss.detach()) == pytest.approx(float(cross_entropy.mean()), rel=1e-5)


def test_c51_agent_target_is_the_projected_bellman_update():
    check_c51_agent_target_is_the_projected_bellman_update()


def test_c51_agent_proof_fails_on_unshifted_online_or_undiscounted_targets():
    check = check_c51_agent_target_is_the_projected_bellman_update

    def unshifted(next_probs, rewards, dones, discounts, support):  # the next distribution as it is
        return next_probs

    assert_proof_fails_when(replaced(distributional, "categorical_projection", unshifted), check)

    def from_the_online_network(target):
        def broken(self, agent, batch):
            with th.no_grad():
                batch.next_target_outputs = agent.q_net.outputs(batch.next_observations)
            target(self, agent, batch)

        return broken

    assert_proof_fails_when(wrapped(DistributionalRL, "target", from_the_online_network), check)

    def ignoring(projection):  # dones dropped and γ = 1
        return lambda probs, rewards, dones, discounts, support: projection(
            probs, rewards, th.zeros_like(dones), 1.0, support
        )

    assert_proof_fails_when(wrapped(distributional, "categorical_projection", ignoring), check)


def test_qr_agent_target_is_shifted_quantiles():
    model = SurgicalDQN(
        "MlpPolicy",
        "CartPole-v1",
        seed=0,
        gamma=0.5,
        policy_kwargs=dict(net_arch=[16]),
        surgeries=["distributional_rl:variant=qr,n_quantiles=4"],
    )
    obs, next_obs = th.randn(3, 4), th.randn(3, 4)
    batch = Batch(
        obs,
        th.tensor([[0], [1], [1]]),
        next_obs,
        th.tensor([[1.0], [2.0], [3.0]]),
        th.tensor([[0.0], [1.0], [0.0]]),
        0.5,
    )
    model.compute_loss(batch)
    with th.no_grad():
        next_quantiles = model.q_net_target.outputs(next_obs)
        a_star = next_quantiles.mean(-1).argmax(1)
        chosen = next_quantiles[th.arange(3), a_star]
    expected = batch.rewards + (1 - batch.dones) * 0.5 * chosen
    th.testing.assert_close(batch.target, expected)
    th.testing.assert_close(model.q_net(obs), model.q_net.outputs(obs).mean(-1))
