"""Motif-cells: the Bravais vectors of the atoms' lattice, and the cells (lattice cells where a
lattice holds, rings of the bond graph where it does not) with their types.

The work is split over frames with dask (tasks of consecutive frames, see
:mod:`dmotif.hierarchy._batches`, run by whatever scheduler or ``distributed.Client`` is
active) and reduced in frame order, so the result does not depend on the number of workers.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import NoLatticeError, ParameterError
from . import _cells, _lattice, _rings, _unwrap
from ._atoms import (
    atom_arrays,
    atom_spacing,
    atom_table,
    frame_atoms,
    frame_groups,
    label_array,
    motif_names,
)
from ._batches import batch_tasks, compute_batches
from ._names import type_titles

__all__ = ["lattice_vectors", "motif_cells"]

_METHODS = ("auto", "lattice", "rings")
# The basis slots are learned within this many lattice vectors of a central anchor: enough
# cells for every slot to stand out, few enough that scan distortion moves no atom off its site.
_PATCH_CELLS = 3.0
# Beyond this many labelled atoms the basis is chosen on the ones nearest each frame's root
# (in proportion to the frame's atoms), and the cells are built on the chosen basis only.
_CHOICE_ATOMS = 100_000


# --------------------------------------------------------------------------- lattice vectors


# Atoms that source neighbour vectors for the lattice: beyond this many, an even stride.
_VECTOR_SOURCES = 100_000
# Longest same-label vector read, in column spacings: a cell of three column types in a row
# (a perovskite along [110] in ABF: A, B, O) is 3.2 spacings long.
_VECTOR_REACH = 4.0


def _frame_vectors(table: dict[str, np.ndarray], f: int, max_length: float, stride: int
                   ) -> tuple[np.ndarray, int]:
    """The frame's same-label vectors and the number of atoms that sourced them."""
    yx, lab = frame_atoms(table, f)
    n = sum(len(range(0, int((lab == k).sum()), stride)) for k in np.unique(lab[lab >= 0]))
    return _lattice.same_label_vectors(yx, lab, max_length=max_length, stride=stride), n


def _pooled_basis(
    table: Any, frame: np.ndarray, lab: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(u, v, support)`` from the same-label vectors of every frame of :func:`atom_table`."""
    stride = max(1, int((lab >= 0).sum()) // _VECTOR_SOURCES)
    frames = frame_groups(frame)
    parts = compute_batches(batch_tasks(
        _frame_vectors, [(table, f, _VECTOR_REACH * spacing, stride) for f, _ in frames],
        [len(idx) for _, idx in frames]))
    vectors = np.concatenate([v for v, _ in parts])
    return _lattice.lattice_basis(vectors, spacing=spacing, n_atoms=sum(n for _, n in parts))


def lattice_vectors(atoms: xr.Dataset, *, labels: Any = None) -> xr.DataArray:
    """The two shortest independent Bravais vectors of the atoms' lattice.

    Translations are found from the vectors between atoms of the same label (all atoms count as
    one label when ``labels`` is None) within each frame, pooled over frames: a translation that
    maps most atoms onto atoms of the same label is a lattice vector, one that maps only a
    sublattice (a bond of a two-site basis) is not. Defects and a few wrong labels only lower
    the support.

    Parameters
    ----------
    atoms : xarray.Dataset
        Atom table over ``atom`` with ``frame``, ``y``, ``x`` (pixels).
    labels : array_like of int, optional
        Motif label per atom (-1 = unassigned). Without labels the lattice of the column
        positions is returned (e.g. a/2 for an ABO3 perovskite, whose A, B and O columns
        together form a square lattice of half the cell).

    Returns
    -------
    xarray.DataArray
        ``(vector, axis)`` = ``[[u_y, u_x], [v_y, v_x]]`` in pixels, reduced, ``det > 0`` and
        ``u`` closest to the +x axis among equivalent choices (a display convention:
        :func:`motif_cells` picks among them by the atoms); attrs ``spacing_px`` and
        ``support`` (fraction of atoms the vectors map onto an atom of the same label).

    Raises
    ------
    NoLatticeError
        When fewer than two independent translations are supported (amorphous atoms, a line).

    Examples
    --------
    >>> import dmotif
    >>> s = dmotif.synthetic.tmd(size=256)
    >>> uv = dmotif.lattice_vectors(s.atoms, labels=s.atoms["label"])
    >>> round(float((uv[0] ** 2).sum() ** 0.5), 1)
    21.1
    """
    frame, yx = atom_arrays(atoms)
    lab = (np.zeros(len(yx), np.int64) if labels is None else label_array(labels, len(yx)))
    spacing = atom_spacing(atoms, frame, yx)
    u, v, support = _pooled_basis(atom_table(frame, yx, lab), frame, lab, spacing)
    return xr.DataArray(
        np.stack([u, v]), dims=("vector", "axis"),
        coords={"vector": ["u", "v"], "axis": ["y", "x"]}, name="lattice",
        attrs={"spacing_px": spacing, "support": support, "units": "px"},
    )


# --------------------------------------------------------------------------- motif cells


# A frame's cells ("part"): ``centre``, ``members`` (frame-local atom indices), ``ij``,
# ``types`` (the distinct type tuples), ``type`` (each cell's index into ``types``) and
# ``adjacent`` (pairs of cell indices).


def _frame_offsets(table, f, m, anchor, reach):
    """The patch offsets of frame ``f`` about its root, and the anchors in that patch."""
    yx, lab = frame_atoms(table, f)
    root = _lattice.root_atom(yx, lab, anchor)
    if root < 0:
        return np.empty((0, 2)), 0
    near = np.linalg.norm(yx - yx[root], axis=1) <= reach
    return (_lattice.patch_offsets(yx, lab, m, root, reach),
            int((near & (lab == anchor)).sum()))


def _frame_sites(table, f, m0, sites, anchor, tol, quota):
    """The ideal coordinates and slots of frame ``f``'s atoms, unwrapped on the basis ``m0``
    and its ``sites``, and the atoms the basis is chosen on: the ``quota`` labelled atoms
    nearest the frame's root (None, all of them, when the frame has no more), a disc, so the
    choice stays blind to the image's orientation."""
    yx, lab = frame_atoms(table, f)
    frac = np.full((len(yx), 2), np.nan)
    site = np.full(len(yx), -1, np.int64)
    sel = np.flatnonzero(lab >= 0)
    root = _lattice.root_atom(yx, lab, anchor)
    sample = None
    if root >= 0 and quota < len(sel):
        dist = np.linalg.norm(yx[sel] - yx[root], axis=1)
        # the margin keeps a shell of equidistant atoms whole, whatever the rounding
        sample = sel[dist <= np.partition(dist, quota - 1)[quota - 1] + tol]
    if root >= 0:
        frac[sel], site[sel] = _unwrap.unwrap_sites(yx[sel], m0, sites, tol,
                                                    int(np.searchsorted(sel, root)))
    return frac, site, sample


def _frame_lattice_cells(table, f, m0, bases, slots, whole, placed):
    """The cells of frame ``f`` on each of ``bases``, from ``placed`` = :func:`_frame_sites`
    (the ideal coordinates on the basis ``m0``, the slots, and the atoms the basis is chosen
    on: only those unless ``whole``)."""
    yx, lab = frame_atoms(table, f)
    frac, site, keep = placed
    if keep is not None and not whole:
        yx, lab, frac, site = yx[keep], lab[keep], frac[keep], site[keep]
    out = []
    for (u, v), slot in zip(bases, slots, strict=True):
        m = np.column_stack([u, v])
        # equivalent bases differ by an integer matrix, so the coordinates stay exact sites
        to_m = np.rint(np.linalg.solve(m, m0))
        cells = _cells.lattice_cells(yx, lab, frac @ to_m.T, site, u, v, slot)
        # each pair once: the neighbour offsets come in (d, -d) halves
        steps = _lattice.lattice_neighbours(u, v)
        types, code = _cells.slot_types(cells["slot_labels"])
        out.append({"centre": cells["centre"], "members": cells["members"],
                    "ij": cells["ij"], "types": types, "type": code,
                    "adjacent": _cells.adjacent_cells(cells["ij"], steps[: len(steps) // 2])})
    return out


def _frame_rings(table, f, radius, max_ring):
    out = _rings.planar_rings(*frame_atoms(table, f), radius=radius, max_ring=max_ring)
    members = np.full((len(out["rings"]), max_ring), -1, np.int64)
    for k, ring in enumerate(out["rings"]):
        members[k, : len(ring)] = ring
    types, code = _cells.type_table(out["types"])
    return {"centre": out["centre"], "members": members,
            "ij": np.full((len(members), 2), -1, np.int64),
            "types": types, "type": code, "adjacent": out["adjacent"]}


def _type_name(kind: str, t: tuple[int, ...]) -> str:
    if kind == "lattice":
        return f"cell[{t[0]}|{','.join(map(str, t[1:]))}]"
    return f"ring{t[0]}[{','.join(map(str, t[1:]))}]"


def motif_cells(
    atoms: xr.Dataset,
    labels: Any,
    *,
    lattice: xr.DataArray | np.ndarray | None = None,
    method: str = "auto",
    tolerance: float = 0.2,
    radius: float | None = None,
    max_ring: int = 10,
) -> xr.Dataset:
    """Motif-cells of the atoms: lattice cells where a lattice holds, else rings.

    ``method="lattice"``: for Bravais vectors ``u, v`` the cell of lattice point ``p`` is
    ``[p, p+u, p+u+v, p+v]`` with the atoms on its basis *slots*: the lattice point (slot 0)
    and the positions the other sublattices take inside a cell, e.g. the chalcogen at
    (u+v)/3 of a TMD, the B site at (u+v)/2 of a perovskite. The slots are learned from the
    atoms within 3 lattice vectors of a central atom of the *anchor* label (the most frequent
    label with at most one atom per cell, e.g. the metal of a TMD, the A site of a perovskite),
    which fixes slot 0 on its sublattice. Every atom, of any label, is then placed on a slot by
    a walk over the neighbour graph from that atom: each step between neighbours (at most one
    lattice vector apart, matching a slot-to-slot step within ``tolerance`` × spacing) is
    snapped to the nearest slot, so the placement does not drift across a distorted micrograph
    as a single global lattice does. A lattice point is real when an atom sits on it and a
    vacancy when at least 3 of its 4 nearest lattice points are real; a cell is kept when its
    4 corners are real or vacancies, at least 3 real (cells cut by the image border are
    dropped). Each atom sits on at most one slot of one cell. The cell's type is the anchor
    slot's label followed by the other slots' labels (-1 = empty) in angular order about the
    anchor, rolled to the lexicographically smallest start read in either sense, so a rotated
    or mirrored cell has the same type. Which of the lattice's equivalent bases (related by
    its rotations: 6 hexagonal, 4 square, 2 otherwise) builds the cells decides which atoms
    share a cell, e.g. which of a metal's three chalcogens; it is fixed by the atoms, not by
    the pixel axes: the bases whose slots sit closest to the anchor, then the one that places
    the most atoms in cells, then by the table of type counts and of each type's neighbour
    types. Beyond 10⁵ labelled atoms these counts are taken on a disc of 10⁵ atoms about
    the central anchor atoms (shared among frames by their numbers of atoms), and the cells
    are then built on the chosen basis only. So the cells of an image turned by any angle are
    the turned cells.

    ``method="rings"``: the bond graph joins atoms whose Delaunay edge is at most ``radius``
    long; each bounded face with at most ``max_ring`` vertices is a cell, typed by its size and
    its vertices' labels in angular order, rolled the same way.

    ``method="auto"`` uses the lattice when :func:`lattice_vectors` finds one, else rings.

    Parameters
    ----------
    atoms : xarray.Dataset
        Atom table (``frame``, ``y``, ``x`` in pixels); attrs ``spacing_px`` is used if present.
    labels : array_like of int
        Motif label per atom, -1 = unassigned (such atoms are ignored).
    lattice : (2, 2) array or DataArray, optional
        Bravais vectors ``[[u_y, u_x], [v_y, v_x]]``; default from :func:`lattice_vectors`.
    method : {"auto", "lattice", "rings"}
        Neighbourhood kind.
    tolerance : float
        Position tolerance as a fraction of the nearest-neighbour spacing.
    radius : float, optional
        Bond length cut-off for rings, pixels; default 1.3 × spacing.
    max_ring : int
        Largest ring kept.

    Returns
    -------
    xarray.Dataset
        Over ``cell``: ``frame``, ``y``, ``x`` (centre, pixels), ``type`` (int32 index into
        attrs ``type_names``, ordered by decreasing count), ``members(cell, slot)`` (atom
        indices, -1 = empty slot), ``i``, ``j`` (lattice indices; -1 for rings) and over
        ``pair``: ``adjacent(pair, end)`` (lattice cells whose anchors are nearest lattice
        neighbours, 6 on a hexagonal lattice; rings sharing a bond). Attrs: ``method``,
        ``type_names``, ``type_labels`` (JSON), ``type_titles`` (readable names by
        composition and defects, see :func:`dmotif.hierarchy._names.type_titles`),
        ``spacing_px`` and, for lattice cells,
        ``lattice`` (the basis the cells are built on), ``anchor_label``, ``slots``.

    Raises
    ------
    DataError
        When every atom is unassigned or the inputs are malformed.
    NoLatticeError
        ``method="lattice"`` and no lattice is found.
    ParameterError
        Unknown ``method`` or a tolerance outside (0, 0.5].

    Examples
    --------
    >>> import dmotif
    >>> s = dmotif.synthetic.perovskite(size=256)
    >>> cells = dmotif.motif_cells(s.atoms, s.atoms["label"])
    >>> cells.attrs["type_names"][0]
    'cell[0|1,2,2]'
    """
    if method not in _METHODS:
        raise ParameterError(f"method must be one of {_METHODS}; got {method!r}.")
    if not 0 < tolerance <= 0.5:
        raise ParameterError(f"tolerance must be in (0, 0.5] of the spacing; got {tolerance!r}.")
    frame, yx = atom_arrays(atoms)
    lab = label_array(labels, len(yx))
    spacing = atom_spacing(atoms, frame, yx)
    tol = tolerance * spacing
    frames = frame_groups(frame)
    table = atom_table(frame, yx, lab)
    attrs: dict[str, Any] = {"spacing_px": spacing, "tolerance_px": tol}
    kind = "rings"
    if method in ("auto", "lattice"):
        try:
            parts, lattice_attrs = _lattice_parts(yx, lab, frame, table, lattice, spacing,
                                                  tol)
            kind = "lattice"
            attrs |= lattice_attrs
        except NoLatticeError:
            if method == "lattice":
                raise
    if kind == "rings":
        r = 1.3 * spacing if radius is None else float(radius)
        if r <= 0:
            raise ParameterError(f"radius must be > 0 pixels; got {radius!r}.")
        parts = compute_batches(batch_tasks(_frame_rings, [(table, f, r, max_ring)
                                                           for f, _ in frames],
                                            [len(idx) for _, idx in frames]))
        attrs["radius_px"] = r
    cells = _assemble_cells(parts, frames, kind, attrs)
    cells.attrs["type_titles"] = type_titles(json.loads(cells.attrs["type_labels"]), kind,
                                             motif_names(atoms, lab))
    return cells


def _lattice_parts(yx, lab, frame, table, lattice, spacing, tol):
    """Per-frame lattice cells on the basis the atoms single out (NoLatticeError if none).

    Every basis equivalent to ``lattice`` under the lattice's rotations is tried: the slots
    are learned on each, the bases whose slots sit closest to the anchor (the most compact
    cell) are kept, and among those the cells of the one with the smallest
    :func:`_cells.convention_key` (of the cells on a disc of ``_CHOICE_ATOMS`` atoms, on a
    larger image) are returned. Both steps use only distances, angles and
    counts, so the cells of a turned image are the turned cells.
    """
    # The frames' vectors come from the table the cell tasks read, not from a second copy.
    uv = (np.stack(_pooled_basis(table, frame, lab, spacing)[:2]) if lattice is None
          else np.asarray(lattice, dtype=float))
    if uv.shape != (2, 2) or abs(np.linalg.det(uv)) < 1e-6 * max(np.abs(uv).max(), 1.0):
        raise ParameterError(
            f"lattice must be two independent vectors [[u_y, u_x], [v_y, v_x]]; got {uv!r}."
        )
    anchor = _lattice.anchor_label(yx, lab, uv[0], frame)
    if anchor < 0:
        raise NoLatticeError(
            f"no label occupies a single sublattice of the lattice u={uv[0].round(2).tolist()},"
            f" v={uv[1].round(2).tolist()} px; check the labels or use method='rings'."
        )
    frames = frame_groups(frame)
    bases = _lattice.equivalent_bases(*uv)
    m0 = np.column_stack(bases[0])
    reach = _PATCH_CELLS * float(np.linalg.norm(m0, axis=0).max())
    sizes = [len(idx) for _, idx in frames]
    offs = compute_batches(batch_tasks(_frame_offsets, [(table, f, m0, anchor, reach)
                                                        for f, _ in frames], sizes))
    # The slots are the same atoms whatever the basis: learned once, re-expressed on each.
    learned = _lattice.slot_positions(np.concatenate([o for o, _ in offs]), m=m0, tol=tol,
                                      n_cells=sum(n for _, n in offs))
    slots, spread = [], []
    for u, v in bases:
        m = np.column_stack([u, v])
        slots.append(_lattice.rebase_slots(learned, m0, m))
        spread.append(float(np.linalg.norm(slots[-1] @ m.T, axis=1).sum()))
    best = [b for b in range(len(bases)) if spread[b] <= min(spread) + tol]
    n_atoms = int((lab >= 0).sum())
    sampled = len(best) > 1 and n_atoms > _CHOICE_ATOMS
    quota = [int((lab[idx] >= 0).sum()) for _, idx in frames]
    if sampled:
        quota = [max(1, _CHOICE_ATOMS * q // n_atoms) for q in quota]
    # Kept where they were computed (the workers of a cluster): 24 bytes an atom, they would
    # otherwise come back to the client and go out again inside the next tasks' graph.
    placed = dask.persist(*batch_tasks(
        _frame_sites, [(table, f, m0, learned, anchor, tol, q)
                       for (f, _), q in zip(frames, quota, strict=True)], sizes))
    choice = compute_batches(batch_tasks(
        _frame_lattice_cells, [(table, f, m0, [bases[b] for b in best],
                                [slots[b] for b in best], False) for f, _ in frames],
        sizes, placed))
    per_basis = [[p[k] for p in choice] for k in range(len(best))]
    k = min(range(len(best)), key=lambda k: _cells.convention_key(per_basis[k]))
    if sampled:
        per_basis[k] = [p[0] for p in compute_batches(batch_tasks(
            _frame_lattice_cells, [(table, f, m0, [bases[best[k]]], [slots[best[k]]], True)
                                   for f, _ in frames], sizes, placed))]
    u, v = bases[best[k]]
    return per_basis[k], {"lattice": [u.tolist(), v.tolist()], "anchor_label": anchor,
                          "slots": slots[best[k]].tolist()}


def _assemble_cells(parts, frames, kind, attrs) -> xr.Dataset:
    counts: Counter = Counter()
    for p in parts:
        for t, n in zip(p["types"], np.bincount(p["type"], minlength=len(p["types"])).tolist(),
                        strict=True):
            if n:
                counts[t] += n
    if not counts:
        raise NoLatticeError(
            f"no {kind} cell found: too few atoms, or atoms too far apart for the tolerance / "
            "radius; check the labels and the spacing."
        )
    order = sorted(counts, key=lambda t: (-counts[t], _type_name(kind, t)))
    code = {t: k for k, t in enumerate(order)}
    width = max(p["members"].shape[1] for p in parts)
    frame_l, centre_l, type_l, mem_l, ij_l, adj_l = [], [], [], [], [], []
    offset = 0
    for (f, idx), p in zip(frames, parts, strict=True):
        n = len(p["type"])
        mem = np.full((n, width), -1, np.int64)
        local = p["members"]
        mem[:, : local.shape[1]] = np.where(local >= 0, idx[np.maximum(local, 0)], -1)
        frame_l.append(np.full(n, f, np.int32))
        centre_l.append(p["centre"].reshape(n, 2))
        type_l.append(np.array([code[t] for t in p["types"]], np.int32)[p["type"]])
        mem_l.append(mem)
        ij_l.append(p["ij"])
        adj_l.append(p["adjacent"] + offset)
        offset += n
    centre = np.concatenate(centre_l)
    ij = np.concatenate(ij_l)
    ds = xr.Dataset(
        {
            "frame": ("cell", np.concatenate(frame_l)),
            "y": ("cell", centre[:, 0]),
            "x": ("cell", centre[:, 1]),
            "type": ("cell", np.concatenate(type_l)),
            "members": (("cell", "slot"), np.concatenate(mem_l)),
            "i": ("cell", ij[:, 0]),
            "j": ("cell", ij[:, 1]),
            "adjacent": (("pair", "end"), np.concatenate(adj_l).reshape(-1, 2)),
        }
    )
    ds.attrs = attrs | {
        "method": kind,
        "type_names": [_type_name(kind, t) for t in order],
        "type_labels": json.dumps([list(t) for t in order]),
    }
    return ds
