"""Tucker decomposition of convolutions: each Conv2d kernel W (out × in × k_h × k_w) replaced by its
Tucker-2 factorisation along the channel modes (Kim et al. 2016, https://arxiv.org/abs/1511.06530)::

    W ≈ G ×₀ U_out ×₁ U_in,   G: R_out × R_in × k_h × k_w,  U_out: out × R_out,  U_in: in × R_in
    R_out = ⌈ratio · out⌉,  R_in = ⌈ratio · in⌉
    conv(x; W) = conv₁ₓ₁(conv_k(conv₁ₓ₁(x; U_inᵀ); G); U_out)

The factors come from tensorly's ``partial_tucker`` (HOOI started from the HOSVD), whose error is at
most the HOSVD's: ‖W − Ŵ‖² ≤ Σ_{n ∈ {out, in}} Σ_{i > R_n} σ_i(W_(n))², the dropped singular values of
the mode-n unfoldings. A layer is factorised where the three convolutions hold fewer weights than
the one (in·R_in + R_in·R_out·k_h·k_w + R_out·out < in·out·k_h·k_w); for CnnPolicy networks (NatureCNN,
e.g. on MinAtar). An MLP-only policy has no Conv2d and is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.lowrank.factorization import LayerFactorization, as_array, as_tensor
from rlsurgery.lowrank.tensor_layers import TuckerConv2d, factorisable_conv


def tucker_factors(weight, out_rank: int, in_rank: int):  # noqa: ANN001, ANN201 (tensors)
    """(G, U_out, U_in) of the Tucker-2 decomposition of ``weight`` along modes 0 and 1 (tensorly)."""
    from tensorly.decomposition import partial_tucker

    (core, (u_out, u_in)), _errors = partial_tucker(
        as_array(weight), rank=[out_rank, in_rank], modes=[0, 1], init="svd", n_iter_max=100, tol=1e-8
    )
    return as_tensor(core, weight), as_tensor(u_out, weight), as_tensor(u_in, weight)


def channel_rank(ratio: float, channels: int) -> int:
    return max(1, min(channels, math.ceil(ratio * channels)))


@dataclass
class TuckerParams:
    ratio: float = param(0.5, "R = ⌈ratio · channels⌉ for the output and the input channels", gt=0.0, le=1.0)


@register(proof="tests/lowrank/test_tensor.py::test_tucker_decomposition_factorises_convolutions")
class TuckerDecomposition(LayerFactorization):
    """Replace each Conv2d by the three convolutions of its Tucker-2 decomposition (channel ranks)."""

    key = "tucker_decomposition"
    cost_note = (
        "three convolutions where there was one (small ones: on small images their launch cost, not "
        "their arithmetic, dominates), and tensorly's HOOI at insertion"
    )
    Params = TuckerParams
    params: TuckerParams
    layer_type = nn.Conv2d
    replaces_what = "Conv2d layer"

    def build(self, module: nn.Conv2d) -> TuckerConv2d | None:
        if not factorisable_conv(module):
            return None
        ratio = self.params.ratio
        return TuckerConv2d(
            module, channel_rank(ratio, module.out_channels), channel_rank(ratio, module.in_channels)
        )

    def decompose(self, module: nn.Conv2d, layer: TuckerConv2d) -> None:
        core, u_out, u_in = tucker_factors(module.weight, layer.out_rank, layer.in_rank)
        layer.load_factors(core, u_out, u_in, module.bias)
