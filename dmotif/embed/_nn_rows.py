"""Row primitives of the kNN kernels (numba): the distance of two prepared rows, and the
insertion into a neighbour row sorted by (distance, index).

Rows arrive prepared by ``_knn._prepare``: the distance is the squared euclidean one, or
``1 - dot`` for unit rows (cosine, correlation).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["push_neighbour", "row_distance"]


@njit(cache=True, inline="always")
def row_distance(za: np.ndarray, a: np.int64, zb: np.ndarray, b: np.int64, angular: bool) -> float:
    # Sums run in a fixed order and are symmetric in a and b, so a pair always gets the same bits.
    d = 0.0
    if angular:
        for t in range(za.shape[1]):
            d += za[a, t] * zb[b, t]
        return 1.0 - d
    for t in range(za.shape[1]):
        diff = za[a, t] - zb[b, t]
        d += diff * diff
    return d


@njit(cache=True, inline="always")
def push_neighbour(rd: np.ndarray, ri: np.ndarray, rf: np.ndarray, d: float, j: np.int64) -> bool:
    """Insert (d, j) as new into the row sorted by (distance, index) unless worse or present."""
    k = rd.shape[0]
    if d > rd[k - 1] or (d == rd[k - 1] and j >= ri[k - 1]):
        return False
    for t in range(k):
        if ri[t] == j:
            return False
    p = k - 1
    while p > 0 and (rd[p - 1] > d or (rd[p - 1] == d and ri[p - 1] > j)):
        rd[p] = rd[p - 1]
        ri[p] = ri[p - 1]
        rf[p] = rf[p - 1]
        p -= 1
    rd[p] = d
    ri[p] = j
    rf[p] = True
    return True
