"""Which motifs sit on a foreign sublattice site: the split of level-1 motifs by site.

Pure numpy kernels, no dask or xarray. Rotation-invariant features of a patch of half a column
spacing cannot tell on which sublattice site a column sits: a Se-substituted S2 site of MoS2
is as bright as Mo and lands in the Mo motif. The motif-cells know each atom's *slot* (its
site in the basis of the cell); a motif's *share* of a slot is its atoms there over all atoms
there. Its *home* slots hold its largest share; a slot where its share is under ``max_share``
times that, with at least ``min_atoms`` of its atoms, holds a substitution (or an antisite),
unless those atoms' mean features lie within the noise of the slot's majority motif: then
they are that motif's atoms that the clustering placed wrong, and they join it. A motif spread
evenly over equivalent slots (the two O slots of a perovskite) has the same share on each and
never splits.
"""

from __future__ import annotations

import numpy as np

from . import _decide

__all__ = ["atom_slots", "foreign_groups", "slot_shares", "split_sites"]


def atom_slots(members: np.ndarray, n: int) -> np.ndarray:
    """The slot of each of ``n`` atoms from a cell table's ``members(cell, slot)`` (-1: in
    no cell)."""
    slot = np.full(n, -1, np.int64)
    rows, cols = np.nonzero(members >= 0)
    slot[members[rows, cols]] = cols
    return slot


def slot_shares(labels: np.ndarray, slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``counts[k, s]``, motif ``k``'s atoms on slot ``s`` (unassigned and unplaced atoms
    ignored), and ``share[k, s]``, their share of the slot's atoms; both empty when no
    atom is placed."""
    placed = (labels >= 0) & (slot >= 0)
    if not placed.any():
        return np.empty((0, 0), np.int64), np.empty((0, 0))
    counts = np.zeros((int(labels.max()) + 1, int(slot.max()) + 1), np.int64)
    np.add.at(counts, (labels[placed], slot[placed]), 1)
    return counts, counts / np.maximum(counts.sum(axis=0), 1)


def foreign_groups(
    labels: np.ndarray, slot: np.ndarray, *, max_share: float, min_atoms: int
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The ``(motif, slot)`` pairs whose atoms sit on a foreign slot, and each slot's majority
    motif.

    ``counts[k, s]`` are motif ``k``'s atoms on slot ``s`` (unassigned and unplaced atoms
    ignored); a pair is foreign when ``counts[k, s] >= min_atoms`` and its share
    ``counts[k, s] / counts[:, s].sum()`` is under ``max_share`` times motif ``k``'s largest
    share, and not the slot's majority. Pairs come in the order of motif, then slot.
    """
    counts, share = slot_shares(labels, slot)
    if not counts.size:
        return [], np.empty(0, np.int64)
    home = share.max(axis=1, keepdims=True)
    foreign = (counts >= min_atoms) & (share < max_share * home)
    majority = np.argmax(counts, axis=0)
    pairs = [(int(k), int(s)) for k, s in zip(*np.nonzero(foreign), strict=True)
             if majority[s] != k]
    return pairs, majority


def split_sites(
    labels: np.ndarray, slot: np.ndarray, x: np.ndarray | None = None,
    noise: np.ndarray | None = None, *, max_share: float, min_atoms: int,
    max_overlap: float, alpha: float,
) -> tuple[np.ndarray, dict[int, tuple[int, int, int]]]:
    """Labels with each foreign group (:func:`foreign_groups`) a motif of its own.

    With features ``x`` (rows over atoms) and their ``noise`` covariance, the atoms of a group
    whose features are nearer (Mahalanobis) the mean of the slot's majority motif on that slot
    than the mean of their own motif's other atoms join the majority motif; the rest stay
    apart only if they are at least ``min_atoms`` and their mean differs from the majority's
    by the test of :func:`dmotif.motifs._decide.merge_groups` (separation at least
    ``2 Φ⁻¹(1 − max_overlap)`` and Hotelling's p-value under ``alpha``, Bonferroni-corrected
    over the groups tested), else they join it too. Without features every group stays
    apart. Returns the labels (new motifs numbered after the old ones, in the order of
    the pairs) and, per new motif, its ``(parent motif, slot, the slot's majority motif)``.
    """
    pairs, majority = foreign_groups(labels, slot, max_share=max_share, min_atoms=min_atoms)
    out = labels.copy()
    origin: dict[int, tuple[int, int, int]] = {}
    d_min = _decide.separation_threshold(max_overlap)
    for k, s in pairs:
        rows = np.flatnonzero((labels == k) & (slot == s))
        if x is not None:
            # Atom by atom first: those nearer the slot's own motif than their motif's atoms
            # elsewhere are that motif's, misplaced; the rest must differ from it as a group.
            ref = (labels == majority[s]) & (slot == s)
            two = np.where(ref, 1, np.where(labels == k, 0, -1))
            two[rows] = -1
            near = _decide.nearest_motif(x[rows], x, two, noise)[0] == 1
            out[rows[near]] = majority[s]
            rows = rows[~near]
            if rows.size < min_atoms:
                out[rows] = majority[s]
                continue
            two[labels == k] = -1
            two[rows] = 0
            d, p = _decide.pair_statistics(_decide.Groups.of(x, two), noise)
            if not (d[0, 1] >= d_min and p[0, 1] < alpha / len(pairs)):
                out[rows] = majority[s]
                continue
        new = int(out.max()) + 1
        out[rows] = new
        origin[new] = (k, s, int(majority[s]))
    return out, origin
