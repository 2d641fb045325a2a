"""Kernels of lattices: Bravais vectors, equivalent bases, the anchor sublattice and the basis
slots of a cell (numpy/scipy only; no dask or xarray).

Everything here works on plain arrays of one frame (positions ``yx`` in pixels as ``(n, 2)``
rows of ``(y, x)``, integer labels with -1 = unassigned).

A lattice is a pair of Bravais vectors ``(u, v)``, each ``(dy, dx)`` in pixels, reduced
(``|u| <= |v|``, ``|u·v| <= |u|²/2``), with ``det[u, v] > 0`` in ``(x, y)`` and, when the
lattice allows it, an acute angle. The choices related by the lattice's own rotations are
:func:`equivalent_bases`; for display :func:`lattice_basis` returns the one with ``u``
closest to the +x axis, but cells are built on the one the atoms themselves single out
(:func:`dmotif.hierarchy._cells.convention_key`), so cell types do not depend on how the image
is turned.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from ..detect._sublattice import reduce_basis
from ..errors import NoLatticeError

__all__ = [
    "anchor_label",
    "dense_groups",
    "equivalent_bases",
    "lattice_basis",
    "lattice_neighbours",
    "lattice_rotations",
    "neighbour_spacing",
    "patch_offsets",
    "rebase_slots",
    "root_atom",
    "same_label_vectors",
    "slot_positions",
]

# A translation is a lattice vector when it maps at least this fraction of the best-supported
# translation's atoms onto atoms of the same label; a bond of a two-site basis reaches only 1/2.
_LATTICE_SUPPORT = 0.7
# Below this fraction of atoms mapped by a translation there is no lattice worth the name.
_MIN_SUPPORT = 0.25


_MAX_VECTORS = 20_000
# A median needs no million queries: beyond this many atoms, an even stride of them.
_MAX_QUERIES = 100_000


def neighbour_spacing(yx: np.ndarray, frame: np.ndarray) -> float:
    """Median nearest-neighbour distance of atoms within the same frame (nan if none)."""
    dists = []
    stride = max(1, len(yx) // _MAX_QUERIES)
    # one stable sort instead of a pass over every atom per frame
    order = np.argsort(frame, kind="stable")
    starts = np.flatnonzero(np.diff(frame[order])) + 1
    for pts in np.split(yx[order], starts):
        if len(pts) >= 2:
            d, _ = cKDTree(pts).query(pts[::stride], k=2)
            dists.append(d[:, 1])
    if not dists:
        return float("nan")
    return float(np.median(np.concatenate(dists)))


def same_label_vectors(
    yx: np.ndarray, labels: np.ndarray, *, k: int = 12, max_length: float, stride: int = 1
) -> np.ndarray:
    """Vectors from labelled atoms to their ``k`` nearest same-label neighbours (one frame).

    With ``stride > 1`` only every ``stride``-th atom of each label is a source (its
    neighbours are still all the atoms): a lattice needs tens of thousands of vectors, not
    ten per atom of a million. Returns an ``(m, 2)`` array of ``(dy, dx)`` with length at
    most ``max_length``.
    """
    out = []
    for lab in np.unique(labels[labels >= 0]):
        pts = yx[labels == lab]
        if len(pts) < 2:
            continue
        kk = min(k + 1, len(pts))
        src = pts[::stride]
        d, idx = cKDTree(pts).query(src, k=kk, distance_upper_bound=max_length)
        ok = np.isfinite(d) & (d > 0)
        rows = np.broadcast_to(np.arange(len(src))[:, None], idx.shape)
        out.append(pts[idx[ok]] - src[rows[ok]])
    return np.concatenate(out) if out else np.empty((0, 2))


def _det(u: np.ndarray, v: np.ndarray) -> float:
    # det[u, v] with vectors read as (x, y): u = (dy, dx).
    return float(u[1] * v[0] - u[0] * v[1])


def equivalent_bases(
    u: np.ndarray, v: np.ndarray, rtol: float = 0.05
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every basis of the lattice of ``(u, v)`` with the shape of its reduced, acute basis.

    The bases are related by the lattice's own rotations (6 for a hexagonal lattice, 4 for a
    square one, 2 otherwise), all with ``det > 0`` so mirror images are not included. They are
    listed in an order that depends only on the input's orientation, not on the atoms.
    """
    u, v = reduce_basis(u, v)
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


def root_atom(yx: np.ndarray, labels: np.ndarray, anchor: int) -> int:
    """The atom of label ``anchor`` nearest the centroid of the labelled atoms (-1 if none)."""
    anchors = np.flatnonzero(labels == anchor)
    if len(anchors) == 0:
        return -1
    centre = yx[labels >= 0].mean(axis=0)
    return int(anchors[np.argmin(np.linalg.norm(yx[anchors] - centre, axis=1))])


def patch_offsets(
    yx: np.ndarray, labels: np.ndarray, m: np.ndarray, root: int, reach: float
) -> np.ndarray:
    """Fractional offsets, wrapped to ``[-0.25, 0.75)²``, of the labelled atoms within
    ``reach`` pixels of atom ``root``.

    Only a patch about the root is used: over a few cells the scan's distortion moves no atom
    off its site, as it does across a whole micrograph.
    """
    if root < 0:
        return np.empty((0, 2))
    near = (np.linalg.norm(yx - yx[root], axis=1) <= reach) & (labels >= 0)
    frac = (yx[near] - yx[root]) @ np.linalg.inv(m).T
    return frac - np.floor(frac + 0.25)


def slot_positions(offsets: np.ndarray, *, m: np.ndarray, tol: float, n_cells: int) -> np.ndarray:
    """Basis slots: groups of fractional offsets held by at least a quarter of the cells.

    Returns ``(s, 2)`` fractional positions, the anchor slot (nearest 0) first, the others in
    angular order about the anchor (ties by distance).
    """
    centres, sizes = dense_groups(offsets @ m.T, tol, max(0.25 * n_cells, 2))
    if len(centres) == 0:
        return np.zeros((1, 2))
    # Atoms are placed on slots within tol, so two groups closer than that, modulo a lattice
    # vector, are one slot: a site on the edge of the wrapped cell has its offsets on both
    # sides (the S2 site of a real MoS2 once its faint columns were found). The denser group
    # takes the other, moved next to it.
    frac = centres @ np.linalg.inv(m).T
    kept: list[int] = []
    for i in range(len(frac)):
        shift = [frac[i] - frac[k] - np.rint(frac[i] - frac[k]) for k in kept]
        near = [j for j, d in enumerate(shift) if np.linalg.norm(d @ m.T) < tol]
        if not near:
            kept.append(i)
            continue
        k = kept[near[0]]
        moved = frac[k] + shift[near[0]]
        frac[k] = (sizes[k] * frac[k] + sizes[i] * moved) / (sizes[k] + sizes[i])
        sizes[k] += sizes[i]
    s = frac[kept]
    s -= np.floor(s + 0.25)
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
