"""Motifs from the 2-D layout (or the PCA scores): clustering into labelled motifs."""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import ndimage
from scipy.spatial import cKDTree

from .._random import Seed, seed_int
from ..embed.reduce import as_atom_matrix
from ..errors import DataError, ParameterError

__all__ = ["METHODS", "cluster"]

METHODS = ("hdbscan", "raster", "gmm")
#: HDBSCAN runs on at most this many seeded layout points; the others take their nearest's label.
#: scikit-learn builds HDBSCAN's spanning tree by Prim's method over all pairs, so the time is
#: quadratic: 7 s for 50 000 points, 0.9 s for 20 000, with the same labels on an 87k-atom TMD
#: layout (4 motifs, ARI 0.981 against the truth either way).
HDBSCAN_SAMPLE = 20_000
#: Grid of the raster method (the reference's 256 × 256, disks of radius 3).
RASTER_BINS = 256
RASTER_RADIUS = 3
#: A motif needs at least this many atoms: fewer cannot show that they differ beyond noise.
RARE_MIN = 5
#: Rounds of merging and re-homing atoms before the motifs are taken as they stand.
MAX_DECISION_ROUNDS = 5
#: The noise is estimated on at most this many seeded atoms of each motif.
ROBUST_SAMPLE = 20_000
#: Tail atoms of one motif grouped by complete linkage, at most (a seeded sample beyond).
TAIL_SAMPLE = 5_000
#: Core atoms of one motif (a seeded sample beyond) against which a tail group is tested.
AROUND_SAMPLE = 200_000
#: A group of tail atoms is a candidate motif when the binomial test of its excess over its
#: mirror image (:func:`dmotif.motifs._decide.mirror_excess`) gives a p-value below this:
#: RARE_MIN atoms and none in the mirror give 2⁻⁵ = 0.031.
MIRROR_ALPHA = 0.05


def _as_layout(layout: xr.DataArray | np.ndarray) -> xr.DataArray:
    if not isinstance(layout, xr.DataArray):
        layout = xr.DataArray(np.asarray(layout), dims=("atom", "axis"))
    if layout.ndim != 2 or "atom" not in layout.dims:
        raise DataError(f"layout must be 2-D with an 'atom' dim; got dims {layout.dims}.")
    layout = layout.transpose("atom", ...)
    if not np.isfinite(layout.values).all():
        raise DataError("layout contains NaN or inf; recompute it with dmotif.fr_layout.")
    return layout


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters by decreasing size (ties: first member), keeping -1."""
    found = np.unique(labels[labels >= 0])
    if found.size == 0:
        return np.full(labels.shape, -1, dtype=np.int32)
    sizes = np.array([np.count_nonzero(labels == f) for f in found])
    first = np.array([np.argmax(labels == f) for f in found])
    order = np.lexsort((first, -sizes))
    lookup = np.full(found.max() + 2, -1, dtype=np.int32)
    lookup[found[order]] = np.arange(found.size, dtype=np.int32)
    return lookup[labels]


def _nearest_labels(ref: np.ndarray, labels: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The label of each query point's nearest point of ``ref``."""
    # A k-d tree over 2-D points: 1.39 M queries on 20 000 points in 0.5 s (scikit-learn's
    # NearestNeighbors, single-threaded, took 0.9 s; the same labels).
    return labels[cKDTree(ref).query(query, k=1, workers=-1)[1]]


def _hdbscan(y: np.ndarray, min_size: int, seed: int) -> np.ndarray:
    n = y.shape[0]
    sample = np.arange(n)
    if n > HDBSCAN_SAMPLE:
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, HDBSCAN_SAMPLE, replace=False))
        min_size = max(2, round(min_size * HDBSCAN_SAMPLE / n))
    sub = _hdbscan_labels(np.ascontiguousarray(y[sample], dtype=np.float64), min_size)
    if sample.size == n:
        return sub
    return _nearest_labels(y[sample], sub, y)


def _hdbscan_labels(y: np.ndarray, min_size: int) -> np.ndarray:
    """``sklearn.cluster.HDBSCAN(min_cluster_size=min_size).fit_predict(y)``, the same labels,
    with its minimum spanning tree (most of its time) built by a numba kernel
    (:func:`dmotif.motifs._mst.mutual_reachability_mst`, about twice as quick)."""
    # scikit-learn costs 0.3-0.7 s to import: on first use
    from sklearn.cluster import HDBSCAN
    from sklearn.neighbors import NearestNeighbors

    try:  # private names: a scikit-learn that moved them still gets the same labels, slower
        from sklearn.cluster._hdbscan._linkage import MST_edge_dtype
        from sklearn.cluster._hdbscan._tree import tree_to_labels
        from sklearn.cluster._hdbscan.hdbscan import _process_mst
    except ImportError:
        MST_edge_dtype = None
    from ._mst import mutual_reachability_mst

    if y.shape[0] <= min_size or MST_edge_dtype is None:
        # (with too few points, HDBSCAN's own message)
        return HDBSCAN(min_cluster_size=min_size, copy=True).fit_predict(y)
    # HDBSCAN's defaults: min_samples = min_cluster_size, a k-d tree of leaf size 40, "eom"
    nearest = NearestNeighbors(n_neighbors=min_size, algorithm="kd_tree", leaf_size=40).fit(y)
    core = np.ascontiguousarray(nearest.kneighbors(y, min_size)[0][:, -1])
    src, dst, dist = mutual_reachability_mst(y, core)
    mst = np.empty(src.size, dtype=MST_edge_dtype)
    mst["current_node"], mst["next_node"], mst["distance"] = src, dst, dist
    labels, _ = tree_to_labels(_process_mst(mst), min_size, "eom", False, 0.0, None)
    return labels


def _raster(y: np.ndarray, min_size: int) -> np.ndarray:
    lo = y.min(axis=0)
    span = np.maximum(y.max(axis=0) - lo, np.finfo(np.float64).tiny)
    pix = np.minimum((y - lo) / span * RASTER_BINS, RASTER_BINS - 1).astype(np.int64)
    occupied = np.zeros((RASTER_BINS, RASTER_BINS), dtype=bool)
    occupied[pix[:, 0], pix[:, 1]] = True
    r = RASTER_RADIUS
    disk = np.add.outer(np.arange(-r, r + 1) ** 2, np.arange(-r, r + 1) ** 2) <= r * r
    grown = ndimage.binary_dilation(occupied, structure=disk)
    regions, _ = ndimage.label(grown)
    labels = regions[pix[:, 0], pix[:, 1]] - 1
    counts = np.bincount(labels)
    labels[counts[labels] < min_size] = -1
    return labels


def _gmm(y: np.ndarray, n_motifs: int, seed: int) -> np.ndarray:
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(n_motifs, covariance_type="full", random_state=seed % 2**32)
    return model.fit(y).predict(y)


def cluster(
    layout: xr.DataArray | np.ndarray,
    *,
    method: str = "hdbscan",
    n_motifs: int | None = None,
    min_size: int | None = None,
    follow: xr.DataArray | np.ndarray | None = None,
    features: xr.DataArray | np.ndarray | None = None,
    max_overlap: float = 0.01,
    alpha: float = 1e-3,
    min_contrast: float = 0.1,
    atoms: xr.Dataset | None = None,
    sites: bool = True,
    seed: Seed = 0,
) -> xr.DataArray:
    """Label the motifs of a 2-D layout: one label per motif, -1 for unassigned atoms.

    The layout's clusters are candidates. With ``features`` (the PCA scores the layout was
    made from), the number of motifs is decided statistically: two clusters are one motif
    unless their features differ beyond the image's own noise (the pooled spread of the atoms
    within the clusters; once they are merged, the trimmed spread of each motif's core), so a
    motif that the layout split into beads is one motif again. A rare motif (a dopant, an
    antisite; at least 5 atoms) that does differ survives, whether the layout isolated it or
    left it in the tail of a common motif, where it is found as an excess over that motif's
    symmetric noise. Unassigned atoms then join the motif whose noise ellipsoid holds them;
    only real outliers stay -1.

    Parameters
    ----------
    layout : xarray.DataArray or numpy.ndarray
        Layout with dims ``("atom", "axis")``, e.g. from :func:`dmotif.fr_layout`.
    method : {"hdbscan", "raster", "gmm"}, default "hdbscan"
        ``"hdbscan"``: density clusters (above 50 000 atoms fitted on a seeded sample, the
        others take the label of their nearest sampled atom). ``"raster"``: the reference's
        method, connected regions of the layout drawn on a 256 × 256 grid with disks of
        radius 3. ``"gmm"``: a Gaussian mixture with ``n_motifs`` components (by default as
        many as HDBSCAN finds), which assigns every atom.
    n_motifs : int, optional
        Number of motifs; only for ``method="gmm"`` (the others find it).
    min_size : int, optional
        Smallest motif, in atoms (default: 0.2 % of the atoms, at least 5). Smaller HDBSCAN
        clusters and raster regions are unassigned.
    follow : array of bool over atom, optional
        Atoms that do not define motifs but take the label of their nearest other atom in the
        layout, e.g. the ``edge`` flag of :func:`dmotif.zernike_features`: a patch cut by the
        image border is mirrored, and such atoms would otherwise form motifs of their own.
    features : xarray.DataArray or numpy.ndarray, optional
        Per-atom features ``(atom, <dim>)`` in which motifs are told apart, normally the PCA
        scores the layout was computed from (:func:`dmotif.pca`). Without them the layout's
        clusters are the motifs, as in the reference method. Not used with ``n_motifs``.
    max_overlap : float, default 0.01
        Two clusters are distinct motifs only if a Gaussian classifier with their pooled
        covariance would confuse at most this share of their atoms: their Mahalanobis
        separation ``d`` must reach ``2 Φ⁻¹(1 − max_overlap)`` (4.65 for 1 %).
    alpha : float, default 1e-3
        Significance level of Hotelling's two-sample test that the two clusters' mean
        features differ (Bonferroni-corrected over the pairs), and the χ² tail beyond which
        an unassigned atom stays an outlier.
    min_contrast : float, default 0.1
        Two clusters are distinct motifs only if their mean features differ by at least this
        share of the largest difference between two clusters: on nearly noise-free images the
        surroundings of a column (a neighbouring vacancy) are significant but do not make
        another column type.
    atoms : xarray.Dataset, optional
        The atom table the layout was made from (:func:`dmotif.detect_atoms`). With it (and
        ``sites``) the motifs are split by the sublattice site their atoms sit on
        (:func:`dmotif.site_motifs`), as a run does: a Mo-like column on a chalcogen site is
        a motif of its own.
    sites : bool, default True
        Split the motifs by site when ``atoms`` is given.
    seed : int, numpy.random.Generator or None, default 0
        Seed of the HDBSCAN sample, the GMM start and the samples on which the noise and the
        tails of very large motifs are estimated.

    Returns
    -------
    xarray.DataArray
        int32 labels named ``"label"`` over ``atom``; motifs numbered by decreasing size;
        attrs ``method``, ``n_motifs`` (the number found), ``min_size``, ``candidates`` (the
        layout's clusters before the decision) and, with ``features``, the evidence of each
        motif as lists over motifs: ``nearest_motif``, ``separation`` (Mahalanobis distance
        of the mean features to the nearest motif's, in units of the noise), ``p_value``
        (Hotelling's test against that motif) and ``bridge`` (the share of the two motifs'
        atoms in the middle third between their means); with ``atoms``, ``split_from``,
        ``site``, ``site_motif``, ``sublattice_of`` and ``sites`` as
        :func:`dmotif.site_motifs` gives them.
        Whether the motifs are column types or pieces of a continuous variation is
        :func:`dmotif.feature_structure`'s call.

    Notes
    -----
    See :mod:`dmotif.motifs._decide` for the test. The separation is scale-free: it is measured in
    units of the within-motif spread, which the image's dose, scan noise and drift set.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.vstack([rng.normal(0, 1, (300, 2)), rng.normal(30, 1, (100, 2))])
    >>> labels = cluster(y)
    >>> labels.attrs["n_motifs"], int((labels == 1).sum())
    (2, 100)
    """
    layout = _as_layout(layout)
    if method not in METHODS:
        raise ParameterError(f"method must be one of {METHODS}; got {method!r}.")
    y_all = np.asarray(layout.values, dtype=np.float64)
    lead = np.ones(y_all.shape[0], dtype=bool)
    if follow is not None:
        follow = np.asarray(follow.values if isinstance(follow, xr.DataArray) else follow)
        if follow.shape != (y_all.shape[0],) or follow.dtype != bool:
            raise DataError(
                f"follow must be one bool per atom ({y_all.shape[0]}); got shape "
                f"{follow.shape}, dtype {follow.dtype}."
            )
        lead = ~follow
    y = y_all[lead]
    n = y.shape[0]
    if n_motifs is not None:
        if method != "gmm":
            raise ParameterError(
                f"n_motifs={n_motifs} is only used by method='gmm'; method={method!r} finds "
                "the number of motifs itself. Pass method='gmm' or drop n_motifs."
            )
        if not 1 <= n_motifs < n:
            raise ParameterError(f"n_motifs must be in [1, {n}); got {n_motifs}.")
    if min_size is None:
        min_size = max(5, n // 500)
    if isinstance(min_size, bool) or not isinstance(min_size, int | np.integer) or min_size < 2:
        raise ParameterError(
            f"min_size must be an integer >= 2 (the fewest atoms a motif may have); got "
            f"{min_size!r}. Pass e.g. min_size=5, or None for the default."
        )
    if n < 2 * min_size:
        raise DataError(
            f"clustering needs at least 2 * min_size = {2 * min_size} atoms; got {n}."
        )
    s = seed_int(seed)
    if method == "hdbscan":
        raw = _hdbscan(y, min_size, s)
    elif method == "raster":
        raw = _raster(y, min_size)
    else:
        # FR clusters are compact but not Gaussian, so BIC over-splits them: count the
        # motifs by density instead and let the mixture share out every atom.
        if n_motifs is None:
            n_motifs = max(1, int(_hdbscan(y, min_size, s).max() + 1))
        raw = _gmm(y, n_motifs, s)
    candidates = int(raw.max() + 1)
    x, noise = None, None
    if features is not None and n_motifs is None:
        x = _feature_matrix(features, y_all.shape[0])
        raw, noise = _decide_motifs(x[lead], raw, max_overlap=max_overlap, alpha=alpha,
                                    min_contrast=min_contrast, seed=s)
    if not lead.all():
        full = np.empty(y_all.shape[0], dtype=raw.dtype)
        full[lead], full[~lead] = raw, _nearest_labels(y, raw, y_all[~lead])
        raw = full
    labels = _canonical(raw)
    attrs = {"method": method, "min_size": int(min_size), "candidates": candidates}
    if atoms is not None and sites and labels.max() >= 0:
        from .sites import site_motifs

        split = site_motifs(atoms, labels, features=x, max_overlap=max_overlap, alpha=alpha,
                            min_contrast=min_contrast, seed=s)
        labels = split.values
        attrs.update({k: split.attrs[k] for k in ("split_from", "site", "site_motif",
                                                  "sublattice_of", "sites")})
    attrs["n_motifs"] = int(labels.max() + 1)
    if noise is not None:
        attrs.update(_evidence(x[lead], labels[lead], noise))
    out = xr.DataArray(labels, dims=("atom",), name="label", attrs=attrs)
    if "atom" in layout.coords:
        out = out.assign_coords(atom=layout.coords["atom"])
    return out


def _evidence(x: np.ndarray, labels: np.ndarray, noise: np.ndarray) -> dict[str, list]:
    """The evidence of each motif (:func:`dmotif.motifs._decide.evidence`) as lists over the
    motifs of ``labels``; a motif without atoms in ``x`` gets none (-1, inf, 1, 0)."""
    from . import _decide

    k = int(labels.max()) + 1
    proof = _decide.evidence(x, labels, noise)
    groups = _decide.Groups.of(x, labels)
    motif = np.array([m[0] for m in groups.members], dtype=np.int64)
    out = {"nearest_motif": [-1] * k, "separation": [float("inf")] * k, "p_value": [1.0] * k,
           "bridge": [0.0] * k}
    for g, m in enumerate(motif.tolist()):
        near = int(proof["nearest_motif"][g])
        out["nearest_motif"][m] = int(motif[near]) if near >= 0 else -1
        out["separation"][m] = float(proof["separation"][g])
        out["p_value"][m] = float(proof["p_value"][g])
        out["bridge"][m] = float(proof["bridge"][g])
    return out


def _feature_matrix(features: xr.DataArray | np.ndarray, n: int) -> np.ndarray:
    """The features as a float64 (atom, feature) matrix, checked against ``n`` atoms."""
    x = np.asarray(as_atom_matrix(features).values, dtype=np.float64)
    if x.shape[0] != n:
        raise DataError(
            f"features must be one row per atom ({n} atoms, 2-D); got shape {x.shape}. Pass "
            "the PCA scores the layout was computed from."
        )
    if not np.isfinite(x).all():
        raise DataError("features contain NaN or inf; recompute them with dmotif.pca.")
    return x


def _decide_motifs(
    x: np.ndarray, raw: np.ndarray, *, max_overlap: float, alpha: float, min_contrast: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Merge the candidate clusters that are one motif, look for rare motifs in the tails of
    each, and re-home the atoms within the noise (see :mod:`dmotif.motifs._decide`); return
    the labels and the noise covariance (None when no motif is left)."""
    from . import _decide  # scipy.stats: imported on first use, not with dmotif
    if not 0 < max_overlap < 0.5:
        raise ParameterError(f"max_overlap must be in (0, 0.5); got {max_overlap!r}.")
    if not 0 < alpha < 1:
        raise ParameterError(f"alpha must be in (0, 1); got {alpha!r}.")
    if not 0 <= min_contrast < 1:
        raise ParameterError(f"min_contrast must be in [0, 1); got {min_contrast!r}.")
    if raw.max() < 0:
        return raw, None
    test = {"max_overlap": max_overlap, "alpha": alpha, "min_contrast": min_contrast}
    # The layout's clusters, merged under their pooled spread, are the coarsest motifs the
    # test accepts; their trimmed spread is the noise, which no later split can shrink.
    coarse = _settle(x, raw, None, test)
    if coarse.max() < 0:
        return coarse, None
    noise, centres = _decide.robust_spread(x, coarse, sample=ROBUST_SAMPLE, seed=seed)
    # Outliers of the coarse motifs may be the rest of a rare one: they are searched with the
    # tail of their nearest motif.
    parent = coarse.copy()
    loose = coarse < 0
    if loose.any():
        parent[loose] = _decide.nearest_motif(x[loose], x, coarse, noise)[0]
    tail = _decide.tail_atoms(x, parent, centres, noise, alpha=alpha)
    candidates = _split_tails(x, coarse, parent, tail, centres, noise, alpha=alpha, seed=seed)
    labels = _settle(x, candidates, noise, test)
    if labels.max() > 0:
        # Complete linkage leaves some of a rare motif's atoms in groups too small to count,
        # with their coarse motif: with one noise for all motifs, each assigned atom joins the
        # motif whose mean is nearest (the Bayes rule for Gaussian classes of equal priors).
        home = labels >= 0
        labels = labels.copy()
        labels[home] = _decide.nearest_motif(x[home], x, labels, noise)[0]
        labels = _settle(x, labels, noise, test)
    return labels, noise


def _settle(x: np.ndarray, labels: np.ndarray, noise: np.ndarray | None, test: dict) -> np.ndarray:
    """Merge, drop motifs under :data:`RARE_MIN` atoms and re-home atoms, until stable."""
    from . import _decide

    # Re-homing atoms moves the motifs' means and spread, so two motifs may no longer pass the
    # test: merge and re-home until nothing changes (at most a few rounds), so that the
    # evidence reported is that of the final motifs.
    for _ in range(MAX_DECISION_ROUNDS):
        merged, _ = _decide.merge_groups(x, labels, noise=noise, **test)
        counts = np.bincount(merged[merged >= 0])
        merged = np.where((merged >= 0) & (counts[np.maximum(merged, 0)] < RARE_MIN), -1, merged)
        merged = _decide.assign_within_noise(x, _canonical(merged), alpha=test["alpha"],
                                             noise=noise)
        if np.array_equal(merged, labels):
            break
        labels = merged
    return labels


def _split_tails(
    x: np.ndarray, labels: np.ndarray, parent: np.ndarray, tail: np.ndarray,
    centres: np.ndarray, noise: np.ndarray, *, alpha: float, seed: int,
) -> np.ndarray:
    """Candidate rare motifs: tight groups in each motif's tail that stand out of its noise.

    A rare motif merged into a common one (the layout did not isolate it) lies in the tail of
    that motif's noise ellipsoid (``parent``: the coarse motif, or the nearest one for an
    unassigned atom). The tail atoms, whitened by the noise, are grouped by complete linkage
    (:func:`dmotif.motifs._decide.tail_groups`); a group of at least :data:`RARE_MIN` atoms
    is kept if it is an excess over the motif's own noise
    (:func:`dmotif.motifs._decide.mirror_excess`), and kept groups that touch are one
    candidate (:func:`dmotif.motifs._decide.touching`). The rest keep ``labels``.
    """
    from . import _decide

    out = labels.copy()
    whiten = np.linalg.cholesky(np.linalg.inv(noise))
    rng = np.random.default_rng(seed)
    for motif in np.unique(parent[tail]):
        rows = np.flatnonzero(tail & (parent == motif))
        if rows.size < RARE_MIN:
            continue
        z = (x[rows] - centres[motif]) @ whiten
        if rows.size > TAIL_SAMPLE:
            # Linkage holds all pairwise distances: beyond TAIL_SAMPLE tail atoms, a seeded
            # sample is grouped and the others take the group of their nearest sampled atom.
            part = np.sort(rng.choice(rows.size, TAIL_SAMPLE, replace=False))
            sub = _decide.tail_groups(z[part], alpha=alpha)
            sub = sub[cKDTree(z[part]).query(z, k=1)[1]]
        else:
            sub = _decide.tail_groups(z, alpha=alpha)
        members = np.flatnonzero(parent == motif)
        if members.size > AROUND_SAMPLE:
            # The mirror test holds on any centrally symmetric set: a seeded sample of the
            # core with the whole tail (defined by radius, so symmetric too) keeps it fast.
            core = members[~tail[members]]
            members = np.union1d(rng.choice(core, AROUND_SAMPLE, replace=False),
                                 members[tail[members]])
        around = (x[members] - centres[motif]) @ whiten
        sizes = np.bincount(sub)
        tested = np.flatnonzero(sizes >= RARE_MIN)
        # Bonferroni over the groups tested: a heavy tail offers many.
        means = np.array([z[sub == g].mean(axis=0) for g in tested]).reshape(-1, z.shape[1])
        kept = list(tested[_decide.mirror_excess(around, means) < MIRROR_ALPHA / max(
            tested.size, 1)])
        for piece in _decide.touching(z, sub, kept, alpha=alpha):
            out[rows[np.isin(sub, piece)]] = out.max() + 1
    return out
