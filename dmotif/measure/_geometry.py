"""Kernels of the lattice geometry of one frame's columns (numpy and scipy, no dask).

A sublattice's mean vectors, the cell of a reference sublattice that holds each column, and the
local deformation gradient of a sublattice about each of its columns.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..hierarchy._lattice import lattice_basis, neighbour_spacing, same_label_vectors

__all__ = ["MIN_NEIGHBOURS", "TOLERANCE", "cell_centres", "deformation", "mean_basis", "reach"]

#: A lattice site is matched by the column within this fraction of the shorter lattice vector.
TOLERANCE = 0.25
#: The local deformation needs at least this many of a column's eight neighbours.
MIN_NEIGHBOURS = 5


def mean_basis(yx: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The mean lattice vectors ``(u, v)`` (rows ``(dy, dx)``, pixels) of one sublattice.

    :func:`dmotif.hierarchy._lattice.lattice_basis` names the two shortest translations; each
    is then the mean of every neighbour vector within :data:`TOLERANCE` of it (or of its
    negative), so a strained region weighs by its columns and the mean is exact to the
    positions' noise over the square root of their number. Returns ``(u, v, support)``;
    raises :class:`dmotif.NoLatticeError` when the columns form no lattice.
    """
    one = np.zeros(len(yx), np.int64)  # one frame, one label
    spacing = neighbour_spacing(yx, one)
    vectors = same_label_vectors(yx, one, max_length=3.0 * spacing)
    u, v, support = lattice_basis(vectors, spacing=spacing, n_atoms=len(yx))
    tol = TOLERANCE * min(np.hypot(*u), np.hypot(*v))
    out = []
    for w in (u, v):
        near = np.linalg.norm(vectors - w, axis=1) <= tol
        far = np.linalg.norm(vectors + w, axis=1) <= tol
        out.append(np.concatenate([vectors[near], -vectors[far]]).mean(axis=0))
    return out[0], out[1], support


def reach(u: np.ndarray, v: np.ndarray) -> float:
    """How far from a column :func:`cell_centres` and :func:`deformation` read: the reference
    column nearest it is at most half a cell diagonal away, and the corners of its cell or its
    neighbours one diagonal plus :data:`TOLERANCE` beyond that."""
    diagonal = max(np.hypot(*(u + v)), np.hypot(*(u - v)))
    return 1.5 * diagonal + TOLERANCE * min(np.hypot(*u), np.hypot(*v)) + 1.0


def cell_centres(points: np.ndarray, reference: np.ndarray, u: np.ndarray,
                 v: np.ndarray) -> np.ndarray:
    """The centre of the reference cell that holds each point (NaN where a corner is missing).

    The cell is the parallelogram of reference columns ``r0 + (i + {0, 1}) u + (j + {0, 1}) v``
    about the point, ``r0`` the reference column nearest it; each corner is the reference
    column within :data:`TOLERANCE` of where the lattice puts it, and the centre is the mean
    of the four, so a displacement is measured against the actual neighbours, not the mean
    lattice. A point reads only the reference columns within :func:`reach` of it.
    """
    if len(reference) == 0 or len(points) == 0:
        return np.full((len(points), 2), np.nan)
    tree = cKDTree(reference)
    tol = TOLERANCE * min(np.hypot(*u), np.hypot(*v))
    _, near = tree.query(points)
    basis = np.stack([u, v], axis=1)  # columns u, v: offset = basis @ (fu, fv)
    frac = np.linalg.solve(basis, (points - reference[near]).T).T
    low = np.floor(frac)
    centres = np.zeros((len(points), 2))
    found = np.ones(len(points), bool)
    for di in (0, 1):
        for dj in (0, 1):
            site = reference[near] + (low + np.array([di, dj])) @ basis.T
            dist, idx = tree.query(site, distance_upper_bound=tol)
            found &= np.isfinite(dist)
            centres += reference[np.minimum(idx, len(reference) - 1)]
    centres /= 4
    centres[~found] = np.nan
    return centres


def deformation(yx: np.ndarray, sites: np.ndarray, u: np.ndarray, v: np.ndarray,
                ideal_u: np.ndarray, ideal_v: np.ndarray) -> np.ndarray:
    """The local deformation gradient of a sublattice (``sites``) about each column ``yx``.

    For each column, the sites at ``±u``, ``±v``, ``±(u + v)`` and ``±(u − v)`` from it (each
    the site within :data:`TOLERANCE` of where ``(u, v)``, the measured mean lattice, puts it)
    give measured vectors ``d`` for the same combinations ``r`` of the reference vectors
    ``(ideal_u, ideal_v)``; ``F = (Σ d rᵀ)(Σ r rᵀ)⁻¹`` in ``(x, y)`` order, so ``F − I`` is
    the displacement gradient against the reference. NaN where fewer than
    :data:`MIN_NEIGHBOURS` of the eight are found (at the edge of the sublattice, where two
    or three neighbours give a gradient as noisy as their positions). A column reads only the
    sites within :func:`reach` of it.

    Returns
    -------
    ndarray (n, 2, 2)
        ``F[k] = [[dx/dX, dx/dY], [dy/dX, dy/dY]]``.
    """
    tree = cKDTree(sites)
    tol = TOLERANCE * min(np.hypot(*u), np.hypot(*v))
    combos = np.array([(1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (1, -1), (-1, 1)])
    dr = np.zeros((len(yx), 2, 2))
    rr = np.zeros((len(yx), 2, 2))
    found = np.zeros(len(yx), np.int64)
    for i, j in combos:
        r = (i * ideal_u + j * ideal_v)[::-1]  # (x, y)
        dist, idx = tree.query(yx + i * u + j * v, distance_upper_bound=tol)
        ok = np.isfinite(dist)
        found += ok
        d = np.zeros((len(yx), 2))
        d[ok] = (sites[idx[ok]] - yx[ok])[:, ::-1]
        dr[ok] += d[ok, :, None] * r[None, None, :]
        rr[ok] += np.outer(r, r)
    out = np.full((len(yx), 2, 2), np.nan)
    good = (found >= MIN_NEIGHBOURS) \
        & (np.abs(np.linalg.det(rr)) > 1e-6 * np.einsum("kii->k", rr) ** 2)
    out[good] = dr[good] @ np.linalg.inv(rr[good])
    return out
