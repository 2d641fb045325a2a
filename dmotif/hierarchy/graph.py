"""The hierarchy graph: motifs at each level as nodes, "is made of" edges between levels.

Per-frame work (counts, mean patches, defect patterns) runs in dask tasks of consecutive
frames (:mod:`dmotif.hierarchy._batches`), on whatever scheduler or ``distributed.Client`` is
active; the graph is reduced from the per-frame results in frame order, so it does not depend
on the number of workers. The levels are
described in :mod:`dmotif.hierarchy`.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import networkx as nx
import numpy as np
import xarray as xr

from .._random import Seed
from .._shared import share
from ..errors import ParameterError
from . import _lattice, _window_sums
from ._atoms import atom_arrays, label_array, motif_names
from ._batches import batch_tasks, compute_batches
from ._patterns import add_pattern, components, listed_edges, pattern_key, pattern_nodes
from .cells import motif_cells
from .learned import learned_labels, learned_nodes

__all__ = ["atom_levels", "build_hierarchy", "level1_hierarchy"]


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
    same = components(n, adjacent[cell_type[adjacent[:, 0]] == cell_type[adjacent[:, 1]]])
    _, first = np.unique(same, return_index=True)
    kinds, n_regions = np.unique(cell_type[first], return_counts=True)
    regions = Counter(dict(zip(kinds.tolist(), n_regions.tolist(), strict=True)))
    odd = cell_type != 0
    # each edge once, as a graph holds them
    edges = np.unique(np.sort(adjacent[odd[adjacent[:, 0]] & odd[adjacent[:, 1]]], axis=1),
                      axis=0).reshape(-1, 2)
    comp = components(n, edges)
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
            large.append({"n_cells": len(group), "types": Counter(types),
                          "cells": cell_idx[group].tolist()})
            continue
        lo, hi = np.searchsorted(edge_comp, [comp[group[0]], comp[group[0]] + 1])
        within = listed_edges(group.tolist(), edges[lo:hi].tolist(), n)
        ij = None if rotations is None else cell_ij[group]
        add_pattern(patterns, pattern_key(types, within, ij, rotations),
                     {"count": 1, "types": types, "edges": within,
                      "ij": None if ij is None else (ij - ij.min(axis=0)).tolist(),
                      "example": cell_idx[group].tolist(),
                      "occurrences": [cell_idx[group].tolist()]})
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
    cell indices); level-1 names are the atoms' ``motif_names`` or letters by brightness ("A"
    the brightest motif); level-2 and 3 nodes have a ``title`` a reader understands (the cell's
    composition or its defect, "one B → C", canonical under rotation and mirror); level-3
    nodes list their ``occurrences`` (cell indices of each connected group); and, when
    ``image`` is given, ``mean_patch`` (levels 1 and 2). An edge B → A means "B is made of
    A", with attribute ``multiplicity``: atoms of motif A per cell of type B, cells of type A
    per pattern B (for ``L3:large``, in all its groups together), or
    distinct cell sets of pattern B that form pattern A (A contained in B). An edge from a cell
    type to a learned motif has instead ``overlap``: the cells of that type learned as that
    motif.

    Per-frame work (counts, patches, patterns) runs in dask tasks of consecutive frames; the
    graph is reduced from per-frame results in frame order.

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
    frame, yx = atom_arrays(atoms)
    lab = label_array(labels, len(yx))
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
    ll = learned_labels(learned, image, atoms, cells, seed)
    rotations = (_lattice.lattice_rotations(*np.asarray(cells.attrs["lattice"], float))
                 if kind == "lattice" else None)
    cij = np.column_stack([cells["i"].values, cells["j"].values])
    # Every task slices its frame out of these: on a cluster they go to the workers once.
    cell_table = share({"frame": cframe, "type": ctype, "ij": cij, "centre": centres,
                        "adjacent": adjacent.astype(np.int64), "learned": ll})
    shared_atoms = share({"frame": frame, "yx": yx, "label": lab})
    calls = []
    frame_ids = np.unique(np.concatenate([frame, cframe]))
    for f in frame_ids:
        img = image.data[int(np.flatnonzero(image["frame"].values == f)[0])] \
            if image is not None and "frame" in image.coords else (
                image.data[int(f)] if image is not None else None)
        calls.append((int(f), cell_table, shared_atoms, img, r1, r2, names, rotations,
                      max_pattern_cells))
    ordered = np.sort(frame)
    sizes = (np.searchsorted(ordered, frame_ids, side="right")
             - np.searchsorted(ordered, frame_ids))
    parts = compute_batches(batch_tasks(_frame_summary, calls, sizes))
    g = _reduce_graph(parts, names, type_labels, kind, atoms, lab, cells, spacing,
                      len(frame_ids))
    pattern_nodes(g, parts, rotations, max_pattern_cells)
    _pattern_titles(g)
    if ll is not None:
        learned_patch: dict[int, list] = {}
        for p in parts:
            _merge_patch(learned_patch, p["learned_patch"])
        learned_nodes(g, names, ctype, ll, learned_patch)
    return g


def _reduce_graph(parts, names, type_labels, kind, atoms, lab, cells, spacing,
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
    names_of = motif_names(atoms, lab)
    g = nx.DiGraph(method=kind, n_frames=int(n_frames), spacing_px=float(spacing))
    for k in sorted(label_counts):
        name = names_of.get(k, f"motif {k}")
        attrs = {"level": 1, "count": int(label_counts[k]), "name": name, "label": int(k),
                 "example": label_example.get(k, [])}
        if k in label_patch:
            attrs["mean_patch"] = (label_patch[k][0] / label_patch[k][1]).astype(np.float32)
        g.add_node(f"L1:{k}", **attrs)
    cell_labels = {t: (t[1:] if kind == "rings" else t) for t in type_labels}
    ctype = cells["type"].values
    titles = cells.attrs.get("type_titles", names)
    for code, name in enumerate(names):
        t = type_labels[code]
        attrs = {"level": 2, "count": int(type_counts[code]), "name": name,
                 "title": titles[code],
                 "labels": [int(x) for x in cell_labels[t]], "regions": int(regions[code]),
                 "example": np.flatnonzero(ctype == code)[:10].tolist()}
        if code in type_patch:
            attrs["mean_patch"] = (type_patch[code][0] / type_patch[code][1]).astype(np.float32)
        g.add_node(f"L2:{name}", **attrs)
        for k, mult in sorted(Counter(x for x in cell_labels[t] if x >= 0).items()):
            if f"L1:{k}" in g:
                g.add_edge(f"L2:{name}", f"L1:{k}", multiplicity=int(mult))
    return g


def _pattern_titles(g: nx.DiGraph) -> None:
    """A level-3 node's ``title`` lists its cell types by their titles: "2 × one B → C"."""
    for n, d in g.nodes(data=True):
        if d["level"] != 3:
            continue
        parts = [f"{m['multiplicity']} × {g.nodes[c].get('title', c)}"
                 for c, m in g.succ[n].items() if g.nodes[c]["level"] == 2]
        prefix = f"{d['name']}: " if n == "L3:large" else ""
        d["title"] = prefix + " + ".join(parts)


def level1_hierarchy(atoms: xr.Dataset, labels: Any, *, reason: str) -> nx.DiGraph:
    """The hierarchy of atoms that form no cell: level 1 only, and why.

    Parameters
    ----------
    atoms : xarray.Dataset
        Atom table over ``atom``.
    labels : array_like of int
        Motif label per atom, -1 = unassigned.
    reason : str
        Why no cell was built; kept as the graph attribute ``no_cells``.

    Returns
    -------
    networkx.DiGraph
        One ``"L1:<label>"`` node per motif (``level``, ``count``, ``name``, ``label``,
        ``example``); graph attributes ``method`` = "none" and ``no_cells``.
    """
    _, yx = atom_arrays(atoms)
    lab = np.asarray(labels.values if isinstance(labels, xr.DataArray) else labels, np.int64)
    g = nx.DiGraph(method="none", no_cells=str(reason))
    if lab.shape != (len(yx),) or (lab < 0).all():
        return g
    names = motif_names(atoms, lab)
    for k in np.unique(lab[lab >= 0]).tolist():
        g.add_node(f"L1:{k}", level=1, count=int((lab == k).sum()), name=names[k], label=int(k),
                   example=np.flatnonzero(lab == k)[:10].tolist())
    return g


def atom_levels(cells: xr.Dataset, graph: nx.DiGraph, n_atoms: int) -> xr.Dataset:
    """Per-atom level-2 and level-3 labels, and the cell table, as arrays.

    Parameters
    ----------
    cells : xarray.Dataset
        The cells the graph was built on (:func:`motif_cells`).
    graph : networkx.DiGraph
        From :func:`build_hierarchy` on those cells.
    n_atoms : int
        Number of atoms.

    Returns
    -------
    xarray.Dataset
        ``label_L2(atom)``: the type of the cell the atom sits in (index into the attrs
        ``nodes`` of the variable, the level-2 node names; -1 in no cell);
        ``label_L3(atom)``: the level-3 pattern whose occurrence holds the atom's cell (index
        into its ``nodes``; -1 where none, e.g. in a cell of the dominant type); the cell
        table ``cell_frame``, ``cell_y``, ``cell_x``, ``cell_type`` over ``cell`` and
        ``cell_members(cell, slot)`` (atom indices, -1 empty).
    """
    members = cells["members"].values
    ctype = cells["type"].values.astype(np.int32)
    l3 = [n for n, d in graph.nodes(data=True) if d["level"] == 3]
    cell_l3 = np.full(len(ctype), -1, np.int32)
    for k, n in enumerate(l3):
        d = graph.nodes[n]
        for occ in d.get("occurrences", []):
            cell_l3[np.asarray(occ, np.int64)] = k
    filled = members >= 0
    label_l2 = np.full(n_atoms, -1, np.int32)
    label_l3 = np.full(n_atoms, -1, np.int32)
    rows = np.broadcast_to(np.arange(len(ctype))[:, None], members.shape)[filled]
    label_l2[members[filled]] = ctype[rows]
    label_l3[members[filled]] = cell_l3[rows]
    titles = list(cells.attrs.get("type_titles", cells.attrs["type_names"]))
    return xr.Dataset({
        "label_L2": ("atom", label_l2, {"nodes": [f"L2:{n}" for n in cells.attrs["type_names"]],
                                        "titles": titles}),
        "label_L3": ("atom", label_l3, {"nodes": l3}),
        "cell_frame": ("cell", cells["frame"].values.astype(np.int32)),
        "cell_y": ("cell", cells["y"].values.astype(np.float32)),
        "cell_x": ("cell", cells["x"].values.astype(np.float32)),
        "cell_type": ("cell", ctype, {"titles": titles}),
        "cell_L3": ("cell", cell_l3),
        "cell_members": (("cell", "slot"), members.astype(np.int64)),
    })
