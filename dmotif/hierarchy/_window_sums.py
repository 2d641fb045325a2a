"""Kernel: sums of square image windows grouped by key (numpy/numba, no dask or xarray).

The mean patches of the hierarchy are sums of hundreds of thousands of small windows; gathering
them into one ``(n, 2r+1, 2r+1)`` stack first costs more than the sum itself.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["window_sums"]


@numba.njit(cache=True)
def _accumulate(img, cy, cx, key, r, sums, counts):  # pragma: no cover - jit
    w = 2 * r + 1
    for i in range(cy.size):
        k = key[i]
        counts[k] += 1
        y0, x0 = cy[i] - r, cx[i] - r
        for a in range(w):
            for b in range(w):
                sums[k, a, b] += img[y0 + a, x0 + b]


def window_sums(
    img: np.ndarray, cy: np.ndarray, cx: np.ndarray, key: np.ndarray, n_keys: int, r: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the ``(2r+1)²`` windows of ``img`` centred on ``(cy, cx)``, per key.

    Parameters
    ----------
    img : (ny, nx) ndarray
        The image; every window must lie inside it.
    cy, cx : (n,) ndarray of int
        Window centres, pixels.
    key : (n,) ndarray of int
        Group of each window, in ``0 .. n_keys - 1``.
    n_keys : int
        Number of groups.
    r : int
        Window radius, pixels.

    Returns
    -------
    sums : (n_keys, 2r+1, 2r+1) ndarray of float64
        Each group's windows added in float64 in the order they are given, so a sum is the
        same as ``stack.sum(axis=0, dtype=np.float64)`` of the group's stacked windows.
    counts : (n_keys,) ndarray of int64
        Windows per group.
    """
    sums = np.zeros((n_keys, 2 * r + 1, 2 * r + 1), np.float64)
    counts = np.zeros(n_keys, np.int64)
    _accumulate(np.asarray(img), np.asarray(cy, np.int64), np.asarray(cx, np.int64),
                np.asarray(key, np.int64), int(r), sums, counts)
    return sums, counts
