"""A vectorized sum tree: O(log N) proportional sampling and priority updates.

The tree is a flat array: node 1 is the root, node i has children 2i and 2i+1, and the
``capacity`` leaves sit at ``[size, size + capacity)`` where ``size`` is the next power of
two. Each internal node holds the sum of its children, so the root holds the total.
Updates and searches walk all query indices one level at a time with numpy, so a batch
costs O(B log N) numpy work in log N vectorized steps.

>>> tree = SumTree(4)
>>> tree.update(np.array([0, 1, 2, 3]), np.array([1.0, 2.0, 3.0, 4.0]))
>>> tree.total
10.0
>>> tree.find(np.array([0.5, 1.0, 2.99, 9.99])).tolist()  # prefix sums 1, 3, 6, 10
[0, 1, 1, 3]
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Sum tree over ``capacity`` non-negative leaf values.

    :param capacity: number of leaves
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._leaf0 = 1 << max(0, int(np.ceil(np.log2(self.capacity))))
        self._tree = np.zeros(2 * self._leaf0, dtype=np.float64)

    @property
    def total(self) -> float:
        """Sum of all leaves."""
        return float(self._tree[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        """Leaf values at ``indices``."""
        return self._tree[np.asarray(indices) + self._leaf0]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves ``indices`` to ``values`` (>= 0) and refresh their ancestors.

        With repeated indices the last value wins.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if np.any(values < 0) or not np.all(np.isfinite(values)):
            raise ValueError("sum-tree values must be finite and >= 0")
        if indices.size and (indices.min() < 0 or indices.max() >= self.capacity):
            raise IndexError(f"leaf index out of range [0, {self.capacity})")
        tree = self._tree
        nodes = indices + self._leaf0
        tree[nodes] = values
        # all leaves sit at the same depth, so their ancestors move up one level together;
        # a repeated parent is recomputed to the same sum, so duplicates need no unique()
        for _ in range(self._leaf0.bit_length() - 1):
            nodes = nodes >> 1
            left = nodes << 1
            tree[nodes] = tree[left] + tree[left + 1]

    def find(self, prefix: np.ndarray) -> np.ndarray:
        """Leaf index i with cumsum[i-1] <= prefix < cumsum[i], for each query value.

        Queries are clipped into [0, total); a search never ends on a zero-valued leaf
        when a positive one exists, whatever the floating-point round-off.
        """
        values = np.clip(np.asarray(prefix, dtype=np.float64).reshape(-1), 0.0, None)
        nodes = np.ones(values.shape, dtype=np.int64)
        tree = self._tree
        for _ in range(self._leaf0.bit_length() - 1):  # tree depth
            left = nodes << 1
            left_sum = tree[left]
            go_right = values >= left_sum
            values -= left_sum * go_right
            nodes = left + go_right
        leaves = nodes - self._leaf0
        # round-off can carry a query at the very end of the mass onto an empty leaf (one
        # past the stored data); those rare queries take the last positive leaf instead
        empty = tree[nodes] <= 0
        if empty.any():
            positive = np.flatnonzero(tree[self._leaf0 : self._leaf0 + self.capacity] > 0)
            if positive.size:
                before = np.searchsorted(positive, leaves[empty], side="right") - 1
                leaves[empty] = positive[np.maximum(before, 0)]
        return leaves
