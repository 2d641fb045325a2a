"""Kernels for motif-cells: lattice vectors, lattice cells, ring neighbourhoods (numpy/scipy only).

Everything here works on plain arrays of one frame (positions ``yx`` in pixels as ``(n, 2)``
rows of ``(y, x)``, integer labels with -1 = unassigned); the dask/xarray wrappers in
:mod:`dmotif.hierarchy` split the work over frames and reduce it.

Conventions
-----------
* A lattice is a pair of Bravais vectors ``(u, v)``, each ``(dy, dx)`` in pixels, reduced
  (``|u| <= |v|``, ``|u·v| <= |u|²/2``), with ``det[u, v] > 0`` in ``(x, y)`` and, when the
  lattice allows it, an acute angle. The choices related by the lattice's own rotations are
  :func:`equivalent_bases`; for display :func:`lattice_basis` returns the one with ``u``
  closest to the +x axis, but cells are built on the one the atoms themselves single out
  (:func:`convention_key`), so cell types do not depend on how the image is turned.
* A cell type is a tuple of labels: the anchor's label first, then the labels of the other
  basis slots (-1 = empty slot) in angular order about the anchor, cyclically rolled to the
  lexicographically smallest sequence. Mirror images are *not* merged: chirality is kept.
* A ring type is the ring size followed by its vertices' labels in angular order, rolled the
  same way.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay, cKDTree

from .errors import NoLatticeError

__all__ = [
    "adjacent_cells",
    "anchor_label",
    "canonical_roll",
    "cell_members",
    "connected_subsets",
    "convention_key",
    "equivalent_bases",
    "fractional_offsets",
    "lattice_basis",
    "lattice_cells",
    "lattice_neighbours",
    "lattice_rotations",
    "neighbour_spacing",
    "pattern_key",
    "planar_rings",
    "rebase_slots",
    "same_label_vectors",
    "slot_positions",
    "slot_types",
    "type_table",
]

# A translation is a lattice vector when it maps at least this fraction of the best-supported
# translation's atoms onto atoms of the same label; a bond of a two-site basis reaches only 1/2.
_LATTICE_SUPPORT = 0.7
# Below this fraction of atoms mapped by a translation there is no lattice worth the name.
_MIN_SUPPORT = 0.25


_MAX_VECTORS = 20_000

def neighbour_spacing(yx: np.ndarray, frame: np.ndarray) -> float:
    """Median nearest-neighbour distance of atoms within the same frame (nan if none)."""
    dists = []
    for f in np.unique(frame):
        pts = yx[frame == f]
        if len(pts) >= 2:
            d, _ = cKDTree(pts).query(pts, k=2)
            dists.append(d[:, 1])
    if not dists:
        return float("nan")
    return float(np.median(np.concatenate(dists)))


def same_label_vectors(
    yx: np.ndarray, labels: np.ndarray, *, k: int = 12, max_length: float
) -> np.ndarray:
    """Vectors from each labelled atom to its ``k`` nearest same-label neighbours (one frame).

    Returns an ``(m, 2)`` array of ``(dy, dx)`` with length at most ``max_length``.
    """
    out = []
    for lab in np.unique(labels[labels >= 0]):
        pts = yx[labels == lab]
        if len(pts) < 2:
            continue
        kk = min(k + 1, len(pts))
        d, idx = cKDTree(pts).query(pts, k=kk, distance_upper_bound=max_length)
        ok = np.isfinite(d) & (d > 0)
        src = np.broadcast_to(np.arange(len(pts))[:, None], idx.shape)
        out.append(pts[idx[ok]] - pts[src[ok]])
    return np.concatenate(out) if out else np.empty((0, 2))


def _det(u: np.ndarray, v: np.ndarray) -> float:
    # det[u, v] with vectors read as (x, y): u = (dy, dx).
    return float(u[1] * v[0] - u[0] * v[1])


def _reduce(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lagrange–Gauss reduction of a 2-D basis."""
    u, v = u.astype(float), v.astype(float)
    if u @ u > v @ v:
        u, v = v, u
    for _ in range(100):
        m = round(float(u @ v) / float(u @ u))
        if m == 0:
            break
        v = v - m * u
        if u @ u > v @ v:
            u, v = v, u
    return u, v


def equivalent_bases(
    u: np.ndarray, v: np.ndarray, rtol: float = 0.05
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every basis of the lattice of ``(u, v)`` with the shape of its reduced, acute basis.

    The bases are related by the lattice's own rotations (6 for a hexagonal lattice, 4 for a
    square one, 2 otherwise), all with ``det > 0`` so mirror images are not included. They are
    listed in an order that depends only on the input's orientation, not on the atoms.
    """
    u, v = _reduce(u, v)
    if _det(u, v) < 0:
        v = -v
    if u @ v < 0 and abs(np.linalg.norm(u + v) - np.linalg.norm(v)) <= rtol * np.linalg.norm(v):
        # The same cell has an acute basis, e.g. a hexagonal lattice reduced to 120°.
        v = u + v
    short = [s * w for w in (u, v, u + v, u - v) for s in (1, -1)]
    out = []
    for cu in short:
        if abs(np.linalg.norm(cu) - np.linalg.norm(u)) > rtol * np.linalg.norm(u):
            continue
        for cv in short:
            same_shape = abs(cu @ cv - u @ v) <= rtol * (u @ u)
            same_len = abs(np.linalg.norm(cv) - np.linalg.norm(v)) <= rtol * np.linalg.norm(v)
            if same_shape and same_len and _det(cu, cv) > 0:
                out.append((cu, cv))
    return out


def _canonical_basis(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Among the equivalent bases, the one with ``u`` closest to the +x axis (for display)."""
    def key(b: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
        ang = float(np.arctan2(b[0][0], b[0][1]))
        return round(abs(ang), 6), -ang

    return min(equivalent_bases(u, v), key=key)


def lattice_neighbours(u: np.ndarray, v: np.ndarray, rtol: float = 0.05) -> np.ndarray:
    """Integer offsets ``(di, dj)`` of the nearest lattice points (4 square, 6 hexagonal).

    A lattice point is a neighbour when it is no farther than ``|v|`` (the longer basis
    vector of a reduced basis), so the set depends on the lattice, not on the choice of basis
    among its equivalents; ``(di, dj)`` and ``(-di, -dj)`` are both listed.
    """
    lim = (1 + rtol) * max(np.linalg.norm(u), np.linalg.norm(v))
    m = np.column_stack([u, v])
    cand = np.array([(1, 0), (0, 1), (1, 1), (1, -1)])
    cand = cand[np.linalg.norm(cand @ m.T, axis=1) <= lim]
    return np.concatenate([cand, -cand])


def lattice_rotations(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The lattice's rotations as integer matrices acting on cell indices ``(i, j)``.

    Returns ``(r, 2, 2)``: ``R @ (i, j)`` are the indices of the point ``i u + j v`` turned by
    one of the lattice's proper rotations (the identity included).
    """
    m = np.column_stack([u, v])
    rots = []
    for cu, cv in equivalent_bases(u, v):
        # the rotation maps u -> cu, v -> cv; in cell indices its columns are cu, cv in (u, v)
        r = np.rint(np.linalg.solve(m, np.column_stack([cu, cv]))).astype(np.int64)
        if not any((r == q).all() for q in rots):
            rots.append(r)
    return np.array(rots)


def dense_groups(
    points: np.ndarray, tol: float, min_size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Centres and sizes of the tight groups of ``points``, densest first.

    A group is the ball of radius ``tol`` about its densest point, kept if it holds at least
    ``min_size`` points. The points pile up in a few groups, so counting every ball is
    quadratic in their number: the balls are counted on an even-strided subset of at most
    ``_MAX_VECTORS`` points and the sizes scaled back to all points.
    """
    stride = max(1, len(points) // _MAX_VECTORS)
    sub = points[::stride]
    scale = len(points) / max(len(sub), 1)
    tree = cKDTree(sub)
    counts = tree.query_ball_point(sub, tol, return_length=True)
    taken = np.zeros(len(sub), bool)
    centres, sizes = [], []
    for i in np.lexsort((np.linalg.norm(sub, axis=1), -counts)):
        if taken[i] or counts[i] * scale < min_size:
            continue
        members = tree.query_ball_point(sub[i], tol)
        taken[members] = True
        centres.append(sub[members].mean(axis=0))
        sizes.append(len(members) * scale)
    return np.reshape(centres, (-1, points.shape[1])), np.array(sizes, float)


def lattice_basis(
    vectors: np.ndarray, *, spacing: float, n_atoms: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """The two shortest independent lattice vectors supported by the neighbour ``vectors``.

    Neighbour vectors are grouped (tolerance 0.2 × ``spacing``); a group is a lattice
    translation when its support is at least 70 % of the best group's. Returns ``(u, v,
    support)`` with ``support`` the fraction of ``n_atoms`` the weaker of ``u``, ``v`` maps onto
    a same-label atom. Raises :class:`NoLatticeError` when fewer than two independent
    translations are supported.
    """
    tol = 0.2 * spacing
    if len(vectors) == 0 or n_atoms == 0:
        raise NoLatticeError(
            "no neighbour vectors between atoms of the same label: too few atoms or every "
            "label is unique; give more atoms or labels that repeat."
        )
    centres, support = dense_groups(vectors, tol, 3)
    if len(centres) == 0:
        raise NoLatticeError(
            f"no repeated neighbour vector among {n_atoms} atoms: the arrangement is not "
            "periodic (amorphous?); use method='rings' for Delaunay/radius neighbourhoods."
        )
    keep = support >= _LATTICE_SUPPORT * support.max()
    cand = centres[keep]
    sup = support[keep]
    lengths = np.linalg.norm(cand, axis=1)
    idx = np.argsort(lengths, kind="stable")
    u = cand[idx[0]]
    for j in idx[1:]:
        w = cand[j]
        if abs(_det(u, w)) > 0.3 * np.linalg.norm(u) * np.linalg.norm(w):
            cu, cv = _canonical_basis(u, w)
            frac = float(min(sup[idx[0]], sup[j]) / n_atoms)
            if frac < _MIN_SUPPORT:
                raise NoLatticeError(
                    f"the best lattice vectors map only {frac:.0%} of the atoms onto atoms of "
                    "the same label: no lattice holds over most of the image (amorphous, "
                    "polycrystalline?); use method='rings'."
                )
            return cu, cv, frac
    raise NoLatticeError(
        f"only one direction of translation symmetry found (vector {np.round(u, 2).tolist()} "
        "px): the atoms form rows, not a 2-D lattice; use method='rings'."
    )


def anchor_label(
    yx: np.ndarray, labels: np.ndarray, u: np.ndarray, frame: np.ndarray | None = None
) -> int:
    """The most frequent label whose atoms occupy a single Bravais sublattice.

    A label qualifies when its atoms have no same-label neighbour closer than 0.8 × |u|, i.e. at
    most one atom of that label per cell. Returns -1 when no label qualifies.
    """
    frame = np.zeros(len(yx), np.int64) if frame is None else frame
    best, best_count = -1, 0
    for lab in np.unique(labels[labels >= 0]):
        sel = labels == lab
        if sel.sum() < 2:
            continue
        single = neighbour_spacing(yx[sel], frame[sel]) >= 0.8 * np.linalg.norm(u)
        pts = yx[sel]
        if single and len(pts) > best_count:
            best, best_count = int(lab), len(pts)
    return best


def _origin_and_frac(
    yx: np.ndarray, anchors: np.ndarray, m_inv: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Fractional coordinates of every atom about the anchor nearest the centroid."""
    centre = yx[anchors].mean(axis=0)
    origin = yx[anchors[np.argmin(np.linalg.norm(yx[anchors] - centre, axis=1))]]
    return origin, (yx - origin) @ m_inv.T


def fractional_offsets(
    yx: np.ndarray, labels: np.ndarray, u: np.ndarray, v: np.ndarray, anchor: int
) -> np.ndarray:
    """Offsets of every labelled atom from its cell's anchor, fractional, in ``[-0.25, 0.75)²``."""
    anchors = np.flatnonzero(labels == anchor)
    if len(anchors) == 0:
        return np.empty((0, 2))
    m = np.column_stack([u, v])
    _, frac = _origin_and_frac(yx, anchors, np.linalg.inv(m))
    frac = frac[labels >= 0]
    return frac - np.floor(frac + 0.25)


def slot_positions(offsets: np.ndarray, *, m: np.ndarray, tol: float, n_cells: int) -> np.ndarray:
    """Basis slots: groups of fractional offsets held by at least a quarter of the cells.

    Returns ``(s, 2)`` fractional positions, the anchor slot (nearest 0) first, the others in
    angular order about the anchor (ties by distance).
    """
    centres, _ = dense_groups(offsets @ m.T, tol, max(0.25 * n_cells, 2))
    if len(centres) == 0:
        return np.zeros((1, 2))
    s = centres @ np.linalg.inv(m).T
    s[int(np.argmin(np.linalg.norm(s @ m.T, axis=1)))] = 0.0
    return _order_slots(s, m)


def _order_slots(s: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The anchor slot (at 0) first, the others by angle about the anchor from ``u``, then by
    distance."""
    s0 = int(np.argmin(np.linalg.norm(s @ m.T, axis=1)))
    rest = np.delete(s, s0, axis=0)
    p = rest @ m.T
    rel = np.arctan2(p[:, 0], p[:, 1]) - np.arctan2(m[0, 0], m[1, 0])
    ang = np.mod(np.round(rel, 6), 2 * np.pi)
    rest = rest[np.lexsort((np.linalg.norm(p, axis=1), np.round(ang, 3)))]
    return np.vstack([np.zeros((1, 2)), rest])


def rebase_slots(slots: np.ndarray, m_from: np.ndarray, m_to: np.ndarray) -> np.ndarray:
    """The slots learned on basis ``m_from`` as :func:`slot_positions` would give them on the
    equivalent basis ``m_to`` (same atoms, offsets wrapped to ``[-0.25, 0.75)`` and ordered)."""
    frac = slots @ m_from.T @ np.linalg.inv(m_to).T
    return _order_slots(frac - np.floor(frac + 0.25), m_to)


def canonical_roll(seq: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """The lexicographically smallest cyclic rotation of ``seq`` (mirror images kept apart)."""
    seq = tuple(int(s) for s in seq)
    if not seq:
        return seq
    return min(seq[k:] + seq[:k] for k in range(len(seq)))


def cell_members(
    yx: np.ndarray,
    labels: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    slots: np.ndarray,
    anchor: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Assign atoms of one frame to (cell, slot).

    Returns ``(ij, slot, resid, origin)``: per atom the integer cell index ``ij`` (n, 2) and
    ``slot`` (-1 when no slot lies within ``tol`` px), the distance to that slot, and the
    pixel origin of cell (0, 0).
    """
    m = np.column_stack([u, v])
    anchors = np.flatnonzero(labels == anchor)
    origin, frac = _origin_and_frac(yx, anchors, np.linalg.inv(m))
    n = len(yx)
    ij = np.zeros((n, 2), np.int64)
    slot = np.full(n, -1, np.int64)
    resid = np.full(n, np.inf)
    for s, pos in enumerate(slots):
        cell = np.round(frac - pos)
        d = np.linalg.norm((frac - pos - cell) @ m.T, axis=1)
        better = (d < tol) & (d < resid) & (labels >= 0)
        ij[better], slot[better], resid[better] = cell[better], s, d[better]
    return ij, slot, resid, origin


def lattice_cells(
    yx: np.ndarray,
    labels: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    slots: np.ndarray,
    anchor: int,
    tol: float,
) -> dict[str, np.ndarray]:
    """The accepted lattice cells of one frame and the labels of their slots.

    A cell ``(i, j)`` is the parallelogram ``[p, p+u, p+u+v, p+v]``; it is accepted when each of
    its four corner lattice points holds an anchor atom or is a vacancy that the lattice
    predicts (at least 3 of its 4 nearest lattice points hold anchors), and at least three
    corners are real. Each atom belongs to at most one cell (the slot it sits on; of two atoms
    on the same slot of a cell, the later one).

    Returns a dict with ``ij`` (c, 2) in lexicographic order, ``centre`` (c, 2) pixel
    ``(y, x)``, ``members`` (c, s) atom indices (-1 = empty slot) and ``slot_labels`` (c, s).
    """
    ij, slot, _, origin = cell_members(yx, labels, u, v, slots, anchor, tol)
    s = len(slots)
    anchors = ij[(slot == 0) & (labels == anchor)]
    if len(anchors):
        lo = anchors.min(axis=0)
        shape = anchors.max(axis=0) - lo + 1
        # Occupancy of the lattice points over the anchors' bounding box, with a margin of one
        # empty point so that neighbours and corners are shifted slices.
        real = np.zeros(shape + 2, np.int8)
        real[anchors[:, 0] - lo[0] + 1, anchors[:, 1] - lo[1] + 1] = 1
        around = real[:-2, 1:-1] + real[2:, 1:-1] + real[1:-1, :-2] + real[1:-1, 2:]
        known = real.astype(bool)
        known[1:-1, 1:-1] |= around >= 3
        # corner (a, b) of every cell, a and b in {0, 1}
        offsets = (slice(1, -1), slice(2, None))
        corner_known = np.ones(shape, bool)
        corner_real = np.zeros(shape, np.int8)
        for rows in offsets:
            for cols in offsets:
                corner_known &= known[rows, cols]
                corner_real += real[rows, cols]
        accepted = corner_known & (corner_real >= 3)
        cells = np.argwhere(accepted) + lo
        index = np.full(shape, -1, np.int64)
        index[accepted] = np.arange(len(cells))
        atom = np.flatnonzero(slot >= 0)
        p = ij[atom] - lo
        inside = ((p >= 0) & (p < shape)).all(axis=1)
        atom, p = atom[inside], p[inside]
        k = index[p[:, 0], p[:, 1]]
        atom, flat = atom[k >= 0], k[k >= 0] * s + slot[atom[k >= 0]]
    else:
        cells = np.empty((0, 2), np.int64)
        atom = flat = np.empty(0, np.int64)
    c = len(cells)
    members = np.full(c * s, -1, np.int64)
    # The first of each (cell, slot) in reversed atom order is the later atom, which wins.
    _, last = np.unique(flat[::-1], return_index=True)
    members[flat[::-1][last]] = atom[::-1][last]
    members = members.reshape(c, s)
    # An anchor slot holding an atom of another label (e.g. an antisite) keeps that label.
    slot_labels = np.where(members >= 0, labels[np.maximum(members, 0)], -1).astype(np.int64)
    ij_arr = cells.astype(np.int64).reshape(c, 2)
    m = np.column_stack([u, v])
    centre = origin + (ij_arr + 0.5) @ m.T
    return {"ij": ij_arr, "centre": centre, "members": members, "slot_labels": slot_labels}


def adjacent_cells(ij: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Pairs ``(k, k2)`` of cells with ``ij[k2] == ij[k] + step`` for a step of ``steps``.

    ``ij`` are distinct integer cell indices ``(c, 2)``; returns ``(p, 2)`` int64 pairs sorted
    lexicographically.
    """
    ij = np.asarray(ij, np.int64).reshape(-1, 2)
    steps = np.asarray(steps, np.int64).reshape(-1, 2)
    if len(ij) == 0 or len(steps) == 0:
        return np.empty((0, 2), np.int64)
    reach = int(np.abs(steps).max())
    lo = ij.min(axis=0) - reach
    p = ij - lo
    # Cell number by position, with a margin of ``reach`` so that every step stays inside.
    index = np.full(ij.max(axis=0) - lo + reach + 1, -1, np.int64)
    index[p[:, 0], p[:, 1]] = np.arange(len(ij))
    pairs = []
    for a, b in steps.tolist():
        other = index[p[:, 0] + a, p[:, 1] + b]
        has = np.flatnonzero(other >= 0)
        pairs.append(np.column_stack([has, other[has]]))
    out = np.concatenate(pairs)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


def _row_groups(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct rows of an integer array, each row's index among them, and their counts.

    Like ``np.unique(rows, axis=0, return_inverse=True, return_counts=True)``, whose sort of
    whole rows as opaque records is an order of magnitude slower than a lexsort by columns.
    """
    order = np.lexsort(rows.T[::-1])
    ranked = rows[order]
    new = np.ones(len(rows), bool)
    new[1:] = (ranked[1:] != ranked[:-1]).any(axis=1)
    inverse = np.empty(len(rows), np.int64)
    inverse[order] = np.cumsum(new) - 1
    return ranked[new], inverse, np.diff(np.flatnonzero(np.append(new, True)))


def type_table(types: list[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The distinct ``types`` in sorted order and, per item, its index in that list."""
    table = sorted(set(types))
    at = {t: k for k, t in enumerate(table)}
    return table, np.array([at[t] for t in types], np.int64)


def slot_types(slot_labels: np.ndarray) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """The cell types of rows of slot labels, as :func:`type_table` of their types.

    A cell's type is its anchor slot's label, then the other slots' labels rolled by
    :func:`canonical_roll`; each distinct row is rolled once.
    """
    rows, inverse, _ = _row_groups(np.asarray(slot_labels, np.int64))
    table, code = type_table([(int(r[0]), *canonical_roll(r[1:])) for r in rows.tolist()])
    return table, code[inverse]


def convention_key(parts: list[dict[str, object]]) -> tuple:
    """Score of one choice of cells among equivalent bases; the smallest key wins.

    ``parts`` are the per-frame cells built on one basis (``members``, ``types`` — the distinct
    type tuples —, ``type`` — each cell's index into ``types`` — and ``adjacent``). The key uses
    only what a rotation of the image leaves unchanged: the number of atoms placed in cells
    (most first), then the table of type counts, then the counts of each type's neighbourhood
    (its own type with the sorted types of its adjacent cells). Two bases that tie on all of
    these give the same level-2 view of the image.
    """
    placed = sum(int((np.asarray(p["members"]) >= 0).sum()) for p in parts)
    table = sorted({tuple(t) for p in parts for t in p["types"]})
    rank = {t: k for k, t in enumerate(table)}
    # Ranks follow the order of the type tuples, so sorted ranks are sorted types.
    codes = [np.array([rank[tuple(t)] for t in p["types"]], np.int64)[
        np.asarray(p["type"], np.int64)] for p in parts]
    ends = [np.asarray(p["adjacent"], np.int64).reshape(-1, 2) for p in parts]
    width = max((np.bincount(e.ravel()).max(initial=0) for e in ends if e.size), default=0)
    rows = []
    for code, e in zip(codes, ends, strict=True):
        cell = np.concatenate([e[:, 0], e[:, 1]])
        other = code[np.concatenate([e[:, 1], e[:, 0]])]
        order = np.lexsort((other, cell))
        cell, other = cell[order], other[order]
        start = np.searchsorted(cell, np.arange(len(code)))
        hood = np.full((len(code), 1 + width), -1, np.int64)
        hood[:, 0] = code
        hood[cell, 1 + np.arange(len(cell)) - start[cell]] = other
        rows.append(hood)
    hoods, _, n_hood = _row_groups(np.concatenate(rows))
    counts = np.bincount(np.concatenate(codes), minlength=len(table))
    return (
        -placed,
        sorted((-int(c), t) for t, c in zip(table, counts.tolist(), strict=True) if c),
        sorted((-int(c), (table[h[0]], tuple(table[x] for x in h[1:] if x >= 0)))
               for h, c in zip(hoods.tolist(), n_hood.tolist(), strict=True)),
    )


def pattern_key(
    ij: np.ndarray, types: list[str], rotations: np.ndarray
) -> tuple[tuple[int, int, str], ...]:
    """Canonical form of a pattern of typed lattice cells, up to translation and rotation.

    ``ij`` are the cells' lattice indices ``(k, 2)``, ``types`` their type names and
    ``rotations`` the lattice's rotations (:func:`lattice_rotations`). Each rotated copy is
    shifted to start at ``(0, 0)`` and written as sorted ``(i, j, type)`` triples; the smallest
    is the key, so two patterns are the same motif exactly when their keys are equal.
    """
    best = None
    for r in rotations:
        p = np.asarray(ij, np.int64) @ r.T
        p = p - p.min(axis=0)
        key = tuple(sorted(zip(p[:, 0].tolist(), p[:, 1].tolist(), types, strict=True)))
        if best is None or key < best:
            best = key
    assert best is not None  # rotations always hold the identity
    return best


def connected_subsets(n: int, edges: list[tuple[int, int]]) -> list[tuple[int, ...]]:
    """Every connected proper subset of at least two vertices of a small graph on ``range(n)``.

    Enumerates the ``2**n`` vertex subsets, so ``n`` must stay small (a pattern of a few cells).
    """
    nbr = [0] * n
    for a, b in edges:
        nbr[a] |= 1 << b
        nbr[b] |= 1 << a
    out = []
    for mask in range(1, (1 << n) - 1):
        if mask & (mask - 1) == 0:
            continue
        seen = mask & -mask
        frontier = seen
        while frontier:
            grow = 0
            for v in range(n):
                if frontier >> v & 1:
                    grow |= nbr[v]
            frontier = grow & mask & ~seen
            seen |= frontier
        if seen == mask:
            out.append(tuple(v for v in range(n) if mask >> v & 1))
    return out


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
        types.append((len(verts), *canonical_roll(labels[verts])))
    fa, fb = keep_face[face_of], keep_face[face_of[twin]]
    pair = (fa >= 0) & (fb >= 0) & (fa < fb)
    adjacent = np.unique(np.column_stack([fa[pair], fb[pair]]), axis=0).astype(np.int64)
    return {
        "rings": rings,
        "centre": np.array(centres).reshape(-1, 2),
        "types": types,
        "adjacent": adjacent.reshape(-1, 2),
    }
