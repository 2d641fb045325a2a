"""Kernels of ring neighbourhoods: the rings of the bond graph where no lattice holds
(amorphous regions, ring networks), from Delaunay edges no longer than a radius (numpy/scipy)."""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay

from ._cells import canonical_cycle

__all__ = ["planar_rings"]


def _signed_area(p: np.ndarray) -> float:
    """Shoelace area of the polygon with vertices ``p`` (rows ``(y, x)``), signed by winding."""
    return 0.5 * float(np.sum(p[:, 1] * np.roll(p[:, 0], -1) - np.roll(p[:, 1], -1) * p[:, 0]))


def planar_rings(
    yx: np.ndarray, labels: np.ndarray, *, radius: float, max_ring: int = 10
) -> dict[str, object]:
    """Rings of the bond graph of one frame: Delaunay edges no longer than ``radius``.

    The bond graph is planar (a subgraph of the Delaunay triangulation); its bounded faces of
    at most ``max_ring`` vertices are the rings. The unbounded face and faces left open by the
    image border (larger than ``max_ring``) are dropped.

    Returns a dict with ``rings`` (list of vertex-index arrays in angular order), ``centre``
    (r, 2), ``types`` (list of tuples: size then rolled labels) and ``adjacent`` (p, 2) pairs of
    rings that share a bond.
    """
    empty = {"rings": [], "centre": np.empty((0, 2)), "types": [],
             "adjacent": np.empty((0, 2), np.int64)}
    if len(yx) < 3:
        return empty
    tri = Delaunay(yx)
    edges = np.concatenate([tri.simplices[:, [0, 1]], tri.simplices[:, [1, 2]],
                            tri.simplices[:, [2, 0]]])
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    length = np.linalg.norm(yx[edges[:, 0]] - yx[edges[:, 1]], axis=1)
    edges = edges[length <= radius]
    if len(edges) == 0:
        return empty
    # Half-edges (a -> b), sorted around each tail by angle.
    tail = np.concatenate([edges[:, 0], edges[:, 1]])
    head = np.concatenate([edges[:, 1], edges[:, 0]])
    d = yx[head] - yx[tail]
    ang = np.arctan2(d[:, 0], d[:, 1])
    order = np.lexsort((ang, tail))
    tail, head = tail[order], head[order]
    start = np.searchsorted(tail, np.arange(len(yx)))
    end = np.searchsorted(tail, np.arange(len(yx)), side="right")
    # position of each half-edge in its tail's angular list; twin lookup via a dict
    he_index = {(int(a), int(b)): k for k, (a, b) in enumerate(zip(tail, head, strict=True))}
    twin = np.array([he_index[(int(b), int(a))] for a, b in zip(tail, head, strict=True)])
    # next half-edge of a face: arriving at b along (a -> b), leave along the edge that
    # precedes (b -> a) in b's angular order; faces then all wind the same way.
    prev_around = np.empty(len(tail), np.int64)
    for vtx in np.flatnonzero(end > start):
        ks = np.arange(start[vtx], end[vtx])
        prev_around[ks] = np.roll(ks, 1)
    nxt = prev_around[twin]
    face_of = np.full(len(tail), -1, np.int64)
    faces = []
    for h0 in range(len(tail)):
        if face_of[h0] >= 0:
            continue
        cyc = []
        h = h0
        while face_of[h] < 0:
            face_of[h] = len(faces)
            cyc.append(h)
            h = nxt[h]
        faces.append(np.array(cyc))
    rings, centres, types, keep_face = [], [], [], np.full(len(faces), -1, np.int64)
    areas_a = np.array([_signed_area(yx[tail[cyc]]) for cyc in faces])
    # bounded faces share the sign of the majority; the unbounded one has the other sign
    sign = np.sign(np.median(areas_a))
    for f, cyc in enumerate(faces):
        verts = tail[cyc]
        if (np.sign(areas_a[f]) != sign or len(verts) > max_ring
                or len(np.unique(verts)) != len(verts)):
            continue
        keep_face[f] = len(rings)
        p = yx[verts]
        c = p.mean(axis=0)
        a = np.arctan2(p[:, 0] - c[0], p[:, 1] - c[1])
        verts = verts[np.argsort(a, kind="stable")]
        rings.append(verts)
        centres.append(c)
        types.append((len(verts), *canonical_cycle(labels[verts])))
    fa, fb = keep_face[face_of], keep_face[face_of[twin]]
    pair = (fa >= 0) & (fb >= 0) & (fa < fb)
    adjacent = np.unique(np.column_stack([fa[pair], fb[pair]]), axis=0).astype(np.int64)
    return {
        "rings": rings,
        "centre": np.array(centres).reshape(-1, 2),
        "types": types,
        "adjacent": adjacent.reshape(-1, 2),
    }
