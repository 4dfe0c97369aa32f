"""Cells: small graphs of candidate operations, repeated in place of an MLP's hidden layers.

A cell of width w with N nodes reads h_0 = x and computes, for j = 1 … N and one operation per
edge (i → j)::

    h_j = Σ_{i < j} o_{ij}(h_i)           cell(x) = 1/N Σ_j h_j             (N(N+1)/2 edges)

with o_{ij} one of :data:`OPERATIONS` (``linear_relu`` …, ``identity``, ``zero``). A discrete
:class:`Cell` has one operation per edge (its *genotype*, the edges in the order
(0→1), (0→2), (1→2), (0→3), …); a :class:`SearchCell` holds every candidate on every edge and an
architecture tensor α (edges × candidates) that it runs either

* softly: o_{ij}(h) = Σ_o softmax(α_{ij})_o · o(h)  (DARTS, Liu, Simonyan & Yang 2019), or
* sampled: o_{ij} = the candidate ``sampled[e]`` alone (ENAS's child networks, Pham et al. 2018).

:func:`discretize` turns a search cell into the discrete cell of its argmax operations (``zero``
left out, as DARTS derives its cells), keeping the chosen operations' trained weights.
:func:`replace_hidden_layers_with_cells` puts ``repeats`` cells after an MLP stack's first hidden
layer, in place of its other hidden layers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch as th
from torch import nn

from rlsurgery.nets.mlp import MLPStack, refill

#: the candidate operations of a cell edge (width w to width w)
OPERATIONS = ("linear_relu", "linear_tanh", "linear_elu", "identity", "zero")


class Zero(nn.Module):
    """The operation that cuts an edge: 0 · x."""

    def forward(self, x: th.Tensor) -> th.Tensor:
        return th.zeros_like(x)


def make_operation(name: str, width: int) -> nn.Module:
    """A fresh operation ``name`` of width ``width`` (one of :data:`OPERATIONS`)."""
    if name == "identity":
        return nn.Identity()
    if name == "zero":
        return Zero()
    activations = {"linear_relu": nn.ReLU, "linear_tanh": nn.Tanh, "linear_elu": nn.ELU}
    if name not in activations:
        raise ValueError(f"unknown cell operation {name!r} (known: {', '.join(OPERATIONS)})")
    return nn.Sequential(nn.Linear(width, width), activations[name]())


def n_edges(nodes: int) -> int:
    """N(N+1)/2, the edges of a cell of N nodes."""
    return nodes * (nodes + 1) // 2


def run_cell(x: th.Tensor, nodes: int, edge: Callable[[int, th.Tensor], th.Tensor]) -> th.Tensor:
    """1/N Σ_j h_j with h_j = Σ_{i<j} edge(e_ij, h_i), the edges numbered in order."""
    states, e = [x], 0
    for _ in range(nodes):
        total = None
        for h in list(states):
            out = edge(e, h)
            total = out if total is None else total + out
            e += 1
        states.append(total)
    return th.stack(states[1:]).mean(dim=0)


class Cell(nn.Module):
    """A discrete cell: one operation per edge.

    :param width: w
    :param genotype: the operation of each edge (N(N+1)/2 names)
    :param nodes: N
    :param operations: modules to use for the edges (a search cell's trained ones), else fresh ones
    """

    def __init__(
        self, width: int, genotype: Sequence[str], nodes: int, operations: Sequence[nn.Module] | None = None
    ) -> None:
        super().__init__()
        if len(genotype) != n_edges(nodes):
            raise ValueError(
                f"a cell of {nodes} nodes has {n_edges(nodes)} edges, got {len(genotype)} operations"
            )
        self.genotype = list(genotype)
        self.nodes = nodes
        self.edges = nn.ModuleList(operations or [make_operation(op, width) for op in genotype])

    def forward(self, x: th.Tensor) -> th.Tensor:
        return run_cell(x, self.nodes, lambda e, h: self.edges[e](h))

    def extra_repr(self) -> str:
        return f"genotype={self.genotype}"


class SearchCell(nn.Module):
    """Every candidate on every edge, with architecture weights α (edges × candidates).

    :param width: w
    :param nodes: N
    :param candidates: the candidate operations of every edge
    """

    def __init__(self, width: int, nodes: int, candidates: Sequence[str] = OPERATIONS) -> None:
        super().__init__()
        self.width, self.nodes, self.candidates = width, nodes, list(candidates)
        self.edges = nn.ModuleList(
            nn.ModuleList(make_operation(op, width) for op in self.candidates) for _ in range(n_edges(nodes))
        )
        self.alpha = nn.Parameter(th.zeros(n_edges(nodes), len(self.candidates)), requires_grad=False)
        """architecture weights (DARTS) or controller logits (ENAS); trained by their own step only"""
        self.register_buffer("child", th.full((n_edges(nodes),), -1, dtype=th.long))
        """ENAS: the candidate each edge runs (-1: the soft mixture); saved with the weights"""

    @property
    def sampled(self) -> list[int] | None:
        """The child's candidate per edge, or None (the soft mixture)."""
        child = self.child.tolist()
        return None if child[0] < 0 else child

    def set_child(self, choice: Sequence[int] | None) -> None:
        """Run only ``choice`` (a candidate per edge) from now on; None: the soft mixture."""
        self.child.copy_(th.as_tensor([-1] * len(self.child) if choice is None else list(choice)))

    def edge_weights(self) -> th.Tensor:
        """softmax(α) per edge, (edges, candidates)."""
        return th.softmax(self.alpha, dim=1)

    def forward(self, x: th.Tensor) -> th.Tensor:
        child = self.sampled
        if child is not None:
            return run_cell(x, self.nodes, lambda e, h: self.edges[e][child[e]](h))
        weights = self.edge_weights()
        return run_cell(
            x, self.nodes, lambda e, h: sum(weights[e, o] * op(h) for o, op in enumerate(self.edges[e]))
        )

    def extra_repr(self) -> str:
        return f"candidates={self.candidates}"


def argmax_genotype(cell: SearchCell) -> list[int]:
    """The candidate of largest α on each edge, ``zero`` left out (unless it is the only candidate)."""
    alpha = cell.alpha.detach().clone()
    if "zero" in cell.candidates and len(cell.candidates) > 1:
        alpha[:, cell.candidates.index("zero")] = float("-inf")
    return alpha.argmax(dim=1).tolist()


def discretize(cell: SearchCell, choice: Sequence[int] | None = None) -> Cell:
    """The discrete cell of ``choice`` (default: :func:`argmax_genotype`), with those operations' weights."""
    choice = list(argmax_genotype(cell) if choice is None else choice)
    genotype = [cell.candidates[c] for c in choice]
    return Cell(cell.width, genotype, cell.nodes, [cell.edges[e][c] for e, c in enumerate(choice)])


def search_cells(module: nn.Module) -> list[SearchCell]:
    """The search cells inside ``module``, in order."""
    return [m for m in module.modules() if isinstance(m, SearchCell)]


def replace_hidden_layers_with_cells(
    stack: MLPStack, make_cell: Callable[[int], nn.Module], repeats: int
) -> None:
    """Keep the stack's first hidden block (the stem, width w), drop its other hidden blocks, and put
    ``repeats`` cells ``make_cell(w)`` after the stem.

    :raises ValueError: the hidden widths differ (the cells keep w, and the readers read w)
    """
    widths = stack.widths
    if len(set(widths)) != 1:
        raise ValueError(f"cells keep the first hidden width; {stack.name or 'the MLP'} has widths {widths}")
    modules = list(stack.seq)
    stem_end = stack.hidden[0] + len(stack.block(0))
    tail_start = stack.hidden[-1] + len(stack.block(len(widths) - 1))
    cells = [make_cell(widths[0]) for _ in range(repeats)]
    refill(stack.seq, modules[:stem_end] + cells + modules[tail_start:])
