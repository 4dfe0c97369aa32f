from __future__ import annotations

import numpy as np
import pytest

from rlsurgery.replay.sum_tree import SumTree


@pytest.mark.parametrize("capacity", [1, 5, 8, 1000])
def test_find_matches_brute_force_prefix_search(capacity):
    rng = np.random.default_rng(capacity)
    tree = SumTree(capacity)
    values = rng.uniform(0, 3, capacity) * (rng.uniform(size=capacity) > 0.3)
    values[0] = max(values[0], 0.1)
    tree.update(np.arange(capacity), values)
    assert tree.total == pytest.approx(values.sum())
    queries = rng.uniform(0, values.sum(), 500)
    expected = np.searchsorted(np.cumsum(values), queries, side="right")
    np.testing.assert_array_equal(tree.find(queries), expected)
    assert (values[tree.find(queries)] > 0).all()


def test_update_refreshes_sums_and_last_duplicate_wins():
    tree = SumTree(6)
    tree.update(np.arange(6), np.ones(6))
    tree.update(np.array([2, 2, 5]), np.array([10.0, 4.0, 0.0]))
    np.testing.assert_allclose(tree.get(np.arange(6)), [1, 1, 4, 1, 1, 0])
    assert tree.total == pytest.approx(8.0)


def test_edges_never_return_zero_leaves():
    tree = SumTree(10)
    tree.update(np.arange(3), np.array([1.0, 2.0, 3.0]))  # leaves 3..9 empty
    found = tree.find(np.array([0.0, 5.999999999, 6.0, 1e9]))
    assert found.tolist() == [0, 2, 2, 2]


def test_rejects_bad_input():
    tree = SumTree(4)
    with pytest.raises(ValueError):
        tree.update(np.array([0]), np.array([-1.0]))
    with pytest.raises(IndexError):
        tree.update(np.array([4]), np.array([1.0]))
    with pytest.raises(ValueError):
        SumTree(0)
