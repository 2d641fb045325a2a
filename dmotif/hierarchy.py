"""Motif-cells and the cross-scale hierarchy of motifs.

Level 1 is the atom motifs (the labels). Level 2 is the *cells*: where the atoms form a lattice,
each Bravais cell ``[p, p+u, p+u+v, p+v]`` anchored at a lattice point ``p`` of the anchor
sublattice, with the labels of its basis slots (so every atom belongs to exactly one cell and a
cell's type can be compared with a per-cell ground truth); where they do not (amorphous
regions, ring networks), the rings of the bond graph built from Delaunay edges no longer than a
radius. The basis ``(u, v)`` is chosen among the lattice's equivalent bases by the atoms alone,
so the cells of a turned image are the turned cells. Level 2 can also be learned like level 1
(Zernike + FR layout on patches centred on the cells) and compared with the enumerated types.
Level 3 is the connected patterns of a few cells that differ from the dominant cell type
(defect clusters, Stone–Wales-like ring groups), identified up to translation and the
lattice's rotations; a pattern contains another when a connected part of it is that pattern.

The work is split over frames with dask (one task per frame, run by whatever scheduler or
``distributed.Client`` is active) and reduced in frame order, so the result does not depend on
the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from typing import Any

import dask
import networkx as nx
import numpy as np
import xarray as xr
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from . import _cells, _window_sums
from ._random import Seed
from ._shared import share
from .errors import DataError, NoLatticeError, ParameterError, StoreError

__all__ = [
    "build_hierarchy",
    "lattice_vectors",
    "learn_cell_motifs",
    "load_hierarchy",
    "manifold_coordinate",
    "motif_cells",
    "save_hierarchy",
]

_METHODS = ("auto", "lattice", "rings")


# --------------------------------------------------------------------------- inputs


def _atom_arrays(atoms: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(atoms, xr.Dataset) or "atom" not in atoms.dims:
        raise DataError(
            f"atoms must be an xarray.Dataset over dim 'atom' (as detect_atoms returns); got "
            f"{type(atoms).__name__}."
        )
    missing = [v for v in ("y", "x") if v not in atoms]
    if missing:
        raise DataError(f"atoms lacks the variables {missing}; it needs frame, y and x (pixels).")
    n = atoms.sizes["atom"]
    if n == 0:
        raise DataError("atoms is empty: no atoms to build cells from; detect atoms first.")
    frame = atoms["frame"].values.astype(np.int64) if "frame" in atoms else np.zeros(n, np.int64)
    yx = np.column_stack([atoms["y"].values, atoms["x"].values]).astype(np.float64)
    if not np.isfinite(yx).all():
        raise DataError("atoms has non-finite y/x positions; drop or fix those atoms first.")
    return frame, yx


def _label_array(labels: Any, n: int) -> np.ndarray:
    lab = np.asarray(labels.values if isinstance(labels, xr.DataArray) else labels)
    if lab.shape != (n,):
        raise DataError(
            f"labels must have one entry per atom ({n}); got shape {lab.shape}. Pass the "
            "labels returned by cluster() for these atoms."
        )
    if not np.issubdtype(lab.dtype, np.integer):
        raise DataError(f"labels must be integers (-1 = unassigned); got dtype {lab.dtype}.")
    lab = lab.astype(np.int64)
    if (lab < 0).all():
        raise DataError(
            f"all {n} atoms are unassigned (label -1): there are no motifs to build cells "
            "or a hierarchy from; check the clustering (e.g. its minimum cluster size)."
        )
    return lab


def _spacing(atoms: xr.Dataset, frame: np.ndarray, yx: np.ndarray) -> float:
    sp = atoms.attrs.get("spacing_px")
    if sp is None or not np.isfinite(sp) or sp <= 0:
        sp = _cells.neighbour_spacing(yx, frame)
    if not np.isfinite(sp) or sp <= 0:
        raise NoLatticeError(
            "cannot estimate the nearest-neighbour spacing: every frame has fewer than two "
            "atoms; give more atoms."
        )
    return float(sp)


def _frames(frame: np.ndarray) -> list[tuple[int, np.ndarray]]:
    return [(int(f), np.flatnonzero(frame == f)) for f in np.unique(frame)]


def _atom_table(frame: np.ndarray, yx: np.ndarray, lab: np.ndarray) -> Any:
    """The atoms as one argument of the per-frame tasks, which slice their frame out of it:
    on a cluster it goes to the workers once instead of into the task graph."""
    return share({"frame": frame, "yx": yx, "label": lab})


def _frame_atoms(table: dict[str, np.ndarray], f: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and labels of the atoms of frame ``f`` from :func:`_atom_table`."""
    sel = table["frame"] == f
    return table["yx"][sel], table["label"][sel]


# --------------------------------------------------------------------------- lattice vectors


def _frame_vectors(table: dict[str, np.ndarray], f: int, max_length: float) -> np.ndarray:
    return _cells.same_label_vectors(*_frame_atoms(table, f), max_length=max_length)


def _pooled_basis(
    table: Any, frame: np.ndarray, lab: np.ndarray, spacing: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """``(u, v, support)`` from the same-label vectors of every frame of :func:`_atom_table`."""
    tasks = [dask.delayed(_frame_vectors)(table, f, 3.0 * spacing) for f, _ in _frames(frame)]
    vectors = np.concatenate(dask.compute(*tasks))
    return _cells.lattice_basis(vectors, spacing=spacing, n_atoms=int((lab >= 0).sum()))


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
    frame, yx = _atom_arrays(atoms)
    lab = (np.zeros(len(yx), np.int64) if labels is None else _label_array(labels, len(yx)))
    spacing = _spacing(atoms, frame, yx)
    u, v, support = _pooled_basis(_atom_table(frame, yx, lab), frame, lab, spacing)
    return xr.DataArray(
        np.stack([u, v]), dims=("vector", "axis"),
        coords={"vector": ["u", "v"], "axis": ["y", "x"]}, name="lattice",
        attrs={"spacing_px": spacing, "support": support, "units": "px"},
    )


# --------------------------------------------------------------------------- motif cells


# A frame's cells ("part"): ``centre``, ``members`` (frame-local atom indices), ``ij``,
# ``types`` (the distinct type tuples), ``type`` (each cell's index into ``types``) and
# ``adjacent`` (pairs of cell indices).


def _frame_offsets(table, f, u, v, anchor):
    return _cells.fractional_offsets(*_frame_atoms(table, f), u, v, anchor)


def _frame_lattice_cells(table, f, u, v, slots, anchor, tol):
    out = _cells.lattice_cells(*_frame_atoms(table, f), u, v, slots, anchor, tol)
    # each pair once: the neighbour offsets come in (d, -d) halves
    steps = _cells.lattice_neighbours(u, v)
    types, code = _cells.slot_types(out["slot_labels"])
    return {"centre": out["centre"], "members": out["members"], "ij": out["ij"],
            "types": types, "type": code,
            "adjacent": _cells.adjacent_cells(out["ij"], steps[: len(steps) // 2])}


def _frame_rings(table, f, radius, max_ring):
    out = _cells.planar_rings(*_frame_atoms(table, f), radius=radius, max_ring=max_ring)
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
    ``[p, p+u, p+u+v, p+v]``. Lattice points are those of the *anchor* sublattice (the most
    frequent label with at most one atom per cell, e.g. the metal of a TMD, the A site of a
    perovskite); a point with no atom is a vacancy when at least 3 of its 4 nearest lattice
    points hold an anchor. A cell is kept when its 4 corners are anchors or vacancies, at least
    3 real, within ``tolerance`` × spacing of the lattice. The basis *slots* (anchor plus the
    positions other atoms take inside a cell, e.g. the chalcogen at (u+v)/3) are learned from
    the data; each atom sits on at most one slot of one cell. The cell's type is the anchor
    slot's label followed by the other slots' labels (-1 = empty) in angular order about the
    anchor, rolled to the lexicographically smallest start, so a rotated cell has the same
    type; a mirrored cell does not (chirality is kept). Which of the lattice's equivalent bases
    (related by its rotations: 6 hexagonal, 4 square, 2 otherwise) builds the cells decides
    which atoms share a cell, e.g. which of a metal's three chalcogens; it is fixed by the atoms,
    not by the pixel axes: the bases whose slots sit closest to the anchor, then the one that
    places the most atoms in cells, then by the table of type counts and of each type's
    neighbour types. So the cells of an image turned by any angle are the turned cells.

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
        ``type_names``, ``type_labels`` (JSON), ``spacing_px`` and, for lattice cells,
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
    frame, yx = _atom_arrays(atoms)
    lab = _label_array(labels, len(yx))
    spacing = _spacing(atoms, frame, yx)
    tol = tolerance * spacing
    frames = _frames(frame)
    table = _atom_table(frame, yx, lab)
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
        parts = dask.compute(*[dask.delayed(_frame_rings)(table, f, r, max_ring)
                               for f, _ in frames])
        attrs["radius_px"] = r
    return _assemble_cells(parts, frames, kind, attrs)


def _lattice_parts(yx, lab, frame, table, lattice, spacing, tol):
    """Per-frame lattice cells on the basis the atoms single out (NoLatticeError if none).

    Every basis equivalent to ``lattice`` under the lattice's rotations is tried: the slots
    are learned on each, the bases whose slots sit closest to the anchor (the most compact
    cell) are kept, and among those the cells of the one with the smallest
    :func:`_cells.convention_key` are returned. Both steps use only distances, angles and
    counts, so the cells of a turned image are the turned cells.
    """
    # The frames' vectors come from the table the cell tasks read, not from a second copy.
    uv = (np.stack(_pooled_basis(table, frame, lab, spacing)[:2]) if lattice is None
          else np.asarray(lattice, dtype=float))
    if uv.shape != (2, 2) or abs(np.linalg.det(uv)) < 1e-6 * max(np.abs(uv).max(), 1.0):
        raise ParameterError(
            f"lattice must be two independent vectors [[u_y, u_x], [v_y, v_x]]; got {uv!r}."
        )
    anchor = _cells.anchor_label(yx, lab, uv[0], frame)
    frames = _frames(frame)
    if anchor < 0:
        raise NoLatticeError(
            f"no label occupies a single sublattice of the lattice u={uv[0].round(2).tolist()},"
            f" v={uv[1].round(2).tolist()} px; check the labels or use method='rings'."
        )
    bases = _cells.equivalent_bases(*uv)
    m0 = np.column_stack(bases[0])
    offs = dask.compute(*[dask.delayed(_frame_offsets)(table, f, *bases[0], anchor)
                          for f, _ in frames])
    # The slots are the same atoms whatever the basis: learned once, re-expressed on each.
    learned = _cells.slot_positions(np.concatenate(offs), m=m0, tol=tol,
                                    n_cells=int((lab == anchor).sum()))
    slots, spread = [], []
    for u, v in bases:
        m = np.column_stack([u, v])
        slots.append(_cells.rebase_slots(learned, m0, m))
        spread.append(float(np.linalg.norm(slots[-1] @ m.T, axis=1).sum()))
    n_f = len(frames)
    best = [b for b in range(len(bases)) if spread[b] <= min(spread) + tol]
    parts = dask.compute(*[dask.delayed(_frame_lattice_cells)(table, f, *bases[b], slots[b],
                                                               anchor, tol)
                           for b in best for f, _ in frames])
    per_basis = [list(parts[k * n_f:(k + 1) * n_f]) for k in range(len(best))]
    k = min(range(len(best)), key=lambda k: _cells.convention_key(per_basis[k]))
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


# --------------------------------------------------------------------------- learned level 2


def _cell_motif_centres(cells: xr.Dataset, atoms_yx: np.ndarray) -> tuple[np.ndarray, float]:
    """Where each cell's own atoms are centred, and the radius that holds them (pixels).

    A lattice cell's patch is centred on the mean of its basis slots (not on the middle of the
    parallelogram, where other cells' corner atoms sit nearer than its own); a ring's on its
    centre. The radius reaches the farthest own atom of a typical cell plus half a spacing.
    """
    centre = np.column_stack([cells["y"].values, cells["x"].values])
    if cells.attrs["method"] == "lattice":
        uv = np.asarray(cells.attrs["lattice"], float)
        slots = np.asarray(cells.attrs["slots"], float)
        centre = centre + (slots.mean(axis=0) - 0.5) @ uv
    members = cells["members"].values
    pos = np.where(members[..., None] >= 0, atoms_yx[np.maximum(members, 0)], np.nan)
    reach = np.nanmax(np.linalg.norm(pos - centre[:, None, :], axis=-1), axis=1)
    return centre, float(np.nanmedian(reach)) + 0.5 * float(cells.attrs["spacing_px"])


def learn_cell_motifs(
    image: xr.DataArray,
    atoms: xr.Dataset,
    cells: xr.Dataset,
    *,
    radius: float | None = None,
    n_max: int = 10,
    metric: str = "euclidean",
    seed: Seed = 0,
) -> xr.DataArray:
    """Level-2 motifs learned like level 1: Zernike + PCA + FR layout + clusters on cells.

    Each cell's patch is centred on its own atoms (a lattice cell's basis slots, a ring's
    vertices) with a radius of about one cell; the patches go through
    :func:`dmotif.zernike_features`, :func:`dmotif.pca`, :func:`dmotif.fr_layout` and
    :func:`dmotif.cluster`, the same chain as the atoms. The labels can then be compared with
    the enumerated cell types (``build_hierarchy(..., learned=...)``).

    Parameters
    ----------
    image : xarray.DataArray
        The image stack ``(frame, y, x)`` the atoms were found in.
    atoms : xarray.Dataset
        The atom table the cells were built from.
    cells : xarray.Dataset
        From :func:`motif_cells`.
    radius : float, optional
        Patch radius, pixels; default the distance from a cell's centre to its farthest own
        atom (median over cells) plus half a spacing, at least ``n_max``.
    n_max : int
        Highest Zernike order.
    metric : str
        Metric of the layout's neighbour graph; euclidean keeps the intensity scale that tells
        a single chalcogen from a pair.
    seed : int, numpy.random.Generator or None
        Seed of the layout and the clustering.

    Returns
    -------
    xarray.DataArray
        int32 over ``cell``, -1 = unassigned; attrs ``radius`` and ``n_motifs``.

    Raises
    ------
    DataError
        When ``image`` is missing or the cells are too few to lay out.
    """
    from .cluster import cluster
    from .layout import fr_layout
    from .reduce import pca
    from .zernike import zernike_features

    if image is None:
        raise DataError(
            "learning level-2 motifs needs the image the atoms came from; pass image=."
        )
    _, yx = _atom_arrays(atoms)
    centre, reach = _cell_motif_centres(cells, yx)
    r = max(float(np.ceil(reach)), float(n_max)) if radius is None else float(radius)
    sites = xr.Dataset({"frame": ("atom", cells["frame"].values.astype(np.int32)),
                        "y": ("atom", centre[:, 0]), "x": ("atom", centre[:, 1])})
    feats = zernike_features(image, sites, radius=r, n_max=n_max)
    layout = fr_layout(pca(feats).compute(), metric=metric, seed=seed)
    labels = cluster(layout, seed=seed)
    out = xr.DataArray(labels.values.astype(np.int32), dims=("cell",), name="learned")
    out.attrs = {"radius": r, "n_motifs": int(labels.attrs.get("n_motifs", labels.max() + 1))}
    return out


# --------------------------------------------------------------------------- the hierarchy


def _patch_sums(
    img: np.ndarray | None, centres: np.ndarray, keys: np.ndarray, r: int
) -> dict[int, list]:
    """Sum of the ``(2r+1)²`` patches around ``centres`` per key (patches off the image skipped)."""
    if img is None or r <= 0:
        return {}
    ny, nx = img.shape
    cy, cx = np.rint(centres[:, 0]).astype(int), np.rint(centres[:, 1]).astype(int)
    inside = (cy >= r) & (cy < ny - r) & (cx >= r) & (cx < nx - r)
    uniq, code = np.unique(keys[inside], return_inverse=True)
    sums, counts = _window_sums.window_sums(img, cy[inside], cx[inside], code, len(uniq), r)
    return {int(k): [sums[c], int(counts[c])] for c, k in enumerate(uniq.tolist())}


def _pattern_graph(types: list[str], edges: list[tuple[int, int]]) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from((k, {"t": t}) for k, t in enumerate(types))
    g.add_edges_from(edges)
    return g


def _pattern_key(types: list[str], edges: list, ij: np.ndarray, rotations: np.ndarray | None):
    """Lattice patterns: the exact key up to the lattice's rotations; rings: a graph hash."""
    if rotations is not None:
        return _cells.pattern_key(ij, types, rotations)
    return nx.weisfeiler_lehman_graph_hash(_pattern_graph(types, edges), node_attr="t")


def _find_pattern(table: dict, key: Any, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The entry of ``table`` that is the same motif as ``entry`` (None if there is none).

    A lattice key is exact; a ring pattern's hash can collide, so its bucket is checked by
    graph isomorphism with equal cell types.
    """
    for other in table.get(key, []):
        if other["ij"] is not None or nx.is_isomorphic(
            _pattern_graph(other["types"], other["edges"]),
            _pattern_graph(entry["types"], entry["edges"]),
            node_match=lambda a, b: a["t"] == b["t"],
        ):
            return other
    return None


def _add_pattern(table: dict, key: Any, entry: dict[str, Any]) -> None:
    same = _find_pattern(table, key, entry)
    if same is None:
        table.setdefault(key, []).append(dict(entry))
    else:
        same["count"] += entry["count"]


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label of each of the ``n`` vertices of an undirected graph."""
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _listed_edges(group: list[int], edges: list[list[int]], n: int) -> list[tuple[int, int]]:
    """The ``edges`` of a group of cells as sorted pairs of positions in ``group`` (sorted).

    Each edge is oriented from the end networkx visits first when it lists the edges of the
    group's subgraph of an ``n``-cell graph, as the stored patterns have always had them: a
    small subgraph's nodes in the order of a Python set of them, a large one's in graph order.
    """
    visit = group if 2 * len(group) >= n else set(group)
    first = {c: k for k, c in enumerate(visit)}
    pos = {c: k for k, c in enumerate(group)}
    return sorted((pos[a], pos[b]) if first[a] <= first[b] else (pos[b], pos[a])
                  for a, b in edges)


def _frame_summary(
    f: int,
    cells: dict[str, np.ndarray | None],
    atoms: dict[str, np.ndarray],
    img: np.ndarray | None,
    r1: int,
    r2: int,
    type_names: list[str],
    rotations: np.ndarray | None,
    max_cells: int,
) -> dict[str, Any]:
    """Counts, patch sums, regions and defect patterns of the cells of frame ``f``.

    ``cells`` (``frame``, ``type``, ``ij``, ``centre``, ``adjacent``, ``learned``) and
    ``atoms`` (``frame``, ``label``, ``yx``) hold every frame. The defect cells are those not
    of the dominant type (type 0); each connected group of ``2..max_cells`` of them is a
    pattern occurrence, larger groups are counted as regions.
    """
    cell_idx = np.flatnonzero(cells["frame"] == f)
    atom_idx = np.flatnonzero(atoms["frame"] == f)
    cell_type = cells["type"][cell_idx]
    cell_ij, centres = cells["ij"][cell_idx], cells["centre"][cell_idx]
    atom_lab, atom_yx = atoms["label"][atom_idx], atoms["yx"][atom_idx]
    local = np.full(len(cells["type"]), -1, np.int64)
    local[cell_idx] = np.arange(len(cell_idx))
    adjacent = local[cells["adjacent"][local[cells["adjacent"][:, 0]] >= 0]]
    n = len(cell_idx)
    # A component of the edges between cells of one type holds that type only.
    same = _components(n, adjacent[cell_type[adjacent[:, 0]] == cell_type[adjacent[:, 1]]])
    _, first = np.unique(same, return_index=True)
    kinds, n_regions = np.unique(cell_type[first], return_counts=True)
    regions = Counter(dict(zip(kinds.tolist(), n_regions.tolist(), strict=True)))
    odd = cell_type != 0
    # each edge once, as a graph holds them
    edges = np.unique(np.sort(adjacent[odd[adjacent[:, 0]] & odd[adjacent[:, 1]]], axis=1),
                      axis=0).reshape(-1, 2)
    comp = _components(n, edges)
    edge_comp = comp[edges[:, 0]]
    by_comp = np.argsort(edge_comp, kind="stable")
    edges, edge_comp = edges[by_comp], edge_comp[by_comp]
    # the groups of defect cells in the order of their smallest cell, each sorted
    defects = np.flatnonzero(odd)
    _, smallest, inverse = np.unique(comp[defects], return_index=True, return_inverse=True)
    group_of = smallest[inverse.reshape(-1)]
    order = np.argsort(group_of, kind="stable")
    groups = np.split(defects[order], np.flatnonzero(np.diff(group_of[order])) + 1)
    patterns: dict[Any, list[dict[str, Any]]] = {}
    large: list[dict[str, Any]] = []
    for group in groups:
        if len(group) < 2:
            continue
        types = [type_names[t] for t in cell_type[group].tolist()]
        if len(group) > max_cells:
            large.append({"n_cells": len(group), "types": Counter(types)})
            continue
        lo, hi = np.searchsorted(edge_comp, [comp[group[0]], comp[group[0]] + 1])
        within = _listed_edges(group.tolist(), edges[lo:hi].tolist(), n)
        ij = None if rotations is None else cell_ij[group]
        _add_pattern(patterns, _pattern_key(types, within, ij, rotations),
                     {"count": 1, "types": types, "edges": within,
                      "ij": None if ij is None else (ij - ij.min(axis=0)).tolist(),
                      "example": cell_idx[group].tolist()})
    learned = None if cells["learned"] is None else cells["learned"][cell_idx]
    return {
        "label_counts": Counter(atom_lab[atom_lab >= 0].tolist()),
        "type_counts": Counter(cell_type.tolist()),
        "regions": regions,
        "patterns": patterns,
        "large": large,
        "label_patch": _patch_sums(img, atom_yx, atom_lab, r1),
        "type_patch": _patch_sums(img, centres, cell_type, r2),
        "learned_patch": ({} if learned is None
                          else _patch_sums(img, centres[learned >= 0], learned[learned >= 0],
                                           r2)),
        "label_example": {int(k): atom_idx[atom_lab == k][:10].tolist()
                          for k in np.unique(atom_lab[atom_lab >= 0])},
    }


def _merge_patch(total: dict[int, list], part: dict[int, list]) -> None:
    for k, (s, n) in part.items():
        if k in total:
            total[k][0] = total[k][0] + s
            total[k][1] += n
        else:
            total[k] = [s, n]


def build_hierarchy(
    atoms: xr.Dataset,
    labels: Any,
    *,
    image: xr.DataArray | None = None,
    cells: xr.Dataset | None = None,
    lattice: xr.DataArray | np.ndarray | None = None,
    method: str = "auto",
    patch_radius: int | None = None,
    max_pattern_cells: int = 6,
    learned: Any = False,
    seed: Seed = 0,
) -> nx.DiGraph:
    """The cross-scale hierarchy of motifs as a directed graph.

    Nodes (attribute ``level``):

    * ``"L1:<label>"`` atom motifs;
    * ``"L2:<type>"`` cell types from :func:`motif_cells`, with ``labels`` (slot labels) and
      ``regions`` (connected regions of cells of that type);
    * ``"L2learned:<k>"`` (``view="learned"``, only with ``learned``) level-2 motifs learned
      from patches centred on the cells;
    * ``"L3:<hash>"`` level-k motifs: connected patterns of ``k`` = 2 … ``max_pattern_cells``
      cells not of the dominant type (defect clusters, ring groups). Lattice patterns are the
      same motif when their cells, with their types, coincide after a translation and one of
      the lattice's rotations (not a mirror); ring patterns when their ring-adjacency graphs
      with ring types are isomorphic. Attributes ``n_cells`` (k), ``types``, ``edges``
      (adjacent cells within the pattern) and ``cells`` (lattice indices of one occurrence);
    * ``"L3:large"`` all connected groups of more than ``max_pattern_cells`` such cells,
      summarised: ``count`` groups of ``sizes`` cells (``n_cells`` in total).

    Every node has ``count`` (atoms, cells or occurrences), ``name``, ``example`` (atom or
    cell indices) and, when ``image`` is given, ``mean_patch`` (levels 1 and 2). An edge B → A
    means "B is made of A", with attribute ``multiplicity``: atoms of motif A per cell of type
    B, cells of type A per pattern B (for ``L3:large``, in all its groups together), or
    distinct cell sets of pattern B that form pattern A (A contained in B). An edge from a cell
    type to a learned motif has instead ``overlap``: the cells of that type learned as that
    motif.

    Per-frame work (counts, patches, patterns) is one dask task per frame; the graph is reduced
    from per-frame results in frame order.

    Parameters
    ----------
    atoms : xarray.Dataset
        Atom table over ``atom`` (``frame``, ``y``, ``x`` in pixels).
    labels : array_like of int
        Motif label per atom, -1 = unassigned.
    image : xarray.DataArray, optional
        The image stack ``(frame, y, x)`` the atoms were found in, for mean patches.
    cells : xarray.Dataset, optional
        Precomputed :func:`motif_cells`; else computed with ``lattice`` and ``method``.
    lattice, method
        Passed to :func:`motif_cells`.
    patch_radius : int, optional
        Radius of level-1 patches, pixels (default half the spacing); level-2 patches cover a
        cell plus that margin.
    max_pattern_cells : int
        Largest level-3 pattern enumerated, in cells (2 … 12); larger groups are summarised.
        The containment of patterns enumerates subsets of each, so the cost grows as
        ``2**max_pattern_cells`` per distinct pattern.
    learned : bool or array_like of int
        The learned view of level 2. True: learn it with :func:`learn_cell_motifs` (needs
        ``image``; costs a Zernike + layout run on the cells, hence off by default). An array:
        one learned label per cell of ``cells``. The two views are compared: learned nodes
        joined to types by ``overlap`` edges, each type's ``learned`` (its most frequent
        learned label) and ``learned_purity``, and the graph's ``level2_ari`` (adjusted Rand
        index between types and learned labels).
    seed : int, numpy.random.Generator or None
        Seed of the learned view.

    Returns
    -------
    networkx.DiGraph
        Graph attributes: ``method``, ``n_frames``, ``spacing_px`` (and ``level2_ari``).

    Raises
    ------
    DataError
        All atoms unassigned, malformed inputs, ``learned`` of the wrong length, or
        ``learned=True`` without ``image``.
    NoLatticeError
        No cells can be formed.
    ParameterError
        ``max_pattern_cells`` outside 2 … 12.

    Examples
    --------
    >>> import dmotif
    >>> s = dmotif.synthetic.perovskite(size=256)
    >>> g = dmotif.build_hierarchy(s.atoms, s.atoms["label"])
    >>> top = max((d for _, d in g.nodes(data=True) if d["level"] == 2), key=lambda d: d["count"])
    >>> sorted(top["labels"])
    [0, 1, 2, 2]
    """
    if not 2 <= max_pattern_cells <= 12:
        raise ParameterError(
            f"max_pattern_cells must be in [2, 12] (patterns are enumerated cell subset by "
            f"cell subset); got {max_pattern_cells!r}."
        )
    frame, yx = _atom_arrays(atoms)
    lab = _label_array(labels, len(yx))
    if cells is None:
        cells = motif_cells(atoms, lab, lattice=lattice, method=method)
    spacing = float(cells.attrs["spacing_px"])
    names = list(cells.attrs["type_names"])
    type_labels = [tuple(t) for t in json.loads(cells.attrs["type_labels"])]
    kind = cells.attrs["method"]
    ctype = cells["type"].values.astype(np.int64)
    cframe = cells["frame"].values
    centres = np.column_stack([cells["y"].values, cells["x"].values])
    adjacent = cells["adjacent"].values.reshape(-1, 2)
    members = cells["members"].values
    r1 = max(round(0.5 * spacing), 1) if patch_radius is None else int(patch_radius)
    if image is not None:
        ext = np.nanmax(np.linalg.norm(
            np.column_stack([cells["y"].values, cells["x"].values])[:, None, :]
            - np.where(members[..., None] >= 0, yx[np.maximum(members, 0)], np.nan),
            axis=-1), initial=0.0)
        r2 = int(np.ceil(ext)) + r1
    else:
        r2 = 0
    ll = _learned_labels(learned, image, atoms, cells, seed)
    rotations = (_cells.lattice_rotations(*np.asarray(cells.attrs["lattice"], float))
                 if kind == "lattice" else None)
    cij = np.column_stack([cells["i"].values, cells["j"].values])
    # Every task slices its frame out of these: on a cluster they go to the workers once.
    cell_table = share({"frame": cframe, "type": ctype, "ij": cij, "centre": centres,
                        "adjacent": adjacent.astype(np.int64), "learned": ll})
    atom_table = _atom_table(frame, yx, lab)
    tasks = []
    frame_ids = np.unique(np.concatenate([frame, cframe]))
    for f in frame_ids:
        img = image.data[int(np.flatnonzero(image["frame"].values == f)[0])] \
            if image is not None and "frame" in image.coords else (
                image.data[int(f)] if image is not None else None)
        tasks.append(dask.delayed(_frame_summary)(
            int(f), cell_table, atom_table, img, r1, r2, names, rotations, max_pattern_cells,
        ))
    parts = dask.compute(*tasks)
    g = _reduce_graph(parts, names, type_labels, kind, atoms, cells, spacing, len(frame_ids))
    _pattern_nodes(g, parts, rotations, max_pattern_cells)
    if ll is not None:
        learned_patch: dict[int, list] = {}
        for p in parts:
            _merge_patch(learned_patch, p["learned_patch"])
        _learned_nodes(g, names, ctype, ll, learned_patch)
    return g


def _learned_labels(learned: Any, image, atoms, cells, seed) -> np.ndarray | None:
    """The learned level-2 labels: none, given per cell, or learned now from the image."""
    if learned is None or learned is False:  # the learned view is optional: it costs a layout
        return None
    if learned is True:
        return learn_cell_motifs(image, atoms, cells, seed=seed).values.astype(np.int64)
    ll = np.asarray(learned.values if isinstance(learned, xr.DataArray) else learned)
    if ll.shape != (cells.sizes["cell"],) or not np.issubdtype(ll.dtype, np.integer):
        raise DataError(
            f"learned must be True or hold one integer label per cell ({cells.sizes['cell']});"
            f" got shape {ll.shape}, dtype {ll.dtype}."
        )
    return ll.astype(np.int64)


def _reduce_graph(parts, names, type_labels, kind, atoms, cells, spacing,
                  n_frames) -> nx.DiGraph:
    label_counts, type_counts, regions = Counter(), Counter(), Counter()
    label_patch: dict[int, list] = {}
    type_patch: dict[int, list] = {}
    label_example: dict[int, list] = {}
    for p in parts:
        label_counts.update(p["label_counts"])
        type_counts.update(p["type_counts"])
        regions.update(p["regions"])
        _merge_patch(label_patch, p["label_patch"])
        _merge_patch(type_patch, p["type_patch"])
        for k, ex in p["label_example"].items():
            label_example.setdefault(k, ex)
    motif_names = list(atoms.attrs.get("motif_names", []))
    g = nx.DiGraph(method=kind, n_frames=int(n_frames), spacing_px=float(spacing))
    for k in sorted(label_counts):
        name = motif_names[k] if 0 <= k < len(motif_names) else f"motif {k}"
        attrs = {"level": 1, "count": int(label_counts[k]), "name": name, "label": int(k),
                 "example": label_example.get(k, [])}
        if k in label_patch:
            attrs["mean_patch"] = (label_patch[k][0] / label_patch[k][1]).astype(np.float32)
        g.add_node(f"L1:{k}", **attrs)
    cell_labels = {t: (t[1:] if kind == "rings" else t) for t in type_labels}
    ctype = cells["type"].values
    for code, name in enumerate(names):
        t = type_labels[code]
        attrs = {"level": 2, "count": int(type_counts[code]), "name": name,
                 "labels": [int(x) for x in cell_labels[t]], "regions": int(regions[code]),
                 "example": np.flatnonzero(ctype == code)[:10].tolist()}
        if code in type_patch:
            attrs["mean_patch"] = (type_patch[code][0] / type_patch[code][1]).astype(np.float32)
        g.add_node(f"L2:{name}", **attrs)
        for k, mult in sorted(Counter(x for x in cell_labels[t] if x >= 0).items()):
            if f"L1:{k}" in g:
                g.add_edge(f"L2:{name}", f"L1:{k}", multiplicity=int(mult))
    return g


def _pattern_nodes(g: nx.DiGraph, parts: list[dict[str, Any]], rotations: np.ndarray | None,
                   max_cells: int) -> None:
    """Add the level-3 nodes: defect patterns, their containment, and the large regions."""
    patterns: dict[Any, list[dict[str, Any]]] = {}
    large: list[dict[str, Any]] = []
    for p in parts:  # frame order, so node ids do not depend on the scheduler
        for key, bucket in p["patterns"].items():
            for entry in bucket:
                _add_pattern(patterns, key, entry)
        large.extend(p["large"])
    node_of: dict[int, str] = {}
    for key, bucket in patterns.items():
        digest = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
        for k, entry in enumerate(bucket):
            node = f"L3:{digest}" + (f".{k}" if k else "")
            node_of[id(entry)] = node
            comp = Counter(entry["types"])
            g.add_node(node, level=3, count=int(entry["count"]), n_cells=len(entry["types"]),
                       name=" + ".join(f"{n}×{t}" for t, n in sorted(comp.items())),
                       types=list(entry["types"]), edges=[list(e) for e in entry["edges"]],
                       cells=entry["ij"] or [], example=list(entry["example"]))
            for t, mult in sorted(comp.items()):
                g.add_edge(node, f"L2:{t}", multiplicity=int(mult))
    # Pattern B contains pattern A where a connected part of B's cells is A (same types, same
    # arrangement up to rotation); the multiplicity counts distinct cell sets.
    for bucket in patterns.values():
        for entry in bucket:
            inside: Counter = Counter()
            for sub in _cells.connected_subsets(len(entry["types"]), entry["edges"]):
                pos = {v: k for k, v in enumerate(sub)}
                part = {"types": [entry["types"][v] for v in sub],
                        "edges": [(pos[a], pos[b]) for a, b in entry["edges"]
                                  if a in pos and b in pos],
                        "ij": None if entry["ij"] is None
                        else np.asarray(entry["ij"])[list(sub)]}
                key = _pattern_key(part["types"], part["edges"], part["ij"], rotations)
                match = _find_pattern(patterns, key, part)
                if match is not None:
                    inside[node_of[id(match)]] += 1
            for small, mult in sorted(inside.items()):
                g.add_edge(node_of[id(entry)], small, multiplicity=int(mult))
    if large:
        node = "L3:large"
        comp = sum((r["types"] for r in large), Counter())
        g.add_node(node, level=3, count=len(large), n_cells=sum(r["n_cells"] for r in large),
                   name=f"regions of more than {max_cells} cells",
                   sizes=sorted(r["n_cells"] for r in large), example=[])
        for t, mult in sorted(comp.items()):
            g.add_edge(node, f"L2:{t}", multiplicity=int(mult))


def _learned_nodes(g: nx.DiGraph, names: list[str], ctype: np.ndarray, ll: np.ndarray,
                   patch: dict[int, list]) -> None:
    """Learned level-2 nodes beside the enumerated ones, joined by their overlap.

    An edge from cell type A to learned motif L has ``overlap``: the cells of type A that were
    learned as L (one entry of the contingency table). Each type also gets ``learned`` (its
    most frequent learned motif) and ``learned_purity``; the graph gets ``level2_ari``.
    """
    from sklearn.metrics import adjusted_rand_score

    for k in np.unique(ll[ll >= 0]).tolist():
        node = f"L2learned:{k}"
        attrs = {"level": 2, "view": "learned", "count": int((ll == k).sum()),
                 "name": f"learned {k}", "label": int(k),
                 "example": np.flatnonzero(ll == k)[:10].tolist()}
        if k in patch:
            attrs["mean_patch"] = (patch[k][0] / patch[k][1]).astype(np.float32)
        g.add_node(node, **attrs)
    for code, name in enumerate(names):
        sel = ll[ctype == code]
        if not sel.size:
            continue
        vals, cnt = np.unique(sel, return_counts=True)
        g.nodes[f"L2:{name}"]["learned"] = int(vals[np.argmax(cnt)])
        g.nodes[f"L2:{name}"]["learned_purity"] = float(cnt.max() / sel.size)
        for k, n in zip(vals.tolist(), cnt.tolist(), strict=True):
            if k >= 0:
                g.add_edge(f"L2:{name}", f"L2learned:{k}", overlap=int(n))
    g.graph["level2_ari"] = float(adjusted_rand_score(ctype, ll))


# --------------------------------------------------------------------------- storage

_JSON_PREFIX = "json:"


def _plain(value: Any) -> Any:
    """A JSON-serialisable copy of ``value`` (numpy arrays and scalars to lists and numbers)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _node_link(graph: nx.DiGraph) -> dict[str, Any]:
    return _plain(nx.node_link_data(graph, edges="edges"))


def _from_node_link(data: dict[str, Any]) -> nx.DiGraph:
    g = nx.node_link_graph(data, directed=True, edges="edges")
    for _, d in g.nodes(data=True):
        if "mean_patch" in d:
            d["mean_patch"] = np.asarray(d["mean_patch"], dtype=np.float32)
    return g


def _is_store(path: str) -> bool:
    return path.rstrip("/").endswith(".zarr") or os.path.isfile(os.path.join(path, "zarr.json"))


def save_hierarchy(graph: nx.DiGraph, path: str | os.PathLike) -> None:
    """Write a hierarchy graph as node-link JSON, GraphML or into a result store.

    Parameters
    ----------
    graph : networkx.DiGraph
        From :func:`build_hierarchy`.
    path : str or path-like
        ``*.json``: node-link JSON (lossless). ``*.graphml``: GraphML, whose attributes must be
        scalars, so lists and arrays are written as ``"json:"``-prefixed JSON strings.
        ``*.zarr`` or an existing zarr store: the node-link data go into the store's attribute
        ``hierarchy``.

    Raises
    ------
    ParameterError
        For another suffix.
    StoreError
        When the file or store cannot be written.

    Examples
    --------
    >>> import dmotif, networkx as nx, tempfile, os
    >>> g = nx.DiGraph(); g.add_node("L1:0", level=1, count=3)
    >>> p = os.path.join(tempfile.mkdtemp(), "h.json")
    >>> dmotif.save_hierarchy(g, p); dmotif.load_hierarchy(p).nodes["L1:0"]["count"]
    3
    """
    path = os.fspath(path)
    try:
        if _is_store(path):
            import zarr

            zarr.open_group(path, mode="a").attrs["hierarchy"] = _node_link(graph)
        elif path.endswith(".json"):
            with open(path, "w") as fh:
                json.dump(_node_link(graph), fh)
        elif path.endswith(".graphml"):
            flat = nx.DiGraph()
            flat.graph.update({k: _scalar(v) for k, v in graph.graph.items()})
            flat.add_nodes_from((n, {k: _scalar(v) for k, v in d.items()})
                                for n, d in graph.nodes(data=True))
            flat.add_edges_from((a, b, {k: _scalar(v) for k, v in d.items()})
                                for a, b, d in graph.edges(data=True))
            nx.write_graphml(flat, path)
        else:
            raise ParameterError(
                f"cannot tell the format of {path!r}: use a .json, .graphml or .zarr path."
            )
    except OSError as exc:
        raise StoreError(f"cannot write the hierarchy to {path!r}: {exc}") from exc


def _scalar(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, list | dict):
        return _JSON_PREFIX + json.dumps(value)
    return value


def _unscalar(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_JSON_PREFIX):
        return json.loads(value[len(_JSON_PREFIX):])
    return value


def load_hierarchy(path: str | os.PathLike) -> nx.DiGraph:
    """Read a hierarchy written by :func:`save_hierarchy` (JSON, GraphML or a store).

    Returns
    -------
    networkx.DiGraph
        With ``mean_patch`` attributes as float32 arrays again.

    Raises
    ------
    StoreError
        When the file is missing or holds no hierarchy.
    ParameterError
        For an unknown suffix.
    """
    path = os.fspath(path)
    try:
        if _is_store(path):
            import zarr

            attrs = zarr.open_group(path, mode="r").attrs
            if "hierarchy" not in attrs:
                raise StoreError(f"the store {path!r} holds no hierarchy; run build first.")
            return _from_node_link(dict(attrs["hierarchy"]))
        if path.endswith(".json"):
            with open(path) as fh:
                return _from_node_link(json.load(fh))
        if path.endswith(".graphml"):
            flat = nx.read_graphml(path)
            g = nx.DiGraph()
            g.graph.update({k: _unscalar(v) for k, v in flat.graph.items()
                            if k not in ("node_default", "edge_default")})
            g.add_nodes_from((n, {k: _unscalar(v) for k, v in d.items()})
                             for n, d in flat.nodes(data=True))
            g.add_edges_from((a, b, {k: _unscalar(v) for k, v in d.items()})
                             for a, b, d in flat.edges(data=True))
            return _from_node_link(_node_link(g))
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"cannot read a hierarchy from {path!r}: {exc}") from exc
    raise ParameterError(f"cannot tell the format of {path!r}: use .json, .graphml or .zarr.")


# --------------------------------------------------------------------------- manifolds


def manifold_coordinate(
    layout: xr.DataArray | np.ndarray,
    *,
    n_components: int = 1,
    n_neighbors: int = 15,
    max_landmarks: int = 2000,
    seed: int = 0,
) -> xr.DataArray:
    """A coordinate along the manifold a layout traces (continuous variation, not clusters).

    Isomap (geodesic distances over a kNN graph) unrolls the curve or sheet the points lie on.
    Above ``max_landmarks`` points it is fitted on a seeded sample and the others are placed
    by its out-of-sample transform, so memory stays bounded. The coordinate is scaled to
    [0, 1] per component; its sign is fixed so that it grows with the first layout axis.

    Parameters
    ----------
    layout : xarray.DataArray or ndarray
        ``(atom, axis)`` points, e.g. the FR layout.
    n_components : int
        1 for a curve, 2 for a sheet.
    n_neighbors : int
        Neighbours of the kNN graph.
    max_landmarks : int
        Largest sample Isomap is fitted on.
    seed : int
        Seed of the landmark sample.

    Returns
    -------
    xarray.DataArray
        ``(atom,)`` when ``n_components == 1``, else ``(atom, component)``.

    Raises
    ------
    DataError
        Fewer points than ``n_neighbors + 1`` or non-finite points.
    ParameterError
        ``n_components`` not 1 or 2.
    """
    from sklearn.manifold import Isomap

    if n_components not in (1, 2):
        raise ParameterError(f"n_components must be 1 or 2; got {n_components!r}.")
    pts = np.asarray(layout.values if isinstance(layout, xr.DataArray) else layout, float)
    if pts.ndim != 2 or len(pts) <= n_neighbors or not np.isfinite(pts).all():
        raise DataError(
            f"layout must be a finite (atom, axis) array with more than n_neighbors="
            f"{n_neighbors} points; got shape {pts.shape}."
        )
    rng = np.random.default_rng(seed)
    fit_idx = (np.sort(rng.choice(len(pts), max_landmarks, replace=False))
               if len(pts) > max_landmarks else np.arange(len(pts)))
    iso = Isomap(n_neighbors=n_neighbors, n_components=n_components)
    iso.fit(pts[fit_idx])
    coord = iso.transform(pts)
    for k in range(n_components):
        c = coord[:, k]
        if np.corrcoef(c, pts[:, 0])[0, 1] < 0:
            c = -c
        coord[:, k] = (c - c.min()) / max(np.ptp(c), 1e-12)
    if n_components == 1:
        return xr.DataArray(coord[:, 0], dims=("atom",), name="manifold")
    return xr.DataArray(coord, dims=("atom", "component"), name="manifold")
