"""Structured sparsity patterns: N:M and blocks.

N:M (Mishra et al. 2021, https://arxiv.org/abs/2104.08378; Zhou et al. 2021)::

    along the input dimension, in every group of M consecutive weights keep the N of largest |w|
    and zero the other M − N (2:4 keeps two of every four: 50% sparsity; 1:4 keeps one: 75%)

Block sparsity (Gray et al. 2017, https://openai.com/research/block-sparse-gpu-kernels)::

    tile each weight matrix into r × c blocks; zero the fraction p of blocks of smallest ‖B‖₂

Both apply to Linear layers (a Conv2d is treated as its (out, in·kh·kw) matrix). A layer whose
input size is not a multiple of M, or whose shape is not a multiple of the block, is refused
before anything is masked, naming the layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch as th
from stable_baselines3.common.base_class import BaseAlgorithm

from rlsurgery.catalog import register
from rlsurgery.core.errors import IncompatibleSurgeryError
from rlsurgery.core.params import param
from rlsurgery.nets.masks import smallest_magnitude_masks
from rlsurgery.pruning.base import MaskSurgery


def n_m_mask(weight: th.Tensor, n: int, m: int) -> th.Tensor:
    """Keep the n largest |w| in each group of m consecutive inputs (rows of the weight matrix)."""
    matrix = weight.detach().reshape(weight.shape[0], -1)
    groups = matrix.abs().reshape(matrix.shape[0], -1, m)
    keep = th.zeros_like(groups)
    keep.scatter_(2, groups.topk(n, dim=2).indices, 1.0)
    return keep.reshape(weight.shape)


def block_mask(weight: th.Tensor, rows: int, cols: int, amount: float) -> th.Tensor:
    """Zero the fraction ``amount`` of (rows × cols) blocks of smallest L2 norm."""
    matrix = weight.detach().reshape(weight.shape[0], -1)
    r, c = matrix.shape[0] // rows, matrix.shape[1] // cols
    norms = matrix.reshape(r, rows, c, cols).pow(2).sum(dim=(1, 3)).sqrt()
    keep = smallest_magnitude_masks([norms], amount)[0]
    return keep.repeat_interleave(rows, 0).repeat_interleave(cols, 1).reshape(weight.shape)


@dataclass
class NMSparsityParams:
    n: int = param(2, "N: weights kept per group", ge=1)
    m: int = param(4, "M: group size along the input dimension", ge=2)
    include_output: bool = param(True, "also prune each network's output layer")

    def check(self) -> None:
        """N < M."""
        if self.n >= self.m:
            raise ValueError(f"'n' must be < 'm' (got {self.n}:{self.m})")


@register(proof="tests/pruning/test_pruning.py::test_n_m_sparsity_keeps_the_n_largest_of_every_m_inputs")
class NMSparsity(MaskSurgery):
    """N:M semi-structured sparsity along the input dimension (e.g. 2:4)."""

    key = "n_m_sparsity"
    cost_note = (
        "the mask product W ⊙ M before every forward pass (torch's pruning reparametrisation); "
        "dense kernels do the same work on the zeros"
    )
    Params = NMSparsityParams
    params: NMSparsityParams

    def layers(self, agent: BaseAlgorithm) -> list:
        layers = super().layers(agent)
        for name, layer in layers:
            fan_in = layer.weight[0].numel()
            if fan_in % self.params.m:
                raise IncompatibleSurgeryError(
                    f"{self.key}: layer {name} has {fan_in} inputs, not a multiple of m={self.params.m}"
                )
        return layers

    def masks(self, weights: list[th.Tensor]) -> list[th.Tensor]:
        return [n_m_mask(w, self.params.n, self.params.m) for w in weights]


@dataclass
class BlockSparsityParams:
    amount: float = param(0.5, "p: fraction of the blocks to zero (per layer)", ge=0.0, lt=1.0)
    block_rows: int = param(4, "block height (outputs)", ge=1)
    block_cols: int = param(4, "block width (inputs)", ge=1)
    include_output: bool = param(False, "also prune each network's output layer (often too small for blocks)")


@register(proof="tests/pruning/test_pruning.py::test_block_sparsity_zeroes_the_weakest_blocks")
class BlockSparsity(MaskSurgery):
    """Zero whole (r × c) blocks of each weight matrix, smallest norm first."""

    key = "block_sparsity"
    Params = BlockSparsityParams
    params: BlockSparsityParams

    def layers(self, agent: BaseAlgorithm) -> list:
        layers = super().layers(agent)
        p = self.params
        for name, layer in layers:
            rows, cols = layer.weight.shape[0], layer.weight[0].numel()
            if rows % p.block_rows or cols % p.block_cols:
                raise IncompatibleSurgeryError(
                    f"{self.key}: layer {name} is {rows}×{cols}, not a multiple of the "
                    f"{p.block_rows}×{p.block_cols} block"
                )
        return layers

    def masks(self, weights: list[th.Tensor]) -> list[th.Tensor]:
        p = self.params
        return [block_mask(w, p.block_rows, p.block_cols, p.amount) for w in weights]
