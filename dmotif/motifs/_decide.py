"""How many motifs: groups of atoms are one motif unless their features differ beyond the noise.

Pure numpy kernels, no dask or xarray: the statistical decision that turns the clusters of a
layout (which may split one motif into several beads, or leave a rare motif inside a common
one) into motifs, and the evidence each motif carries.

Two groups ``a`` and ``b`` of atoms, with feature means ``μa``, ``μb`` and a noise covariance
``W`` (the per-atom noise of the image as the features see it: shot noise, scan noise,
residual drift), are separated by the Mahalanobis distance
``d = sqrt((μa − μb)ᵀ W⁻¹ (μa − μb))``. Two Gaussian classes at distance ``d`` with a shared
covariance are told apart atom by atom with the error ``Φ(−d/2)``: they are distinct motifs
only when that error is at most ``max_overlap`` *and* Hotelling's two-sample test finds the
difference of means significant (``alpha``, Bonferroni-corrected over the pairs), so that a few
atoms that happen to lie apart do not make a motif. The closest pair that fails is merged and
the test repeated, until every pair passes (:func:`merge_groups`).

The decision runs in two passes (``dmotif.motifs.clustering``):

1. The layout's clusters are merged with ``W`` the pooled within-group covariance of the groups
   as they stand: it grows back from the shrunken spread of the beads towards the motifs' own
   as beads merge. This gives the coarsest motifs the test accepts.
2. The noise is then fixed: the trimmed spread of those motifs (:func:`trimmed_spread`, the
   atoms within the 97.5 % χ² ellipsoid, reweighted to consistency), pooled over motifs
   (:func:`robust_spread`). It is estimated on the coarse motifs, not on any split, so no
   over-segmentation can shrink it; the trimming keeps a rare motif inside a common one from
   inflating it. Measured on the abTEM MoSe2 ADF image at 3·10⁴ e/Å² (W dopants 4.9 and
   single-Se columns 5.3 noise units from Se2 and Mo under the pooled covariance of the true
   types): trimming at 97.5 % finds both (level-1 ARI 0.971, from 0.905); at 99.9 %, nearly
   the classical covariance, neither (0.905). The cost, on the abTEM SrTiO3 ABF image at
   3·10⁴: the O columns beside half-occupied Sr columns become a motif of their own (ARI
   0.983 → 0.93). The pooled spread of split candidates shrinks with every split: not
   considered.
   Each motif's *tail* (atoms beyond its ``1 − alpha`` χ² ellipsoid) is grouped by complete
   linkage in whitened units (:func:`tail_groups`); a group of at least 5 atoms is a
   candidate when it is an excess over the motif's own noise (:func:`mirror_excess`: the
   noise of a column type is symmetric about its centre, a rare motif is not), Bonferroni-
   corrected over the groups tested, and touching candidates are one (:func:`touching`).
   The candidates and the coarse motifs are merged again under the fixed noise; every
   assigned atom then joins the motif whose mean is nearest (:func:`nearest_motif`).

A noise split never survives the second pass: the tails of one Gaussian or Student-t motif
give no excess over their mirror image. The price is power: with ``m`` groups tested in a
motif's tail (about one per 9 tail atoms, 0.1 % of the motif's atoms for Gaussian noise) a
rare motif needs at least ``log2(m / 0.05)`` atoms in its window and none in the mirror's.
Measured, 9 noise units from the common motif: 8 atoms suffice beside 2 000, 12 beside
600 000 (10 do not).

On a nearly noise-free image (a high dose, a simulation, a virtual image of 4D-STEM) the noise
no longer hides the small differences that a column's surroundings make (a metal beside a
vacancy), and every environment would pass the test. A difference must therefore also matter:
the two mean feature vectors must differ by at least ``min_contrast`` times the largest
difference between any two groups (the contrast between the most different column types).

Discrete motifs or a continuum: a continuous variation (the local stacking across the moiré
of a twisted bilayer) is cut into adjacent groups that pass the test, but, unlike column
types, no gap of low density lies between them. The *bridge share* of a motif is the share of
its atoms and its nearest motif's that fall in the middle third between the two means, along
the Fisher direction ``W⁻¹(μa − μb)``: 1/6 for adjacent pieces of a uniform continuum,
``Φ(2d/3) − Φ(d/3)`` for two Gaussian classes at separation ``d`` (6 % at the least separation
the test accepts, 4.65; under 1 % beyond 7). It is evidence, not the call: where the features
sample a continuum in separate groups (the moiré's shells of columns) no atoms bridge them;
:mod:`dmotif.motifs.continuum` decides in the image instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

#: Ridge added to the pooled covariance, relative to its mean variance, so that components
#: without spread (a constant feature) do not make it singular.
RIDGE = 1e-6
#: χ² quantile within which an atom counts in the core of its group (the usual cutoff of
#: one-step reweighted robust estimators).
TRIM = 0.975
#: Rounds of trimming before the core's spread is taken as it stands.
TRIM_ROUNDS = 10
#: Largest half-width, in noise units, of the window about a tail group in
#: :func:`mirror_excess` (at most half the group's distance): 99.7 % of a motif's atoms lie
#: within 3 of its mean along any direction, and a wider window holds more atoms of the common
#: motif's tail, which hide a small excess. Measured: 2 loses the 9 W columns of the abTEM
#: MoSe2 ADF image at 3·10⁴ (5 units from Se2), no cap loses 12 rare atoms beside 600 000.
WINDOW = 3.0
#: Directions projected at once in :func:`mirror_excess` (one matrix product each).
MIRROR_BATCH = 64


@dataclass
class Groups:
    """Running sums of the groups being merged: means, sizes, scatter matrices, members."""

    mean: list[np.ndarray]
    count: list[int]
    scatter: list[np.ndarray]
    members: list[list[int]]

    @classmethod
    def of(cls, x: np.ndarray, labels: np.ndarray) -> Groups:
        k = int(labels.max()) + 1 if labels.size else 0
        mean, count, scatter, members = [], [], [], []
        for g in range(k):
            rows = x[labels == g]
            if rows.shape[0] == 0:
                continue
            mu = rows.mean(axis=0)
            centred = rows - mu
            mean.append(mu)
            count.append(rows.shape[0])
            scatter.append(centred.T @ centred)
            members.append([g])
        return cls(mean, count, scatter, members)

    def pooled(self) -> np.ndarray:
        """The pooled within-group covariance, with a small ridge."""
        dof = max(sum(self.count) - len(self.count), 1)
        return _ridged(sum(self.scatter) / dof)

    def merge(self, a: int, b: int) -> None:
        na, nb = self.count[a], self.count[b]
        delta = self.mean[a] - self.mean[b]
        self.scatter[a] = self.scatter[a] + self.scatter[b] + na * nb / (na + nb) * np.outer(
            delta, delta)
        self.mean[a] = (na * self.mean[a] + nb * self.mean[b]) / (na + nb)
        self.count[a] = na + nb
        self.members[a] = self.members[a] + self.members[b]
        for seq in (self.mean, self.count, self.scatter, self.members):
            del seq[b]


def separation_threshold(max_overlap: float) -> float:
    """The Mahalanobis distance at which two Gaussian classes overlap by ``max_overlap``."""
    return float(2.0 * stats.norm.isf(max_overlap))


def _ridged(cov: np.ndarray) -> np.ndarray:
    p = cov.shape[0]
    return cov + np.eye(p) * RIDGE * max(np.trace(cov) / p, np.finfo(np.float64).tiny)


def _squared_distances(x: np.ndarray, mu: np.ndarray, w_inv: np.ndarray) -> np.ndarray:
    diff = x - mu
    return np.einsum("ni,ij,nj->n", diff, w_inv, diff)


def trimmed_spread(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The centre and covariance of the core of one group, its far tail trimmed.

    Reweighting: the atoms within the :data:`TRIM` quantile of χ² of the current estimate
    are kept and the mean and covariance recomputed, until the kept set no longer changes
    (at most :data:`TRIM_ROUNDS` rounds); the covariance is then scaled by the factor that
    makes it consistent for a Gaussian core (``q / P(χ²_{p+2} ≤ χ²_p(q))``).
    """
    p = x.shape[1]
    limit = stats.chi2.ppf(TRIM, p)
    consistency = TRIM / stats.chi2.cdf(limit, p + 2)
    keep = np.ones(x.shape[0], dtype=bool)
    mu, cov = x.mean(axis=0), _ridged(np.atleast_2d(np.cov(x.T)))
    for _ in range(TRIM_ROUNDS):
        new = _squared_distances(x, mu, np.linalg.inv(cov)) <= limit
        if np.array_equal(new, keep) or new.sum() <= p:
            break
        keep = new
        mu = x[keep].mean(axis=0)
        cov = _ridged(np.atleast_2d(np.cov(x[keep].T)) * consistency)
    return mu, cov


def robust_spread(
    x: np.ndarray, labels: np.ndarray, *, sample: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The noise covariance, pooled over groups of their trimmed spread, and their centres.

    Each group of ``labels`` (``-1`` ignored) is estimated by :func:`trimmed_spread` on at
    most ``sample`` of its atoms (a seeded draw); groups too small for a covariance
    (fewer than twice as many atoms as features) give their mean and no spread. Returns the
    pooled covariance, weighted by group size (the pooled covariance of all groups if none
    is large enough) and the centres, one row per group in label order.
    """
    rng = np.random.default_rng(seed)
    p = x.shape[1]
    total, weight, centres = np.zeros((p, p)), 0, []
    for g in range(int(labels.max()) + 1):
        rows = np.flatnonzero(labels == g)
        if rows.size == 0:
            continue
        if rows.size < 2 * p:
            centres.append(x[rows].mean(axis=0))
            continue
        part = np.sort(rng.choice(rows, sample, replace=False)) if rows.size > sample else rows
        mu, cov = trimmed_spread(x[part])
        centres.append(mu)
        total += rows.size * cov
        weight += rows.size
    noise = total / weight if weight else Groups.of(x, labels).pooled()
    return noise, np.array(centres)


def tail_atoms(
    x: np.ndarray, labels: np.ndarray, centres: np.ndarray, noise: np.ndarray, *,
    alpha: float,
) -> np.ndarray:
    """Whether each atom lies beyond the ``1 − alpha`` χ² quantile of its group's noise
    ellipsoid (about its group's centre, one row of ``centres`` per group in label order)."""
    found = np.unique(labels[labels >= 0])
    out = np.zeros(labels.shape, dtype=bool)
    if found.size == 0:
        return out
    lookup = np.full(int(found.max()) + 1, -1, dtype=np.int64)
    lookup[found] = np.arange(found.size)
    rows = np.flatnonzero(labels >= 0)
    mu = centres[lookup[labels[rows]]]
    d2 = _squared_distances(x[rows], mu, np.linalg.inv(noise))
    out[rows] = d2 > stats.chi2.isf(alpha, x.shape[1])
    return out


def pair_statistics(
    groups: Groups, noise: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mahalanobis distances and Hotelling p-values between all pairs of groups.

    The noise covariance is ``noise`` if given (e.g. :func:`robust_spread`), else the groups'
    pooled covariance.
    """
    w_inv = np.linalg.inv(groups.pooled() if noise is None else noise)
    mu = np.array(groups.mean)
    diff = mu[:, None, :] - mu[None, :, :]
    d2 = np.maximum(np.einsum("abi,ij,abj->ab", diff, w_inv, diff), 0.0)
    n = np.array(groups.count, dtype=np.float64)
    k, p = mu.shape
    total = n.sum()
    t2 = np.outer(n, n) / np.add.outer(n, n) * d2
    dof = total - k - p + 1
    pvalue = np.ones_like(d2) if dof <= 0 else stats.f.sf(t2 * dof / (p * (total - k)), p, dof)
    np.fill_diagonal(d2, np.inf)
    np.fill_diagonal(pvalue, 0.0)
    return np.sqrt(d2), pvalue


def merge_groups(
    x: np.ndarray, labels: np.ndarray, *, max_overlap: float, alpha: float,
    min_contrast: float = 0.0, noise: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Merge the groups of ``labels`` (``-1`` ignored) that are not distinct in ``x``.

    The noise is ``noise`` if given, held fixed while the groups merge; otherwise the pooled
    covariance of the groups as they stand. Returns the new labels (``-1`` kept, groups
    numbered in the order of their first old label) and, for every old label, its new one.
    """
    lookup = np.full(int(labels.max()) + 2 if labels.size else 1, -1, dtype=np.int64)
    groups = Groups.of(x, labels)
    if len(groups.mean) == 0:
        return labels.copy(), lookup[:-1]
    d_min = separation_threshold(max_overlap)
    while len(groups.mean) > 1:
        d, pvalue = pair_statistics(groups, noise)
        mu = np.array(groups.mean)
        gap = np.sqrt(((mu[:, None, :] - mu[None, :, :]) ** 2).sum(axis=-1))
        k = len(groups.mean)
        distinct = (d >= d_min) & (pvalue < alpha / (k * (k - 1) / 2))
        distinct &= gap >= min_contrast * gap.max()
        # The least separated pair that is not distinct merges first.
        d_open = np.where(distinct, np.inf, d)
        np.fill_diagonal(d_open, np.inf)
        if not np.isfinite(d_open).any():
            break
        a, b = np.unravel_index(np.argmin(d_open), d.shape)
        groups.merge(min(a, b), max(a, b))
    for new, old in enumerate(groups.members):
        lookup[old] = new
    return np.where(labels >= 0, lookup[np.maximum(labels, 0)], -1), lookup[:-1]


def assign_within_noise(
    x: np.ndarray, labels: np.ndarray, *, alpha: float, noise: np.ndarray | None = None
) -> np.ndarray:
    """Give each unassigned atom the motif whose noise ellipsoid holds it, if one does.

    An atom joins its nearest motif (:func:`nearest_motif` under ``noise``, by default the
    pooled covariance) when its squared distance is within the ``1 − alpha`` quantile of χ²
    with as many degrees of freedom as features; farther atoms stay ``-1`` (real outliers).
    """
    out = labels.copy()
    loose = np.flatnonzero(labels < 0)
    if loose.size == 0 or labels.max() < 0:
        return out
    w = Groups.of(x, labels).pooled() if noise is None else noise
    nearest, d2 = nearest_motif(x[loose], x, labels, w)
    ok = d2 <= stats.chi2.isf(alpha, x.shape[1])
    out[loose[ok]] = nearest[ok]
    return out


def _linkage_cut(alpha: float, p: int) -> float:
    """The distance beyond which two draws of one unit Gaussian in ``p`` dimensions lie with
    probability ``alpha``: ``sqrt(2 χ²_p(1 − alpha))``."""
    return float(np.sqrt(2.0 * stats.chi2.isf(alpha, p)))


def tail_groups(z: np.ndarray, *, alpha: float) -> np.ndarray:
    """Group whitened tail atoms ``z`` (rows) that could share one mean: complete linkage cut
    where two draws of one unit Gaussian are farther apart than the ``1 − alpha`` quantile
    (``sqrt(2 χ²_p(1 − alpha))``), so that every two atoms of a group are within the noise of
    each other. Returns one group number per row."""
    from scipy.cluster.hierarchy import fcluster, linkage

    if z.shape[0] < 2:
        return np.zeros(z.shape[0], dtype=np.int64)
    cut = _linkage_cut(alpha, z.shape[1])
    return fcluster(linkage(z, "complete"), cut, "distance").astype(np.int64) - 1


def touching(z: np.ndarray, groups: np.ndarray, kept: list, *, alpha: float) -> list[list]:
    """The ``kept`` groups of ``groups`` (over the rows of ``z``) joined where two of their
    atoms are within the cut of :func:`tail_groups`: complete linkage cuts a broad population
    into pieces of one noise diameter, and touching pieces are one population."""
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import cdist

    if not kept:
        return []
    cut = _linkage_cut(alpha, z.shape[1])
    k = len(kept)
    near = np.eye(k, dtype=bool)
    for i in range(k):
        for j in range(i + 1, k):
            near[i, j] = near[j, i] = cdist(z[groups == kept[i]], z[groups == kept[j]]).min() <= cut
    _, comp = connected_components(near, directed=False)
    return [[kept[i] for i in np.flatnonzero(comp == c)] for c in range(comp.max() + 1)]


def mirror_excess(around: np.ndarray, means: np.ndarray) -> np.ndarray:
    """The p-values that groups whose whitened means are the rows of ``means`` are only the
    motif's own noise.

    ``around`` holds the whitened atoms of the motif (the groups' atoms among them), projected
    on the direction of a group's mean and centred on their median, where the group lies at
    ``T``. The noise of a column type is symmetric about its centre, heavy tails and all, so as
    many atoms fall within ``h = min(T/2, WINDOW)`` of ``T`` as within ``h`` of ``−T``; a rare
    motif is an excess on its side. Returns, per group, the one-sided binomial p-value of the
    count on the group's side among both.
    """
    means = np.atleast_2d(means)
    out = np.ones(means.shape[0])
    length = np.linalg.norm(means, axis=1)
    for lo in range(0, means.shape[0], MIRROR_BATCH):
        cols = np.arange(lo, min(lo + MIRROR_BATCH, means.shape[0]))
        cols = cols[length[cols] > 0]
        if cols.size == 0:
            continue
        t = around @ (means[cols] / length[cols, None]).T
        # Centred on the median along each direction: a centre estimated on a sample is off
        # by ~1/sqrt(sample), which moves thousands of atoms across a window.
        middle = np.median(t, axis=0)
        t -= middle
        reach = length[cols] - middle
        half = np.minimum(reach / 2, WINDOW)
        side = np.count_nonzero(np.abs(t - reach) <= half, axis=0)
        mirror = np.count_nonzero(np.abs(t + reach) <= half, axis=0)
        ok = (reach > 0) & (side > 0)
        out[cols[ok]] = stats.binom.sf(side[ok] - 1, side[ok] + mirror[ok], 0.5)
    return out


def nearest_motif(
    query: np.ndarray, x: np.ndarray, labels: np.ndarray, noise: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``query``, the motif of ``labels`` over ``x`` (``-1`` ignored) whose
    mean is nearest in Mahalanobis distance under ``noise``, and the squared distance."""
    found = np.unique(labels[labels >= 0])
    mu = np.array([x[labels == g].mean(axis=0) for g in found])
    # Whitened first: one (n, p) product instead of an (n, k, p, p) contraction.
    whiten = np.linalg.cholesky(np.linalg.inv(noise))
    z, centres = query @ whiten, mu @ whiten
    d2 = (z**2).sum(axis=1)[:, None] - 2 * z @ centres.T + (centres**2).sum(axis=1)[None, :]
    best = np.argmin(d2, axis=1)
    return found[best], np.maximum(d2[np.arange(len(best)), best], 0.0)


def evidence(
    x: np.ndarray, labels: np.ndarray, noise: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Per motif: its nearest other motif, their Mahalanobis separation, Hotelling p-value
    (both under ``noise`` if given, as the decision measured them), bridge share (see the
    module's docstring) and size.

    With a single motif the nearest is ``-1``, the separation ``inf``, the p-value 1 and the
    bridge share 0.
    """
    groups = Groups.of(x, labels)
    k = len(groups.mean)
    nearest = np.full(k, -1, dtype=np.int64)
    sep = np.full(k, np.inf)
    pvalue = np.ones(k)
    bridge = np.zeros(k)
    if k > 1:
        d, p = pair_statistics(groups, noise)
        nearest = np.argmin(d, axis=1)
        sep = d[np.arange(k), nearest]
        pvalue = p[np.arange(k), nearest]
        w_inv = np.linalg.inv(groups.pooled())
        old = np.array([m[0] for m in groups.members])
        for a, b in enumerate(nearest):
            delta = groups.mean[a] - groups.mean[b]
            rows = x[np.isin(labels, old[[a, b]])]
            w = w_inv @ delta
            t = (rows - groups.mean[b]) @ w / (delta @ w)
            bridge[a] = np.mean((t > 1 / 3) & (t < 2 / 3))
    return {"nearest_motif": nearest, "separation": sep, "p_value": pvalue, "bridge": bridge,
            "count": np.array(groups.count)}
