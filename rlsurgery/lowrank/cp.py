"""CP decomposition of convolutions: each Conv2d kernel W (out × in × k_h × k_w) replaced by a sum of R
rank-one tensors, run as four thin convolutions (Lebedev et al. 2015, https://arxiv.org/abs/1412.6553)::

    W ≈ Σ_{r=1}^{R} λ_r · a_r ∘ b_r ∘ c_r ∘ d_r,   a_r ∈ ℝ^out, b_r ∈ ℝ^in, c_r ∈ ℝ^{k_h}, d_r ∈ ℝ^{k_w}
    conv(x; W) = conv₁ₓ₁(dw_{1×k_w}(dw_{k_h×1}(conv₁ₓ₁(x; Bᵀ); C); D); A·diag λ)

The factors come from tensorly's ``parafac`` (alternating least squares from an SVD start; the
terms beyond a mode's size start random, from a fixed seed, so the result is reproducible). A layer
is factorised where R·(in + k_h + k_w + out) < in·out·k_h·k_w; for CnnPolicy networks. CP fits are
approximate and, at low rank, often poor: fine-tune after it (Lebedev et al. fine-tune the whole
network). An MLP-only policy has no Conv2d and is refused.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import MAX_WIDTH, param
from rlsurgery.lowrank.factorization import LayerFactorization, as_array, as_tensor
from rlsurgery.lowrank.tensor_layers import CPConv2d, factorisable_conv


def cp_factors(weight, rank: int):  # noqa: ANN001, ANN201 (tensors)
    """(λ, [A, B, C, D]) of the rank-R CP decomposition of ``weight`` (tensorly's ALS)."""
    from tensorly.decomposition import parafac

    with warnings.catch_warnings():  # tensorly says when a rank exceeds a small mode's size (a 3 × 3 kernel)
        warnings.simplefilter("ignore", UserWarning)
        decomposition = parafac(
            as_array(weight), rank=rank, init="svd", n_iter_max=200, tol=1e-10, random_state=0
        )
    return as_tensor(decomposition.weights, weight), [as_tensor(f, weight) for f in decomposition.factors]


@dataclass
class CPParams:
    rank: int = param(8, "R: rank-one terms per kernel", ge=1, le=MAX_WIDTH)


@register(
    proof="tests/lowrank/test_tensor.py::test_cp_decomposition_runs_the_kernel_as_four_thin_convolutions"
)
class CPDecomposition(LayerFactorization):
    """Replace each Conv2d by the four thin convolutions of its rank-R CP decomposition."""

    key = "cp_decomposition"
    cost_note = (
        "four thin convolutions (two depthwise) where there was one, whose launch cost dominates on "
        "small images, and tensorly's ALS at insertion"
    )
    Params = CPParams
    params: CPParams
    layer_type = nn.Conv2d
    replaces_what = "Conv2d layer"

    def build(self, module: nn.Conv2d) -> CPConv2d | None:
        return CPConv2d(module, self.params.rank) if factorisable_conv(module) else None

    def decompose(self, module: nn.Conv2d, layer: CPConv2d) -> None:
        weights, factors = cp_factors(module.weight, layer.rank)
        layer.load_factors(weights, factors, module.bias)
