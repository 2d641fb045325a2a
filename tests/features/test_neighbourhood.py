"""Features averaged over each atom's neighbourhood, against a direct loop."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import dmotif
from dmotif.errors import DataError, ParameterError


def table(n: int, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {"frame": ("atom", rng.integers(0, 3, n)), "y": ("atom", rng.uniform(0, 200, n)),
         "x": ("atom", rng.uniform(0, 200, n))},
        attrs={"spacing_px": 10.0},
    )


def test_mean_over_the_atoms_within_reach_of_the_same_frame():
    atoms = table(600, 0)
    values = np.random.default_rng(1).normal(size=(600, 4))
    out = dmotif.neighbourhood_mean(values, atoms, reach=17.0)
    frame, y, x = (atoms[v].values for v in ("frame", "y", "x"))
    expected = np.empty_like(values)
    for i in range(values.shape[0]):
        near = (frame == frame[i]) & (np.hypot(y - y[i], x - x[i]) <= 17.0)
        expected[i] = values[near].mean(axis=0)
    np.testing.assert_allclose(out.values, expected, rtol=1e-12)
    assert out.dims == ("atom", "feature") and out.attrs["reach"] == 17.0


def test_dims_coords_and_the_default_reach_of_three_spacings():
    atoms = table(300, 2)
    feats = xr.DataArray(da.from_array(np.random.default_rng(3).normal(size=(5, 300)), chunks=2),
                         dims=("component", "atom"), coords={"component": np.arange(5)},
                         name="pca")
    out = dmotif.neighbourhood_mean(feats, atoms)
    assert out.dims == ("atom", "component") and out.name == "pca_neighbourhood"
    assert out.attrs["reach"] == 30.0
    np.testing.assert_allclose(out.values, dmotif.neighbourhood_mean(
        feats.values.T, atoms, reach=30.0).values)


def test_bad_input():
    atoms = table(50, 0)
    with pytest.raises(DataError, match="50 atoms but the features 40"):
        dmotif.neighbourhood_mean(np.zeros((40, 2)), atoms)
    with pytest.raises(ParameterError, match="reach"):
        dmotif.neighbourhood_mean(np.zeros((50, 2)), atoms, reach=-1.0)
    with pytest.raises(DataError, match="2-D"):
        dmotif.neighbourhood_mean(np.zeros(50), atoms)
    with pytest.raises(DataError, match="NaN"):
        dmotif.neighbourhood_mean(np.full((50, 2), np.nan), atoms)
