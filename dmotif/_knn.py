"""k-nearest-neighbour graphs and their UMAP-style fuzzy weights (numpy / scipy.sparse).

Exact kNN by blocked matrix products below a size threshold, pynndescent above it. pynndescent
is run on one numba thread: its parallel graph updates depend on the thread count, its serial
run does not, and the build is a small share of a layout's time.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ._fr_kernels import fuzzy_weights

__all__ = [
    "EXACT_MAX",
    "METRICS",
    "drop_self",
    "exact_knn",
    "fuzzy_graph",
    "landmark_index",
    "membership",
    "query_index",
]

#: Largest number of points for which the kNN is computed exactly.
EXACT_MAX = 12_000
METRICS = ("correlation", "cosine", "euclidean")
_BLOCK = 1024


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    """Rows such that the metric becomes a function of plain dot products."""
    x = np.asarray(x, dtype=np.float64)
    if metric == "euclidean":
        return x
    if metric == "correlation":
        x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    # A constant row has no direction: it sits at distance 1 from everything.
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def exact_knn(
    x: np.ndarray, k: int, metric: str, ref: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of ``ref`` (default: ``x`` itself, self included) for each row of x.

    Blocked matrix products; row blocks are fixed and BLAS runs on one thread (a threaded
    GEMM sums in an order that depends on the thread count), so the result does not depend
    on threads.
    """
    with threadpool_limits(limits=1, user_api="blas"):
        return _exact_knn(x, k, metric, ref)


def _exact_knn(
    x: np.ndarray, k: int, metric: str, ref: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    z = _prepare(x, metric)
    zr = z if ref is None else _prepare(ref, metric)
    sq_ref = np.einsum("ij,ij->i", zr, zr)
    n = z.shape[0]
    ind = np.empty((n, k), dtype=np.int64)
    dist = np.empty((n, k), dtype=np.float64)
    for start in range(0, n, _BLOCK):
        zb = z[start : start + _BLOCK]
        rows = np.arange(zb.shape[0])
        if metric == "euclidean":
            sq_b = np.einsum("ij,ij->i", zb, zb)
            d = np.maximum(sq_b[:, None] + sq_ref[None, :] - 2.0 * zb @ zr.T, 0.0)
        else:
            d = 1.0 - zb @ zr.T
        if ref is None:
            # Rounding leaves ~1e-16 on the diagonal; a point is at distance 0 from itself.
            d[rows, start + rows] = 0.0
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        dpart = np.take_along_axis(d, part, axis=1)
        order = np.lexsort((part, dpart), axis=1)
        ind[start : start + _BLOCK] = np.take_along_axis(part, order, axis=1)
        dist[start : start + _BLOCK] = np.take_along_axis(dpart, order, axis=1)
    if metric == "euclidean":
        np.sqrt(dist, out=dist)
    return ind, np.maximum(dist, 0.0)


def _serial_numba(func, *args, **kwargs):
    """Call ``func`` on one numba thread (restoring the count) and without its warnings."""
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            # pynndescent warns about its own numba compilation choices; not actionable here.
            warnings.simplefilter("ignore", category=numba.NumbaWarning)
            warnings.simplefilter("ignore", category=UserWarning)
            return func(*args, **kwargs)
    finally:
        numba.set_num_threads(threads)


def landmark_index(x: np.ndarray, k: int, metric: str, seed: int):
    """A pynndescent index of ``x`` built deterministically (seeded, one thread)."""
    from pynndescent import NNDescent

    return _serial_numba(
        NNDescent,
        np.ascontiguousarray(x, dtype=np.float32),
        n_neighbors=k,
        metric=metric,
        random_state=seed % (2**31),
        n_jobs=1,
        low_memory=True,
        compressed=False,
    )


def query_index(index, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest indexed points of each row of ``x``.

    pynndescent's query gives the same answer for a point whatever the batch and thread count.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=numba.NumbaWarning)
        ind, dist = index.query(np.ascontiguousarray(x, dtype=np.float32), k=k)
    return ind.astype(np.int64), dist.astype(np.float64)


def drop_self(ind: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (or, if a duplicate pushed it out, the farthest one)."""
    n, k = ind.shape
    is_self = ind == np.arange(n)[:, None]
    # The farthest column is dropped where a row does not contain itself.
    is_self[~is_self.any(axis=1), k - 1] = True
    first = np.argmax(is_self, axis=1)
    keep = np.ones((n, k), dtype=bool)
    keep[np.arange(n), first] = False
    return ind[keep].reshape(n, k - 1), dist[keep].reshape(n, k - 1)


def membership(dist: np.ndarray, n_neighbors: int) -> np.ndarray:
    """Fuzzy weights of the neighbours in ``dist`` (self excluded), target log2(n_neighbors)."""
    w = fuzzy_weights(np.ascontiguousarray(dist, dtype=np.float64), float(np.log2(n_neighbors)))
    return np.maximum(w, np.finfo(np.float64).eps)


def fuzzy_graph(ind: np.ndarray, dist: np.ndarray, n_neighbors: int) -> sp.csr_matrix:
    """Symmetric fuzzy graph ``P + Pᵀ − P∘Pᵀ`` of a kNN result, CSR with sorted rows.

    ``ind, dist`` (N, n_neighbors) count each point among its own neighbours, as in UMAP and
    the reference: each point keeps ``n_neighbors - 1`` directed edges before symmetrisation.
    """
    n = ind.shape[0]
    ind, dist = drop_self(ind, dist)
    w = membership(dist, n_neighbors)
    k = ind.shape[1]
    p = sp.csr_matrix((w.ravel(), ind.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    p.sum_duplicates()
    pt = p.T.tocsr()
    graph = (p + pt - p.multiply(pt)).tocsr()
    graph.eliminate_zeros()
    graph.sort_indices()
    return graph
