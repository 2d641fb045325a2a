"""Kernel: lattice coordinates of every atom by unwrapping the neighbour graph (numpy/numba/
scipy; no dask or xarray).

A global lattice ``i u + j v`` drifts off the atoms of a real micrograph: scan distortion and
drift change the local cell by a few per cent, so thirty cells from the origin the atoms sit a
third of a cell away from their predicted sites and fractional coordinates no longer tell the
sublattices apart. Here each atom's coordinates come from a neighbour's instead: the step
between two neighbouring atoms is short, so its error is a small fraction of the tolerance,
and it is snapped to the nearest ideal site. The coordinates are then exact site positions
(``integer + site``), whatever the distortion accumulated across the image.
"""

from __future__ import annotations

import numba
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components
from scipy.spatial import cKDTree

__all__ = ["unwrap_sites"]


@numba.njit(cache=True)
def _walk(order, pred, yx, m, m_inv, sites, frac, site):  # pragma: no cover - jit
    for node in order:
        p = pred[node]
        if p < 0:
            continue
        dy = yx[node, 0] - yx[p, 0]
        dx = yx[node, 1] - yx[p, 1]
        f0 = frac[p, 0] + m_inv[0, 0] * dy + m_inv[0, 1] * dx
        f1 = frac[p, 1] + m_inv[1, 0] * dy + m_inv[1, 1] * dx
        best = np.inf
        for s in range(sites.shape[0]):
            c0 = np.floor(f0 - sites[s, 0] + 0.5)
            c1 = np.floor(f1 - sites[s, 1] + 0.5)
            r0 = f0 - sites[s, 0] - c0
            r1 = f1 - sites[s, 1] - c1
            ry = m[0, 0] * r0 + m[0, 1] * r1
            rx = m[1, 0] * r0 + m[1, 1] * r1
            d = ry * ry + rx * rx
            if d < best:
                best = d
                frac[node, 0] = c0 + sites[s, 0]
                frac[node, 1] = c1 + sites[s, 1]
                site[node] = s


@numba.njit(cache=True)
def _step_mismatch(a, b, yx, m, m_inv, diffs):  # pragma: no cover - jit
    """Per pair, the distance (px) of its step from the nearest site difference + lattice
    vector."""
    out = np.empty(a.size)
    for k in range(a.size):
        dy = yx[b[k], 0] - yx[a[k], 0]
        dx = yx[b[k], 1] - yx[a[k], 1]
        f0 = m_inv[0, 0] * dy + m_inv[0, 1] * dx
        f1 = m_inv[1, 0] * dy + m_inv[1, 1] * dx
        best = np.inf
        for d in range(diffs.shape[0]):
            r0 = f0 - diffs[d, 0]
            r1 = f1 - diffs[d, 1]
            r0 -= np.floor(r0 + 0.5)
            r1 -= np.floor(r1 + 0.5)
            ry = m[0, 0] * r0 + m[0, 1] * r1
            rx = m[1, 0] * r0 + m[1, 1] * r1
            best = min(best, ry * ry + rx * rx)
        out[k] = np.sqrt(best)
    return out


def _snapped_pairs(
    yx: np.ndarray, m: np.ndarray, sites: np.ndarray, tol: float
) -> np.ndarray:
    """Neighbour pairs whose step is a site difference plus a lattice vector, within ``tol``."""
    reach = 1.05 * float(np.linalg.norm(m, axis=0).max())
    pairs = cKDTree(yx).query_pairs(reach, output_type="ndarray")
    if len(pairs) == 0:
        return pairs.reshape(0, 2)
    diffs = (sites[None, :, :] - sites[:, None, :]).reshape(-1, 2)
    diffs = np.unique(np.round(diffs - np.floor(diffs), 9), axis=0)
    miss = _step_mismatch(pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64),
                          yx, m, np.linalg.inv(m), diffs)
    return pairs[miss < tol]


def unwrap_sites(
    yx: np.ndarray,
    m: np.ndarray,
    sites: np.ndarray,
    tol: float,
    root: int,
    *,
    min_atoms: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Ideal fractional coordinates and site of each atom of one frame, drift-free.

    Parameters
    ----------
    yx : (n, 2) ndarray
        Atom positions, pixels.
    m : (2, 2) ndarray
        Lattice basis as columns ``[u, v]``.
    sites : (s, 2) ndarray
        Fractional site positions in a cell, the first at ``(0, 0)``.
    tol : float
        Largest mismatch, pixels, of a step between neighbours with a site-to-site step.
    root : int
        The atom that sits on site 0 of cell ``(0, 0)``; the other atoms of its connected
        group take coordinates relative to it.
    min_atoms : int
        Groups of neighbours smaller than this stay unplaced.

    Returns
    -------
    frac : (n, 2) ndarray
        ``(i, j) + sites[site]`` per placed atom; nan for the others.
    site : (n,) ndarray of int64
        Site index per atom, -1 where unplaced.

    Notes
    -----
    Atoms are joined when their distance is at most about one lattice vector and their step
    matches a site-to-site step; each connected group is walked breadth first from its root
    (``root`` for its own group, the atom nearest the group's centroid for the others, placed
    by the global lattice from ``root``: groups that no step joins keep consistent indices only
    as far as the global lattice holds). A wrong atom can misplace the atoms reached through it
    only; breadth-first order reaches most atoms by many short paths from the root.
    """
    n = len(yx)
    frac = np.full((n, 2), np.nan)
    site = np.full(n, -1, np.int64)
    if n == 0:
        return frac, site
    sites = np.asarray(sites, float).reshape(-1, 2)
    m = np.asarray(m, float)
    m_inv = np.linalg.inv(m)
    pairs = _snapped_pairs(yx, m, sites, tol)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n)).tocsr()
    n_comp, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp, minlength=n_comp)
    for c in range(n_comp):
        if sizes[c] < min_atoms:
            continue
        members = np.flatnonzero(comp == c)
        if comp[root] == c:
            start = root
            frac[start] = 0.0
            site[start] = 0
        else:
            centre = yx[members].mean(axis=0)
            start = int(members[np.argmin(np.linalg.norm(yx[members] - centre, axis=1))])
            f = (yx[start] - yx[root]) @ m_inv.T
            r = f[None, :] - sites
            k = int(np.argmin(np.linalg.norm((r - np.round(r)) @ m.T, axis=1)))
            frac[start] = np.round(r[k]) + sites[k]
            site[start] = k
        order, pred = breadth_first_order(graph, start, directed=False,
                                          return_predecessors=True)
        _walk(order.astype(np.int64), pred.astype(np.int64), yx, m, m_inv, sites, frac, site)
    return frac, site
