"""Virtual detectors of 4D-STEM data: kernels against numpy and analytic truth, the wrapper
for chunking invariance, frames and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmotif
from dmotif.errors import DataError, DmotifError, ParameterError
from dmotif.features import _fourd_kernels as _fourd
from dmotif.synthetic.stem4d import fourd

from .conftest import C, K


def _rechunked(sample, chunks):
    return dmotif.open_4dstem(sample.data, chunks=chunks)


# --------------------------------------------------------------------------- kernels


def test_weighted_sums_equal_dense_product_and_batch_invariant() -> None:
    rng = np.random.default_rng(0)
    patterns = rng.random((3, 7, 12, 10)).astype(np.float32)
    dense = rng.random((4, 12, 10)) * (rng.random((4, 12, 10)) > 0.5)
    weights = _fourd.DetectorWeights(dense)
    got = _fourd.weighted_sums(patterns, weights)
    ref = np.einsum("abij,nij->abn", patterns.astype(np.float64), dense)
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    # A pattern's sums do not depend on the batch it is computed in.
    np.testing.assert_array_equal(_fourd.weighted_sums(patterns[1:2, 2:5], weights),
                                  got[1:2, 2:5])


def test_annulus_mask_and_max_radius() -> None:
    yy, xx = np.indices((20, 24))
    r = np.hypot(yy - 9.0, xx - 13.5)
    mask = _fourd.annulus_weights((20, 24), (9.0, 13.5), 2.5, 7.0)[0]
    np.testing.assert_array_equal(mask, (r >= 2.5) & (r < 7.0))
    assert _fourd.max_radius((20, 24), (9.0, 13.5)) == 9.5


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (3, -2), (-4, 5)])
def test_com_of_shifted_disk_is_the_shift(dy: int, dx: int) -> None:
    yy, xx = np.indices((K, K))
    disk = (np.hypot(yy - C - dy, xx - C - dx) < 5).astype(np.float32)
    data = np.broadcast_to(disk, (2, 3, K, K))
    com = dmotif.virtual_image(dmotif.open_4dstem(data, center=(C, C), k_pixel_size=2.0),
                               detector="com")
    assert com.dims == ("component", "frame", "y", "x")
    np.testing.assert_allclose(com.sel(component="y").values, 2.0 * dy, atol=1e-5)
    np.testing.assert_allclose(com.sel(component="x").values, 2.0 * dx, atol=1e-5)


def test_integrate_gradient_returns_the_potential() -> None:
    y, x = np.mgrid[0:60, 0:72].astype(float)
    phi = np.zeros_like(y)
    gy, gx = np.zeros_like(y), np.zeros_like(y)
    rng = np.random.default_rng(1)
    for cy, cx, s in zip(rng.uniform(0, 60, 25), rng.uniform(0, 72, 25), rng.uniform(2, 4, 25),
                         strict=True):
        g = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s * s))
        phi += g
        gy -= g * (y - cy) / s**2
        gx -= g * (x - cx) / s**2
    got = _fourd.integrate_gradient(gy, gx)
    assert np.corrcoef(got.ravel(), phi.ravel())[0, 1] > 0.99
    assert abs(got.mean()) < 1e-12


# --------------------------------------------------------------------------- virtual images


def test_virtual_adf_equals_explicit_masked_sum(sample, values) -> None:
    kps = sample.data.attrs["k_pixel_size"]
    mrad = np.hypot(*np.meshgrid((np.arange(K) - C) * kps, (np.arange(K) - C) * kps,
                                 indexing="ij"))
    inner, outer = 30.0, 70.0
    mask = (mrad >= inner) & (mrad < outer)
    ref = (values.astype(np.float64) * mask).sum(axis=(-2, -1))
    img = dmotif.virtual_image(sample.data, detector="adf", inner=inner, outer=outer)
    assert img.dims == ("frame", "y", "x") and img.dtype == np.float32
    assert img.attrs["pixel_size"] == sample.data.attrs["scan_pixel_size"]
    assert img.attrs["units"] == "nm"
    np.testing.assert_allclose(img.values[0], ref, rtol=1e-6)


def test_default_detectors_follow_the_disk(sample, values) -> None:
    radius = sample.data.attrs["bf_radius"]
    yy, xx = np.indices((K, K))
    r = np.hypot(yy - C, xx - C)
    expected = {"bf": (0, radius), "abf": (0.5 * radius, radius),
                "adf": (1.1 * radius, 3 * radius), "haadf": (3 * radius, C + 0.5)}
    for name, (lo, hi) in expected.items():
        img = dmotif.virtual_image(sample.data, detector=name)
        ref = (values * ((r >= lo) & (r < hi))).sum(axis=(-2, -1), dtype=np.float64)
        np.testing.assert_allclose(img.values[0], ref, rtol=1e-5, err_msg=name)
        assert img.attrs["inner"] == pytest.approx(lo * sample.data.attrs["k_pixel_size"])


@settings(max_examples=6, deadline=None)
@given(ty=st.integers(3, 40), tx=st.integers(5, 48))
def test_every_detector_is_chunk_invariant(sample, ty: int, tx: int) -> None:
    other = _rechunked(sample, (ty, tx))
    assert other.data.chunks[0][0] == min(ty, 40)
    for name in ("adf", "bf", "com", "icom"):
        np.testing.assert_array_equal(
            dmotif.virtual_image(other, detector=name).values,
            dmotif.virtual_image(sample.data, detector=name).values, err_msg=name)
    for kind in ("radial", "zernike"):
        np.testing.assert_array_equal(
            dmotif.diffraction_features(other, kind=kind).values,
            dmotif.diffraction_features(sample.data, kind=kind).values, err_msg=kind)


def test_frames_give_one_image_per_frame() -> None:
    s = fourd("perovskite", size=32, frames=2, k_size=24, chunks=(16, 32))
    assert s.data.dims == ("frame", "scan_y", "scan_x", "ky", "kx")
    img = dmotif.virtual_image(s.data, detector="haadf")
    assert img.shape == (2, 32, 32)
    for f in range(2):
        pot = s.potential.values[f]
        assert np.corrcoef(img.values[f].ravel(), pot.ravel())[0, 1] > 0.95


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"detector": "adf", "inner": 30.0, "outer": 200.0}, ParameterError, "maximum angle"),
        ({"detector": "adf", "inner": 60.0, "outer": 40.0}, ParameterError, "inner < outer"),
        ({"detector": "bf", "inner": -1.0, "outer": 10.0}, ParameterError, "inner < outer"),
        ({"detector": "dark"}, ParameterError, "unknown detector"),
    ],
)
def test_bad_detectors(sample, kwargs, error, match) -> None:
    with pytest.raises(error, match=match) as info:
        dmotif.virtual_image(sample.data, **kwargs)
    assert isinstance(info.value, DmotifError)


def test_haadf_default_needs_high_angles() -> None:
    yy, xx = np.indices((16, 16))
    disk = (np.hypot(yy - 7.5, xx - 7.5) < 4).astype(np.float32)
    data = dmotif.open_4dstem(np.broadcast_to(disk + 0.01, (2, 2, 16, 16)))
    assert data.attrs["bf_radius"] == pytest.approx(4, abs=0.3)
    with pytest.raises(ParameterError, match="leaves the recorded pattern"):
        dmotif.virtual_image(data, detector="haadf")


def test_a_3d_array_is_not_4dstem() -> None:
    with pytest.raises(DataError, match="3-D"):
        dmotif.virtual_image(np.zeros((4, 16, 16), np.float32))
    with pytest.raises(DataError, match="scan_shape"):
        dmotif.open_4dstem(np.zeros((12, 8, 8)), scan_shape=(3, 5))
    flat = dmotif.open_4dstem(np.ones((12, 8, 8)), scan_shape=(3, 4), center=(3.5, 3.5))
    assert flat.shape == (3, 4, 8, 8)
