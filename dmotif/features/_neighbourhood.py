"""Kernel: sums of per-atom values over each atom's neighbourhood in the image (numpy/scipy).

No dask or xarray: the neighbourhood mean of :mod:`dmotif.features.neighbourhood` and the
continuum statistic of :mod:`dmotif.motifs.continuum` are built on it.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

__all__ = ["neighbourhood_sums"]


def neighbourhood_sums(
    values: np.ndarray, frame: np.ndarray, yx: np.ndarray, reach: float
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of ``values`` over the atoms of the same frame within ``reach`` of each atom.

    Parameters
    ----------
    values : (n, p) ndarray
        Per-atom values.
    frame : (n,) ndarray of int
        Frame of each atom; atoms of different frames are never neighbours.
    yx : (n, 2) ndarray
        Positions, pixels.
    reach : float
        Radius of the neighbourhood, pixels (the atom itself is always in it).

    Returns
    -------
    sums : (n, p) ndarray of float64
    counts : (n,) ndarray of int64
        Atoms in each neighbourhood.
    """
    sums = np.empty((values.shape[0], values.shape[1]), dtype=np.float64)
    counts = np.empty(values.shape[0], dtype=np.int64)
    for f in np.unique(frame):
        rows = np.flatnonzero(frame == f)
        # Pairs, not per-atom lists, then one sparse product: a million atoms with 33
        # neighbours each in about a second.
        pairs = cKDTree(yx[rows]).query_pairs(reach, output_type="ndarray").astype(np.int32)
        n = rows.size
        own = np.arange(n, dtype=np.int32)
        ends = np.concatenate([pairs[:, 0], pairs[:, 1], own])
        other = np.concatenate([pairs[:, 1], pairs[:, 0], own])
        del pairs
        near = sp.csr_matrix((np.ones(ends.size, np.float32), (ends, other)), shape=(n, n))
        sums[rows] = near @ np.asarray(values[rows], dtype=np.float64)
        counts[rows] = np.diff(near.indptr)
    return sums, counts
