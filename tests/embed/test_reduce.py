from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from sklearn.decomposition import PCA

import dmotif
from dmotif.errors import DataError, ParameterError


@pytest.fixture(scope="module")
def features() -> xr.DataArray:
    rng = np.random.default_rng(0)
    scales = np.array([6.0, 4.0, 3.0, 1.0, 0.5] + [0.05] * 7)
    x = rng.normal(size=(3000, 12)) * scales
    return xr.DataArray(
        x, dims=("atom", "zernike"), coords={"atom": np.arange(100, 3100)}, name="zernike"
    )


def test_matches_sklearn_up_to_sign(features):
    scores = dmotif.pca(features, n_components=4)
    ref = PCA(n_components=4, svd_solver="full").fit(features.values)
    got = scores.values
    expected = ref.transform(features.values)
    signs = np.sign((got * expected).sum(axis=0))
    np.testing.assert_allclose(got, expected * signs, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(
        scores.attrs["explained_variance_ratio"], ref.explained_variance_ratio_, rtol=1e-8
    )


def test_default_keeps_95_percent_and_at_least_ten(features):
    scores = dmotif.pca(features)
    ratio = PCA().fit(features.values).explained_variance_ratio_
    needed = int(np.searchsorted(np.cumsum(ratio), 0.95) + 1)
    assert needed < 10
    assert scores.attrs["n_components"] == 10 == scores.sizes["component"]
    assert sum(scores.attrs["explained_variance_ratio"]) >= 0.95
    few = features.isel(zernike=slice(0, 6))
    assert dmotif.pca(few).sizes["component"] == 5  # all but one feature


def test_default_follows_the_variance_between_ten_and_twenty():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 30)) * np.r_[np.full(14, 10.0), np.full(16, 0.1)]
    ratio = PCA().fit(x).explained_variance_ratio_
    expected = int(np.searchsorted(np.cumsum(ratio), 0.95) + 1)
    assert 10 < expected < 20
    assert dmotif.pca(x).sizes["component"] == expected


def test_default_capped_at_20():
    x = np.random.default_rng(1).normal(size=(400, 40))
    assert dmotif.pca(x).sizes["component"] == 20


def test_dims_coords_and_plain_numpy(features):
    scores = dmotif.pca(features, n_components=2)
    assert scores.dims == ("atom", "component")
    np.testing.assert_array_equal(scores["atom"], features["atom"])
    plain = dmotif.pca(features.values, n_components=2)
    np.testing.assert_array_equal(plain.values, scores.values)


@pytest.mark.parametrize("chunks", [(250, -1), (1777, -1), (3000, -1), (500, 6)])
def test_independent_of_chunking(features, chunks):
    whole = dmotif.pca(features, n_components=3).values
    lazy = features.copy(data=da.from_array(features.values, chunks=chunks))
    np.testing.assert_array_equal(dmotif.pca(lazy, n_components=3).values, whole)


@pytest.mark.parametrize("n_components", [12, 13, 0])
def test_too_many_components(features, n_components):
    with pytest.raises(ParameterError, match=f"n_components={n_components} with n_features=12"):
        dmotif.pca(features, n_components=n_components)


def test_nan_features(features):
    bad = features.copy(deep=True)
    bad[5, 3] = np.nan
    with pytest.raises(DataError, match="1 of 36000"):
        dmotif.pca(bad)
