"""Motifs split by the sublattice site their atoms sit on (dmotif.site_motifs)."""

from __future__ import annotations

import dask
import numpy as np
import pytest
from scipy.spatial import cKDTree
from sklearn.metrics import adjusted_rand_score

import dmotif
from dmotif.motifs import _sites
from tests.measure.render import atom_table, render
from tests.motifs.test_external_images import motifs

A, B, A_ON_B = 0, 1, 2


def honeycomb(n: int = 24, spacing: float = 14.0) -> tuple[np.ndarray, np.ndarray]:
    """Sites ``(y, x)`` of a honeycomb (two sites per hexagonal cell, nearest neighbours
    ``spacing / sqrt(3)`` apart) and their sublattice (0 = A, 1 = B)."""
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    u, v = np.array([0.0, spacing]), np.array([spacing * np.sqrt(3) / 2, spacing / 2])
    cell = i.reshape(-1, 1) * u + j.reshape(-1, 1) * v
    # sheared rows back into a rectangle
    cell[:, 1] %= n * spacing
    second = cell + (u + v) / 3
    yx = np.vstack([cell, second]) + 2 * spacing
    return yx, np.repeat([A, B], n * n)


def interior(yx: np.ndarray) -> np.ndarray:
    """Whether each site lies well inside (cells cut by the border hold no atom)."""
    lo, hi = np.percentile(yx, [20, 80], axis=0)
    return np.all((yx > lo) & (yx < hi), axis=1)


def substituted(n: int = 24, k: int = 12, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The honeycomb with ``k`` interior B sites carrying A-like columns: exact truth."""
    yx, truth = honeycomb(n)
    rng = np.random.default_rng(seed)
    inner = np.flatnonzero((truth == B) & interior(yx))
    truth[rng.choice(inner, k, replace=False)] = A_ON_B
    return yx, truth


def test_a_columns_on_b_sites_are_their_own_motif_through_the_whole_chain():
    # A bright (1.0) and B dim (0.5) columns; 12 B sites carry A-like columns. The features of
    # a patch cannot tell an A column on a B site from one on an A site: the split can.
    yx, truth = substituted()
    amplitude = np.where(truth == B, 0.5, 1.0)
    clean = render((int(yx[:, 0].max() + 28), int(yx[:, 1].max() + 28)), yx, amplitude,
                   1.6, 1.6, 0.0, 0.1)
    image = np.random.default_rng(0).poisson(200 * clean).astype(np.float32)
    plain = motifs(image, sites=False)[1]
    atoms, labels = motifs(image)
    dist, idx = cKDTree(yx).query(np.c_[atoms["y"], atoms["x"]])
    near = dist < 1.0
    assert near.mean() >= 0.99
    found = truth[idx]
    # Without the sites the A-like columns join A; with them, the three types exactly.
    assert plain.attrs["n_motifs"] == 2
    assert labels.attrs["n_motifs"] == 3
    assert adjusted_rand_score(found[near], labels.values[near]) == 1.0
    assert labels.attrs["split_from"] == [-1, -1, 0]
    assert labels.attrs["site"][2] >= 0
    # The evidence says the split motif is, in its features, the motif it came from.
    assert labels.attrs["nearest_motif"][2] == 0
    assert labels.attrs["separation"][2] < 4.65


def test_the_split_of_given_labels_restores_the_truth():
    yx, truth = substituted()
    atoms = atom_table(yx)
    merged = np.where(truth == A_ON_B, A, truth)
    out = dmotif.site_motifs(atoms, merged)
    assert adjusted_rand_score(truth, out.values) == 1.0
    assert out.attrs["n_motifs"] == 3
    assert out.attrs["split_from"] == [-1, -1, 0]


def features_of(truth: np.ndarray, means: np.ndarray, seed: int = 0) -> np.ndarray:
    """Per-atom features: the mean of its true type plus unit Gaussian noise."""
    rng = np.random.default_rng(seed)
    return means[truth] + rng.normal(size=(truth.size, means.shape[1]))


def test_atoms_misplaced_by_noise_join_the_slot_majority_not_a_new_motif():
    # 8 B atoms that the clustering put in A, but whose features are B's: label noise, not a
    # substitution. 12 true A-like columns on B sites: a substitution.
    yx, truth = substituted()
    means = np.zeros((3, 6))
    means[A, 0], means[A_ON_B, 0] = 12.0, 12.0
    x = features_of(truth, means)
    labels = np.where(truth == A_ON_B, A, truth)
    rng = np.random.default_rng(4)
    noisy = rng.choice(np.flatnonzero((truth == B) & interior(yx)), 8, replace=False)
    labels[noisy] = A
    out = dmotif.site_motifs(atom_table(yx), labels, features=x)
    assert out.attrs["n_motifs"] == 3
    assert adjusted_rand_score(truth, out.values) == 1.0
    # Without the features the 20 atoms on B sites are all one split motif.
    blind = dmotif.site_motifs(atom_table(yx), labels)
    assert np.count_nonzero(blind.values == 2) == 20


def test_graphene_like_equal_sites_are_not_split():
    # One motif on both sites of the honeycomb (graphene, or B and N merged in hBN), and a rare
    # one on 6 sites of each: the rare motif has the same share of both slots.
    yx, site = honeycomb()
    labels = np.zeros(site.size, np.int64)
    rng = np.random.default_rng(5)
    for s in (A, B):
        labels[rng.choice(np.flatnonzero(site == s), 6, replace=False)] = 1
    out = dmotif.site_motifs(atom_table(yx), labels)
    assert np.array_equal(out.values, labels)
    assert out.attrs["split_from"] == [-1, -1]


def test_a_perovskite_keeps_its_o_motif_whole():
    # The O columns sit on two slots of the cell, equally: one motif, never split.
    s = dmotif.synthetic.perovskite(size=384, seed=2)
    truth = s.atoms["label"].values
    out = dmotif.site_motifs(s.atoms, truth)
    assert out.attrs["sites"].startswith("0 motif(s) split by site over 4 slots")
    assert adjusted_rand_score(truth, out.values) == 1.0
    assert out.attrs["n_motifs"] == truth.max() + 1


def test_atoms_without_a_lattice_keep_their_labels():
    rng = np.random.default_rng(6)
    yx = rng.uniform(0, 400, size=(600, 2))
    labels = rng.integers(0, 3, size=600)
    out = dmotif.site_motifs(atom_table(yx), labels)
    assert out.values.tolist() == labels.tolist() or adjusted_rand_score(labels,
                                                                          out.values) == 1.0
    assert out.attrs["sites"].startswith("unchanged")
    assert out.attrs["split_from"] == [-1, -1, -1]


def test_foreign_groups_need_a_small_share_and_enough_atoms():
    # motif 0: 100 on slot 0 and 10 on slot 1 (share 10/110 of slot 1, under 1/4 of 1.0);
    # motif 1: 100 on slot 1 and 4 on slot 0 (too few atoms).
    labels = np.repeat([0, 0, 1, 1], [100, 10, 100, 4])
    slot = np.repeat([0, 1, 1, 0], [100, 10, 100, 4])
    pairs, majority = _sites.foreign_groups(labels, slot, max_share=0.25, min_atoms=5)
    assert pairs == [(0, 1)]
    assert majority.tolist() == [0, 1]
    members = np.array([[0, 3], [2, -1]])
    assert _sites.atom_slots(members, 5).tolist() == [0, -1, 0, 1, -1]


def test_bad_labels_are_refused():
    yx, _ = honeycomb(4)
    with pytest.raises(dmotif.DataError, match="one integer per atom"):
        dmotif.site_motifs(atom_table(yx), np.zeros(3, np.int64))
    with pytest.raises(dmotif.ParameterError, match="max_share"):
        dmotif.site_motifs(atom_table(yx), np.zeros(len(yx), np.int64), max_share=1.5)


def test_the_split_is_the_same_on_any_scheduler():
    # Two frames: the cells are built one task per frame; the split must not depend on which
    # worker ran them.
    s = dmotif.synthetic.tmd(size=256, frames=2, antisite=0.08, seed=4)
    truth = s.atoms["label"].values
    merged = np.where(truth == 3, 0, truth)
    means = np.eye(4, 5) * 10.0
    means[3] = means[0]  # the antisites look like the metal
    x = features_of(truth, means)
    runs = []
    for scheduler in ("synchronous", "threads"):
        with dask.config.set(scheduler=scheduler, num_workers=2):
            runs.append(dmotif.site_motifs(s.atoms, merged, features=x))
    assert np.array_equal(runs[0].values, runs[1].values)
    assert runs[0].attrs == runs[1].attrs
    assert runs[0].attrs["split_from"].count(0) == 1
