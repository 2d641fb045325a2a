"""The statistical decision on the number of motifs, against analytic truths and references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

import dmotif
from dmotif.errors import ParameterError
from dmotif.motifs import _decide

DIM = 10


def classes(sizes, centres, seed=0):
    """Gaussian classes of unit spread around ``centres`` (rows), with their truth."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(len(sizes)), sizes)
    x = np.asarray(centres, dtype=float)[truth] + rng.normal(size=(truth.size, DIM))
    return x, truth


def beads(x, truth, per_class, seed=0):
    """Split every class into ``per_class`` k-means beads, as a layout over-splits a motif."""
    labels = np.empty(truth.size, dtype=np.int64)
    for c in np.unique(truth):
        rows = np.flatnonzero(truth == c)
        k = min(per_class, rows.size)
        sub = KMeans(k, n_init=1, random_state=seed).fit_predict(x[rows])
        labels[rows] = c * per_class + sub
    return labels


def centre(d, axis=0):
    v = np.zeros(DIM)
    v[axis] = d
    return v


def test_threshold_is_the_bayes_overlap():
    # Two unit Gaussians at distance d are confused with probability Φ(-d/2).
    d = _decide.separation_threshold(0.01)
    assert d == pytest.approx(4.6527, abs=1e-4)
    assert stats.norm.cdf(-d / 2) == pytest.approx(0.01)


def test_pair_statistics_match_hotellings_two_sample_test():
    x, truth = classes([40, 25], [centre(0), centre(1.0)], seed=3)
    d, p = _decide.pair_statistics(_decide.Groups.of(x, truth))
    a, b = x[truth == 0], x[truth == 1]
    pooled = ((len(a) - 1) * np.cov(a.T) + (len(b) - 1) * np.cov(b.T)) / (len(a) + len(b) - 2)
    delta = a.mean(0) - b.mean(0)
    d2 = delta @ np.linalg.solve(pooled, delta)
    t2 = len(a) * len(b) / (len(a) + len(b)) * d2
    n = len(a) + len(b)
    f = t2 * (n - DIM - 1) / (DIM * (n - 2))
    assert d[0, 1] == pytest.approx(np.sqrt(d2), rel=1e-5)
    assert p[0, 1] == pytest.approx(stats.f.sf(f, DIM, n - DIM - 1), rel=1e-4)


def test_beads_of_one_motif_merge_and_distinct_motifs_stay():
    x, truth = classes([1500, 900, 400], [centre(0), centre(12), centre(12, axis=1)])
    labels = beads(x, truth, per_class=8)
    merged, lookup = _decide.merge_groups(x, labels, max_overlap=0.01, alpha=1e-3)
    assert np.unique(merged).size == 3
    assert adjusted_rand_score(truth, merged) == 1.0
    assert lookup.shape == (24,)


def test_a_rare_motif_of_six_atoms_survives():
    x, truth = classes([2000, 6], [centre(0), centre(10)], seed=1)
    labels = beads(x, truth, per_class=6)
    merged, _ = _decide.merge_groups(x, labels, max_overlap=0.01, alpha=1e-3)
    assert adjusted_rand_score(truth, merged) == 1.0


@pytest.mark.parametrize(("distance", "motifs"), [(2.0, 1), (8.0, 2)])
def test_overlapping_classes_are_one_motif(distance, motifs):
    # At d = 2 a classifier confuses 16 % of the atoms: not two motifs; at d = 8, 0.003 %.
    x, truth = classes([600, 600], [centre(0), centre(distance)], seed=2)
    merged, _ = _decide.merge_groups(x, truth, max_overlap=0.01, alpha=1e-3)
    assert np.unique(merged).size == motifs


def test_unassigned_atoms_join_the_motif_whose_noise_holds_them():
    x, truth = classes([500, 500], [centre(0), centre(15)], seed=4)
    labels = truth.copy()
    labels[::10] = -1
    far = np.vstack([centre(7.5, axis=2) * 4, -centre(40)])
    out = _decide.assign_within_noise(np.vstack([x, far]), np.r_[labels, -1, -1], alpha=1e-3)
    np.testing.assert_array_equal(out[: truth.size], truth)
    np.testing.assert_array_equal(out[truth.size:], [-1, -1])


def test_cluster_merges_the_beads_of_a_layout():
    x, truth = classes([1200, 700, 30], [centre(0), centre(10), centre(10, axis=1)], seed=5)
    # Candidate clusters that split each motif into beads, as the FR layout does on images.
    layout = np.c_[beads(x, truth, per_class=5) * 50.0, np.zeros(truth.size)]
    plain = dmotif.cluster(layout)
    decided = dmotif.cluster(layout, features=x)
    assert plain.attrs["n_motifs"] >= 12
    assert decided.attrs["n_motifs"] == 3
    assert decided.attrs["candidates"] == plain.attrs["n_motifs"]
    assert adjusted_rand_score(truth, decided.values) == 1.0
    assert np.all(np.array(decided.attrs["separation"]) > 8)
    assert decided.attrs["nearest_motif"][2] in (0, 1)
    assert np.all(np.array(decided.attrs["p_value"]) < 1e-10)


def test_decision_does_not_depend_on_atom_order():
    x, truth = classes([800, 500, 20], [centre(0), centre(9), centre(9, axis=3)], seed=6)
    labels = beads(x, truth, per_class=4)
    perm = np.random.default_rng(0).permutation(truth.size)
    a, _ = _decide.merge_groups(x, labels, max_overlap=0.01, alpha=1e-3)
    b, _ = _decide.merge_groups(x[perm], labels[perm], max_overlap=0.01, alpha=1e-3)
    np.testing.assert_array_equal(a[perm], b)
    assert adjusted_rand_score(truth, a) == 1.0


def test_cluster_decision_errors():
    x, _ = classes([50, 50], [centre(0), centre(9)])
    lay = x[:, :2]
    with pytest.raises(ParameterError, match="max_overlap"):
        dmotif.cluster(lay, features=x, max_overlap=0.7)
    with pytest.raises(ParameterError, match="alpha"):
        dmotif.cluster(lay, features=x, alpha=0)
    with pytest.raises(dmotif.DataError, match="one row per atom"):
        dmotif.cluster(lay, features=x[:10])


def test_environment_splits_of_a_noise_free_image_do_not_count():
    # Nearly noise-free: a 2 % variant of one column type is significant (d = 50) but is not
    # another type beside the contrast between the two types.
    rng = np.random.default_rng(7)
    truth = np.repeat([0, 0, 1], [900, 60, 700])
    shift = np.repeat([0.0, 0.2, 10.0], [900, 60, 700])
    x = centre(1.0)[None, :] * shift[:, None] + rng.normal(scale=0.004, size=(truth.size, DIM))
    labels = np.repeat([0, 1, 2], [900, 60, 700])
    kept, _ = _decide.merge_groups(x, labels, max_overlap=0.01, alpha=1e-3)
    merged, _ = _decide.merge_groups(x, labels, max_overlap=0.01, alpha=1e-3, min_contrast=0.1)
    assert np.unique(kept).size == 3
    assert adjusted_rand_score(truth, merged) == 1.0


def test_bridge_share_of_two_gaussian_classes_matches_theory():
    d = 5.0
    x, truth = classes([4000, 4000], [np.zeros(DIM), np.eye(DIM)[0] * d])
    proof = _decide.evidence(x, truth)
    expected = stats.norm.cdf(2 * d / 3) - stats.norm.cdf(d / 3)  # 0.047
    np.testing.assert_allclose(proof["bridge"], expected, atol=0.005)
    np.testing.assert_array_equal(proof["count"], [4000, 4000])


def test_a_continuum_cut_into_pieces_is_bridged():
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 10, 5000)
    x = np.c_[t, 0.05 * rng.normal(size=(t.size, DIM - 1))]
    pieces = np.minimum(t // 2, 4).astype(np.int64)
    proof = _decide.evidence(x, pieces)
    # Two adjacent pieces of a uniform density, means w apart: w/3 of their 2w lies in the
    # middle third.
    np.testing.assert_allclose(proof["bridge"], 1 / 6, atol=0.01)
    x, truth = classes([300, 300, 300], np.eye(DIM)[:3] * 10)
    proof = _decide.evidence(x, truth)
    assert proof["bridge"].max() < 0.01


def test_trimmed_spread_is_the_core_of_a_group_with_a_rare_tail():
    # 2000 atoms of one motif and 20 of another 8 noise units away: the classical covariance
    # grows along the gap; the trimmed one is the motif's own spread.
    rng = np.random.default_rng(8)
    scale = np.linspace(0.5, 2.0, DIM)
    x = np.vstack([rng.normal(size=(2000, DIM)) * scale, centre(8 * scale[0]) + rng.normal(
        size=(20, DIM)) * scale])
    mu, cov = _decide.trimmed_spread(x)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), scale, rtol=0.06)
    np.testing.assert_allclose(mu, 0, atol=0.1)
    assert np.cov(x.T)[0, 0] > 1.25 * scale[0] ** 2


def test_robust_spread_pools_the_groups_and_skips_tiny_ones():
    x, truth = classes([3000, 1000, 6], [centre(0), centre(20), centre(20, axis=1)], seed=9)
    noise, centres = _decide.robust_spread(x, truth, sample=500, seed=0)
    np.testing.assert_allclose(np.diag(noise), 1.0, atol=0.15)
    np.testing.assert_allclose(centres[1], centre(20), atol=0.2)
    assert centres.shape == (3, DIM)
    again, _ = _decide.robust_spread(x, truth, sample=500, seed=0)
    np.testing.assert_array_equal(noise, again)


def one_layout_cluster(x):
    """A layout that isolates nothing: one Gaussian blob, which HDBSCAN cuts into beads."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(x.shape[0], 2))


def test_a_rare_motif_the_layout_did_not_isolate_is_found():
    # 2000 atoms and 8 atoms 9 noise units away, mixed in the beads of one layout blob: only
    # the features tell them apart.
    x, truth = classes([2000, 8], [centre(0), centre(9)], seed=10)
    labels = dmotif.cluster(one_layout_cluster(x), features=x, seed=0)
    assert labels.attrs["candidates"] > 10
    assert labels.attrs["n_motifs"] == 2
    assert adjusted_rand_score(truth, labels.values) == 1.0
    assert min(labels.attrs["separation"]) > 8


@pytest.mark.parametrize("tail", ["gaussian", "student-t"])
def test_the_tails_of_one_motif_never_make_a_motif(tail):
    # A single motif of 20 000 atoms: its tail atoms cluster somewhere (HDBSCAN always finds
    # dense spots), but they merge back: heavy tails (Student's t, 5 degrees of freedom) too.
    rng = np.random.default_rng(11)
    n = 20_000
    x = rng.normal(size=(n, DIM)) if tail == "gaussian" else rng.standard_t(5, size=(n, DIM))
    labels = dmotif.cluster(one_layout_cluster(x), features=x, seed=0)
    assert labels.attrs["n_motifs"] == 1
    # Atoms beyond the χ² tail are outliers: 0.1 % of a Gaussian, 1.5 % of the heavier t.
    assert np.mean(labels.values < 0) <= (0.002 if tail == "gaussian" else 0.02)


def render_lattice(dose, bright=(), factor=1.3, n=32, spacing=12.0, sigma=2.0, seed=0):
    """One column type on a square lattice, Gaussian columns, Poisson noise at ``dose``
    counts per unit intensity; the ``bright`` columns ``factor`` times as intense."""
    size = int((n + 1) * spacing)
    y, x = np.mgrid[:size, :size].astype(float)
    centres = (np.stack(np.meshgrid(np.arange(n), np.arange(n), indexing="ij"), -1)
               .reshape(-1, 2) + 1) * spacing
    amplitude = np.ones(n * n)
    amplitude[list(bright)] = factor
    image = np.full((size, size), 0.1)
    half = int(4 * sigma)
    for (cy, cx), a in zip(centres, amplitude, strict=True):
        win = (slice(int(cy) - half, int(cy) + half + 1), slice(int(cx) - half, int(cx) + half + 1))
        image[win] += a * np.exp(-((y[win] - cy) ** 2 + (x[win] - cx) ** 2) / (2 * sigma**2))
    rng = np.random.default_rng(seed)
    return rng.poisson(dose * image).astype(np.float32), centres, amplitude


def image_motifs(image):
    import dask

    with dask.config.set(scheduler="threads"):
        atoms = dmotif.detect_atoms(image)
        feats = dmotif.zernike_features(image, atoms)
        scores = dmotif.pca(feats).compute()
        layout = dmotif.fr_layout(scores, seed=0)
        labels = dmotif.cluster(layout, features=scores, follow=feats["edge"].values, seed=0)
    return atoms, labels


@pytest.mark.parametrize("dose", [5, 100, 1000])
def test_a_noisy_lattice_of_one_column_type_is_one_motif(dose):
    image, _, _ = render_lattice(dose)
    _, labels = image_motifs(image)
    assert labels.attrs["n_motifs"] == 1
    assert np.mean(labels.values < 0) <= 0.01


def test_eight_brighter_columns_among_a_thousand_are_a_motif():
    # 30 % brighter at 100 counts: plain to the eye, 13 noise units apart in the features.
    bright = np.random.default_rng(1).choice(32 * 32, 8, replace=False)
    image, centres, amplitude = render_lattice(100, bright=bright)
    atoms, labels = image_motifs(image)
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(centres).query(np.c_[atoms["y"], atoms["x"]])
    assert dist.max() < 1.0
    truth = amplitude[idx] > 1
    assert labels.attrs["n_motifs"] == 2
    assert adjusted_rand_score(truth, labels.values) == 1.0
    assert labels.attrs["p_value"][1] < 1e-10


def test_mirror_excess_is_uniform_on_symmetric_noise_and_small_for_a_rare_motif():
    # Heavy-tailed but symmetric noise: over random directions the p-value is uniform, so at
    # 0.05 about 5 % of them pass; 8 atoms 9 units out with nothing in the mirror pass at 2⁻⁸.
    rng = np.random.default_rng(12)
    around = rng.standard_t(5, size=(20_000, DIM))
    directions = rng.normal(size=(400, DIM))
    directions *= 5.0 / np.linalg.norm(directions, axis=1, keepdims=True)
    p = _decide.mirror_excess(around, directions)
    assert 0.03 <= np.mean(p < 0.05) <= 0.07
    rare = centre(9) + rng.normal(size=(8, DIM))
    both = np.vstack([rng.normal(size=(20_000, DIM)), rare])
    assert _decide.mirror_excess(both, rare.mean(axis=0))[0] <= 2.0**-8


def test_tail_groups_hold_atoms_within_the_noise_of_each_other():
    rng = np.random.default_rng(13)
    z = rng.normal(size=(300, DIM)) * 3
    groups = _decide.tail_groups(z, alpha=1e-3)
    cut = np.sqrt(2 * stats.chi2.isf(1e-3, DIM))
    for g in np.unique(groups):
        members = z[groups == g]
        diff = members[:, None, :] - members[None, :, :]
        assert np.sqrt((diff**2).sum(-1)).max() <= cut
    # Draws of one unit Gaussian are one group.
    assert np.unique(_decide.tail_groups(rng.normal(size=(12, DIM)), alpha=1e-3)).size == 1


def test_touching_joins_the_pieces_of_one_population():
    rng = np.random.default_rng(14)
    line = np.c_[np.linspace(0, 30, 60), np.zeros((60, DIM - 1))]
    z = np.vstack([line, centre(100) + rng.normal(size=(10, DIM)) * 0.1])
    groups = np.r_[np.repeat([0, 1, 2], 20), np.full(10, 3)]
    pieces = _decide.touching(z, groups, [0, 1, 2, 3], alpha=1e-3)
    assert sorted(map(sorted, pieces)) == [[0, 1, 2], [3]]
    assert _decide.touching(z, groups, [], alpha=1e-3) == []
