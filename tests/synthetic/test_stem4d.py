"""The kinematic 4D-STEM generator: its virtual images follow the lattice truth."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import peak_local_max

import dmotif
from dmotif import synthetic
from dmotif.errors import ParameterError
from dmotif.synthetic.stem4d import fourd


@pytest.fixture(scope="module")
def noisy():
    return fourd("tmd", size=64, k_size=32, dose=5000.0, chunks=16, seed=5)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_truth_is_the_lattice_truth(noisy) -> None:
    lattice = synthetic.tmd(size=64, seed=5, dose=None, read_noise=0.0, background=0.0)
    for name in ("y", "x", "label"):
        np.testing.assert_array_equal(noisy.atoms[name].values, lattice.atoms[name].values)
    np.testing.assert_array_equal(noisy.potential.values, lattice.image.values)
    assert noisy.data.attrs["k_pixel_size"] * noisy.data.attrs["bf_radius"] == 20.0
    assert noisy.data.attrs["scan_pixel_size"] == lattice.image.attrs["pixel_size"]


def test_virtual_adf_follows_the_potential_and_peaks_on_columns(noisy) -> None:
    pot = noisy.potential.values[0]
    adf = dmotif.virtual_image(noisy.data, detector="adf").values[0]
    assert _pearson(adf, pot) >= 0.95
    assert _pearson(dmotif.virtual_image(noisy.data, detector="bf").values[0], pot) <= -0.95
    assert _pearson(dmotif.virtual_image(noisy.data, detector="icom").values[0], pot) >= 0.95
    # Every metal column (brightest) away from the edges sits on an ADF maximum.
    atoms = noisy.atoms
    metal = atoms.isel(atom=((atoms.label == 0) & (atoms.y > 4) & (atoms.y < 59)
                             & (atoms.x > 4) & (atoms.x < 59)).values)
    assert metal.sizes["atom"] >= 5
    peaks = peak_local_max(adf, min_distance=4, threshold_rel=0.5, exclude_border=False)
    dist = np.hypot(metal.y.values[:, None] - peaks[None, :, 0],
                    metal.x.values[:, None] - peaks[None, :, 1]).min(axis=1)
    assert dist.max() <= 1.0


def test_com_follows_the_potential_gradient() -> None:
    clean = fourd("perovskite", size=48, k_size=32)
    gy, gx = np.gradient(clean.potential.values[0])
    com = dmotif.virtual_image(clean.data, detector="com")
    assert _pearson(com.sel(component="y").values[0], gy) >= 0.98
    assert _pearson(com.sel(component="x").values[0], gx) >= 0.98


def test_chunk_invariant_and_seeded(noisy) -> None:
    a = noisy.data.values
    again = fourd("tmd", size=64, k_size=32, dose=5000.0, chunks=(7, 23), seed=5)
    assert again.data.data.chunks[0][0] == 7
    np.testing.assert_array_equal(again.data.values, a)
    other = fourd("tmd", size=64, k_size=32, dose=5000.0, chunks=16, seed=6)
    assert not np.array_equal(other.data.values, a)
    assert float(a.sum(axis=(-2, -1)).mean()) == pytest.approx(5000.0, rel=0.01)
    clean = fourd("tmd", size=32, k_size=16).data.values
    np.testing.assert_allclose(clean.sum(axis=(-2, -1), dtype=np.float64), 1.0, rtol=1e-5)


def test_bad_parameters() -> None:
    with pytest.raises(ParameterError, match="k_size"):
        fourd(k_size=4)
    with pytest.raises(ParameterError, match="bf_radius"):
        fourd(k_size=16, bf_radius=9.0)
    with pytest.raises(ParameterError, match="dose"):
        fourd(dose=0.0)
    with pytest.raises(ParameterError, match="unknown synthetic kind"):
        fourd("glass")


def test_sites_hold_each_column_label_at_its_probe_position(noisy) -> None:
    atoms, sites = noisy.atoms, noisy.sites
    assert sites.dims == ("frame", "y", "x") and sites.shape == noisy.potential.shape
    assert sites.attrs["motif_names"] == atoms.attrs["motif_names"]
    iy = np.rint(atoms.y.values).astype(int)
    ix = np.rint(atoms.x.values).astype(int)
    np.testing.assert_array_equal(sites.values[atoms.frame.values, iy, ix], atoms.label.values)
    assert (sites.values >= 0).sum() == atoms.sizes["atom"]
    # A probe on a column sees its potential peak: a local maximum of the noise-free potential.
    pot = noisy.potential.values[0]
    on = sites.values[0] >= 0
    assert pot[on].mean() > 2 * pot.mean()
