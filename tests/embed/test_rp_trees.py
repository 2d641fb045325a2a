"""Random-projection trees: the forest of NN-descent's start and the search tree of a landmark
index (dmotif.embed._rp_trees.rp_forest, search_tree, tree_leaves)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from dmotif.embed import _knn
from dmotif.embed._nndescent import nn_descent
from dmotif.embed._rp_trees import rp_forest, search_tree, tree_leaves

from .test_knn import _cloud, _recall
from .test_layout import _threads


def _leaves(order: np.ndarray, leaf_ptr: np.ndarray) -> list[np.ndarray]:
    """The leaves of one tree as arrays of rows."""
    n = order.shape[0]
    ends = leaf_ptr[: np.argmax(leaf_ptr == n) + 1]
    return [order[lo:hi] for lo, hi in itertools.pairwise(ends)]


@pytest.mark.parametrize("metric", ["euclidean", "correlation"])
def test_every_row_in_one_small_leaf_per_tree(metric):
    x = _cloud("blobs20", 3000)
    # 200 copies of one row and 100 constant rows: splits that cannot separate them fall back.
    x[:200] = x[200]
    x[-100:] = 1.0
    z = _knn._prepare(x, metric)
    order, leaf_ptr = rp_forest(z, 5, 25, np.uint64(4))
    assert order.shape == (5, 3000)
    for tree in range(5):
        leaves = _leaves(order[tree], leaf_ptr[tree])
        rows = np.concatenate(leaves)
        np.testing.assert_array_equal(np.sort(rows), np.arange(3000))
        sizes = np.array([leaf.size for leaf in leaves])
        assert sizes.min() >= 1 and sizes.max() <= 25
        # Splits roughly halve: far fewer leaves than a peel-one-off tree would make.
        assert len(leaves) < 3000 / 4


def test_trees_depend_on_seed_and_data_only():
    z = _knn._prepare(_cloud("blobs20", 4000), "correlation")
    one = _threads(1, rp_forest, z, 4, 30, np.uint64(9))
    two = _threads(2, rp_forest, z, 4, 30, np.uint64(9))
    for a, b in zip(one, two, strict=True):
        np.testing.assert_array_equal(a, b)
    # The trees differ from each other and from another seed's.
    other = rp_forest(z, 4, 30, np.uint64(10))
    assert (one[0] != other[0]).mean() > 0.5
    assert (one[0][0] != one[0][1]).mean() > 0.5


def test_leaves_never_mix_far_apart_blobs():
    # A bisecting plane between two points of one blob leaves the other blob whole on one side;
    # between points of different blobs it separates them.
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(0.0, 1.0, (1500, 8)), rng.normal(1000.0, 1.0, (900, 8))])
    truth = np.repeat([0, 1], (1500, 900))
    for seed in (0, 1, 2):
        order, leaf_ptr = rp_forest(x, 8, 20, np.uint64(seed))
        for tree in range(8):
            for leaf in _leaves(order[tree], leaf_ptr[tree]):
                assert np.unique(truth[leaf]).size == 1


def test_forest_start_finds_neighbours_before_any_iteration():
    x = _cloud("blobs20", 6000)
    z = _knn._prepare(x, "euclidean")
    exact, _ = _knn.exact_knn(x, 10, "euclidean")
    forest, _, _ = nn_descent(z, 9, False, 0, max_iter=0)
    random, _, _ = nn_descent(z, 9, False, 0, max_iter=0, n_trees=0)
    # The best 9 of 20 random rows hold ~20 / 6000 of the nearest (measured 0.003); the best
    # leaf-mates of 8 trees of 40 more than half of them (measured 0.56).
    assert _recall(random, exact[:, 1:]) < 0.01
    assert _recall(forest, exact[:, 1:]) > 0.45


@pytest.mark.parametrize("metric", ["euclidean", "correlation"])
def test_search_tree_sends_each_row_to_its_own_leaf(metric):
    # The recorded splits replay the build: descending the tree with a row it was built on
    # ends in the leaf that holds the row (no row of continuous data sits on a plane).
    z = _knn._prepare(_cloud("blobs20", 3000), metric)
    order, leaf_ptr, nodes = search_tree(z, 25, np.uint64(4))
    forest_order, forest_ptr = rp_forest(z, 1, 25, np.uint64(4))
    np.testing.assert_array_equal(order, forest_order[0])
    np.testing.assert_array_equal(leaf_ptr, forest_ptr[0])
    n_leaves = np.argmax(leaf_ptr == z.shape[0])
    assert nodes.shape == (n_leaves - 1, 4)
    leaf_of_position = np.repeat(np.arange(n_leaves), np.diff(leaf_ptr[: n_leaves + 1]))
    expected = np.empty(z.shape[0], dtype=np.int64)
    expected[order] = leaf_of_position
    np.testing.assert_array_equal(tree_leaves(z, z, nodes), expected)


def test_search_tree_of_one_leaf():
    z = _knn._prepare(_cloud("blobs20", 20), "euclidean")
    _, leaf_ptr, nodes = search_tree(z, 25, np.uint64(0))
    assert nodes.shape == (0, 4) and leaf_ptr[0] == 0 and leaf_ptr[1] == 20
    np.testing.assert_array_equal(tree_leaves(z[:3], z, nodes), [0, 0, 0])
