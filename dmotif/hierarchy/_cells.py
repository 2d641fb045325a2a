"""Kernels of motif-cells: lattice cells, their types and adjacency, and the patterns of cells
(numpy only; no dask or xarray).

Everything here works on plain arrays of one frame; the dask/xarray wrappers in
:mod:`dmotif.hierarchy.cells` and :mod:`dmotif.hierarchy.graph` split the work over frames and
reduce it.

Conventions
-----------
* A cell type is a tuple of labels: the anchor's label first, then the labels of the other
  basis slots (-1 = empty slot) in angular order about the anchor, cyclically rolled to the
  lexicographically smallest sequence, read in either sense, so a turned or mirrored cell
  has the same type.
* A ring type (:mod:`dmotif.hierarchy._rings`) is the ring size followed by its vertices'
  labels in angular order, rolled the same way.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "adjacent_cells",
    "canonical_cycle",
    "cell_members",
    "connected_subsets",
    "convention_key",
    "lattice_cells",
    "pattern_key",
    "slot_types",
    "type_table",
]


def canonical_cycle(seq: tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """The lexicographically smallest cyclic rotation of ``seq`` or of its reverse.

    Slots or ring vertices listed in angular order come in another cyclic start when the image
    is turned and in the reverse order when it is mirrored, so both give the same sequence.
    """
    seq = tuple(int(s) for s in seq)
    if not seq:
        return seq
    return min(w[k:] + w[:k] for w in (seq, seq[::-1]) for k in range(len(w)))


def cell_members(
    frac: np.ndarray, site: np.ndarray, m: np.ndarray, slots: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cell index and slot of each atom from its ideal fractional coordinates.

    ``frac`` (n, 2) and ``site`` (n,) are what
    :func:`dmotif.hierarchy._unwrap.unwrap_sites` gives (``integer + site`` and the site's
    index, -1 where unplaced), with ``frac`` expressed on the basis ``m``; ``slots`` are the
    same sites on that basis, wrapped to ``[-0.25, 0.75)`` as
    :func:`dmotif.hierarchy._lattice.rebase_slots` gives them. Returns ``(ij, slot)``: the
    integer cell ``(n, 2)`` and the slot (-1 unplaced) of each atom.
    """
    n = len(frac)
    placed = np.flatnonzero(site >= 0)
    ij = np.zeros((n, 2), np.int64)
    slot = np.full(n, -1, np.int64)
    # site coordinates are exact, so the wrap needs no positional tolerance, and all the
    # atoms of a site share its slot: one match per site, not per atom
    cell = np.floor(frac[placed] + 0.25 + 1e-9)
    sites, first = np.unique(site[placed], return_index=True)
    slot_of = np.full(int(sites.max(initial=-1)) + 1, -1, np.int64)
    for s, k in zip(sites.tolist(), first.tolist(), strict=True):
        off = (frac[placed[k]] - cell[k]) @ m.T
        slot_of[s] = int(np.argmin(np.linalg.norm(off - slots @ m.T, axis=1)))
    ij[placed] = cell.astype(np.int64)
    slot[placed] = slot_of[site[placed]]
    return ij, slot


def lattice_cells(
    yx: np.ndarray,
    labels: np.ndarray,
    frac: np.ndarray,
    site: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    slots: np.ndarray,
) -> dict[str, np.ndarray]:
    """The accepted lattice cells of one frame and the labels of their slots.

    A cell ``(i, j)`` is the parallelogram ``[p, p+u, p+u+v, p+v]`` and the atoms on its
    ``slots`` (:func:`cell_members` of the ideal coordinates ``frac`` and ``site``). A
    lattice point is *real* when a labelled atom, of any label, sits on it (slot 0), and
    *known* when real or when at least 3 of its 4 nearest lattice points are real (a vacancy
    the lattice predicts). A cell is accepted when its four corners are known and at least three are
    real, which drops the cells cut by the image border. Each atom belongs to at most
    one cell (of two atoms on the same slot of a cell, the later one).

    Returns a dict with ``ij`` (c, 2) in lexicographic order, ``centre`` (c, 2) pixel
    ``(y, x)`` (the cell's atoms moved back by their slot offsets, averaged; for a cell with
    no atom, the mean over its real neighbours), ``members`` (c, s) atom indices (-1 = empty
    slot) and ``slot_labels`` (c, s).
    """
    m = np.column_stack([u, v])
    ij, slot = cell_members(frac, site, m, slots)
    slot[labels < 0] = -1
    s = len(slots)
    placed = np.flatnonzero(slot >= 0)
    if len(placed):
        lo = ij[placed].min(axis=0)
        shape = ij[placed].max(axis=0) - lo + 1
        # Occupancy of the lattice points over the atoms' bounding box, with a margin of one
        # empty point so that neighbours and corners are shifted slices.
        p = ij[placed] - lo + 1
        real = np.zeros(shape + 2, np.int8)
        on_anchor = slot[placed] == 0
        real[p[on_anchor, 0], p[on_anchor, 1]] = 1
        # each lattice point's pixel position, from the atoms on it (drift-free locally)
        point = (yx[placed] - slots[slot[placed]] @ m.T)
        flat = np.ravel_multi_index((p[:, 0], p[:, 1]), real.shape)
        n_on = np.bincount(flat, minlength=real.size)
        pos = np.column_stack([np.bincount(flat, point[:, k], real.size) for k in range(2)])
        pos = pos.reshape(*real.shape, 2)
        n_on = n_on.reshape(real.shape)
        around = real[:-2, 1:-1] + real[2:, 1:-1] + real[1:-1, :-2] + real[1:-1, 2:]
        known = real.astype(bool)
        known[1:-1, 1:-1] |= around >= 3
        # an empty point lies where its real neighbours, moved back by one step, put it
        near = np.zeros((*shape, 2))
        n_near = np.zeros(shape)
        for (rows, cols), step in (((slice(None, -2), slice(1, -1)), m[:, 0]),
                                   ((slice(2, None), slice(1, -1)), -m[:, 0]),
                                   ((slice(1, -1), slice(None, -2)), m[:, 1]),
                                   ((slice(1, -1), slice(2, None)), -m[:, 1])):
            has = n_on[rows, cols] > 0
            near += np.where(has[..., None], pos[rows, cols] / np.maximum(n_on[rows, cols],
                                                                          1)[..., None]
                             + step, 0.0)
            n_near += has
        inner = n_on[1:-1, 1:-1]
        point_pos = np.where((inner > 0)[..., None], pos[1:-1, 1:-1]
                             / np.maximum(inner, 1)[..., None],
                             near / np.maximum(n_near, 1)[..., None])
        # corner (a, b) of every cell, a and b in {0, 1}
        offsets = (slice(1, -1), slice(2, None))
        corner_known = np.ones(shape, bool)
        corner_real = np.zeros(shape, np.int8)
        for rows in offsets:
            for cols in offsets:
                corner_known &= known[rows, cols]
                corner_real += real[rows, cols]
        accepted = corner_known & (corner_real >= 3)
        found = np.argwhere(accepted)
        cells = found + lo
        centre = point_pos[found[:, 0], found[:, 1]] + 0.5 * (m[:, 0] + m[:, 1])
        index = np.full(shape, -1, np.int64)
        index[accepted] = np.arange(len(cells))
        k = index[p[:, 0] - 1, p[:, 1] - 1]
        atom, flat = placed[k >= 0], k[k >= 0] * s + slot[placed[k >= 0]]
    else:
        cells = np.empty((0, 2), np.int64)
        centre = np.empty((0, 2))
        atom = flat = np.empty(0, np.int64)
    c = len(cells)
    members = np.full(c * s, -1, np.int64)
    # The first of each (cell, slot) in reversed atom order is the later atom, which wins.
    _, last = np.unique(flat[::-1], return_index=True)
    members[flat[::-1][last]] = atom[::-1][last]
    members = members.reshape(c, s)
    # An anchor slot holding an atom of another label (e.g. an antisite) keeps that label.
    slot_labels = np.where(members >= 0, labels[np.maximum(members, 0)], -1).astype(np.int64)
    return {"ij": cells.astype(np.int64).reshape(c, 2), "centre": centre.reshape(c, 2),
            "members": members, "slot_labels": slot_labels}


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
    :func:`canonical_cycle`; each distinct row is rolled once.
    """
    rows, inverse, _ = _row_groups(np.asarray(slot_labels, np.int64))
    table, code = type_table([(int(r[0]), *canonical_cycle(r[1:])) for r in rows.tolist()])
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
