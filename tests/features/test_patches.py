"""Atom-centred patches: the sampling kernel against scipy/numpy, the tiled wrapper against
the kernel on the whole image, edge flags and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import dmotif
from dmotif.errors import DataError, ParameterError
from dmotif.features import _zernike


@pytest.fixture(scope="module")
def tmd():
    return dmotif.synthetic.tmd(size=256, seed=3)


def _table(y, x, frame=None):
    frame = np.zeros(len(y), np.int32) if frame is None else frame
    return xr.Dataset({"frame": ("atom", frame), "y": ("atom", np.asarray(y, float)),
                       "x": ("atom", np.asarray(x, float))})


def test_kernel_integer_patches_match_symmetric_padding():
    rng = np.random.default_rng(0)
    img = rng.random((40, 50)).astype(np.float32)
    ys = rng.uniform(-0.5, 39.49, 200)
    xs = rng.uniform(-0.5, 49.49, 200)
    got = _zernike.square_patches(img, 0, 0, img.shape, ys, xs, half=5, subpixel=False)
    pad = np.pad(img, 5, mode="symmetric")
    cy = np.floor(ys + 0.5).astype(int)
    cx = np.floor(xs + 0.5).astype(int)
    want = np.stack([pad[a : a + 11, b : b + 11] for a, b in zip(cy, cx, strict=True)])
    np.testing.assert_array_equal(got, want)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), half=st.integers(2, 6),
       shape=st.sampled_from([(30, 34), (8, 9)]))
def test_kernel_cubic_spline_matches_scipy_map_coordinates(seed, half, shape):
    rng = np.random.default_rng(seed)
    img = rng.random(shape).astype(np.float32)
    ys = rng.uniform(-0.5, shape[0] - 0.51, 20)
    xs = rng.uniform(-0.5, shape[1] - 0.51, 20)
    got = _zernike.square_patches(img, 0, 0, img.shape, ys, xs, half=half, subpixel=True)
    off = np.arange(-half, half + 1)
    yy = ys[:, None, None] + off[None, :, None] + 0 * off[None, None, :]
    xx = xs[:, None, None] + 0 * off[None, :, None] + off[None, None, :]
    # scipy's "reflect" is numpy's "symmetric" (d c b a | a b c d), prefiltered to match; the
    # 8 × 9 image makes the 12-tap prefilter read several mirror images deep
    want = ndimage.map_coordinates(img.astype(np.float64), [yy, xx], order=3, mode="reflect")
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-6)


def test_spline_coefficients_leave_no_silent_gap():
    # a region cut inside the image gets NaN where its prefilter would need pixels it lacks
    rng = np.random.default_rng(1)
    img = rng.random((80, 90)).astype(np.float32)
    full = _zernike.spline_coefficients(img, 0, 0, 80, 90)
    part = _zernike.spline_coefficients(img[20:60, 30:70], 20, 30, 80, 90)
    k = _zernike.PREFILTER_HALF
    np.testing.assert_array_equal(part[k:-k, k:-k], full[20 + k : 60 - k, 30 + k : 70 - k])
    assert np.isnan(part[: k, :]).all() and np.isnan(part[:, -k:]).all()
    assert np.isfinite(full).all()


def test_subpixel_centres_the_patch_on_the_atom():
    s = dmotif.synthetic.tmd(size=256, seed=1, dose=None, read_noise=0.0, background=0.0)
    metal = s.atoms.where(s.atoms.label == 0, drop=True)
    off = np.arange(-4, 5)

    def centroid_error(subpixel):
        p = dmotif.extract_patches(s.image, metal, radius=4, subpixel=subpixel)
        v = p.values[~p.edge.values].astype(np.float64)
        w = v.sum(axis=(1, 2))
        cy = (v.sum(axis=2) * off).sum(axis=1) / w
        cx = (v.sum(axis=1) * off).sum(axis=1) / w
        return np.hypot(cy, cx)

    sub, whole = centroid_error(True), centroid_error(False)
    # neighbours (chalcogen columns) pull the centroid slightly; rounding adds up to 0.7 px
    assert np.median(sub) < 0.05
    assert np.median(whole) > 0.2


@pytest.mark.parametrize("chunks", [64, (100, 37), 256])
def test_patches_do_not_depend_on_tiling(tmd, chunks):
    whole = _zernike.square_patches(
        tmd.image.values[0], 0, 0, (256, 256), tmd.atoms.y.values, tmd.atoms.x.values,
        half=6, subpixel=True,
    )
    image = tmd.image.chunk({"y": chunks if isinstance(chunks, int) else chunks[0],
                             "x": chunks if isinstance(chunks, int) else chunks[1]})
    got = dmotif.extract_patches(image, tmd.atoms, radius=6.5)
    assert got.dims == ("atom", "py", "px") and got.shape[1:] == (13, 13)
    np.testing.assert_array_equal(got.values, whole)


def test_a_few_atoms_get_the_patches_they_get_among_all(tmd):
    # a tile prefilters only the box its atoms read: a sparse tile must not change them
    full = dmotif.extract_patches(tmd.image, tmd.atoms, radius=6).values
    some = [0, 57, tmd.atoms.sizes["atom"] - 1]
    few = dmotif.extract_patches(tmd.image, tmd.atoms.isel(atom=some), radius=6).values
    np.testing.assert_array_equal(few, full[some])
    one = dmotif.zernike_features(tmd.image, tmd.atoms.isel(atom=[57]), radius=6, n_max=6)
    all_ = dmotif.zernike_features(tmd.image, tmd.atoms, radius=6, n_max=6)
    np.testing.assert_array_equal(one.values[0], all_.values[57])


def test_patches_keep_the_order_of_the_table_and_its_index(tmd):
    rng = np.random.default_rng(0)
    perm = rng.permutation(tmd.atoms.sizes["atom"])
    atoms = tmd.atoms.isel(atom=perm).assign_coords(atom=perm)
    base = dmotif.extract_patches(tmd.image.chunk({"y": 64, "x": 64}), tmd.atoms, radius=5)
    got = dmotif.extract_patches(tmd.image.chunk({"y": 64, "x": 64}), atoms, radius=5)
    np.testing.assert_array_equal(got.values, base.values[perm])
    np.testing.assert_array_equal(got["atom"].values, perm)


def test_edge_atoms_are_flagged_not_dropped():
    img = np.arange(60 * 60, dtype=np.float32).reshape(60, 60)
    atoms = _table([0.0, 30.0, 30.2, 53.0, 53.1], [30.0, 30.0, 3.9, 30.0, 30.0])
    p = dmotif.extract_patches(img, atoms, radius=6)
    assert p.sizes["atom"] == 5
    assert p.edge.values.tolist() == [True, False, True, False, True]
    # mirrored: the row above the top row is the top row itself
    np.testing.assert_array_equal(p.values[0, 5], p.values[0, 6])


def test_default_radius_is_half_the_spacing(tmd):
    p = dmotif.extract_patches(tmd.image, tmd.atoms)
    spacing = 0.316 / 0.015 / np.sqrt(3)  # metal–chalcogen distance, px
    assert p.attrs["radius"] == pytest.approx(spacing / 2, rel=0.05)
    q = dmotif.extract_patches(tmd.image, tmd.atoms.assign_attrs(spacing_px=9.0))
    assert q.attrs["radius"] == 4.5 and q.sizes["py"] == 9


def test_frames_are_sampled_from_their_own_frame():
    s = dmotif.synthetic.tmd(size=128, frames=2, drift=(1.5, -2.0), seed=2)
    p = dmotif.extract_patches(s.image, s.atoms, radius=4)
    img = s.image.values
    for k in (0, int(np.argmax(s.atoms.frame.values))):
        f = int(s.atoms.frame[k])
        want = _zernike.square_patches(img[f], 0, 0, img.shape[1:], s.atoms.y.values[k : k + 1],
                                       s.atoms.x.values[k : k + 1], half=4, subpixel=True)
        np.testing.assert_array_equal(p.values[k], want[0])


def test_no_atoms_gives_an_empty_result(tmd):
    p = dmotif.extract_patches(tmd.image, tmd.atoms.isel(atom=[]), radius=5)
    assert p.shape == (0, 11, 11)


@pytest.mark.parametrize(
    ("atoms", "kwargs", "error", "match"),
    [
        (_table([10.0], [10.0]), {"radius": 1.5}, ParameterError, "at least 2"),
        (_table([10.0], [10.0]), {"radius": 17}, ParameterError, "quarter"),
        (_table([10.0], [10.0]), {"radius": "big"}, ParameterError, "number"),
        (_table([63.6], [10.0]), {"radius": 4}, DataError, "outside"),
        (_table([np.nan], [5.0]), {"radius": 4}, DataError, "non-finite"),
        (_table([10.0], [10.0], frame=np.array([3])), {"radius": 4}, DataError, "frames"),
        (xr.Dataset({"row": ("atom", [1.0])}), {"radius": 4}, DataError, "'y' and 'x'"),
        (_table([10.0], [10.0]), {}, ParameterError, "spacing_px"),
    ],
)
def test_bad_input_raises_a_clear_error(atoms, kwargs, error, match):
    img = np.random.default_rng(0).random((64, 70))
    with pytest.raises(error, match=match):
        dmotif.extract_patches(img, atoms, **kwargs)


def test_missing_frame_is_an_error_for_a_stack():
    img = np.random.default_rng(0).random((2, 64, 64))
    atoms = _table([10.0], [10.0]).drop_vars("frame")
    with pytest.raises(DataError, match="no 'frame'"):
        dmotif.extract_patches(img, atoms, radius=4)
    p = dmotif.extract_patches(img[0], atoms, radius=4)
    assert p.sizes["atom"] == 1


def test_on_a_cluster_the_atom_table_stays_out_of_the_task_graph(tmp_path):
    # Embedded in the graph, the table's per-tile slices made a 42 MB graph for 1.39 M atoms
    # (dask warns above 10 MB); scattered, the graph holds futures, far less than a float
    # per atom. The features are the same either way.
    import cloudpickle
    from distributed import Client, LocalCluster

    sample = dmotif.synthetic.tmd(size=1024, frames=2, seed=1, chunks=256)
    dmotif.synthetic.save(sample, tmp_path / "in.zarr")
    image = dmotif.open_image(tmp_path / "in.zarr")
    atoms = sample.atoms[["frame", "y", "x"]]
    here = dmotif.zernike_features(image, atoms, radius=6)
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address="127.0.0.1:0") as lc,
        Client(lc),
    ):
        there = dmotif.zernike_features(image, atoms, radius=6)
        graph_bytes = len(cloudpickle.dumps(dict(there.data.__dask_graph__())))
        assert graph_bytes < 8 * atoms.sizes["atom"]
        np.testing.assert_array_equal(there.values, here.values)
