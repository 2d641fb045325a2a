"""Kernel: sums of per-atom values over each atom's neighbourhood in the image (numpy/scipy).

No dask or xarray: the neighbourhood mean of :mod:`dmotif.features.neighbourhood` and the
continuum statistic of :mod:`dmotif.motifs.continuum` are built on it.
"""

from __future__ import annotations

import numpy as np
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
    sums = np.array(values, dtype=np.float64, copy=True)
    counts = np.ones(values.shape[0], dtype=np.int64)
    for f in np.unique(frame):
        rows = np.flatnonzero(frame == f)
        # Pairs, not per-atom lists: one array of int64 pairs whatever the number of atoms.
        pairs = rows[cKDTree(yx[rows]).query_pairs(reach, output_type="ndarray")]
        for a, b in ((pairs[:, 0], pairs[:, 1]), (pairs[:, 1], pairs[:, 0])):
            np.add.at(sums, a, values[b])
            counts += np.bincount(a, minlength=counts.size)
    return sums, counts
