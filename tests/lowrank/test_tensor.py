"""tucker_decomposition, cp_decomposition, tensor_train: factorised layers that compute what the
decomposition's reconstructed weight would, with tensorly's factors and the errors the math bounds."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import tensorly as tl
import torch as th
import torch.nn.functional as F

import rlsurgery as rls
from rlsurgery import SurgicalDQN, SurgicalPPO
from rlsurgery.lowrank import cp, tensor_train, tucker
from rlsurgery.lowrank.tensor_layers import CPConv2d, TTLinear, TuckerConv2d
from tests.breakage import assert_proof_fails_when, replaced
from tests.helpers import TinyImageEnv
from tests.lowrank import assert_reload_acts_alike
from tests.quantization import keeps_every_layer

IMAGE_ENV = "rlsurgery-test/TinyImage-tensor-v0"


def cnn_dqn() -> SurgicalDQN:
    if IMAGE_ENV not in gym.registry:
        gym.register(IMAGE_ENV, entry_point=TinyImageEnv)
    kwargs = dict(features_extractor_kwargs=dict(features_dim=16), net_arch=[16])
    model = SurgicalDQN(
        "CnnPolicy",
        IMAGE_ENV,
        seed=0,
        learning_starts=16,
        batch_size=8,
        buffer_size=200,
        policy_kwargs=kwargs,
    )
    return model.learn(40)


def image_batch(model, n: int = 4) -> th.Tensor:
    space = model.observation_space
    rng = np.random.default_rng(0)
    return model.policy.obs_to_tensor(rng.integers(0, 256, (n, *space.shape), dtype=np.uint8))[0]


def mode_dropped(weight: th.Tensor, mode: int, rank: int) -> float:
    """Σ of the squared singular values beyond ``rank`` of the mode-``mode`` unfolding."""
    unfolded = weight.double().movedim(mode, 0).reshape(weight.shape[mode], -1)
    return float(th.linalg.svdvals(unfolded)[rank:].square().sum())


def convolutions(cnn) -> list[tuple]:
    """(stride, padding, bias) of NatureCNN's three convolutions."""
    return [(cnn[i].stride, cnn[i].padding, cnn[i].bias.detach().clone()) for i in (0, 2, 4)]


def features_with(geometry, weights, x: th.Tensor) -> th.Tensor:
    """NatureCNN's features of ``x`` with ``weights`` as its convolutions' kernels."""
    for (stride, padding, bias), weight in zip(geometry, weights):
        x = F.relu(F.conv2d(x, weight, bias, stride=stride, padding=padding))
    return x.flatten(1)


def check_factorised_cnn(spec: str, layer_type: type) -> list:
    """``spec`` on a CNN DQN: every convolution becomes a ``layer_type`` whose output is the conv of its
    reconstructed kernel; fewer parameters; the same after save/load. Returns the new layers."""
    model = cnn_dqn()
    cnn = model.q_net.features_extractor.cnn
    geometry, obs = convolutions(cnn), image_batch(model)
    before = sum(p.numel() for p in model.q_net.parameters())
    rls.operate(model, spec)
    layers = [m for m in model.q_net.features_extractor.cnn if isinstance(m, layer_type)]
    assert len(layers) == 3
    assert isinstance(model.q_net_target.features_extractor.cnn[2], layer_type)
    result = model.surgery_state[spec.split(":")[0]].result
    assert result["parameters_after"] < result["parameters_before"] == before
    assert result["factorised_layers"] == 3
    x = obs.float() / 255.0
    with th.no_grad():
        expected = features_with(geometry, [m.weight() for m in layers], x)
        th.testing.assert_close(model.q_net.features_extractor.cnn(x), expected, rtol=1e-4, atol=1e-5)
    model.learn(20)  # training goes on in the factorised form
    assert_reload_acts_alike(model, model_path(), obs)
    return layers


def check_tucker() -> None:
    generator = th.Generator().manual_seed(0)
    conv = th.nn.Conv2d(6, 10, 3, stride=2, padding=1)
    with th.no_grad():
        conv.weight.copy_(th.randn(10, 6, 3, 3, generator=generator))
    layer = tucker.TuckerDecomposition(ratio=0.5).build(conv)
    tucker.TuckerDecomposition(ratio=0.5).decompose(conv, layer)
    assert (layer.out_rank, layer.in_rank) == (5, 3)
    core, factors = (
        layer.core.weight.detach(),
        [layer.last.weight[:, :, 0, 0].detach(), layer.first.weight[:, :, 0, 0].detach().t()],
    )
    expected = th.as_tensor(
        tl.tenalg.multi_mode_dot(core.numpy(), [f.numpy() for f in factors], modes=[0, 1])
    )
    th.testing.assert_close(layer.weight().detach(), expected)
    x = th.randn(2, 6, 9, 9, generator=generator)
    with th.no_grad():
        th.testing.assert_close(
            layer(x), F.conv2d(x, layer.weight(), conv.bias, stride=2, padding=1), rtol=1e-4, atol=1e-5
        )
    error = float((conv.weight.detach().double() - layer.weight().detach().double()).square().sum())
    lower = max(mode_dropped(conv.weight.detach(), 0, 5), mode_dropped(conv.weight.detach(), 1, 3))
    upper = mode_dropped(conv.weight.detach(), 0, 5) + mode_dropped(conv.weight.detach(), 1, 3)
    assert lower - 1e-6 <= error <= upper + 1e-6, (lower, error, upper)  # HOSVD's bounds hold for HOOI

    layers = check_factorised_cnn("tucker_decomposition", TuckerConv2d)
    assert [(m.out_rank, m.in_rank) for m in layers] == [(16, 1), (32, 16), (32, 32)]


def model_path():
    import tempfile
    from pathlib import Path

    return Path(tempfile.mkdtemp()) / "model.zip"


def test_tucker_decomposition_factorises_convolutions():
    check_tucker()


def test_the_tucker_proof_fails_on_factors_that_are_not_the_decomposition():
    def random_factors(weight, out_rank, in_rank):
        g = th.Generator().manual_seed(5)
        u_out = th.linalg.qr(th.randn(weight.shape[0], out_rank, generator=g))[0]
        u_in = th.linalg.qr(th.randn(weight.shape[1], in_rank, generator=g))[0]
        core = th.einsum("oihw,or,is->rshw", weight.detach(), u_out, u_in)
        return core, u_out, u_in

    assert_proof_fails_when(replaced(tucker, "tucker_factors", random_factors), check_tucker)


def test_the_tucker_proof_fails_when_layers_are_left_whole():
    assert_proof_fails_when(
        replaced(tucker.TuckerDecomposition, "replacement", keeps_every_layer), check_tucker
    )


def test_tucker_on_an_mlp_policy_is_refused():
    model = SurgicalPPO("MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32)
    with pytest.raises(rls.IncompatibleSurgeryError, match=r"tucker_decomposition: .*no Conv2d layer"):
        rls.operate(model, "tucker_decomposition")


def check_cp() -> None:
    generator = th.Generator().manual_seed(1)
    conv = th.nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding=(1, 2), dilation=(1, 2))
    with th.no_grad():
        conv.weight.copy_(th.randn(6, 4, 3, 5, generator=generator))
    surgery = cp.CPDecomposition(rank=6)
    layer = surgery.build(conv)
    surgery.decompose(conv, layer)
    weights, factors = cp.cp_factors(conv.weight, 6)  # tensorly's factors: λ, A, B, C, D
    kernel = th.as_tensor(tl.cp_to_tensor((weights.double().numpy(), [f.double().numpy() for f in factors])))
    th.testing.assert_close(layer.weight().detach().double(), kernel, rtol=1e-4, atol=1e-5)
    x = th.randn(2, 4, 11, 13, generator=generator)
    with th.no_grad():  # the four thin convolutions are the one convolution with the CP kernel
        expected = F.conv2d(x, kernel.float(), conv.bias, stride=(2, 1), padding=(1, 2), dilation=(1, 2))
        th.testing.assert_close(layer(x), expected, rtol=1e-4, atol=1e-4)
    assert layer.vertical.groups == layer.horizontal.groups == 6
    assert sum(p.numel() for p in layer.parameters()) == 6 * (4 + 3 + 5 + 6) + 6
    check_factorised_cnn("cp_decomposition:rank=4", CPConv2d)


def test_cp_decomposition_runs_the_kernel_as_four_thin_convolutions():
    check_cp()


def test_the_cp_proof_fails_when_the_rank_one_terms_are_mixed_up():
    real = CPConv2d.load_factors

    def mixed(self, weights, factors, bias):  # the vertical factors paired with the wrong terms
        a, b, c, d = factors
        real(self, weights, [a, b, c.roll(1, dims=1), d], bias)

    assert_proof_fails_when(replaced(CPConv2d, "load_factors", mixed), check_cp)


def test_the_cp_proof_fails_when_layers_are_left_whole():
    assert_proof_fails_when(replaced(cp.CPDecomposition, "replacement", keeps_every_layer), check_cp)


def reshuffled(weight: th.Tensor, out_factors, in_factors) -> th.Tensor:
    """W (out × in) as the (m₁n₁) × (m₂n₂) matrix whose SVD the d = 2 TT-SVD truncates."""
    (m1, m2), (n1, n2) = out_factors, in_factors
    return weight.reshape(m1, m2, n1, n2).permute(0, 2, 1, 3).reshape(m1 * n1, m2 * n2)


def check_tensor_train() -> None:
    generator = th.Generator().manual_seed(2)
    linear = th.nn.Linear(12, 8)
    with th.no_grad():
        linear.weight.copy_(th.randn(8, 12, generator=generator))
    for rank, exact in ((3, False), (100, True)):
        surgery = tensor_train.TensorTrain(rank=rank)
        layer = surgery.build(linear)
        surgery.decompose(linear, layer)
        assert (layer.out_factors, layer.in_factors) == ([4, 2], [4, 3])
        assert layer.ranks == [1, min(rank, 6), 1]  # the cut: 4·4 = 16 on one side, 2·3 = 6 on the other
        x = th.randn(5, 12, generator=generator)
        with th.no_grad():  # the core-by-core contraction is the product with the TT matrix
            th.testing.assert_close(layer(x), F.linear(x, layer.weight(), linear.bias), rtol=1e-4, atol=1e-5)
        error = th.linalg.matrix_norm(linear.weight.detach().double() - layer.weight().detach().double())
        singular = th.linalg.svdvals(reshuffled(linear.weight.detach().double(), [4, 2], [4, 3]))
        th.testing.assert_close(error, singular[rank:].square().sum().sqrt(), rtol=1e-4, atol=1e-5)
        if exact:
            assert float(error) < 1e-4
    model = SurgicalPPO(
        "MlpPolicy", "CartPole-v1", seed=0, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[64, 64])
    ).learn(64)
    obs = th.randn(16, 4, generator=generator)
    hidden = model.policy.mlp_extractor.policy_net[2]
    weight = hidden.weight.detach().clone()
    rls.operate(model, "tensor_train:rank=4")
    layer = model.policy.mlp_extractor.policy_net[2]
    assert isinstance(layer, TTLinear) and layer.ranks == [1, 4, 1]
    assert sum(p.numel() for p in layer.parameters()) == 8 * 8 * 4 * 2 + 64 < 64 * 64
    singular = th.linalg.svdvals(reshuffled(weight.double(), [8, 8], [8, 8]))
    error = th.linalg.matrix_norm(weight.double() - layer.weight().detach().double())
    th.testing.assert_close(error, singular[4:].square().sum().sqrt(), rtol=1e-4, atol=1e-5)
    model.learn(64)
    assert_reload_acts_alike(model, model_path(), obs)


def test_tensor_train_contracts_the_input_with_its_cores():
    check_tensor_train()


def test_the_tt_proof_fails_on_cores_of_another_matrix():
    real = tensor_train.tt_cores
    other = lambda weight, *args: real(th.randn_like(weight), *args)  # noqa: E731
    assert_proof_fails_when(replaced(tensor_train, "tt_cores", other), check_tensor_train)


def test_the_tt_proof_fails_when_the_forward_pass_reads_the_input_factors_backwards():
    real = TTLinear.forward

    def backwards(self, x):
        return real(self, x.reshape(-1, *self.in_factors).flip(1).reshape(x.shape))

    assert_proof_fails_when(replaced(TTLinear, "forward", backwards), check_tensor_train)


def test_balanced_factors_and_tt_ranks():
    from rlsurgery.lowrank.tensor_layers import tt_ranks

    assert tensor_train.balanced_factors(2, 2) == [2, 1]
    assert tt_ranks([16, 16], [16, 16], 8) == [1, 8, 1]
    assert tt_ranks([2, 1], [2, 2], 8) == [1, 2, 1]  # the cut has 1·2 = 2 on one side
    assert tt_ranks([4, 4, 4], [4, 4, 4], 100) == [1, 16, 16, 1]
