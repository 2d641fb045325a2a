"""Motifs that hold several sublattice slots: split where the slots' mean features differ.

Pure numpy kernels, no dask or xarray. Atom by atom the B and N columns of hBN at a low dose
lie closer than the per-atom test of :mod:`dmotif.motifs._decide` asks (2.5 noise units for
4.65), so the clustering gives them one motif; averaged over hundreds of columns the two
sublattices of the honeycomb differ far beyond the noise of their *means*. Each atom's slot
in the cell of the lattice (from the positions alone when one motif spans several slots and
no label sits on a single Bravais sublattice, :func:`position_slots`) groups a motif's atoms
by sublattice; two of its slots are two motifs when Hotelling's test on the difference of
their means is significant (``alpha``, Bonferroni-corrected over the pairs and motifs tested)
and that difference is at least ``min_separation`` noise units, so that the small
asymmetries of equivalent sites (graphene's two C sites, a perovskite's O sites under a
tilted probe) at a high dose, significant but not another column type, do not split them.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from ..hierarchy import _lattice, _unwrap
from . import _decide
from ._sites import slot_shares

__all__ = ["home_slots", "position_slots", "split_slot_means"]

#: Cells about the root atom whose atoms teach the slots (as :func:`dmotif.motif_cells`).
PATCH_CELLS = 3.0


def position_slots(yx: np.ndarray, frame: np.ndarray, m: np.ndarray, *, tol: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The slot of each atom in the cell of the lattice ``m`` (columns: the Bravais vectors)
    that its positions alone form.

    ``m`` is the lattice of all atoms as one label (:func:`dmotif.lattice_vectors` without
    labels: a bond of a honeycomb maps only half the atoms onto atoms and is no lattice
    vector); the slots are the groups of fractional offsets within ``PATCH_CELLS`` lattice
    vectors of each frame's central atom (:func:`_lattice.slot_positions`); each atom is
    placed by a walk over its neighbours (:func:`_unwrap.unwrap_sites`), so a distorted scan
    does not move it to another slot. Returns the slots (-1: unplaced) and their fractional
    positions ``(s, 2)``.
    """
    frames = [np.flatnonzero(frame == f) for f in np.unique(frame)]
    one = np.zeros(len(yx), np.int64)
    reach = PATCH_CELLS * float(np.linalg.norm(m, axis=0).max())
    roots = [_lattice.root_atom(yx[i], one[i], 0) for i in frames]
    offsets = np.concatenate([_lattice.patch_offsets(yx[i], one[i], m, r, reach)
                              for i, r in zip(frames, roots, strict=True)])
    # the root's own sublattice counts the cells of the patches
    n_cells = int((np.linalg.norm((offsets - np.rint(offsets)) @ m.T, axis=1) <= tol).sum())
    sites = _lattice.slot_positions(offsets, m=m, tol=tol, n_cells=n_cells)
    slot = np.full(len(yx), -1, np.int64)
    for i, r in zip(frames, roots, strict=True):
        slot[i] = _unwrap.unwrap_sites(yx[i], m, sites, tol, r)[1]
    return slot, sites


def home_slots(labels: np.ndarray, slot: np.ndarray, *, max_share: float, min_atoms: int
               ) -> dict[int, list[int]]:
    """Each motif's home slots: at least ``min_atoms`` of its atoms, and a share of the slot
    (its atoms there over all atoms there) at least ``max_share`` times its largest share
    (the complement of :func:`dmotif.motifs._sites.foreign_groups`)."""
    counts, share = slot_shares(labels, slot)
    if not counts.size:
        return {}
    home = (counts >= min_atoms) & (share >= max_share * share.max(axis=1, keepdims=True))
    return {int(k): np.flatnonzero(home[k]).tolist() for k in range(len(counts))}


def split_slot_means(
    labels: np.ndarray, slot: np.ndarray, x: np.ndarray, noise: np.ndarray, *,
    max_share: float, min_atoms: int, min_separation: float, alpha: float,
    min_contrast: float,
) -> tuple[np.ndarray, dict[int, tuple[int, int]]]:
    """Labels with each motif's home slots (:func:`home_slots`) apart where their means differ.

    A motif's atoms on its home slots are grouped by slot and merged by
    :func:`dmotif.motifs._decide.merge_groups` under the fixed ``noise`` (the per-atom noise
    covariance of the features ``x``), with the per-atom separation ``min_separation`` in
    place of the overlap test and ``alpha`` divided by the number of motifs tested. The group
    with the most atoms keeps the motif's label; each other group whose mean lies at least
    ``min_contrast`` times the largest distance between two motifs' means from the kept
    group's (as in :func:`dmotif.cluster`: on a nearly noise-free image every small asymmetry
    is significant) is a new motif (numbered after the old ones). Atoms of the motif on
    foreign slots keep its label (the split by site follows); those on no slot join the
    nearest part. Returns the labels and, per new motif, ``(parent motif,
    its first slot)``.
    """
    homes = {k: s for k, s in home_slots(labels, slot, max_share=max_share,
                                          min_atoms=min_atoms).items() if len(s) > 1}
    out = labels.copy()
    origin: dict[int, tuple[int, int]] = {}
    overlap = float(stats.norm.cdf(-min_separation / 2))
    found = np.unique(labels[labels >= 0])
    mu = np.array([x[labels == k].mean(axis=0) for k in found])
    scale = float(np.sqrt(((mu[:, None] - mu[None]) ** 2).sum(axis=-1)).max())
    for k, slots in homes.items():
        rows = np.flatnonzero((labels == k) & np.isin(slot, slots))
        group = np.searchsorted(slots, slot[rows])
        merged, lookup = _decide.merge_groups(x[rows], group, max_overlap=overlap,
                                              alpha=alpha / len(homes), noise=noise)
        sizes = np.bincount(merged)
        if sizes.size < 2:
            continue
        keep = int(np.argmax(sizes))
        centre = x[rows[merged == keep]].mean(axis=0)
        parts = np.full(labels.shape, -1, np.int64)
        parts[rows] = merged
        for g in range(sizes.size):
            gap = float(np.linalg.norm(x[rows[merged == g]].mean(axis=0) - centre))
            if g == keep or gap < min_contrast * scale:
                parts[rows[merged == g]] = keep
                continue
            new = int(out.max()) + 1
            out[rows[merged == g]] = new
            origin[new] = (k, int(slots[int(np.flatnonzero(lookup == g)[0])]))
        # The motif's atoms on no slot (cut by the border, off the walk) have only their
        # features to go by: the nearest of its parts.
        loose = np.flatnonzero((labels == k) & (slot < 0))
        if loose.size and len(np.unique(out[rows])) > 1:
            out[loose] = _nearest_part(x[loose], x, parts, out)
    return out, origin


def _nearest_part(query: np.ndarray, x: np.ndarray, parts: np.ndarray, out: np.ndarray,
                  ) -> np.ndarray:
    """The label (in ``out``) of the part (``parts``, -1 ignored) nearest each query row,
    under the parts' pooled covariance."""
    noise = _decide.Groups.of(x, parts).pooled()
    nearest = _decide.nearest_motif(query, x, parts, noise)[0]
    first = {int(g): int(out[np.flatnonzero(parts == g)[0]]) for g in np.unique(nearest)}
    return np.array([first[int(g)] for g in nearest], np.int64)
