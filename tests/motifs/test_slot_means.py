"""Motifs split by the mean features of their sublattice slots (dmotif.site_motifs)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree
from sklearn.metrics import adjusted_rand_score

import dmotif
from dmotif.motifs import _slot_means
from tests.measure.render import atom_table, render
from tests.motifs.test_external_images import motifs
from tests.motifs.test_sites import B, honeycomb


def two_sublattices(ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Poisson image (100 counts a column) of a honeycomb whose B columns are ``ratio`` as
    bright as its A columns, the sites and their sublattice."""
    yx, truth = honeycomb()
    clean = render((int(yx[:, 0].max() + 28), int(yx[:, 1].max() + 28)), yx,
                   np.where(truth == B, ratio, 1.0), 1.6, 1.6, 0.0, 0.1)
    return np.random.default_rng(seed).poisson(100 * clean).astype(np.float32), yx, truth


def test_sublattices_two_noise_units_apart_are_two_motifs_through_the_whole_chain():
    # B at 0.94 of A: the true types' PCA means are 2.1 noise units apart (measured), under
    # the 4.65 the per-atom decision asks, so the clustering finds one motif; the means of
    # the two slots, over ~500 columns each, differ far beyond their own noise.
    image, yx, truth = two_sublattices(0.94, seed=0)
    plain = motifs(image, sites=False)[1]
    atoms, labels = motifs(image)
    dist, idx = cKDTree(yx).query(np.c_[atoms["y"], atoms["x"]])
    near = dist < 1.0
    assert near.mean() >= 0.99
    assert plain.attrs["n_motifs"] == 1
    assert labels.attrs["n_motifs"] == 2
    # measured 0.998 (one edge column)
    assert adjusted_rand_score(truth[idx][near], labels.values[near]) >= 0.99
    assert labels.attrs["sites"].startswith("1 motif(s) split by sublattice means")
    assert labels.attrs["site"][0] == -1 and labels.attrs["site"][1] >= 0
    assert labels.attrs["split_from"] == [-1, -1]


def test_the_split_names_the_motif_it_came_from():
    yx, truth = honeycomb()
    means = np.zeros((2, 6))
    means[B, 0] = 2.0
    x = means[truth] + np.random.default_rng(0).normal(size=(truth.size, 6))
    out = dmotif.site_motifs(atom_table(yx), np.zeros(truth.size, np.int64), features=x)
    assert out.attrs["n_motifs"] == 2
    assert adjusted_rand_score(truth, out.values) == 1.0
    # the two motifs are equal in size: either may be the one split off the other
    split = out.attrs["sublattice_of"]
    new = 1 - split.index(-1)
    assert split[new] == 1 - new
    assert out.attrs["site"][new] >= 0


@pytest.mark.parametrize("seed", range(3))
def test_rendered_graphene_stays_one_motif(seed):
    # Equal columns on both sites: measured 0 of 40 seeds split (features of the chain).
    image, _, _ = two_sublattices(1.0, seed)
    atoms = dmotif.detect_atoms(image)
    scores = dmotif.pca(dmotif.zernike_features(image, atoms)).compute()
    out = dmotif.site_motifs(atoms, np.zeros(atoms.sizes["atom"], np.int64), features=scores)
    assert out.attrs["n_motifs"] == 1
    assert out.attrs["sites"].startswith("unchanged")


def test_equal_slots_hold_the_false_positive_rate_over_many_seeds():
    # One motif, features equal in law on both sites: a split is a false positive.
    yx, _ = honeycomb()
    atoms, lab = atom_table(yx), np.zeros(len(yx), np.int64)
    split = [dmotif.site_motifs(atoms, lab, features=np.random.default_rng(s).normal(
        size=(len(yx), 6)), min_separation=0.0, min_contrast=0.0).attrs["n_motifs"] > 1
        for s in range(40)]
    assert sum(split) == 0


def test_a_small_significant_difference_is_not_a_split():
    # 0.5 noise units between the slots: significant over 576 atoms each, under
    # min_separation.
    yx, truth = honeycomb()
    x = np.random.default_rng(1).normal(size=(truth.size, 6))
    x[truth == B, 0] += 0.5
    atoms, lab = atom_table(yx), np.zeros(truth.size, np.int64)
    assert dmotif.site_motifs(atoms, lab, features=x).attrs["n_motifs"] == 1
    assert dmotif.site_motifs(atoms, lab, features=x, min_separation=0.0).attrs[
        "n_motifs"] == 2


def test_a_perovskite_keeps_its_o_slots_together_with_features():
    s = dmotif.synthetic.perovskite(size=384, seed=2)
    truth = s.atoms["label"].values
    x = np.random.default_rng(2).normal(size=(truth.size, 6)) + 10.0 * np.eye(6)[truth]
    out = dmotif.site_motifs(s.atoms, truth, features=x)
    assert adjusted_rand_score(truth, out.values) == 1.0
    assert out.attrs["sublattice_of"] == [-1] * (truth.max() + 1)


def test_atoms_without_a_lattice_keep_their_labels_with_features():
    rng = np.random.default_rng(6)
    yx = rng.uniform(0, 400, size=(600, 2))
    labels = rng.integers(0, 2, size=600)
    x = rng.normal(size=(600, 6)) + 3.0 * labels[:, None]
    out = dmotif.site_motifs(atom_table(yx), labels, features=x)
    assert adjusted_rand_score(labels, out.values) == 1.0
    assert out.attrs["sites"].startswith("unchanged")


def test_position_slots_are_the_sublattices_of_a_distorted_honeycomb():
    # A shear that grows across the field moves far columns by more than a bond's slot
    # tolerance from a global lattice; the walk over neighbours still places them.
    yx, truth = honeycomb(n=30)
    yx = yx + np.c_[np.zeros(len(yx)), 0.02 * (yx[:, 0] - yx[:, 0].min())]
    m = dmotif.lattice_vectors(atom_table(yx)).values.T
    slot, sites = _slot_means.position_slots(yx, np.zeros(len(yx), np.int64), m, tol=1.6)
    assert len(sites) == 2
    placed = slot >= 0
    assert placed.mean() >= 0.99
    assert adjusted_rand_score(truth[placed], slot[placed]) == 1.0


def test_bad_min_separation_is_refused():
    yx, _ = honeycomb()
    with pytest.raises(dmotif.errors.ParameterError, match="min_separation"):
        dmotif.site_motifs(atom_table(yx), np.zeros(len(yx), np.int64), min_separation=-1.0)


def test_atoms_on_no_slot_join_the_nearest_part():
    # 80 atoms off the walk (slot -1), the sublattices' features 8 noise units apart: each
    # joins its own sublattice's motif.
    truth = honeycomb()[1]
    x = np.random.default_rng(3).normal(size=(truth.size, 6))
    x[truth == B, 0] += 8.0
    slot = truth.copy()
    loose = np.random.default_rng(4).choice(truth.size, 80, replace=False)
    slot[loose] = -1
    out, origin = _slot_means.split_slot_means(
        np.zeros(truth.size, np.int64), slot, x, np.eye(6), max_share=0.25, min_atoms=5,
        min_separation=1.0, alpha=1e-3, min_contrast=0.1)
    assert len(origin) == 1
    assert adjusted_rand_score(truth, out) == 1.0
