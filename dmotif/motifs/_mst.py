"""numba kernel of HDBSCAN's minimum spanning tree of mutual reachability (Prim's algorithm).

scikit-learn's ``HDBSCAN`` builds this tree in one thread, with a call per distance; this
kernel takes the same steps with the same arithmetic in a branch-free pass over the nodes
left, so it returns scikit-learn's tree edge for edge. No dask or xarray here: the wrapper is
:func:`dmotif.motifs.clustering._hdbscan`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["mutual_reachability_mst"]

@njit(cache=True, nogil=True)
def mutual_reachability_mst(
    x: np.ndarray, core: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The edges ``(source, target, distance)`` of the minimum spanning tree of the mutual
    reachability ``max(core_i, core_j, |x_i - x_j|)``, in the order Prim's algorithm adds
    them from node 0, as ``sklearn.cluster._hdbscan._linkage.mst_from_data_matrix``
    (euclidean, ``alpha=1``) returns them: each step adds the node of least reachability,
    the lowest index among equals, joined from the tree node that first reached it so."""
    n, d = x.shape
    # The nodes not yet in the tree, packed at the front (a joined node swaps with the last),
    # coordinates by column: each step is a branch-free pass over the packed arrays.
    ids = np.arange(n)
    coords = np.ascontiguousarray(x.T)
    cores = core.copy()
    reach = np.full(n, np.inf)
    sources = np.ones(n, dtype=np.int64)
    here = np.empty(d)
    squares = np.empty(n)
    src = np.empty(n - 1, dtype=np.int64)
    dst = np.empty(n - 1, dtype=np.int64)
    dist = np.empty(n - 1)
    at, m = 0, n
    for i in range(n - 1):
        current = ids[at]
        core_c = cores[at]
        for k in range(d):
            here[k] = coords[k, at]
        m -= 1
        _remove(at, m, ids, coords, cores, reach, sources)
        squares[:m] = 0.0
        for k in range(d):
            for j in range(m):
                t = here[k] - coords[k, j]
                squares[j] += t * t
        low = np.inf
        for j in range(m):
            mrd = max(core_c, cores[j], math.sqrt(squares[j]))
            closer = mrd < reach[j]
            reach[j] = mrd if closer else reach[j]
            sources[j] = current if closer else sources[j]
            low = min(low, reach[j])
        # Prim's scan in index order keeps the first least node: the lowest index of those.
        at = -1
        for j in range(m):
            if reach[j] == low and (at < 0 or ids[j] < ids[at]):
                at = j
        src[i] = sources[at]
        dst[i] = ids[at]
        dist[i] = low
    return src, dst, dist


@njit(cache=True, inline="always")
def _remove(at, last, ids, coords, cores, reach, sources):
    # the packed node ``at`` takes the place of the last one
    ids[at] = ids[last]
    for k in range(coords.shape[0]):
        coords[k, at] = coords[k, last]
    cores[at] = cores[last]
    reach[at] = reach[last]
    sources[at] = sources[last]
