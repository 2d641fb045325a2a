"""Synthetic samples: the truth is consistent with the pixels, exact and reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from dmotif import ParameterError, synthetic
from dmotif.synthetic._assembly import choose_exact


def _on_local_max(sample: synthetic.Synthetic) -> np.ndarray:
    """For each true column, is there a 3×3 local maximum of the image within 1 px of it?

    (The pixel nearest to an elongated column need not be its brightest: the column is
    anisotropic, the pixel grid is not.)
    """
    img = sample.image.values[0]
    peaks = np.argwhere(img == ndimage.maximum_filter(img, size=3, mode="nearest"))
    from scipy.spatial import cKDTree

    d, _ = cKDTree(peaks).query(np.column_stack([sample.atoms.y, sample.atoms.x]))
    return d <= 1.0


@pytest.mark.parametrize("kind", ["tmd", "perovskite", "shapes"])
def test_every_true_column_sits_on_a_local_maximum(kind: str) -> None:
    sample = synthetic.generate(kind, size=256, seed=2, dose=None, read_noise=0.0, background=0)
    assert sample.atoms.sizes["atom"] > 100
    assert _on_local_max(sample).all()


def test_no_maximum_away_from_columns_in_a_clean_tmd(tmd_clean: synthetic.Synthetic) -> None:
    img = tmd_clean.image.values[0]
    peaks = np.argwhere((img == ndimage.maximum_filter(img, size=5)) & (img > 0.1))
    # Columns just outside the image show their tails as maxima on the border.
    peaks = peaks[np.all((peaks >= 5) & (peaks < 251), axis=1)]
    from scipy.spatial import cKDTree

    d, _ = cKDTree(np.column_stack([tmd_clean.atoms.y, tmd_clean.atoms.x])).query(peaks)
    assert d.max() < 1.0


def test_tmd_defect_counts_are_exact() -> None:
    kw = {"chalcogen_vacancy": 0.05, "double_vacancy": 0.01, "antisite": 0.02,
          "metal_vacancy": 0.02}
    sample = synthetic.tmd(size=512, frames=2, seed=5, **kw)
    for f in (0, 1):
        # Count on whole sites (including those just outside the image) via the cells truth:
        # every chalcogen site of a whole cell carries its defect code.
        atoms = sample.atoms.where(sample.atoms.frame == f, drop=True)
        labels = atoms["label"].values.astype(int)
        n_chal = np.sum(atoms["basis"].values == 1)
        vac = sample.vacancies.where(sample.vacancies.frame == f, drop=True)
        n_chal_sites = n_chal + np.sum(vac["basis"].values == 1)
        # Defects are drawn in exact numbers over the sites of the frame's whole patch; inside
        # the image the fractions hold to within the border's share.
        assert abs(np.sum(labels == 2) / n_chal_sites - 0.05) < 0.01
        assert abs(np.sum(labels == 3) / n_chal_sites - 0.02) < 0.006
    names = sample.motif_names
    assert names == ["metal", "chalcogen_pair", "single_chalcogen", "antisite"]


def test_exact_counts_over_all_drawn_sites() -> None:
    rng = np.random.default_rng(0)
    eligible = rng.random(10_000) < 0.5
    codes = choose_exact(rng, eligible, {2: 0.04, 3: 0.01, -5: 0.005})
    n = eligible.sum()
    assert np.sum(codes == 2) == round(0.04 * n)
    assert np.sum(codes == 3) == round(0.01 * n)
    assert np.sum(codes == -5) == round(0.005 * n)
    assert np.all(codes[~eligible] == -1)


def test_perovskite_and_shapes_labels() -> None:
    p = synthetic.perovskite(size=300, seed=1)
    counts = np.bincount(p.atoms["label"].values)
    # One A, one B and two O per cell.
    assert counts[2] == pytest.approx(2 * counts[0], rel=0.05)
    assert counts[1] == pytest.approx(counts[0], rel=0.05)
    s = synthetic.shapes(size=300, seed=1, orientations=(0.0, 45.0, 90.0), round_fraction=0.25)
    assert s.motif_names == ["round", "rod_0", "rod_45", "rod_90"]
    frac = np.bincount(s.atoms["label"].values) / s.atoms.sizes["atom"]
    np.testing.assert_allclose(frac, 0.25, atol=0.05)


def test_shapes_have_equal_peaks_but_different_shapes() -> None:
    s = synthetic.shapes(size=256, seed=3, dose=None, read_noise=0.0, background=0.0)
    img = s.image.values[0]
    r = np.rint(s.atoms["y"].values).astype(int)
    c = np.rint(s.atoms["x"].values).astype(int)
    inner = (r > 8) & (r < 247) & (c > 8) & (c < 247)
    peak = img[r[inner], c[inner]]
    lab = s.atoms["label"].values[inner]
    means = [peak[lab == k].mean() for k in range(3)]
    np.testing.assert_allclose(means, means[0], rtol=0.1)


def test_same_seed_same_bytes_other_seed_differs() -> None:
    a = synthetic.tmd(size=200, seed=4).image.values
    b = synthetic.tmd(size=200, seed=4).image.values
    c = synthetic.tmd(size=200, seed=5).image.values
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kind", sorted(synthetic.KINDS))
def test_stack_is_identical_for_two_chunkings(kind: str) -> None:
    a = synthetic.generate(kind, size=(300, 260), frames=2, seed=9, chunks=96)
    b = synthetic.generate(kind, size=(300, 260), frames=2, seed=9, chunks=(2, 300, 260))
    assert a.image.data.chunks != b.image.data.chunks
    assert a.image.values.tobytes() == b.image.values.tobytes()
    xr.testing.assert_identical(a.atoms, b.atoms)


def test_noise_level_matches_the_documented_snr() -> None:
    clean = synthetic.tmd(size=256, seed=1, dose=None, read_noise=0.0).image.values
    noisy = synthetic.tmd(size=256, seed=1).image.values
    sample = synthetic.tmd(size=256, seed=1)
    metal = sample.atoms.where(sample.atoms.label == 0, drop=True)
    r = np.rint(metal.y.values).astype(int)
    c = np.rint(metal.x.values).astype(int)
    resid = (noisy - clean)[0, r, c]
    snr = clean[0, r, c].mean() / resid.std()
    assert 4.0 < snr < 6.5


def test_drift_and_shear_move_the_truth_with_the_pixels() -> None:
    s = synthetic.tmd(size=256, frames=3, seed=1, dose=None, read_noise=0.0, drift=(2.5, -1.5),
                      shear=0.02)
    for f in range(3):
        sub = s.atoms.where(s.atoms.frame == f, drop=True)
        img = s.image.values[f]
        peaks = img == ndimage.maximum_filter(img, size=3)
        r = np.rint(sub.y.values).astype(int)
        c = np.rint(sub.x.values).astype(int)
        assert peaks[r, c].mean() > 0.99


def test_twisted_registry_is_aa_at_centre_and_bounded() -> None:
    s = synthetic.twisted_bilayer(size=256, twist=4.0, seed=0)
    reg = s.atoms["registry"].values
    assert reg.min() >= 0 and reg.max() <= 1 / np.sqrt(3) + 1e-9
    centre = synthetic.twisted_registry(np.array([128.0]), np.array([128.0]), twist=4.0,
                                        lattice_px=0.246 / 0.015, center=(128.0, 128.0))
    assert centre[0] == pytest.approx(0.0, abs=1e-12)
    # Half a moiré period away the stacking has moved off AA.
    period = 0.246 / 0.015 / (2 * np.sin(np.radians(2.0)))
    far = synthetic.twisted_registry(np.array([128.0]), np.array([128.0 + period / 2]),
                                     twist=4.0, lattice_px=0.246 / 0.015, center=(128.0, 128.0))
    assert far[0] > 0.3


def test_cells_truth_for_tmd(tmd_small: synthetic.Synthetic) -> None:
    cells = tmd_small.cells
    assert cells is not None and cells.sizes["basis"] == 2
    lab = cells["labels"].values
    assert set(np.unique(lab[:, 0])) <= {-1, 0}
    assert set(np.unique(lab[:, 1])) <= {-1, 1, 2, 3}
    assert np.mean((lab[:, 0] == 0) & (lab[:, 1] == 1)) > 0.9


def test_save_load_round_trip(tmp_path, tmd_small: synthetic.Synthetic) -> None:
    path = synthetic.save(tmd_small, tmp_path / "t.zarr")
    back = synthetic.load(path)
    xr.testing.assert_identical(back.atoms, tmd_small.atoms)
    xr.testing.assert_identical(back.cells, tmd_small.cells)
    assert back.params == tmd_small.params
    np.testing.assert_array_equal(back.image.values, tmd_small.image.values)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"size": 8}, "at least 16"), ({"pixel_size": -1.0}, "pixel_size"),
     ({"dose": 0.0}, "dose"), ({"chalcogen_vacancy": 1.5}, "fraction"),
     ({"chalcogen_vacancy": 0.6, "antisite": 0.6}, "add up")],
)
def test_bad_parameters(kwargs: dict, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        synthetic.tmd(**kwargs)


def test_unknown_kind() -> None:
    with pytest.raises(ParameterError, match="unknown synthetic kind 'graphene'"):
        synthetic.generate("graphene")
