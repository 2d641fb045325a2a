"""Diffraction descriptors of 4D-STEM data: ring harmonics and Zernike moments against the
real-space features, invariances, and the diffraction motifs of the synthetic truth."""

from __future__ import annotations

import numpy as np
import pytest

import dmotif
from dmotif.errors import DataError, ParameterError
from dmotif.features import _fourd_kernels as _fourd
from dmotif.synthetic.stem4d import fourd

from .conftest import C, K

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
