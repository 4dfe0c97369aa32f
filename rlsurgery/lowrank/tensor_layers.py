"""The factorised layers the tensor-decomposition surgeries put in place of Conv2d and Linear layers.

Each computes exactly what the original layer would with the decomposition's reconstructed weight
(:meth:`weight`), but through the factors, so it holds and multiplies fewer numbers:

* ``TuckerConv2d``: W = G ×₀ U_out ×₁ U_in (Tucker-2), run as a 1×1 conv (U_inᵀ), a k_h×k_w conv
  (G) and a 1×1 conv (U_out);
* ``CPConv2d``: W = Σ_r λ_r a_r ∘ b_r ∘ c_r ∘ d_r (CP), run as a 1×1 conv, a k_h×1 and a 1×k_w
  depthwise conv and a 1×1 conv;
* ``TTLinear``: W[(m₁…m_d), (n₁…n_d)] = G₁[m₁, n₁] ⋯ G_d[m_d, n_d] (a TT-matrix), the input
  contracted with one core at a time.

The factors are trainable parameters, so training goes on in the factorised form. The layers are
built at their shapes with zero factors; the surgeries load the factors a decomposition found
(``load_factors``), or ``load`` the saved state.
"""

from __future__ import annotations

import math

import torch as th
from torch import nn


def _conv_geometry(conv: nn.Conv2d) -> dict:
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError("only ungrouped, zero-padded convolutions with numeric padding are factorised")
    return dict(stride=conv.stride, padding=conv.padding, dilation=conv.dilation)


def factorisable_conv(conv: nn.Conv2d) -> bool:
    """Can the tensor layers stand in for ``conv`` (ungrouped, zero padding given as numbers)?"""
    return conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)


class TuckerConv2d(nn.Module):
    """A Conv2d with a Tucker-2 kernel W[o,i,h,w] = Σ_{r,s} G[r,s,h,w] U_out[o,r] U_in[i,s]
    (Kim et al. 2016, https://arxiv.org/abs/1511.06530): x ↦ last(core(first(x))).

    ``first``: 1×1, in → ``in_rank`` (U_inᵀ); ``core``: the kernel size, stride, padding and dilation
    of the original, ``in_rank`` → ``out_rank`` (G); ``last``: 1×1, ``out_rank`` → out (U_out, and
    the original's bias).
    """

    def __init__(self, conv: nn.Conv2d, out_rank: int, in_rank: int) -> None:
        super().__init__()
        geometry = _conv_geometry(conv)
        self.out_rank, self.in_rank = out_rank, in_rank
        self.first = nn.Conv2d(conv.in_channels, in_rank, 1, bias=False)
        self.core = nn.Conv2d(in_rank, out_rank, conv.kernel_size, bias=False, **geometry)
        self.last = nn.Conv2d(out_rank, conv.out_channels, 1, bias=conv.bias is not None)
        for part in (self.first, self.core, self.last):
            nn.init.zeros_(part.weight)

    @th.no_grad()
    def load_factors(
        self, core: th.Tensor, out_factor: th.Tensor, in_factor: th.Tensor, bias: th.Tensor | None
    ) -> None:
        """G (out_rank, in_rank, k_h, k_w), U_out (out, out_rank), U_in (in, in_rank), the bias."""
        self.first.weight.copy_(in_factor.t()[:, :, None, None])
        self.core.weight.copy_(core)
        self.last.weight.copy_(out_factor[:, :, None, None])
        if bias is not None:
            self.last.bias.copy_(bias)

    def weight(self) -> th.Tensor:
        """The kernel the factors stand for."""
        u_in, u_out = self.first.weight[:, :, 0, 0], self.last.weight[:, :, 0, 0]
        return th.einsum("or,rshw,si->oihw", u_out, self.core.weight, u_in)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.last(self.core(self.first(x)))


class CPConv2d(nn.Module):
    """A Conv2d with a rank-R CP kernel W[o,i,h,w] = Σ_r λ_r A[o,r] B[i,r] C[h,r] D[w,r]
    (Lebedev et al. 2015, https://arxiv.org/abs/1412.6553): four thin convolutions.

    ``first``: 1×1, in → R (Bᵀ); ``vertical``: k_h×1 depthwise (C, the original's vertical stride,
    padding and dilation); ``horizontal``: 1×k_w depthwise (D, the horizontal ones); ``last``: 1×1,
    R → out (A·diag λ, and the original's bias). With zero padding, the separable kernel's two passes
    equal the one 2-D pass exactly.
    """

    def __init__(self, conv: nn.Conv2d, rank: int) -> None:
        super().__init__()
        geometry = _conv_geometry(conv)
        (kh, kw), (sh, sw) = conv.kernel_size, geometry["stride"]
        (ph, pw), (dh, dw) = geometry["padding"], geometry["dilation"]
        self.rank = rank
        self.first = nn.Conv2d(conv.in_channels, rank, 1, bias=False)
        self.vertical = nn.Conv2d(
            rank, rank, (kh, 1), stride=(sh, 1), padding=(ph, 0), dilation=(dh, 1), groups=rank, bias=False
        )
        self.horizontal = nn.Conv2d(
            rank, rank, (1, kw), stride=(1, sw), padding=(0, pw), dilation=(1, dw), groups=rank, bias=False
        )
        self.last = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)
        for part in (self.first, self.vertical, self.horizontal, self.last):
            nn.init.zeros_(part.weight)

    @th.no_grad()
    def load_factors(self, weights: th.Tensor, factors: list[th.Tensor], bias: th.Tensor | None) -> None:
        """λ (R,) and the factors A (out, R), B (in, R), C (k_h, R), D (k_w, R), the bias."""
        a, b, c, d = factors
        self.first.weight.copy_(b.t()[:, :, None, None])
        self.vertical.weight.copy_(c.t()[:, None, :, None])
        self.horizontal.weight.copy_(d.t()[:, None, None, :])
        self.last.weight.copy_((a * weights)[:, :, None, None])
        if bias is not None:
            self.last.bias.copy_(bias)

    def weight(self) -> th.Tensor:
        """The kernel the factors stand for."""
        b, a = self.first.weight[:, :, 0, 0].t(), self.last.weight[:, :, 0, 0]
        c, d = self.vertical.weight[:, 0, :, 0].t(), self.horizontal.weight[:, 0, 0, :].t()
        return th.einsum("or,ir,hr,wr->oihw", a, b, c, d)

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.last(self.horizontal(self.vertical(self.first(x))))


def tt_ranks(out_factors: list[int], in_factors: list[int], rank: int) -> list[int]:
    """TT-ranks [1, r₁, …, r_{d−1}, 1], each the smaller of ``rank`` and the most the unfolding at
    that cut can have: min(Π_{j≤k} m_j n_j, Π_{j>k} m_j n_j)."""
    sizes = [m * n for m, n in zip(out_factors, in_factors)]
    cuts = [min(rank, math.prod(sizes[: k + 1]), math.prod(sizes[k + 1 :])) for k in range(len(sizes) - 1)]
    return [1, *cuts, 1]


class TTLinear(nn.Module):
    """A Linear whose (out × in) matrix is a TT-matrix (Novikov et al. 2015,
    https://arxiv.org/abs/1509.06569): with out = Π m_k and in = Π n_k,

        W[(m₁…m_d), (n₁…n_d)] = G₁[:, m₁, n₁, :] · G₂[:, m₂, n₂, :] ⋯ G_d[:, m_d, n_d, :]

    (cores G_k of shape r_{k−1} × m_k × n_k × r_k, r₀ = r_d = 1). The forward pass contracts the
    input, reshaped to (batch, n₁, …, n_d), with one core at a time: Σ_k r_{k−1} m_k n_k r_k numbers,
    never the full matrix.
    """

    def __init__(self, out_factors: list[int], in_factors: list[int], ranks: list[int], bias: bool) -> None:
        super().__init__()
        self.out_factors, self.in_factors, self.ranks = list(out_factors), list(in_factors), list(ranks)
        self.in_features, self.out_features = math.prod(in_factors), math.prod(out_factors)
        self.cores = nn.ParameterList(
            nn.Parameter(th.zeros(ranks[k], m, n, ranks[k + 1]))
            for k, (m, n) in enumerate(zip(out_factors, in_factors))
        )
        self.bias = nn.Parameter(th.zeros(self.out_features)) if bias else None

    @th.no_grad()
    def load_factors(self, cores: list[th.Tensor], bias: th.Tensor | None) -> None:
        for mine, core in zip(self.cores, cores):
            mine.copy_(core)
        if bias is not None:
            self.bias.copy_(bias)

    def weight(self) -> th.Tensor:
        """The (out × in) matrix the cores stand for."""
        full = self.cores[0]  # (1, m₁, n₁, r₁) → (M, N, r)
        full = full.reshape(full.shape[1], full.shape[2], full.shape[3])
        for core in self.cores[1:]:
            full = th.einsum("MNr,rmns->MmNns", full, core)
            big_m, m, big_n, n, s = full.shape
            full = full.reshape(big_m * m, big_n * n, s)
        return full[..., 0]

    def forward(self, x: th.Tensor) -> th.Tensor:
        batch = x.shape[:-1]
        # t: (B, M done, r, n_k, rest of the n's)
        t = x.reshape(-1, 1, 1, self.in_factors[0], self.in_features // self.in_factors[0])
        for k, core in enumerate(self.cores):
            t = th.einsum("bMrnR,rmns->bMmsR", t, core)
            b, big_m, m, s, rest = t.shape
            if k + 1 < len(self.cores):
                n = self.in_factors[k + 1]
                t = t.reshape(b, big_m * m, s, n, rest // n)
            else:
                t = t.reshape(b, big_m * m)
        y = t if self.bias is None else t + self.bias
        return y.reshape(*batch, self.out_features)
