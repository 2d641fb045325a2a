"""Random-projection trees (as in pynndescent and Annoy) in cached numba, thread-count free.

Each tree splits a node by a random bisecting hyperplane between two of its rows; every
random choice comes from a counter-based stream of (seed, tree, tree node), so a tree's shape
depends only on the seed and the data, whatever thread builds it. :func:`rp_forest` gives the
start of NN-descent (:mod:`dmotif.embed._nndescent`); :func:`search_tree` and
:func:`tree_leaves` give queries a leaf to start from.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._fr_kernels import _GOLDEN, _below, _mix, _stream
from ._nn_rows import row_distance

__all__ = ["LEAF_SIZE", "N_TREES", "rp_forest", "search_tree", "tree_leaves"]

#: Random-projection trees of the start, and the most rows in one of their leaves. On 20-D
#: blobs (N = 50 000, correlation) 8 trees of 40 find 0.39 of the 9 nearest before any
#: iteration (4 of 30: 0.20, 12 of 40: 0.53); NN-descent then stops after 5 iterations, not 7,
#: the first ones cheaper, at the same recall (a width of 15 converges to 0.97 from any start).
N_TREES = 8
LEAF_SIZE = 40

#: Offset of the trees' epochs in the counter-based streams, clear of the descent's iterations.
_TREE_EPOCH = 1 << 40
#: Members of a node drawn to choose its split: the farthest two define the plane. A node that
#: holds parts of two far-apart clusters is cut between them unless all fall in one (two draws
#: alone mixed 3 leaves in 800 trees over two far blobs, 8 draws none).
_SPLIT_SAMPLE = 8


@njit(cache=True, inline="always")
def _split(z, order, scratch, lo, hi, state):
    """Partition ``order[lo:hi]`` by a random bisecting hyperplane; return (cut, a, b).

    The farthest two a, b of a few members drawn from ``state`` define the plane of the points
    equidistant from them: ``margin = z·(za − zb) − (|za|² − |zb|²)/2``, positive on a's side
    (unit rows included). A point on the plane (duplicates of a and b put every point there)
    takes the side of its own random bit; a split that still leaves a side empty cuts at the
    middle. Each side keeps its members' order, so the partition depends only on its input.
    """
    size = hi - lo
    a = b = order[lo]
    far = -1.0
    for i in range(1, _SPLIT_SAMPLE):
        ci = order[lo + _below(state + np.uint64(i) * _GOLDEN, size)]
        for j in range(i):
            cj = order[lo + _below(state + np.uint64(j) * _GOLDEN, size)]
            d = row_distance(z, ci, z, cj, False)
            if d > far:
                far = d
                a, b = ci, cj
    offset = 0.0
    for t in range(z.shape[1]):
        offset += 0.5 * (z[a, t] * z[a, t] - z[b, t] * z[b, t])
    left = lo
    right = hi
    for p in range(lo, hi):
        v = order[p]
        margin = -offset
        for t in range(z.shape[1]):
            margin += z[v, t] * (z[a, t] - z[b, t])
        if margin == 0.0:
            margin = np.float64(_mix(~state + np.uint64(v) * _GOLDEN) >> np.uint64(63)) - 0.5
        # Left members fill scratch from the front, right ones from the back (reversed).
        if margin > 0.0:
            scratch[left] = v
            left += 1
        else:
            right -= 1
            scratch[right] = v
    if left in (lo, hi):
        return lo + size // 2, a, b
    order[lo:left] = scratch[lo:left]
    order[left:hi] = scratch[left:hi][::-1]
    return left, a, b


@njit(cache=True, nogil=True)
def _grow_tree(z, rows, leaf_ptr, leaf_size, seed, tree, nodes):
    """Grow tree ``tree`` over the rows of ``z`` into ``rows`` and ``leaf_ptr`` (see rp_forest).

    When ``nodes`` has rows, internal node t (in order of creation, the root first) is
    recorded as ``nodes[t] = (a, b, left, right)``: the rows whose bisector splits it and its
    children, a child leaf l written as ``-(l + 1)``. Returns the number of internal nodes.
    """
    n = z.shape[0]
    rows[:] = np.arange(n)
    scratch = np.empty(n, dtype=np.int64)
    record = nodes.shape[0] > 0
    # Depth first, left child first: leaves come out in order of position. The third column
    # is where the node hangs: 2 * parent + side, -1 for the root.
    stack = np.empty((n, 3), dtype=np.int64)
    stack[0, 0], stack[0, 1], stack[0, 2] = 0, n, -1
    top = 1
    leaves = 0
    n_nodes = 0
    while top > 0:
        top -= 1
        lo, hi, slot = stack[top, 0], stack[top, 1], stack[top, 2]
        if hi - lo <= leaf_size:
            leaf_ptr[leaves] = lo
            if record and slot >= 0:
                nodes[slot // 2, 2 + slot % 2] = -(leaves + 1)
            leaves += 1
            continue
        state = _stream(seed, _TREE_EPOCH + tree, lo * (n + 1) + hi)
        cut, a, b = _split(z, rows, scratch, lo, hi, state)
        if record:
            nodes[n_nodes, 0], nodes[n_nodes, 1] = a, b
            if slot >= 0:
                nodes[slot // 2, 2 + slot % 2] = n_nodes
        stack[top, 0], stack[top, 1], stack[top, 2] = cut, hi, 2 * n_nodes + 1
        stack[top + 1, 0], stack[top + 1, 1], stack[top + 1, 2] = lo, cut, 2 * n_nodes
        top += 2
        n_nodes += 1
    return n_nodes


@njit(cache=True, parallel=True, nogil=True)
def rp_forest(z: np.ndarray, n_trees: int, leaf_size: int, seed: np.uint64):
    """Random-projection trees over the rows of ``z``, each row in one leaf of ≤ ``leaf_size``.

    Tree t splits a node holding ``order[lo:hi]`` (see :func:`_split`) with the stream of
    (seed, tree t, node id ``lo * (N + 1) + hi``), so its shape depends only on the seed and
    the data, whatever thread builds it. Returns ``order`` (T, N), each tree's rows leaf by
    leaf, and ``leaf_ptr`` (T, N + 1): leaf l of tree t is ``order[t, leaf_ptr[t, l]:
    leaf_ptr[t, l + 1]]``, and past the last leaf the entries are N.
    """
    n = z.shape[0]
    order = np.empty((n_trees, n), dtype=np.int64)
    leaf_ptr = np.full((n_trees, n + 1), n, dtype=np.int64)
    no_nodes = np.empty((0, 4), dtype=np.int64)
    for tree in prange(n_trees):
        _grow_tree(z, order[tree], leaf_ptr[tree], leaf_size, seed, tree, no_nodes)
    return order, leaf_ptr


@njit(cache=True, nogil=True)
def search_tree(z: np.ndarray, leaf_size: int, seed: np.uint64):
    """One tree of :func:`rp_forest` (its tree 0) that queries can descend (:func:`tree_leaves`).

    Returns ``order`` (N,) and ``leaf_ptr`` (N + 1,) as one tree of ``rp_forest``, and
    ``nodes`` (internal nodes, 4): the split rows and children of each internal node.
    """
    n = z.shape[0]
    order = np.empty(n, dtype=np.int64)
    leaf_ptr = np.full(n + 1, n, dtype=np.int64)
    nodes = np.full((max(n, 1), 4), -1, dtype=np.int64)
    n_nodes = _grow_tree(z, order, leaf_ptr, leaf_size, seed, 0, nodes)
    return order, leaf_ptr, nodes[:n_nodes].copy()


@njit(cache=True, parallel=True, nogil=True)
def tree_leaves(q: np.ndarray, z: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """The leaf of the :func:`search_tree` (``nodes`` over the rows of ``z``) of each row of q.

    A query on a splitting plane goes right (the side the build gives a row with margin ≤ 0
    but for its random bit).
    """
    m = q.shape[0]
    out = np.empty(m, dtype=np.int64)
    for p in prange(m):
        node = 0 if nodes.shape[0] > 0 else -1
        while node >= 0:
            a, b = nodes[node, 0], nodes[node, 1]
            margin = 0.0
            for t in range(z.shape[1]):
                margin += (q[p, t] - 0.5 * (z[a, t] + z[b, t])) * (z[a, t] - z[b, t])
            node = nodes[node, 2] if margin > 0.0 else nodes[node, 3]
        out[p] = -node - 1
    return out
