"""Tensor-train (TT-matrix) Linear layers (Novikov et al. 2015, https://arxiv.org/abs/1509.06569)::

    out = m₁ ⋯ m_d,  in = n₁ ⋯ n_d   (balanced factorisations, d = ``cores``)
    W[(m₁…m_d), (n₁…n_d)] ≈ G₁[:, m₁, n₁, :] ⋯ G_d[:, m_d, n_d, :],   G_k: r_{k−1} × m_k × n_k × r_k
    r_k = min(rank, Π_{j≤k} m_j n_j, Π_{j>k} m_j n_j)

The cores come from tensorly's ``tensor_train_matrix`` (TT-SVD), whose error is at most
√(Σ_k Σ_{i > r_k} σ_i(T_⟨k⟩)²) over the unfoldings T_⟨k⟩ of W reshaped to (m₁n₁, …, m_dn_d); with d = 2
it is a truncated SVD of that reshuffled matrix and the bound is an equality. A layer is replaced
where the cores hold fewer numbers than the matrix (Σ_k r_{k−1} m_k n_k r_k < in · out); its forward
pass contracts the input with one core at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import MAX_WIDTH, param
from rlsurgery.lowrank.factorization import LayerFactorization, as_array, as_tensor
from rlsurgery.lowrank.tensor_layers import TTLinear, tt_ranks


def balanced_factors(n: int, d: int) -> list[int]:
    """``d`` factors of ``n``, as equal as its prime factors allow, largest first (1s pad a prime).

    >>> balanced_factors(256, 2), balanced_factors(64, 3), balanced_factors(7, 2), balanced_factors(12, 2)
    ([16, 16], [4, 4, 4], [7, 1], [4, 3])
    """
    primes, rest, p = [], n, 2
    while rest > 1:
        while rest % p == 0:
            primes.append(p)
            rest //= p
        p += 1
    bins = [1] * d
    for prime in sorted(primes, reverse=True):
        bins[bins.index(min(bins))] *= prime
    return sorted(bins, reverse=True)


def tt_cores(weight, out_factors: list[int], in_factors: list[int], ranks: list[int]):  # noqa: ANN001, ANN201
    """The TT-matrix cores of ``weight`` (out × in) at ``ranks`` (tensorly's TT-SVD)."""
    from tensorly.decomposition import tensor_train_matrix

    tensor = as_array(weight).reshape(*out_factors, *in_factors)
    cores = tensor_train_matrix(tensor, rank=ranks).factors
    return [as_tensor(np.asarray(core), weight) for core in cores]


@dataclass
class TensorTrainParams:
    rank: int = param(8, "the largest TT-rank r_k", ge=1, le=MAX_WIDTH)
    cores: int = param(2, "d: cores per layer (the factors of in and out features)", ge=2, le=6)


@register(proof="tests/lowrank/test_tensor.py::test_tensor_train_contracts_the_input_with_its_cores")
class TensorTrain(LayerFactorization):
    """Replace each Linear by a TT-matrix layer of at most ``rank`` TT-rank (where that is smaller)."""

    key = "tensor_train"
    cost_note = (
        "each layer contracts the input with its cores one einsum at a time (reshapes between), "
        "several small kernels where a Linear is one GEMM"
    )
    Params = TensorTrainParams
    params: TensorTrainParams
    layer_type = nn.Linear
    replaces_what = "Linear layer"

    def build(self, module: nn.Linear) -> TTLinear:
        d = self.params.cores
        out_factors = balanced_factors(module.out_features, d)
        in_factors = balanced_factors(module.in_features, d)
        ranks = tt_ranks(out_factors, in_factors, self.params.rank)
        return TTLinear(out_factors, in_factors, ranks, bias=module.bias is not None)

    def decompose(self, module: nn.Linear, layer: TTLinear) -> None:
        cores = tt_cores(module.weight, layer.out_factors, layer.in_factors, layer.ranks)
        if [tuple(c.shape) for c in cores] != [tuple(c.shape) for c in layer.cores]:  # pragma: no cover
            raise RuntimeError(
                f"{self.key}: tensorly's cores {[c.shape for c in cores]} differ from the plan"
            )
        layer.load_factors(cores, module.bias)
