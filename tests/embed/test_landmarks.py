"""The landmark FR layout (dmotif.embed.landmarks through fr_layout's ``landmarks``)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

import dmotif
from dmotif.embed import _knn, landmarks
from dmotif.embed.layout import LANDMARKS

from ..conftest import unequal_blobs
from .test_layout import _hdbscan_ari, _threads


def test_at_or_below_the_threshold_every_atom_is_in_the_fit(blobs):
    x, _ = blobs
    assert x.shape[0] <= LANDMARKS
    plain = dmotif.fr_layout(x, seed=4, epochs=20)
    assert plain.attrs["landmarks"] == 0 and plain.attrs["placement_epochs"] == 0
    for threshold in (x.shape[0], 10**9):
        np.testing.assert_array_equal(
            dmotif.fr_layout(x, seed=4, epochs=20, landmarks=threshold).values, plain.values)


def test_a_placed_atom_without_epochs_is_the_weighted_mean_of_its_landmarks():
    x, _ = unequal_blobs((300, 200, 100), dim=6)
    fitted = {}

    def relax(x_land, ind, dist):
        # Known landmark positions: their first two features.
        fitted["x"] = x_land
        return x_land[:, :2].copy()

    y = landmarks.landmark_layout(
        x, 150, relax, n_neighbors=10, metric="euclidean",
        params=np.array([0.0, 2.0, 2.0, 1.0]), placement_epochs=0, learning_rate=1.0,
        negative_samples=5, seed=0, place_seed=np.uint64(1),
    )
    x_land = fitted["x"]
    is_land = (x[:, None, :] == x_land[None, :, :]).all(axis=2).any(axis=1)
    assert is_land.sum() == 150
    np.testing.assert_array_equal(y[is_land], x[is_land][:, :2])
    ind, dist = _knn.exact_knn(x[~is_land], 9, "euclidean", ref=x_land)
    w = _knn.membership(dist, 10)
    expected = (w[..., None] * x_land[ind][..., :2]).sum(axis=1) / w.sum(axis=1)[:, None]
    np.testing.assert_allclose(y[~is_land], expected, rtol=1e-12, atol=1e-12)


def test_landmark_placement(blobs):
    x, truth = blobs
    kwargs = dict(landmarks=1200, placement_epochs=5, seed=0)
    lay = dmotif.fr_layout(x, **kwargs)
    assert lay.attrs["landmarks"] == 1200
    ari, unassigned = _hdbscan_ari(lay.values, truth)
    assert ari >= 0.99 and unassigned <= 0.02
    two = _threads(2, dmotif.fr_layout, x, **kwargs)
    one = _threads(1, dmotif.fr_layout, x, **kwargs)
    np.testing.assert_array_equal(one.values, two.values)
    np.testing.assert_array_equal(one.values, lay.values)
    for chunks in [(333, -1), (4000, 7)]:
        lazy = xr.DataArray(da.from_array(x, chunks=chunks), dims=("atom", "component"))
        np.testing.assert_array_equal(dmotif.fr_layout(lazy, **kwargs).values, lay.values)
    # Another seed draws other landmarks.
    assert not np.array_equal(dmotif.fr_layout(x, **{**kwargs, "seed": 1}).values, lay.values)


def test_landmark_placement_with_index_is_batch_invariant(blobs, monkeypatch):
    x, _ = blobs
    monkeypatch.setattr(_knn, "EXACT_MAX", 100)
    kwargs = dict(landmarks=1500, placement_epochs=3, epochs=10, seed=1)
    whole = dmotif.fr_layout(x, **kwargs).values
    monkeypatch.setattr(landmarks, "PLACE_CHUNK", 400)
    np.testing.assert_array_equal(dmotif.fr_layout(x, **kwargs).values, whole)


def test_landmark_placement_on_a_cluster_matches_this_process(monkeypatch):
    # 12 MB of features: embedded in the task graph they made dask warn "Sending large graph"
    # (an error here); scattered to the workers they do not.
    from distributed import Client, LocalCluster

    x, _ = unequal_blobs((70_000, 50_000, 30_000), dim=10)
    monkeypatch.setattr(_knn, "EXACT_MAX", 100)
    kwargs = dict(landmarks=3000, placement_epochs=3, epochs=10, seed=2)
    here = dmotif.fr_layout(x, **kwargs).values
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as lc,
        Client(lc),
    ):
        there = dmotif.fr_layout(x, **kwargs).values
    np.testing.assert_array_equal(there, here)
