"""Discrete motifs or a continuum, from the share of the features' variance that survives
averaging over each atom's neighbourhood."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr

import dmotif
from dmotif import synthetic
from dmotif.motifs.continuum import CONTINUUM_SHARE

DATA = Path(__file__).parent.parent / "data"


def grid(n: int = 40, frames: int = 1) -> xr.Dataset:
    yy, xx = np.mgrid[0:n, 0:n].reshape(2, -1) * 10.0
    return xr.Dataset(
        {"frame": ("atom", np.repeat(np.arange(frames), yy.size)),
         "y": ("atom", np.tile(yy, frames)), "x": ("atom", np.tile(xx, frames))},
        attrs={"spacing_px": 10.0},
    )


def test_noise_keeps_one_over_the_neighbourhood_size():
    atoms = grid()
    x = 5.0 + np.random.default_rng(0).normal(size=(atoms.sizes["atom"], 6))
    out = dmotif.feature_structure(x, atoms)
    # 29 grid points lie within 3 spacings of a point: noise keeps 1/29 of its variance.
    assert out["structure"] == "discrete"
    assert out["regional_share"] == pytest.approx(1 / 29, abs=0.004)


def test_types_under_a_brightness_gradient_are_discrete_a_gradient_of_shape_a_continuum():
    atoms = grid()
    yy, xx = atoms["y"].values, atoms["x"].values
    rng = np.random.default_rng(1)
    types = np.where((yy + xx) % 20 == 0, 1.0, 0.0)
    pattern = np.array([[3.0, 1.0, 0.5], [1.0, 2.0, 0.2]])[types.astype(int)]
    noise = 0.05 * rng.normal(size=pattern.shape)
    brighter = pattern * (1 + xx / 400)[:, None] + noise
    out = dmotif.feature_structure(brighter, atoms)
    assert out["structure"] == "discrete" and out["regional_share"] < 0.02  # measured 0.011
    # the raw features alone would call it a continuum: most of their variance is the gradient
    shape = pattern + np.outer(xx / 100, [0.0, 1.0, -1.0]) + noise
    out = dmotif.feature_structure(shape, atoms)
    assert out["structure"] == "continuum" and out["regional_share"] > 0.3  # measured 0.33


def test_frames_count_apart():
    # Each frame is one column type in noise: different frames, no variation within one.
    atoms = grid(frames=2)
    n = atoms.sizes["atom"] // 2
    x = np.random.default_rng(2).normal(size=(2 * n, 3)) + np.repeat([[5.0, 1, 0], [1, 5, 0]],
                                                                      n, axis=0)
    out = dmotif.feature_structure(x, atoms)
    assert out["structure"] == "discrete"
    assert out["regional_share"] == pytest.approx(1 / 29, abs=0.004)


def test_synthetic_twisted_bilayer_is_a_continuum_the_tmd_discrete():
    twisted = synthetic.twisted_bilayer(size=384, twist=2.0, seed=1)
    tmd = synthetic.generate("tmd", size=384, seed=1)
    got = {name: dmotif.feature_structure(dmotif.zernike_features(s.image, s.atoms), s.atoms)
           for name, s in (("twisted", twisted), ("tmd", tmd))}
    assert got["twisted"]["structure"] == "continuum"
    assert got["twisted"]["regional_share"] == pytest.approx(0.156, abs=0.01)
    assert got["tmd"]["structure"] == "discrete"


def structure(image) -> dict:
    with dask.config.set(scheduler="threads"):
        atoms = dmotif.detect_atoms(image)
        return dmotif.feature_structure(dmotif.zernike_features(image, atoms), atoms)


# abTEM multislice at 10⁵ e/Å²: a 4°-twisted MoSe2 bilayer (half a moiré period in the image)
# and a MoSe2 monolayer with vacancies, antisites and W dopants; atomap's perovskite ADF.
@pytest.mark.parametrize(("name", "expected", "share"), [
    ("abtem_twisted_adf.npz", "continuum", 0.203), ("abtem_twisted_abf.npz", "continuum", 0.184),
    ("abtem_mose2_adf.npz", "discrete", 0.050), ("abtem_mose2_abf.npz", "discrete", 0.043),
    ("real_perovskite_adf.npy", "discrete", 0.012),
])
def test_images_dmotif_did_not_make(name, expected, share):
    path = DATA / name
    image = np.load(path)["image"] if path.suffix == ".npz" else np.load(path)
    out = structure(np.asarray(image, dtype=np.float32))
    assert out["structure"] == expected
    assert out["regional_share"] == pytest.approx(share, abs=0.01)
    assert abs(out["regional_share"] - CONTINUUM_SHARE) > 0.04


def test_real_mos2_is_discrete_despite_its_uneven_brightness():
    pytest.importorskip("rsciio")
    image = dmotif.open_image(DATA / "real_mos2_se_implanted.dm3").isel(frame=0).values
    out = structure(image)
    # 0.14 on the features as they are: contamination and holes change the brightness
    assert out["structure"] == "discrete"
    # measured 0.046 (0.069 before its faint chalcogen columns were detected)
    assert out["regional_share"] == pytest.approx(0.046, abs=0.01)


def test_a_run_maps_the_twisted_bilayers_registry(client, tmp_path):
    # abTEM ADF of a 4°-twisted MoSe2 bilayer: the run calls it a continuum and stores each
    # atom's place along it, which follows the local registry (the truth of the simulation).
    from scipy.spatial import cKDTree
    from scipy.stats import spearmanr

    data = np.load(DATA / "abtem_twisted_adf.npz")
    np.save(tmp_path / "twisted.npy", data["image"])
    res = dmotif.run(tmp_path / "twisted.npy", tmp_path / "t.zarr", client=client)
    ds = res.dataset
    assert res.attrs["cluster_attrs"]["structure"] == "continuum"
    coord = ds["continuum"].values
    assert coord.min() == 0.0 and coord.max() == 1.0
    # the library reproduces it
    again = dmotif.continuum_coordinate(ds["pca"], res.atoms, seed=res.config["seed"])
    np.testing.assert_allclose(coord, again.values, atol=1e-6)
    dist, idx = cKDTree(np.c_[data["column_y"], data["column_x"]]).query(
        np.c_[ds["y"].values, ds["x"].values])
    y, x = ds["y"].values, ds["x"].values
    inside = (dist < 3) & (y > 12) & (x > 12) & (y < 228) & (x < 238)
    rho = abs(spearmanr(coord[inside], data["column_registry"][idx[inside]])[0])
    assert rho > 0.94  # measured 0.959
    page = dmotif.report(res, tmp_path / "r.html").read_text()
    assert "Continuous variation" in page and (tmp_path / "r_files" / "continuum.png").exists()
