"""svd_decomposition: each Linear becomes the factors of its truncated SVD, with the error the math says."""

from __future__ import annotations

import numpy as np
import torch as th

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalSAC
from rlsurgery.lowrank import svd
from rlsurgery.nets.blocks import LowRankLinear
from tests.breakage import assert_proof_fails_when, replaced
from tests.lowrank import assert_reload_acts_alike

DQN_KW = dict(learning_starts=32, batch_size=16, buffer_size=500, policy_kwargs=dict(net_arch=[32, 32]))


def check_truncated_svd_error() -> None:
    generator = th.Generator().manual_seed(0)
    weight = th.randn(20, 12, generator=generator)
    singular_values = th.linalg.svdvals(weight.double())
    for k in (1, 5, 11):
        up, down = svd.truncated_svd(weight, k)
        assert up.shape == (20, k) and down.shape == (k, 12)
        error = th.linalg.matrix_norm((weight - up @ down).double())
        th.testing.assert_close(error, singular_values[k:].square().sum().sqrt(), rtol=1e-5, atol=1e-6)
        assert th.linalg.matrix_rank(up @ down) == k


def test_the_truncated_svd_error_is_the_norm_of_the_dropped_singular_values():
    check_truncated_svd_error()


def test_the_error_proof_fails_on_factors_that_are_not_the_svd():
    def first_rows_and_columns(weight, rank):  # a rank-k product, not the best one
        return weight[:, :rank].clone(), th.eye(rank, weight.shape[1])

    assert_proof_fails_when(replaced(svd, "truncated_svd", first_rows_and_columns), check_truncated_svd_error)


def test_energy_rank_is_the_smallest_k_holding_the_share():
    s = th.tensor([3.0, 2.0, 1.0])  # squares 9, 4, 1 of 14
    assert [svd.energy_rank(s, e) for e in (0.5, 9 / 14, 0.65, 13 / 14, 0.95, 1.0)] == [1, 1, 2, 2, 3, 3]


def check_svd_decomposition(tmp_path) -> None:
    model = SurgicalDQN("MlpPolicy", "CartPole-v1", seed=0, **DQN_KW).learn(300)
    hidden = model.q_net.q_net[2]  # the 32 × 32 layer; 4 → 32 and 32 → 2 would not shrink at rank 4
    weight, bias = hidden.weight.detach().clone(), hidden.bias.detach().clone()
    before = sum(p.numel() for p in model.q_net.parameters())
    observations = th.randn(64, 4, generator=th.Generator().manual_seed(1))
    with th.no_grad():
        expected_rank4 = th.linalg.svd(weight.double(), full_matrices=False)
        u, s, vh = expected_rank4
        w4 = (u[:, :4] * s[:4]) @ vh[:4]
        first = model.q_net.q_net[1](model.q_net.q_net[0](observations))
        expected = model.q_net.q_net[4](th.relu(first.double() @ w4.T + bias.double()).float())

    rls.operate(model, "svd_decomposition:rank=4")

    layer = model.q_net.q_net[2]
    assert isinstance(layer, LowRankLinear) and layer.rank == 4
    assert model.surgery_state["svd_decomposition"].result["factorised_layers"] == 1
    th.testing.assert_close(layer.weight().double(), w4, rtol=1e-5, atol=1e-6)
    error = th.linalg.matrix_norm(weight.double() - layer.weight().double())
    th.testing.assert_close(error, s[4:].square().sum().sqrt(), rtol=1e-4, atol=1e-6)
    th.testing.assert_close(layer.up.bias, bias)
    after = sum(p.numel() for p in model.q_net.parameters())
    assert after == before - 32 * 32 + 4 * (32 + 32)
    with th.no_grad():
        th.testing.assert_close(model.q_net(observations), expected, rtol=1e-4, atol=1e-5)
        th.testing.assert_close(model.q_net_target(observations), model.q_net(observations))
    model.learn(100)  # training goes on in the factorised form
    loaded = assert_reload_acts_alike(model, tmp_path / "svd.zip", observations)
    assert isinstance(loaded.q_net.q_net[2], LowRankLinear)


def test_svd_decomposition_factorises_every_layer_it_shrinks(tmp_path):
    check_svd_decomposition(tmp_path)


def test_the_svd_proof_fails_when_layers_are_left_whole(tmp_path):
    assert_proof_fails_when(
        replaced(svd, "factorised", lambda linear, rank: linear), check_svd_decomposition, tmp_path
    )


def test_ranks_chosen_by_energy_are_kept_for_load(tmp_path):
    model = SurgicalSAC(
        "MlpPolicy",
        "Pendulum-v1",
        seed=0,
        learning_starts=16,
        batch_size=16,
        buffer_size=200,
        policy_kwargs=dict(net_arch=[64, 64]),
    ).learn(40)
    linears = sum(
        1 for net in (model.actor, model.critic) for m in net.modules() if isinstance(m, th.nn.Linear)
    )
    rls.operate(model, "svd_decomposition:energy=0.5")
    chosen = list(model.surgery_log[-1]["params"]["chosen"])
    assert len(chosen) == linears and any(chosen) and not all(chosen)  # 64 × 64 layers shrink, 3 → 64 not
    path = tmp_path / "sac.zip"
    model.save(path)
    loaded = SurgicalSAC.load(path)
    ranks = [m.rank for m in loaded.actor.modules() if isinstance(m, LowRankLinear)]
    assert ranks == [m.rank for m in model.actor.modules() if isinstance(m, LowRankLinear)] and ranks
    obs = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    np.testing.assert_allclose(
        loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0]
    )
