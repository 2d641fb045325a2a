"""The learned view of level 2: motifs of the cells learned like those of the atoms (Zernike
features of patches centred on the cells, PCA, FR layout, clusters), and their comparison with
the enumerated cell types in the hierarchy graph."""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np
import xarray as xr

from .._random import Seed
from ..embed.layout import fr_layout
from ..embed.reduce import pca
from ..errors import DataError
from ..features.zernike import zernike_features
from ..motifs.clustering import cluster
from ._atoms import atom_arrays

__all__ = ["learn_cell_motifs", "learned_labels", "learned_nodes"]


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
    if image is None:
        raise DataError(
            "learning level-2 motifs needs the image the atoms came from; pass image=."
        )
    _, yx = atom_arrays(atoms)
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


def learned_labels(learned: Any, image, atoms, cells, seed) -> np.ndarray | None:
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


def learned_nodes(g: nx.DiGraph, names: list[str], ctype: np.ndarray, ll: np.ndarray,
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
