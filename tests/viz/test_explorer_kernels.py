"""The explorer's numpy kernels against independent references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.path import Path
from skimage.measure import block_reduce

from dmotif.viz.explorer import _kernels as K


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(0, 500), n_codes=st.integers(1, 5),
       h=st.integers(1, 20), w=st.integers(1, 20))
def test_raster_counts_equals_histogram2d_per_code(seed, n, n_codes, h, w):
    rng = np.random.default_rng(seed)
    x, y = rng.uniform(-1, 11, n), rng.uniform(-3, 7, n)
    # Points exactly on the far edges: histogram2d counts them in the last bin.
    x[: n // 10] = 10.0
    y[n // 10 : n // 5] = 5.0
    codes = rng.integers(-1, n_codes + 1, n)
    counts = K.raster_counts(x, y, codes, n_codes, (0.0, 10.0), (-2.0, 5.0), (h, w))
    assert counts.shape == (n_codes, h, w)
    for c in range(n_codes):
        sel = codes == c
        ref, _, _ = np.histogram2d(y[sel], x[sel], bins=(h, w), range=((-2, 5), (0, 10)))
        np.testing.assert_array_equal(counts[c], ref)


def test_raster_counts_of_an_empty_range_is_zero():
    counts = K.raster_counts(np.ones(3), np.ones(3), np.zeros(3, int), 2, (1, 1), (0, 1), (4, 5))
    assert counts.shape == (2, 4, 5) and not counts.any()


def test_shade_colours_alpha_and_byte_order():
    rgb = np.array([[255, 0, 0], [0, 0, 255]], dtype=np.uint8)
    counts = np.zeros((2, 2, 3), dtype=np.int64)
    counts[0, 0, 0] = 10          # pure red, densest
    counts[1, 0, 1] = 1           # pure blue, sparse
    counts[:, 1, 2] = (5, 5)      # an even mix
    img = K.shade(counts, rgb, min_alpha=60)
    assert img.dtype == np.uint32 and img.shape == (2, 3)
    rgba = img.view(np.uint8).reshape(2, 3, 4)
    np.testing.assert_array_equal(rgba[0, 0], [255, 0, 0, 255])
    assert tuple(rgba[0, 1, :3]) == (0, 0, 255)
    expected_alpha = 60 + 195 * np.log1p(1) / np.log1p(10)
    assert rgba[0, 1, 3] == round(expected_alpha)
    np.testing.assert_array_equal(rgba[1, 2, :3], [128, 0, 128])
    assert rgba[0, 2, 3] == 0 and rgba[1, 0, 3] == 0  # empty pixels are transparent


def test_palette_unassigned_grey_and_distinct_first_ten():
    hexes, rgb = K.palette_rgb(np.arange(-1, 10))
    assert hexes[0] == K.UNASSIGNED_COLOUR
    assert len(set(hexes[1:])) == 10 and rgb.shape == (11, 3) and rgb.dtype == np.uint8


def test_in_box_either_corner_order():
    x, y = np.array([0.0, 1.0, 2.0, 3.0]), np.array([0.0, 1.0, 2.0, 3.0])
    np.testing.assert_array_equal(K.in_box(x, y, (2.5, 0.5), (0.5, 2.5)), [0, 1, 1, 0])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), n_vertices=st.integers(3, 12))
def test_in_polygon_matches_matplotlib_on_all_points(seed, n_vertices):
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    radii = rng.uniform(0.5, 2.0, n_vertices)
    px, py = radii * np.cos(angles), radii * np.sin(angles)
    x, y = rng.uniform(-2.5, 2.5, 2000), rng.uniform(-2.5, 2.5, 2000)
    ref = Path(np.column_stack([px, py])).contains_points(np.column_stack([x, y]))
    np.testing.assert_array_equal(K.in_polygon(x, y, px, py), ref)


def test_in_polygon_square_is_box_and_degenerate_is_empty():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0, 10, 5000), rng.uniform(0, 10, 5000)
    square = K.in_polygon(x, y, np.array([2, 7, 7, 2]), np.array([3, 3, 8, 8]))
    np.testing.assert_array_equal(square, K.in_box(x, y, (2, 7), (3, 8)))
    assert not K.in_polygon(x, y, np.array([1, 2]), np.array([1, 2])).any()


@pytest.mark.parametrize(("shape", "step"), [((64, 48), 4), ((67, 50), 3), ((10, 10), 1)])
def test_block_mean_equals_skimage_block_reduce(shape, step):
    img = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    out = K.block_mean(img, step)
    h, w = shape[0] // step * step, shape[1] // step * step
    ref = block_reduce(img[:h, :w], (step, step), np.mean)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_mean_patch_integer_centres_is_mean_of_slices():
    img = np.random.default_rng(2).normal(size=(80, 90)).astype(np.float32)
    ys, xs = np.array([20, 40, 55]), np.array([30, 45, 70])
    r = 6
    ref = np.mean([img[y - r : y + r + 1, x - r : x + r + 1] for y, x in zip(ys, xs, strict=True)],
                  axis=0)
    np.testing.assert_allclose(K.mean_patch(img, ys.astype(float), xs.astype(float), r), ref,
                               rtol=1e-5, atol=1e-5)


def test_mean_patch_subpixel_is_exact_on_a_plane():
    # Bilinear interpolation is exact for a plane, so the mean patch is the plane at the mean
    # centre.
    yy, xx = np.mgrid[0:60, 0:60].astype(np.float64)
    img = 2.0 * yy + 0.5 * xx + 3.0
    rng = np.random.default_rng(3)
    ys, xs = rng.uniform(15, 45, 50), rng.uniform(15, 45, 50)
    r = 5
    off = np.arange(-r, r + 1)
    ref = 2.0 * (ys.mean() + off[:, None]) + 0.5 * (xs.mean() + off[None, :]) + 3.0
    np.testing.assert_allclose(K.mean_patch(img, ys, xs, r), ref, rtol=1e-5)


def test_mean_patch_of_nothing_is_nan():
    assert np.isnan(K.mean_patch(np.zeros((9, 9)), np.array([]), np.array([]), 2)).all()


def test_quantity_codes_bin_between_the_1st_and_99th_percentiles():
    values = np.concatenate([np.linspace(0.0, 1.0, 1001), [-50.0, 50.0, np.nan]])
    codes, (low, high) = K.quantity_codes(values)
    np.testing.assert_allclose((low, high), np.nanpercentile(values, [1, 99]))
    inside = (values >= low) & (values < high)
    # The same 256 bins as numpy's histogram over the range; beyond it the end colours.
    expected = np.clip(np.digitize(values[inside], np.linspace(low, high, 257)) - 1, 0, 255)
    np.testing.assert_array_equal(codes[inside], expected)
    assert codes[-3] == 0 and codes[-2] == 255 and codes[-1] == len(K.VALUE_RGB) - 1
    assert K.VALUE_HEXES[0] == "#440154" and K.VALUE_HEXES[-1] == "#fde725"  # viridis ends
    np.testing.assert_array_equal(K.quantity_codes(np.full(3, np.nan))[0], [256, 256, 256])
