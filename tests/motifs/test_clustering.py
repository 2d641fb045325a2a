from __future__ import annotations

import importlib

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from sklearn.metrics import adjusted_rand_score

import dmotif
from dmotif.errors import DataError, ParameterError

from ..conftest import unequal_blobs

# dmotif.cluster the function shadows dmotif.cluster the module as a package attribute.
cluster_module = importlib.import_module("dmotif.motifs.clustering")


@pytest.fixture(scope="module")
def blob_layout(blobs):
    x, truth = blobs
    return dmotif.fr_layout(x, seed=0), truth


@pytest.mark.parametrize("method", ["hdbscan", "raster", "gmm"])
def test_finds_the_motifs(blob_layout, method):
    lay, truth = blob_layout
    labels = dmotif.cluster(lay, method=method)
    assert labels.attrs["n_motifs"] == 5
    assert adjusted_rand_score(truth, labels.values) >= 0.99
    assert (labels.values < 0).mean() <= 0.02
    assert labels.dtype == np.int32 and labels.name == "label" and labels.dims == ("atom",)


def test_gmm_with_given_number(blob_layout):
    lay, truth = blob_layout
    labels = dmotif.cluster(lay, method="gmm", n_motifs=5)
    assert adjusted_rand_score(truth, labels.values) >= 0.99


def test_labels_canonical_by_size(blob_layout):
    lay, truth = blob_layout
    labels = dmotif.cluster(lay).values
    counts = np.bincount(labels[labels >= 0])
    assert (np.diff(counts) <= 0).all()
    # Blob sizes in the fixture decrease with the true label.
    assert adjusted_rand_score(truth, labels) >= 0.99
    majority = [np.bincount(truth[labels == m]).argmax() for m in range(counts.size)]
    assert majority == list(range(counts.size))


def test_same_partition_same_numbers():
    raw = np.array([7, 7, 3, 3, 3, -1, 9])
    np.testing.assert_array_equal(cluster_module._canonical(raw), [1, 1, 0, 0, 0, -1, 2])


def test_hdbscan_subsample_path(monkeypatch):
    x, truth = unequal_blobs((600, 300, 100), dim=2, spread=12.0)
    monkeypatch.setattr(cluster_module, "HDBSCAN_SAMPLE", 400)
    labels = dmotif.cluster(x, min_size=50, seed=0)
    assert adjusted_rand_score(truth, labels.values) >= 0.99
    np.testing.assert_array_equal(dmotif.cluster(x, min_size=50, seed=0).values, labels.values)


def test_raster_unassigns_small_regions():
    rng = np.random.default_rng(0)
    y = np.vstack([rng.normal(0, 1, (500, 2)), rng.normal(40, 1, (500, 2)), [[-40, 40]]])
    labels = dmotif.cluster(y, method="raster").values
    assert labels[-1] == -1
    assert set(np.unique(labels[:-1])) == {0, 1}


def test_follow_atoms_take_their_neighbours_motif():
    rng = np.random.default_rng(3)
    main = [rng.normal(c, 1.0, (300, 2)) for c in (0.0, 20.0)]
    # a tight group of "border" atoms off to the side, nearest to the second motif
    border = rng.normal((32.0, 32.0), 0.3, (20, 2))
    y = np.vstack([*main, border])
    follow = np.r_[np.zeros(600, bool), np.ones(20, bool)]
    assert dmotif.cluster(y).attrs["n_motifs"] == 3
    labels = dmotif.cluster(y, follow=follow).values
    assert labels.max() == 1 and (labels >= 0).all()
    assert (labels[600:] == labels[300]).all() and labels[0] != labels[300]
    with pytest.raises(DataError, match="one bool per atom"):
        dmotif.cluster(y, follow=follow[:10])


def test_errors(blob_layout):
    lay, _ = blob_layout
    with pytest.raises(ParameterError, match="only used by method='gmm'"):
        dmotif.cluster(lay, n_motifs=3)
    with pytest.raises(ParameterError, match="method must be one of"):
        dmotif.cluster(lay, method="kmeans")
    bad = lay.values.copy()
    bad[0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        dmotif.cluster(bad)


def test_motif_summary(blob_layout):
    lay, truth = blob_layout
    labels = dmotif.cluster(lay)
    n = truth.size
    rng = np.random.default_rng(0)
    # Patches whose mean is known per motif: a constant image equal to the label, plus noise.
    base = labels.values.astype(np.float64)[:, None, None] * np.ones((n, 5, 5))
    noise = rng.normal(0, 0.01, (n, 5, 5))
    noise -= noise.mean(axis=0)
    patches = xr.DataArray(
        da.from_array(base + noise, chunks=(700, 5, 5)), dims=("atom", "py", "px")
    )
    summary = dmotif.motif_summary(labels, patches=patches, layout=lay, n_examples=4)
    k = labels.attrs["n_motifs"]
    assert summary.sizes["motif"] == k
    np.testing.assert_array_equal(summary["count"], np.bincount(labels.values[labels >= 0]))
    np.testing.assert_allclose(summary["fraction"].sum(), (labels >= 0).mean())
    for motif in range(k):
        np.testing.assert_allclose(summary["mean_patch"][motif], motif, atol=0.01)
        ex = summary["examples"][motif].values
        assert (labels.values[ex] == motif).all()
        members = lay.values[labels.values == motif]
        centre = np.median(members, axis=0)
        spread = np.sqrt(((members - centre) ** 2).sum(axis=1))
        assert np.sqrt(((lay.values[ex] - centre) ** 2).sum(axis=1)).max() <= np.median(spread)


def test_motif_summary_pads_small_motifs():
    summary = dmotif.motif_summary(np.array([0, 0, 1, -1, 0]), features=np.eye(5), n_examples=2)
    assert summary["examples"].values.tolist() == [[0, 1], [2, -1]]
    np.testing.assert_allclose(summary["mean_feature"][0], [1 / 3, 1 / 3, 0, 0, 1 / 3])
