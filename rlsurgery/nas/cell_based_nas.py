"""Cell-based architecture: a small cell of chosen operations, repeated in place of the hidden layers.

Zoph, Vasudevan, Shlens & Le 2018, "Learning Transferable Architectures for Scalable Image
Recognition" (NASNet), https://arxiv.org/abs/1707.07012: search one small cell, then stack copies
of it. Every MLP of every network keeps its first hidden layer (the stem, width w) and gets
``repeats`` cells of width w after it, in place of its other hidden layers
(:mod:`rlsurgery.nets.cells`)::

    h_j = Σ_{i<j} o_ij(h_i),  cell(x) = 1/N Σ_j h_j,   o_ij ∈ {linear_relu, linear_tanh, linear_elu,
                                                              identity, zero}

``operations`` is the genotype, one operation per edge ((0→1), (0→2), (1→2), … for N = ``nodes``).
It is searched by ``rlsurgery tune`` (the space's ``architecture: cell`` gives one choice per
edge, so ``evolutionary_nas`` mutates one edge at a time) or found by ``darts`` / ``enas``, which
end with the same discrete cells.
"""

from __future__ import annotations

from dataclasses import dataclass

from stable_baselines3.common.base_class import BaseAlgorithm
from torch import nn

from rlsurgery.catalog import register
from rlsurgery.core.params import param
from rlsurgery.nets.cells import OPERATIONS, Cell, n_edges, replace_hidden_layers_with_cells
from rlsurgery.nets.mlp import MLPStack
from rlsurgery.nets.surgery import StructuralSurgery


@dataclass
class CellParams:
    operations: list[str] = param(
        ["linear_relu", "identity", "linear_relu"],
        f"the genotype: one operation per edge, N(N+1)/2 of {', '.join(OPERATIONS)}",
    )
    nodes: int = param(2, "N: nodes of the cell", ge=1, le=6)
    repeats: int = param(2, "cells stacked after the stem", ge=1, le=16)

    def check(self) -> None:
        """One known operation per edge."""
        unknown = [op for op in self.operations if op not in OPERATIONS]
        if unknown:
            raise ValueError(f"'operations': unknown {unknown} (known: {', '.join(OPERATIONS)})")
        if len(self.operations) != n_edges(self.nodes):
            raise ValueError(
                f"'operations' needs {n_edges(self.nodes)} entries for nodes={self.nodes} "
                f"(one per edge), got {len(self.operations)}"
            )


@register(proof="tests/nas/test_cells.py::test_the_cell_computes_its_genotype_and_repeats")
class CellBasedNAS(StructuralSurgery):
    """The hidden layers after the first become ``repeats`` copies of a cell of chosen operations."""

    key = "cell_based_nas"
    cost_note = "each cell runs one width×width product per linear edge (N(N+1)/2 edges)"
    Params = CellParams
    params: CellParams

    def apply(self, agent: BaseAlgorithm, replay: bool) -> None:
        p = self.params

        def to_cells(_net: nn.Module, stack: MLPStack) -> None:
            replace_hidden_layers_with_cells(stack, lambda w: Cell(w, p.operations, p.nodes), p.repeats)

        self.edit(agent, to_cells, copy_targets=True)  # the cells drawn once, for online and target
