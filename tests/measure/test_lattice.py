"""Sublattices, displacements and strain on rendered perovskite-like and strained lattices."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import dmotif
from dmotif.errors import ParameterError

from .render import atom_table, inside, render, square

A = 16.0  # the A-A spacing, px
SHAPE = (260, 260)
DOSE = 12.0


B_SPACING = A / np.sqrt(2)  # A to B


def _noisy_fit(truth, amplitude, labels, seed, sigma=1.8, spacing=B_SPACING):
    clean = render(SHAPE, truth, amplitude, sigma, sigma, 0.0, 10.0) * DOSE
    img = np.random.default_rng(seed).poisson(clean).astype(float)
    start = truth + np.random.default_rng(seed + 100).uniform(-0.3, 0.3, truth.shape)
    return dmotif.refine_columns(img, atom_table(start, labels, spacing_px=spacing))


@pytest.fixture(scope="module")
def perovskite():
    """A columns (amplitude 100) on a square lattice, B columns (50) at the cell centres moved
    by known random displacements up to 0.4 px; peak SNR of B >= 20."""
    rng = np.random.default_rng(3)
    a_sites = square(16, A, 10.0)
    b_true = a_sites + A / 2 + rng.uniform(-0.4, 0.4, a_sites.shape)
    keep = inside(b_true, SHAPE, 4)
    b_true = b_true[keep]
    truth = np.concatenate([a_sites, b_true])
    labels = np.repeat([0, 1], [len(a_sites), len(b_true)])
    amp = np.where(labels == 0, 100.0, 50.0)
    assert 50 * DOSE / np.sqrt(60 * DOSE) >= 20
    cols = _noisy_fit(truth, amp, labels, seed=0)
    return cols, truth, labels, b_true - (a_sites[keep] + A / 2)


def test_sublattices_have_the_rendered_vectors(perovskite):
    cols = perovskite[0]
    sub = dmotif.sublattices(cols)
    assert sub.sizes["motif"] == 2 and sub.sizes["frame"] == 1
    for m in (0, 1):
        uv = np.abs(sub["lattice"].sel(motif=m, frame=0).values)
        # the mean of hundreds of neighbour vectors: within 0.02 px of the rendered lattice
        # (the B columns' own displacements, 0.33 px rms per vector, dominate: 0.01 measured)
        np.testing.assert_allclose(np.sort(uv.ravel()), [0, 0, A, A], atol=0.02)
    assert sub["count"].values[:, 0].tolist() == [256, len(perovskite[3])]


def test_sublattices_per_frame_follow_a_rotation():
    sites = square(12, 12.0, 0.0)
    turn = np.deg2rad(10)
    rot = sites @ np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
    yx = np.concatenate([sites, rot])
    atoms = xr.Dataset({"frame": ("atom", np.repeat([0, 1], len(sites))),
                        "y": ("atom", yx[:, 0]), "x": ("atom", yx[:, 1]),
                        "label": ("atom", np.zeros(len(yx), int))})
    lat = dmotif.sublattices(atoms)["lattice"].sel(motif=0).values
    angles = np.rad2deg(np.arctan2(lat[:, 0, 0], lat[:, 0, 1]))  # u's direction per frame
    assert abs(abs(angles[1] - angles[0]) - 10) < 1e-6


def _two_grains():
    # left: a 12-px square lattice; right: turned by 10 degrees and stretched 3 %
    sites = square(12, 12.0, 0.0)
    turn = np.deg2rad(10)
    rotate = 1.03 * np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
    right = sites @ rotate + np.array([0.0, 200.0])
    yx = np.concatenate([sites, right])
    grain = np.repeat([0, 1], len(sites))
    basis = np.array([[0.0, 12.0], [12.0, 0.0]])
    return yx, grain, basis, basis @ rotate


def _square_lattice(uv):
    # of a square lattice's basis: the direction of its vectors up to 90-degree turns (as
    # exp(4i angle)) and their lengths
    angle = np.arctan2(uv[:, 0], uv[:, 1])
    return np.concatenate([[np.exp(4j * angle).mean().real, np.exp(4j * angle).mean().imag],
                           np.sort(np.hypot(uv[:, 0], uv[:, 1]))])


def test_sublattices_per_labelled_region_tell_two_grains_apart():
    yx, grain, left, right = _two_grains()
    atoms = atom_table(yx, np.zeros(len(yx), int))
    whole = dmotif.sublattices(atoms)
    by_grain = dmotif.sublattices(atoms, regions=grain)
    assert by_grain["lattice"].dims == ("motif", "frame", "region", "vector", "axis")
    assert by_grain["count"].sel(motif=0, frame=0).values.tolist() == [144, 144]
    for g, want in ((0, left), (1, right)):
        got = by_grain["lattice"].sel(motif=0, frame=0, region=g).values
        np.testing.assert_allclose(_square_lattice(got), _square_lattice(want), atol=1e-9)
    # one lattice over both grains is the left grain's, the larger's by a tie, or a mixture:
    # the right grain's is lost
    mixed = whole["lattice"].sel(motif=0, frame=0).values
    assert np.abs(_square_lattice(mixed) - _square_lattice(right)).max() > 0.1


def test_sublattices_per_window_map_the_grains():
    yx, grain, left, right = _two_grains()
    atoms = atom_table(yx, np.zeros(len(yx), int))
    sub = dmotif.sublattices(atoms, regions=66.0)
    lat = sub["lattice"].sel(motif=0, frame=0)
    checked = 0
    for r in sub["region"].values:
        x0 = float(sub["region_x0"].sel(region=r))
        inside_window = ((yx[:, 1] >= x0) & (yx[:, 1] < x0 + 66.0)
                         & (yx[:, 0] >= float(sub["region_y0"].sel(region=r)))
                         & (yx[:, 0] < float(sub["region_y0"].sel(region=r)) + 66.0))
        kinds = np.unique(grain[inside_window])
        if len(kinds) != 1 or inside_window.sum() < 16:
            continue
        want = left if kinds[0] == 0 else right
        np.testing.assert_allclose(_square_lattice(lat.sel(region=r).values),
                                   _square_lattice(want), atol=1e-9)
        checked += 1
    assert checked >= 6
    assert int(sub["count"].sum()) == len(yx)


def test_bad_regions_are_refused():
    atoms = atom_table(square(8, 12.0, 0.0), np.zeros(64, int))
    with pytest.raises(ParameterError, match="regions"):
        dmotif.sublattices(atoms, regions=-3.0)
    with pytest.raises(ParameterError, match="regions"):
        dmotif.sublattices(atoms, regions=np.zeros(5, int))


def test_displacements_recover_the_rendered_polarisation(perovskite):
    cols, _, labels, true_disp = perovskite
    d = dmotif.displacements(cols, motif=1, reference=0)
    got = np.column_stack([d["disp_y"].values, d["disp_x"].values])[labels == 1]
    ok = np.isfinite(got).all(axis=1)
    assert ok.mean() > 0.95  # only B columns at the edge lack a corner
    rmse = np.sqrt(np.mean((got[ok] - true_disp[ok]) ** 2))
    assert rmse <= 0.05  # measured 0.030 px at a B peak SNR of 22
    assert np.isnan(d["disp_y"].values[labels == 0]).all()


def test_displacements_in_physical_units(perovskite):
    cols = perovskite[0].assign_attrs(pixel_size=0.02, units="nm")
    d = dmotif.displacements(cols, motif=1, reference=0)
    np.testing.assert_allclose(d["disp_x_nm"].values, d["disp_x"].values * 0.02)


def test_uniform_strain_against_a_given_lattice():
    # 2 % tension along x and 1 % shear, on a lattice rendered with noise (peak SNR 22).
    f = np.array([[1.02, 0.01], [0.01, 1.0]])  # (x, y) order
    ideal = square(15, A, 0.0)
    truth = (ideal[:, ::-1] @ f.T)[:, ::-1] + 12.0
    labels = np.zeros(len(truth), int)
    cols = _noisy_fit(truth, 50.0, labels, seed=1, spacing=A)
    s = dmotif.strain(cols, motif=0, reference_lattice=[[0, A], [A, 0]])
    inner = inside(truth, SHAPE, A + 5)
    for name, want in (("strain_xx", 0.02), ("strain_yy", 0.0), ("strain_xy", 0.01),
                       ("rotation", 0.0)):
        got = s[name].values[inner]
        assert np.isfinite(got).all()
        err = np.sqrt(np.mean((got - want) ** 2))
        assert err <= 0.002, (name, err)  # measured 0.0005 to 0.0009 per column


def test_strain_step_against_the_mean_lattice():
    # Left half unstrained, right half stretched 2 % along x: against the image's own mean
    # lattice the halves differ by 2 %.
    n = 15
    i, j = np.mgrid[0:n, 0:n].reshape(2, -1)
    step = np.where(j < n // 2, j * A, (n // 2) * A + (j - n // 2) * A * 1.02)
    truth = np.column_stack([i * A, step]) + 12.0
    labels = np.zeros(len(truth), int)
    cols = _noisy_fit(truth, 50.0, labels, seed=2, spacing=A)
    s = dmotif.strain(cols, motif=0)
    xx = s["strain_xx"].values
    interior = inside(truth, SHAPE, A + 5)
    left = interior & (j < n // 2 - 1)
    right = interior & (j > n // 2 + 1)
    diff = np.median(xx[right]) - np.median(xx[left])
    assert abs(diff - 0.02) <= 0.002  # measured 0.0198
    assert abs(np.nanmean(xx[interior])) < 0.01


@pytest.mark.parametrize("tile", [23.0, 50.0, 97.5])
def test_tiles_give_the_numbers_of_the_whole_frame(perovskite, tile):
    # Two frames (the second the first shifted), cut into tiles smaller than a few cells:
    # the same numbers as one tile per frame.
    cols = perovskite[0]
    two = xr.concat([cols, cols.assign(frame=cols["frame"] + 1, y=cols["y"] + 3.5,
                                       fit_y=cols["fit_y"] + 3.5)], dim="atom")
    for func, kw in ((dmotif.displacements, {"motif": 1, "reference": 0}),
                     (dmotif.strain, {"motif": 0}), (dmotif.strain, {"motif": 1})):
        whole = func(two, tile=1e6, **kw)
        tiled = func(two, tile=tile, **kw)
        assert np.isfinite(whole[next(iter(whole.data_vars))].values).sum() > 150
        for name in whole.data_vars:
            np.testing.assert_array_equal(tiled[name].values, whole[name].values)


def test_bad_motifs_and_lattices_are_refused(perovskite):
    cols = perovskite[0]
    with pytest.raises(ParameterError, match="no motif"):
        dmotif.displacements(cols, motif=7, reference=0)
    with pytest.raises(ParameterError, match="reference_lattice"):
        dmotif.strain(cols, motif=0, reference_lattice=[[1, 0], [2, 0]])
    with pytest.raises(ParameterError, match="tile"):
        dmotif.strain(cols, motif=0, tile=0)
