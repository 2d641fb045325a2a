"""4D-STEM: kernels against numpy and analytic truth, wrappers for chunking invariance, readers."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmotif
from dmotif import _fourd
from dmotif.errors import DataError, DmotifError, ImageFileError, ParameterError
from dmotif.synthetic_4d import fourd

K = 32
C = (K - 1) / 2


@pytest.fixture(scope="module")
def sample():
    """A noisy 40 × 48 scan of 32² patterns (TMD), chunked 16 × 16."""
    return fourd("tmd", size=(40, 48), k_size=K, dose=2000.0, chunks=16, seed=3)


@pytest.fixture(scope="module")
def values(sample) -> np.ndarray:
    return sample.data.values


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


@pytest.mark.parametrize(("cy", "cx", "radius"), [(15.5, 15.5, 5.0), (13.2, 17.7, 7.5)])
def test_estimate_disk(cy: float, cx: float, radius: float) -> None:
    yy, xx = np.indices((K, K))
    pattern = 0.02 + np.clip(radius + 0.5 - np.hypot(yy - cy, xx - cx), 0, 1)
    (ey, ex), er = _fourd.estimate_disk(pattern)
    assert (ey, ex) == pytest.approx((cy, cx), abs=0.05)
    assert er == pytest.approx(radius, abs=0.3)


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


# --------------------------------------------------------------------------- descriptors


def test_features_at_atoms_separate_the_columns(sample) -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    atoms = sample.atoms
    inside = ((atoms.y > 3) & (atoms.y < 36) & (atoms.x > 3) & (atoms.x < 44)).values
    atoms = atoms.isel(atom=inside)
    feats = dmotif.diffraction_features(sample.data, atoms, n_rings=6, m_max=4)
    assert feats.dims == ("atom", "feature") and feats.shape == (atoms.sizes["atom"], 30)
    assert list(feats.part.values[:3]) == ["mean", "abs", "abs"]
    metal = (atoms.label.values == 0).astype(int)
    pred = KMeans(2, n_init=10, random_state=0).fit_predict(feats.values)
    assert adjusted_rand_score(metal, pred) >= 0.95


@pytest.mark.parametrize(("kind", "n_oriented"), [("radial", 8 * 13), ("zernike", 66)])
def test_rotinv_features_ignore_a_quarter_turn_and_the_dose(kind: str, n_oriented: int) -> None:
    rng = np.random.default_rng(2)
    data = rng.random((3, 4, K, K)).astype(np.float32)
    turned = np.rot90(data, 1, axes=(2, 3))
    kw = {"center": (C, C)}
    a = dmotif.diffraction_features(dmotif.open_4dstem(data, **kw), kind=kind)
    b = dmotif.diffraction_features(dmotif.open_4dstem(turned, **kw), kind=kind)
    np.testing.assert_allclose(a.values, b.values, rtol=1e-4, atol=1e-6)
    c = dmotif.diffraction_features(dmotif.open_4dstem(3 * data, **kw), kind=kind)
    np.testing.assert_allclose(a.values, c.values, rtol=1e-5)
    oriented = [dmotif.diffraction_features(dmotif.open_4dstem(d, **kw), kind=kind, rotinv=False)
                for d in (data, turned)]
    assert oriented[0].shape == (12, n_oriented)
    assert not np.allclose(oriented[0].values, oriented[1].values, atol=1e-3)


def test_features_reject_bad_arguments(sample) -> None:
    with pytest.raises(ParameterError, match="kind"):
        dmotif.diffraction_features(sample.data, kind="bessel")
    with pytest.raises(ParameterError, match="n_rings"):
        dmotif.diffraction_features(sample.data, n_rings=0)
    with pytest.raises(ParameterError, match="maximum angle"):
        dmotif.diffraction_features(sample.data, outer=1000.0)
    far = sample.atoms.isel(atom=[0]).assign(x=("atom", [500.0]))
    with pytest.raises(DataError, match="outside"):
        dmotif.diffraction_features(sample.data, far)


# --------------------------------------------------------------------------- Zernike moments


def _pattern_as_image(pattern: np.ndarray, center: tuple[float, float], **kw):
    """dmotif.zernike_features of ``pattern`` taken as an image with one atom at ``center``.

    The pattern is mirror-padded ('symmetric', as the sampler mirrors at an image edge) so that
    the radius stays below a quarter of the image.
    """
    import xarray as xr

    pad = 4 * max(pattern.shape)
    atom = xr.Dataset({"frame": ("atom", np.zeros(1, np.int32)),
                       "y": ("atom", [center[0] + pad]), "x": ("atom", [center[1] + pad])})
    image = np.pad(pattern, pad, mode="symmetric")
    return dmotif.zernike_features(image, atom, **kw).isel(atom=0)


@pytest.mark.parametrize("center", [(13.3, 17.6), (14.5, 17.5), (14.0, 16.0)])
@pytest.mark.parametrize("rotinv", [True, False])
def test_zernike_moments_equal_zernike_features_of_the_pattern(center, rotinv) -> None:
    pattern = np.random.default_rng(4).random((30, 36)).astype(np.float32)
    data = dmotif.open_4dstem(np.broadcast_to(pattern, (2, 3, 30, 36)), center=center)
    rmax = _fourd.max_radius((30, 36), center)
    for outer in (11.0, None):
        feats = dmotif.diffraction_features(data, kind="zernike", n_max=8, outer=outer,
                                            rotinv=rotinv, normalize=False)
        radius = rmax if outer is None else outer
        assert feats.attrs["radius_px"] == radius and feats.attrs["binning"] == 1
        ref = _pattern_as_image(pattern, center, radius=radius, n_max=8, rotinv=rotinv)
        np.testing.assert_allclose(feats.values, np.broadcast_to(ref.values, feats.shape),
                                   rtol=1e-5, atol=1e-5)
        for name in ("n", "m", "part"):
            np.testing.assert_array_equal(feats[name].values, ref[name].values)


def test_zernike_binning_equals_moments_of_binned_patterns() -> None:
    rng = np.random.default_rng(5)
    data = rng.random((2, 3, 64, 64)).astype(np.float32)
    binned = data.reshape(2, 3, 32, 2, 32, 2).sum(axis=(3, 5))
    auto = dmotif.diffraction_features(dmotif.open_4dstem(data, center=(31.5, 31.5)),
                                       kind="zernike", binning=2, normalize=False)
    ref = dmotif.diffraction_features(dmotif.open_4dstem(binned, center=(15.5, 15.5)),
                                      kind="zernike", binning=1, normalize=False)
    np.testing.assert_allclose(auto.values, ref.values, rtol=1e-5, atol=1e-4)
    assert auto.attrs["radius_px"] == 32.0 and ref.attrs["radius_px"] == 16.0
    # 128² patterns are binned to 64² by default; 64² ones are kept.
    big = dmotif.open_4dstem(np.ones((1, 2, 128, 128), np.float32), center=(63.5, 63.5))
    assert dmotif.diffraction_features(big, kind="zernike").attrs["binning"] == 2
    assert dmotif.diffraction_features(dmotif.open_4dstem(data, center=(31.5, 31.5)),
                                       kind="zernike").attrs["binning"] == 1


def test_zernike_inner_leaves_the_centre_out() -> None:
    yy, xx = np.indices((K, K))
    disk = (np.hypot(yy - C, xx - C) < 4).astype(np.float32)
    data = dmotif.open_4dstem(np.broadcast_to(disk + 0.0, (1, 2, K, K)), center=(C, C))
    whole = dmotif.diffraction_features(data, kind="zernike", normalize=False).values
    assert np.abs(whole).max() > 1
    # The disk reaches 4 px. The cubic spline through the pixels rings beyond a step, with
    # amplitude falling by |pole| = 2 - sqrt(3) ≈ 0.27 per pixel, so samples from 5.5 px on
    # see almost nothing, and less the farther out they start.
    leak = [np.abs(dmotif.diffraction_features(data, kind="zernike", inner=inner,
                                               normalize=False).values).max()
            for inner in (5.5, 6.5, 8.5)]
    assert leak[0] < 0.02 * np.abs(whole).max()
    assert leak[0] > leak[1] > leak[2]


def test_zernike_rejects_bad_arguments(sample) -> None:
    kps = sample.data.attrs["k_pixel_size"]
    with pytest.raises(ParameterError, match="maximum angle"):
        dmotif.diffraction_features(sample.data, kind="zernike", outer=17 * kps)
    with pytest.raises(ParameterError, match="Use n_max <= 8, a smaller binning") as info:
        dmotif.diffraction_features(sample.data, kind="zernike", n_max=12, binning=2)
    assert "n_max=12" in str(info.value) and "8 px" in str(info.value)
    with pytest.raises(ParameterError, match="binning"):
        dmotif.diffraction_features(sample.data, kind="zernike", binning=9)
    with pytest.raises(ParameterError, match="n_max"):
        dmotif.diffraction_features(sample.data, kind="zernike", n_max=-1)


# --------------------------------------------------------------------------- diffraction motifs


@pytest.fixture(scope="module")
def motifs():
    """A TMD with every motif well represented: columns 1.5 scan steps wide, 5000 e/probe."""
    from dataclasses import replace

    s = fourd("tmd", size=160, k_size=K, dose=5000.0, chunks=32, seed=3, pixel_size=0.02,
              chalcogen_vacancy=0.15, antisite=0.08)
    return replace(s, data=s.data.persist())  # 100 MiB, drawn once for all kinds


def _motif_ari(features, truth: np.ndarray) -> float:
    """ARI of a GMM with the true number of motifs on the PCA of ``features``."""
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture

    emb = dmotif.pca(features, n_components=3).values
    k = np.unique(truth).size
    pred = GaussianMixture(k, n_init=5, random_state=0).fit_predict(emb)
    return float(adjusted_rand_score(truth, pred))


@pytest.mark.parametrize(("kind", "kw"), [("radial", {}), ("zernike", {}),
                                          ("zernike", {"rotinv": False})])
def test_diffraction_motifs_match_the_truth(motifs, kind: str, kw: dict) -> None:
    truth = motifs.atoms.label.values
    assert np.bincount(truth).min() >= 9  # all four motifs, the rarest with 9 columns
    at_atoms = dmotif.diffraction_features(motifs.data, motifs.atoms, kind=kind, **kw)
    assert _motif_ari(at_atoms.compute(), truth) >= 0.95
    # The same motifs from the features of every position, read at the true sites.
    every = dmotif.diffraction_features(motifs.data, kind=kind, **kw)
    site = motifs.sites.values.ravel()
    on = every.isel(position=np.flatnonzero(site >= 0)).rename(position="atom").compute()
    assert _motif_ari(on, site[site >= 0]) >= 0.95


# --------------------------------------------------------------------------- readers


@pytest.fixture(scope="module")
def small():
    return fourd("tmd", size=(16, 18), k_size=16, chunks=8)


def test_zarr_round_trip(small, tmp_path: Path) -> None:
    path = dmotif.save_4dstem(small.data, tmp_path / "d.zarr")
    back = dmotif.open_4dstem(path)
    np.testing.assert_array_equal(back.values, small.data.values)
    for key in ("scan_pixel_size", "scan_units", "k_pixel_size", "k_units", "bf_radius"):
        assert back.attrs[key] == small.data.attrs[key]
    assert tuple(back.attrs["center"]) == tuple(small.data.attrs["center"])
    assert back.data.chunks[:2] == small.data.data.chunks[:2]
    with pytest.raises(DmotifError, match="exists"):
        dmotif.save_4dstem(small.data, tmp_path / "d.zarr")


def test_npy_and_bare_zarr(small, tmp_path: Path) -> None:
    arr = small.data.values
    np.save(tmp_path / "d.npy", arr)
    da.from_array(arr, chunks=(4, 7, 16, 16)).to_zarr(str(tmp_path / "bare.zarr"))
    for name in ("d.npy", "bare.zarr"):
        got = dmotif.open_4dstem(tmp_path / name, k_pixel_size=2.5)
        np.testing.assert_array_equal(got.values, arr)
        assert got.attrs["k_units"] == "mrad" and got.attrs["scan_units"] == "px"
        assert tuple(got.attrs["center"]) == pytest.approx((7.5, 7.5), abs=0.05)
    assert dmotif.open_4dstem(tmp_path / "bare.zarr").data.chunks[1] == (7, 7, 4)


def test_emd_hdf5_with_calibration(small, tmp_path: Path) -> None:
    import h5py

    arr = small.data.values
    path = tmp_path / "d.emd"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 1
        group = f.create_group("data/scan")
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=arr, chunks=(4, 4, 16, 16))
        for i, (n, step, off, unit) in enumerate(
            [(16, 1.5, 0.0, "Å"), (18, 1.5, 0.0, "Å"), (16, 4.0, -30.0, "mrad"),
             (16, 4.0, -30.0, "mrad")], start=1):
            dim = group.create_dataset(f"dim{i}", data=off + step * np.arange(n))
            dim.attrs["units"] = unit
    got = dmotif.open_4dstem(path)
    np.testing.assert_array_equal(got.values, arr)
    assert got.attrs["scan_pixel_size"] == pytest.approx(0.15)
    assert got.attrs["k_pixel_size"] == 4.0 and got.attrs["k_units"] == "mrad"
    assert tuple(got.attrs["center"]) == pytest.approx((7.5, 7.5))
    assert got.data.chunks[0] == (4, 4, 4, 4)
    np.testing.assert_allclose(got.kx.values, -30.0 + 4.0 * np.arange(16))


def test_hspy_and_blockfile_through_rosettasciio(small, tmp_path: Path) -> None:
    from rsciio.blockfile import file_writer as write_blo
    from rsciio.hspy import file_writer as write_hspy

    arr = small.data.values
    counts = np.round(arr / arr.max() * 250).astype(np.uint8)
    axes = [
        {"size": 16, "scale": 2.0, "offset": 0, "units": "Å", "name": "y", "navigate": True},
        {"size": 18, "scale": 2.0, "offset": 0, "units": "Å", "name": "x", "navigate": True},
        {"size": 16, "scale": 1e-3, "offset": -7.5e-3, "units": "rad", "name": "ky",
         "navigate": False},
        {"size": 16, "scale": 1e-3, "offset": -7.5e-3, "units": "rad", "name": "kx",
         "navigate": False},
    ]
    signal = {"data": arr, "axes": axes, "metadata": {"General": {"title": "t"},
              "Signal": {"signal_type": ""}}, "original_metadata": {}, "tmp_parameters": {},
              "attributes": {"_lazy": False}, "package_info": {"name": "t", "version": "0"},
              "learning_results": {}, "models": {}}
    write_hspy(str(tmp_path / "d.hspy"), signal)
    got = dmotif.open_4dstem(tmp_path / "d.hspy")
    np.testing.assert_array_equal(got.values, arr)
    assert got.attrs["scan_pixel_size"] == pytest.approx(0.2)
    assert got.attrs["k_pixel_size"] == pytest.approx(1.0) and got.attrs["k_units"] == "mrad"
    assert tuple(got.attrs["center"]) == pytest.approx((7.5, 7.5))

    blo_axes = [dict(a, units="cm", offset=0.0, scale=0.1) if not a["navigate"] else
                dict(a, units="nm", scale=0.2) for a in axes]
    write_blo(str(tmp_path / "d.blo"), {**signal, "data": counts, "axes": blo_axes},
              show_progressbar=False)
    blo = dmotif.open_4dstem(tmp_path / "d.blo")
    np.testing.assert_array_equal(blo.values, counts)
    assert blo.attrs["scan_pixel_size"] == pytest.approx(0.2)


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "bad.mib").write_bytes(b"not a merlin file" * 10)
    with pytest.raises(ImageFileError, match="rosettasciio"):
        dmotif.open_4dstem(tmp_path / "bad.mib")
    with pytest.raises(ImageFileError, match="no such file"):
        dmotif.open_4dstem(tmp_path / "missing.blo")
    with pytest.raises(ImageFileError, match="unsupported"):
        dmotif.open_4dstem(tmp_path / "d.tif")
    np.save(tmp_path / "img.npy", np.zeros((8, 8), np.float32))
    with pytest.raises(DataError, match="open_image"):
        dmotif.open_4dstem(tmp_path / "img.npy")


def test_distributed_workers_give_the_same_image(small, tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    path = dmotif.save_4dstem(small.data, tmp_path / "d.zarr")
    data = dmotif.open_4dstem(path)
    local = {d: dmotif.virtual_image(data, detector=d).values for d in ("adf", "icom")}
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster):
        for d, ref in local.items():
            np.testing.assert_array_equal(dmotif.virtual_image(data, detector=d).values, ref)
