"""Site-resolved motifs: a motif's atoms on a foreign sublattice site are a motif of their own."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .._random import Seed, seed_int
from ..errors import DataError, NoLatticeError, ParameterError
from .clustering import RARE_MIN, ROBUST_SAMPLE, _canonical, _feature_matrix

__all__ = ["site_motifs"]


def site_motifs(
    atoms: xr.Dataset,
    labels: Any,
    *,
    features: xr.DataArray | np.ndarray | None = None,
    max_share: float = 0.25,
    max_overlap: float = 0.01,
    alpha: float = 1e-3,
    min_separation: float = 1.0,
    min_contrast: float = 0.1,
    seed: Seed = 0,
) -> xr.DataArray:
    """Split each motif by the sublattice site its atoms sit on, where a site is foreign to it.

    The features of a small patch about a column do not say on which sublattice it sits: a
    Se-substituted S2 site of MoS2 looks like Mo, a metal antisite like the metal. The
    motif-cells of the labels (:func:`dmotif.motif_cells`, lattice cells only) place every
    atom on a *slot* of the lattice's basis (slot 0: the anchor sublattice). A motif's share
    of a slot is its atoms there over all atoms there; on a slot where that share is under
    ``max_share`` times its largest share, and holds at least 5 of its atoms, those atoms
    become a motif of their own (the parent motif "on site s"). With ``features``, such a
    group stays apart only if its mean features differ from those of the slot's majority
    motif beyond the noise (the test of :func:`dmotif.cluster`), else it joins that motif: a
    few atoms that the clustering misplaced are not a substitution. A motif spread evenly over
    equivalent slots (a perovskite's O sites) never splits by this rule.

    With ``features``, a motif at home on several slots is first split by *sublattice means*:
    two of its slots are two motifs when the difference of their mean features is significant
    against the noise of the means (Hotelling's test at ``alpha``, Bonferroni-corrected over
    the pairs) and at least ``min_separation`` noise units, although atom by atom they overlap
    (the B and N columns of hBN at a low dose). Where no label sits on a single Bravais
    sublattice (one motif over a honeycomb) the slots come from the positions alone and the
    motif-cells are built on the split labels. Equal sites (graphene's two C sites, a
    perovskite's equivalent O sites) stay one motif; where the positions form no lattice
    (amorphous atoms, a moiré) the labels are unchanged.

    Parameters
    ----------
    atoms : xarray.Dataset
        Atom table over ``atom`` (``frame``, ``y``, ``x`` in pixels), as
        :func:`dmotif.detect_atoms` gives it.
    labels : array_like of int
        Motif label per atom (-1 = unassigned), e.g. from :func:`dmotif.cluster`.
    features : xarray.DataArray or numpy.ndarray, optional
        Per-atom features ``(atom, <dim>)`` the motifs were decided in (the PCA scores).
        Without them every foreign group of at least 5 atoms is a motif.
    max_share : float, default 0.25
        A slot is foreign to a motif when its share there is under this fraction of its
        largest share.
    max_overlap, alpha : float
        The test that a foreign group differs from the slot's majority motif, as in
        :func:`dmotif.cluster` (``alpha`` Bonferroni-corrected over the groups tested).
    min_separation : float, default 1.0
        Least difference, in noise units (Mahalanobis, per atom), between the mean features of
        two slots of one motif for the split by sublattice means: smaller differences, however
        significant over many atoms, are the asymmetries of equivalent sites.
    min_contrast : float, default 0.1
        Two slots of one motif are two motifs only if their mean features differ by at least
        this share of the largest difference between two motifs' means, as in
        :func:`dmotif.cluster` (void with a single motif).
    seed : int, numpy.random.Generator or None, default 0
        Seed of the sample on which the noise of very large motifs is estimated.

    Returns
    -------
    xarray.DataArray
        int32 labels named ``"label"`` over ``atom``, numbered by decreasing size; attrs
        ``n_motifs``, ``split_from``, ``site`` and ``site_motif`` (lists over motifs: the
        motif a split motif came from, the slot it sits on and that slot's majority motif, -1
        for the others), ``sublattice_of`` (the motif a motif was split from by sublattice
        means, its slot in ``site``; -1 for the others) and ``sites`` (what was done, or why
        nothing was).

    Examples
    --------
    A MoS2-like monolayer whose metal antisites (label 3) the features could not tell from the
    metal (label 0): on the chalcogen slot they are a motif again.

    >>> import numpy as np
    >>> import dmotif
    >>> s = dmotif.synthetic.tmd(size=384, antisite=0.05, seed=1)
    >>> truth = s.atoms["label"].values
    >>> split = dmotif.site_motifs(s.atoms, np.where(truth == 3, 0, truth))
    >>> split.attrs["split_from"], split.attrs["site"]
    ([-1, -1, -1, 0], [-1, -1, -1, 1])
    >>> int((split.values[truth == 3] == 3).sum()), int((truth == 3).sum())
    (14, 16)
    """
    lab = _label_array(labels, atoms)
    if not 0 < max_share < 1:
        raise ParameterError(f"max_share must be in (0, 1); got {max_share!r}.")
    if not min_separation >= 0:
        raise ParameterError(f"min_separation must be >= 0 noise units; got {min_separation!r}.")
    if not 0 <= min_contrast < 1:
        raise ParameterError(f"min_contrast must be in [0, 1); got {min_contrast!r}.")
    x = None if features is None else _feature_matrix(features, lab.size)
    from ..hierarchy import motif_cells  # the hierarchy imports the motifs: on first use
    from . import _decide, _sites  # scipy.stats: on first use, not with dmotif

    s = seed_int(seed)
    test = {"max_share": max_share, "min_separation": min_separation,
            "min_contrast": min_contrast, "alpha": alpha}
    by_slot: dict[int, tuple[int, int]] = {}
    try:
        cells = motif_cells(atoms, lab, method="lattice")
    except (NoLatticeError, DataError) as exc:
        # No label sits on one Bravais sublattice (one motif over a honeycomb's two slots):
        # the slots come from the positions alone, and the motifs split by them may do.
        if x is not None and lab.max() >= 0:
            lab, by_slot = _position_split(atoms, lab, x, s, test)
        if not by_slot:
            return _result(atoms, lab, {}, {}, f"unchanged: no lattice cells ({exc})")
        try:
            cells = motif_cells(atoms, lab, method="lattice")
        except (NoLatticeError, DataError):
            return _result(atoms, lab, {}, by_slot, _status(by_slot, {}, 0))
        slot = _sites.atom_slots(cells["members"].values, lab.size)
    else:
        slot = _sites.atom_slots(cells["members"].values, lab.size)
        if x is not None and lab.max() >= 0:
            lab, by_slot = _split_slot_means(lab, slot, x, s, test)
    noise = None
    if x is not None and lab.max() >= 0:
        noise, _ = _decide.robust_spread(x, lab, sample=ROBUST_SAMPLE, seed=s)
    split, origin = _sites.split_sites(lab, slot, x, noise, max_share=max_share,
                                       min_atoms=RARE_MIN, max_overlap=max_overlap, alpha=alpha)
    return _result(atoms, split, origin, by_slot,
                   _status(by_slot, origin, cells.sizes["slot"]))


def _split_slot_means(lab, slot, x, seed, test):
    """:func:`_slot_means.split_slot_means` under the noise of the atoms grouped by motif and
    slot (a motif's spread over two different slots is not noise)."""
    from . import _decide, _slot_means

    placed = (lab >= 0) & (slot >= 0)
    if not placed.any():
        return lab, {}
    group = np.where(placed, lab * (int(slot.max()) + 1) + slot, -1)
    noise, _ = _decide.robust_spread(x, group, sample=ROBUST_SAMPLE, seed=seed)
    return _slot_means.split_slot_means(lab, slot, x, noise, min_atoms=RARE_MIN, **test)


def _position_split(atoms, lab, x, seed, test):
    """The split by slot means on the slots of the positions' own lattice (none if no
    lattice)."""
    from ..hierarchy import lattice_vectors
    from ..hierarchy._atoms import atom_arrays
    from . import _slot_means

    frame, yx = atom_arrays(atoms)
    try:
        uv = lattice_vectors(atoms)  # all atoms as one label
    except NoLatticeError:
        return lab, {}
    tol = 0.2 * uv.attrs["spacing_px"]
    slot, _ = _slot_means.position_slots(yx, frame, uv.values.T, tol=tol)
    return _split_slot_means(lab, slot, x, seed, test)


def _status(by_slot: dict, origin: dict, n_slots: int) -> str:
    """What the split did, for the ``sites`` attribute (and the report)."""
    text = f"{len(origin)} motif(s) split by site over {n_slots} slots"
    if by_slot:
        text = (f"{len(by_slot)} motif(s) split by sublattice means (their slots' mean "
                f"features differ beyond the noise of the means); " + text)
    return text


def _label_array(labels: Any, atoms: xr.Dataset) -> np.ndarray:
    if not isinstance(atoms, xr.Dataset) or "atom" not in atoms.dims:
        raise DataError(
            f"atoms must be an xarray.Dataset over dim 'atom' (as detect_atoms returns); got "
            f"{type(atoms).__name__}."
        )
    lab = np.asarray(labels.values if isinstance(labels, xr.DataArray) else labels)
    n = atoms.sizes["atom"]
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
        raise DataError(
            f"labels must be one integer per atom ({n}); got shape {lab.shape}, dtype "
            f"{lab.dtype}. Pass the labels cluster() returned for these atoms."
        )
    return lab.astype(np.int64)


def _result(atoms: xr.Dataset, raw: np.ndarray, origin: dict[int, tuple[int, int, int]],
            by_slot: dict[int, tuple[int, int]], status: str) -> xr.DataArray:
    """Canonical labels with each motif's parent, slot and site motif as attrs."""
    labels = _canonical(raw)
    k = int(labels.max()) + 1
    idx = np.flatnonzero(raw >= 0)
    old, first = np.unique(raw[idx], return_index=True)
    new_of = dict(zip(old.tolist(), labels[idx[first]].tolist(), strict=True))
    split_from, site, site_motif, sublattice_of = [-1] * k, [-1] * k, [-1] * k, [-1] * k
    for new, (parent, slot) in by_slot.items():
        if new in new_of:
            sublattice_of[new_of[new]] = new_of.get(parent, -1)
            site[new_of[new]] = slot
    for new, (parent, slot, host) in origin.items():
        split_from[new_of[new]] = new_of.get(parent, -1)
        site[new_of[new]] = slot
        site_motif[new_of[new]] = new_of.get(host, -1)
    out = xr.DataArray(labels, dims=("atom",), name="label",
                       attrs={"n_motifs": k, "split_from": split_from, "site": site,
                              "site_motif": site_motif, "sublattice_of": sublattice_of,
                              "sites": status})
    if "atom" in atoms.coords:
        out = out.assign_coords(atom=atoms.coords["atom"])
    return out
