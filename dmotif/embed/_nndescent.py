"""NN-descent kNN graphs (Dong, Moses & Li 2011) in cached numba, independent of the thread count.

Pure numpy/numba (no dask, no xarray); the kernels are compiled with ``cache=True``, so a new
process loads them instead of compiling them. Rows arrive prepared by ``_knn._prepare``: the
distance is the squared euclidean one, or ``1 - dot`` for unit rows (cosine, correlation).

The start is a random-projection forest (:mod:`dmotif.embed._rp_trees`, as in pynndescent and
Annoy): each row's best leaf-mates over a few trees whose splits come from counter-based streams
of (seed, tree, tree node), topped up with random rows. The descent then works on the rows in
the first tree's leaf order, for cache locality, and the graph is mapped back at the end.

Every iteration is computed Jacobi-style: each node *pulls* candidates (its members and
theirs: neighbours and sampled reverse ones) from the previous iteration's graph and updates
only its own row, sorted by (distance, index). As in pynndescent, a node joins at most
``FRESH`` of its new members per iteration; the others stay new for a later one. A row is the
best k of the set of candidates seen, whatever the order they came in, and any random choice
comes from a counter-based stream of (seed, iteration, node), so the graph is bit-identical
for any number of numba threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._fr_kernels import _GOLDEN, _below, _mix, _stream
from ._nn_rows import push_neighbour, row_distance
from ._rp_trees import LEAF_SIZE, N_TREES, rp_forest

__all__ = ["FRESH", "MIN_WIDTH", "nn_descent", "reverse_edges", "search"]

#: Fewest neighbours kept per node while the graph is built: a sparse graph hides neighbours.
#: Recall of the 9 nearest on 20-D overlapping blobs (N = 20 000) converges to 0.91 with a
#: width of 9, 0.97 with 15, 0.99 with 20 (7 iterations, 1.3× the time of 15).
MIN_WIDTH = 20
#: Most new members of a node joined in one iteration (pynndescent's max_candidates). On 20-D
#: blobs (N = 50 000, correlation) joining all of them (up to 30) took 5 iterations of 0.30,
#: 0.29, 0.23, 0.09, 0.04 s; 15 take 7 of 0.13, 0.17, 0.17, 0.15, 0.08, 0.03, 0.02 s at the
#: same recall (0.9937, 0.9925 before); 12 take 8 at 0.991, 10 take 8 at 0.990 for no gain.
FRESH = 15

_NONE = np.iinfo(np.int64).max
_OLD = np.uint64(1) << np.uint64(63)


@njit(cache=True, parallel=True, nogil=True)
def _forest_start(z, k, angular, seed, order, leaf_ptr):
    """The k nearest of each node's leaf-mates over all trees, topped up with distinct random
    neighbours (not itself) from the node's stream where the leaves hold fewer than k.

    The leaves of one tree are measured in parallel, each pair once, its rows still in cache;
    a node sits in one leaf per tree, so only one task writes its row. A row keeps the best k
    of its candidates by (distance, index), whatever their order, so the start does not depend
    on threads.
    """
    n = z.shape[0]
    ind = np.full((n, k), _NONE, dtype=np.int64)
    dist = np.full((n, k), np.inf, dtype=np.float64)
    new = np.zeros((n, k), dtype=np.bool_)
    for tree in range(order.shape[0]):
        rows, ptr = order[tree], leaf_ptr[tree]
        for leaf in prange(np.searchsorted(ptr, n)):
            for p in range(ptr[leaf] + 1, ptr[leaf + 1]):
                a = rows[p]
                for q in range(ptr[leaf], p):
                    b = rows[q]
                    d = row_distance(z, a, z, b, angular)
                    push_neighbour(dist[a], ind[a], new[a], d, b)
                    push_neighbour(dist[b], ind[b], new[b], d, a)
    for v in prange(n):
        filled = 0
        while filled < k and ind[v, filled] != _NONE:
            filled += 1
        state = _stream(seed, 0, v)
        while filled < k:
            state += _GOLDEN
            w = _below(state, n)
            if w != v and push_neighbour(dist[v], ind[v], new[v],
                                         row_distance(z, v, z, w, angular), w):
                filled += 1
    return ind, dist, new


@njit(cache=True, nogil=True)
def _reverse_lists(ind: np.ndarray, new: np.ndarray):
    """All reverse edges in CSR form: ``src[ptr[u]:ptr[u + 1]]`` are the nodes with u in their
    row, in node order (so the lists do not depend on threads), ``src_new`` their flags."""
    n, k = ind.shape
    count = np.zeros(n + 1, dtype=np.int64)
    for v in range(n):
        for t in range(k):
            count[ind[v, t] + 1] += 1
    ptr = np.cumsum(count)
    src = np.empty(n * k, dtype=np.int64)
    src_new = np.empty(n * k, dtype=np.bool_)
    fill = ptr[:-1].copy()
    for v in range(n):
        for t in range(k):
            u = ind[v, t]
            src[fill[u]] = v
            src_new[fill[u]] = new[v, t]
            fill[u] += 1
    return ptr, src, src_new


@njit(cache=True, inline="always")
def _keep_smallest(keys: np.ndarray, pick: np.ndarray, key: np.uint64, item: np.int64) -> None:
    """Insert (key, item) into ``keys, pick``, sorted by key, if key is below the largest."""
    m = keys.shape[0]
    if m == 0 or key >= keys[m - 1]:
        return
    p = m - 1
    while p > 0 and keys[p - 1] > key:
        keys[p] = keys[p - 1]
        pick[p] = pick[p - 1]
        p -= 1
    keys[p] = key
    pick[p] = item


@njit(cache=True, parallel=True, nogil=True)
def reverse_edges(ind: np.ndarray, new: np.ndarray, cap: int, seed: np.uint64, it: int):
    """Reverse graph in CSR form, at most ``cap`` sources per node: new edges first, the rest
    by a random priority from the node's stream."""
    n = ind.shape[0]
    full_ptr, src, src_new = _reverse_lists(ind, new)
    ptr = np.zeros(n + 1, dtype=np.int64)
    for u in range(n):
        ptr[u + 1] = ptr[u] + min(full_ptr[u + 1] - full_ptr[u], cap)
    rev = np.empty(ptr[n], dtype=np.int64)
    rev_new = np.empty(ptr[n], dtype=np.bool_)
    for u in prange(n):
        lo, hi = full_ptr[u], full_ptr[u + 1]
        if hi - lo <= cap:
            rev[ptr[u] : ptr[u + 1]] = src[lo:hi]
            rev_new[ptr[u] : ptr[u + 1]] = src_new[lo:hi]
            continue
        # Keep the cap smallest keys (old edges carry the top bit).
        keys = np.full(cap, np.iinfo(np.uint64).max, dtype=np.uint64)
        pick = np.empty(cap, dtype=np.int64)
        base = _stream(seed, it, u)
        for e in range(lo, hi):
            key = _mix(base + np.uint64(src[e]) * _GOLDEN) >> np.uint64(1)
            if not src_new[e]:
                key |= _OLD
            _keep_smallest(keys, pick, key, e)
        for p in range(cap):
            rev[ptr[u] + p] = src[pick[p]]
            rev_new[ptr[u] + p] = src_new[pick[p]]
    return ptr, rev, rev_new


@njit(cache=True, inline="always")
def _member(ind, ptr, rev, u, a):
    """Member a of node u's neighbourhood: forward neighbours, then reverse ones."""
    k = ind.shape[1]
    if a < k:
        return ind[u, a]
    return rev[ptr[u] + a - k]


#: Nodes (or queries) per parallel task of a descent step or a search; each task reuses its
#: scratch arrays.
_NODE_BLOCK = 256
#: Slots of a query's table of rows met during a search (a query meets a few hundred).
_SEEN_SIZE = 2048


@njit(cache=True, parallel=True, nogil=True)
def _candidates(ind, new, fresh, cap, seed, it):
    """Each node's members joined in iteration ``it``: its neighbours and at most ``cap``
    reverse ones (new ones first), of which at most ``fresh`` new ones; the new ones left out
    wait, still new, for a later iteration.

    Both choices go by a random key from the stream of (seed, it, node), so they depend on the
    node's neighbourhood and the seed only. A neighbour that is also a reverse one counts
    once, new if either edge is. Returns ``members`` (N, span), ``count`` and ``n_fresh`` per
    node (the new members come first), and clears the flags of the neighbours taken as new:
    a flag means "not yet joined".
    """
    n, k = ind.shape
    rptr, src, src_new = _reverse_lists(ind, new)
    members = np.empty((n, k + cap), dtype=np.int64)
    count = np.empty(n, dtype=np.int64)
    n_fresh = np.empty(n, dtype=np.int64)
    top = np.uint64(np.iinfo(np.uint64).max)
    for block in prange((n + _NODE_BLOCK - 1) // _NODE_BLOCK):
        new_keys = np.empty(fresh, dtype=np.uint64)
        new_pick = np.empty(fresh, dtype=np.int64)
        rev_keys = np.empty(cap, dtype=np.uint64)
        rev_pick = np.empty(cap, dtype=np.int64)
        row_new = np.empty(k, dtype=np.bool_)
        for v in range(block * _NODE_BLOCK, min((block + 1) * _NODE_BLOCK, n)):
            rev_keys[:] = top
            new_keys[:] = top
            row_new[:] = new[v]
            base = _stream(seed, it, v)
            for e in range(rptr[v], rptr[v + 1]):
                t = 0
                while t < k and ind[v, t] != src[e]:
                    t += 1
                if t < k:
                    row_new[t] |= src_new[e]
                    continue
                # Old reverse edges carry the top bit: new ones are kept first.
                key = _mix(base + np.uint64(src[e]) * _GOLDEN) >> np.uint64(1)
                _keep_smallest(rev_keys, rev_pick, key if src_new[e] else key | _OLD, e)
            for t in range(k):
                if row_new[t]:
                    key = _mix(base + np.uint64(ind[v, t]) * _GOLDEN) >> np.uint64(1)
                    _keep_smallest(new_keys, new_pick, key, t)
            for q in range(cap):
                if rev_keys[q] < _OLD:
                    _keep_smallest(new_keys, new_pick, rev_keys[q], k + rev_pick[q] - rptr[v])
            c = 0
            for q in range(fresh):
                if new_keys[q] == top:
                    break
                members[v, c] = _member(ind, rptr, src, v, new_pick[q])
                if new_pick[q] < k:
                    new[v, new_pick[q]] = False
                c += 1
            n_fresh[v] = c
            for t in range(k):
                if not row_new[t]:
                    members[v, c] = ind[v, t]
                    c += 1
            for q in range(cap):
                if _OLD <= rev_keys[q] < top:
                    members[v, c] = src[rev_pick[q]]
                    c += 1
            count[v] = c
    return members, count, n_fresh


@njit(cache=True, inline="always")
def _first_visit(keys: np.ndarray, stamps: np.ndarray, w: np.int64, v: np.int64) -> bool:
    """Record w among node v's candidates; False if it was recorded already.

    Open addressing in a power-of-two table; an entry stamped with another node is empty, so
    the table is reused from node to node without clearing.
    """
    mask = np.uint64(keys.shape[0] - 1)
    h = (np.uint64(w) * _GOLDEN) >> np.uint64(40) & mask
    while stamps[h] == v:
        if keys[h] == w:
            return False
        h = (h + np.uint64(1)) & mask
    stamps[h] = v
    keys[h] = w
    return True


@njit(cache=True, parallel=True, nogil=True)
def _descent_step(z, angular, ind, dist, new, members, count, n_fresh, out_ind, out_dist, out_new):
    """One Jacobi iteration; returns the number of entries each row gained.

    Node v tries every member w of each member u of its own list (see :func:`_candidates`),
    and u itself, unless u is old to v and w old to u: such a pair was tried before. A
    candidate met along several paths, or already in v's row, is tried once or not at all.
    """
    n, k = ind.shape
    span = count.max()
    size = 1
    while size < 2 * (span * (span + 1) + k):
        size *= 2
    updates = np.zeros(n, dtype=np.int64)
    for block in prange((n + _NODE_BLOCK - 1) // _NODE_BLOCK):
        keys = np.empty(size, dtype=np.int64)
        stamps = np.full(size, -1, dtype=np.int64)
        for v in range(block * _NODE_BLOCK, min((block + 1) * _NODE_BLOCK, n)):
            rd, ri, rf = out_dist[v], out_ind[v], out_new[v]
            rd[:] = dist[v]
            ri[:] = ind[v]
            rf[:] = False
            # Neighbours already in the row would only be found again.
            _first_visit(keys, stamps, v, v)
            for t in range(k):
                _first_visit(keys, stamps, ri[t], v)
            for a in range(count[v]):
                u = members[v, a]
                fu = a < n_fresh[v]
                if fu and _first_visit(keys, stamps, u, v):
                    push_neighbour(rd, ri, rf, row_distance(z, v, z, u, angular), u)
                for b in range(count[u] if fu else n_fresh[u]):
                    w = members[u, b]
                    if _first_visit(keys, stamps, w, v):
                        push_neighbour(rd, ri, rf, row_distance(z, v, z, w, angular), w)
            # Entries kept from the old row keep their flags; both rows are sorted by
            # (distance, index), so the old ones come in the same order.
            s = 0
            for t in range(k):
                if rf[t]:
                    updates[v] += 1
                    continue
                while ind[v, s] != ri[t]:
                    s += 1
                rf[t] = new[v, s]
    return updates


@njit(cache=True, parallel=True, nogil=True)
def _unpermute(ind, dist, perm, k):
    """The best k of each row back in the original row and index order, sorted by (distance,
    original index): the permutation must not decide ties."""
    n, width = ind.shape
    out_ind = np.empty((n, k), dtype=np.int64)
    out_dist = np.empty((n, k), dtype=np.float64)
    for v in prange(n):
        rd = np.full(k, np.inf)
        ri = np.full(k, _NONE, dtype=np.int64)
        rf = np.empty(k, dtype=np.bool_)
        for t in range(width):
            push_neighbour(rd, ri, rf, dist[v, t], perm[ind[v, t]])
        out_ind[perm[v]] = ri
        out_dist[perm[v]] = rd
    return out_ind, out_dist


def nn_descent(
    z: np.ndarray,
    k: int,
    angular: bool,
    seed: int,
    *,
    delta: float = 0.001,
    max_iter: int = 30,
    n_trees: int = N_TREES,
    leaf_size: int = LEAF_SIZE,
) -> tuple[np.ndarray, np.ndarray, int]:
    """The k approximate nearest other rows of each row of ``z`` (itself excluded).

    Parameters
    ----------
    z : numpy.ndarray
        (N, D) float64 rows, N > k; unit rows if ``angular``.
    k : int
        Neighbours per row.
    angular : bool
        Distance ``1 - dot`` if True, else the squared euclidean distance.
    seed : int
        Seed of the random start, of the reverse-edge samples and of the new members joined
        in each iteration.
    delta : float, default 0.001
        Stop once an iteration changes fewer than ``delta * N * k`` entries.
    max_iter : int, default 30
        Stop after this many iterations in any case.
    n_trees : int, default N_TREES
        Random-projection trees of the start (:func:`rp_forest`); 0 starts from random
        neighbours alone.
    leaf_size : int, default LEAF_SIZE
        Most rows in a leaf of those trees.

    Returns
    -------
    (indices, distances, iterations)
        (N, k) int64 and float64, each row sorted by (distance, index), and the number of
        iterations run.
    """
    z = np.ascontiguousarray(z, dtype=np.float64)
    seed = np.uint64(seed)
    width = min(max(k, MIN_WIDTH), z.shape[0] - 1)
    # Half as many reverse as forward neighbours per node: nearly the same recall, half the work.
    cap = max(width // 2, 1)
    order, leaf_ptr = rp_forest(z, n_trees, leaf_size, seed)
    # The descent runs on the rows in the first tree's leaf order: neighbours then sit close in
    # memory, and its scattered reads hit the cache far more often at large N.
    perm = order[0].copy() if n_trees else np.arange(z.shape[0])
    rank = np.empty_like(perm)
    rank[perm] = np.arange(perm.size)
    z = z[perm]
    ind, dist, new = _forest_start(z, width, angular, seed, rank[order], leaf_ptr)
    del order, leaf_ptr, rank
    out_ind, out_dist, out_new = np.empty_like(ind), np.empty_like(dist), np.empty_like(new)
    it = 0
    while it < max_iter:
        it += 1
        members, count, n_fresh = _candidates(ind, new, FRESH, cap, seed, it)
        updates = _descent_step(
            z, angular, ind, dist, new, members, count, n_fresh, out_ind, out_dist, out_new
        )
        ind, out_ind = out_ind, ind
        dist, out_dist = out_dist, dist
        new, out_new = out_new, new
        if updates.sum() < delta * ind.size:
            break
    ind, dist = _unpermute(ind, dist, perm, k)
    return ind, dist, it


@njit(cache=True, parallel=True, nogil=True)
def search(
    q: np.ndarray,
    z: np.ndarray,
    ind: np.ndarray,
    ptr: np.ndarray,
    rev: np.ndarray,
    leaf_ptr: np.ndarray,
    leaf: np.ndarray,
    k: int,
    ef: int,
    angular: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The approximate k nearest rows of ``z`` for each row of ``q``, by beam search.

    The graph of ``z`` is its kNN graph ``ind`` plus the reverse edges ``ptr, rev`` (from
    :func:`reverse_edges`). Query p starts from the rows ``leaf_ptr[leaf[p]]:leaf_ptr[leaf[p]
    + 1]`` (its leaf of a :func:`search_tree` whose order the rows of ``z`` follow) and
    expands the nearest unexpanded node of its beam of ``ef`` until all are expanded. A
    query depends only on its own row, so the answer does not depend on batches or threads.
    Returns distances as ``nn_descent`` does, rows sorted by (distance, index).
    """
    m = q.shape[0]
    out_ind = np.empty((m, k), dtype=np.int64)
    out_dist = np.empty((m, k), dtype=np.float64)
    for block in prange((m + _NODE_BLOCK - 1) // _NODE_BLOCK):
        bd = np.empty(ef)
        bi = np.empty(ef, dtype=np.int64)
        # _push marks an entry as new: here, not yet expanded.
        todo = np.empty(ef, dtype=np.bool_)
        keys = np.empty(_SEEN_SIZE, dtype=np.int64)
        stamps = np.full(_SEEN_SIZE, -1, dtype=np.int64)
        for p in range(block * _NODE_BLOCK, min((block + 1) * _NODE_BLOCK, m)):
            bd[:] = np.inf
            bi[:] = _NONE
            todo[:] = False
            # A row met again would be refused by the beam: it was refused before, or is in
            # the beam, or was pushed out by nearer rows. Skipping it saves its distance.
            seen = 0
            for e in range(leaf_ptr[leaf[p]], leaf_ptr[leaf[p] + 1]):
                if _first_visit(keys, stamps, e, p):
                    seen += 1
                    push_neighbour(bd, bi, todo, row_distance(q, p, z, e, angular), e)
            a = 0
            while a < ef:
                if not todo[a]:
                    a += 1
                    continue
                todo[a] = False
                u = bi[a]
                for b in range(ind.shape[1] + ptr[u + 1] - ptr[u]):
                    w = _member(ind, ptr, rev, u, b)
                    # A full table would probe forever: past half of it, rows are not recorded.
                    if seen < _SEEN_SIZE // 2:
                        if not _first_visit(keys, stamps, w, p):
                            continue
                        seen += 1
                    push_neighbour(bd, bi, todo, row_distance(q, p, z, w, angular), w)
                # A nearer node may have entered the beam ahead of position a.
                a = 0
            out_ind[p] = bi[:k]
            out_dist[p] = bd[:k]
    return out_ind, out_dist
