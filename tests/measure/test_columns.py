"""The elliptical 2-D Gaussian fit and the Voronoi cross-section against rendered truth."""

from __future__ import annotations

import dask.array as da
import numba
import numpy as np
import pytest

import dmotif
from dmotif.errors import DataError, ParameterError

from .render import atom_table, inside, render, square

SHAPE = (200, 200)
SPACING = 14.0
SA, SB, ANGLE = 2.4, 1.8, 0.5
AMP, BG = 100.0, 10.0


@pytest.fixture(scope="module")
def lattice() -> tuple[np.ndarray, np.ndarray]:
    """Sites jittered by up to 1 px and detected positions up to 0.5 px off them."""
    rng = np.random.default_rng(0)
    truth = square(14, SPACING, 7.0) + rng.uniform(-1, 1, (196, 2))
    start = truth + rng.uniform(-0.5, 0.5, truth.shape)
    return truth, start


def _fit(img, start, **kw):
    return dmotif.refine_columns(img, atom_table(start, spacing_px=SPACING), **kw)


def test_noise_free_shapes_are_exact(lattice):
    truth, start = lattice
    img = render(SHAPE, truth, AMP, SA, SB, ANGLE, BG)
    cols = _fit(img, start)
    core = inside(truth, SHAPE, 2 * SPACING)
    # The columns overlap (the tails of 4 neighbours reach each disk); with the neighbours'
    # Gaussians subtracted the fit is exact to 1e-4 (measured 2e-5 px, 3e-5 relative).
    assert np.abs(cols["fit_y"].values[core] - truth[core, 0]).max() < 1e-3
    assert np.abs(cols["fit_x"].values[core] - truth[core, 1]).max() < 1e-3
    assert np.allclose(cols["fit_sigma_a"].values[core], SA, rtol=1e-3)
    assert np.allclose(cols["fit_sigma_b"].values[core], SB, rtol=1e-3)
    assert np.allclose(cols["fit_angle"].values[core], ANGLE, atol=1e-3)
    assert np.allclose(cols["fit_amplitude"].values[core], AMP, rtol=1e-3)
    # The first-pass models of the neighbours are not exact: what they leave of their tails
    # goes to the background (measured up to 0.03, 0.03 % of the amplitude).
    assert np.allclose(cols["fit_background"].values[core], BG, atol=0.04)
    # The Voronoi cell of a column of a regular lattice gains as much of its neighbours' tails
    # as it loses of its own: the cross-section is the Gaussian's integral 2π A σa σb, on
    # average; the jitter of the sites (±1 px) moves single cells by up to 0.4 % (measured).
    cs = cols["cross_section"].values[core]
    assert np.allclose(cs, 2 * np.pi * AMP * SA * SB, rtol=5e-3)
    assert np.isclose(cs.mean(), 2 * np.pi * AMP * SA * SB, rtol=5e-4)


def test_neighbours_matter_on_overlapping_columns(lattice):
    truth, start = lattice
    img = render(SHAPE, truth, AMP, SA, SB, ANGLE, BG)
    core = inside(truth, SHAPE, 2 * SPACING)
    alone = _fit(img, start, neighbours=False)
    joint = _fit(img, start)
    err = {name: np.abs(c["fit_sigma_a"].values[core] - SA).max()
           for name, c in (("alone", alone), ("joint", joint))}
    # Alone, the neighbours' tails widen the background and shrink sigma (measured 0.13 %).
    assert err["joint"] < err["alone"] / 10


def test_poisson_noise_errors_match_the_scatter(lattice):
    truth, start = lattice
    dose = 5.0
    clean = render(SHAPE, truth, AMP, SA, SB, ANGLE, BG) * dose
    core = inside(truth, SHAPE, 2 * SPACING)
    # peak SNR: the column's height over the noise at its peak
    assert AMP * dose / np.sqrt((AMP + BG) * dose) >= 20
    scatter = {k: [] for k in ("y", "x", "sigma_a", "angle")}
    reported = {k: [] for k in scatter}
    for seed in range(3):
        img = np.random.default_rng(seed).poisson(clean).astype(float)
        cols = _fit(img, start)
        truth_of = {"y": truth[:, 0], "x": truth[:, 1], "sigma_a": SA, "angle": ANGLE}
        for k in scatter:
            scatter[k].append((cols[f"fit_{k}"].values - truth_of[k])[core])
            reported[k].append(cols[f"fit_{k}_err"].values[core])
    for k in scatter:
        rmse = np.sqrt(np.mean(np.concatenate(scatter[k]) ** 2))
        err = np.sqrt(np.mean(np.concatenate(reported[k]) ** 2))
        # sandwich standard errors: measured ratios 1.02 (y) to 1.08 (sigma_a)
        assert 0.85 < rmse / err < 1.15, (k, rmse, err)
    pos = np.sqrt(np.mean(np.concatenate(scatter["y"] + scatter["x"]) ** 2))
    assert pos < 0.03  # measured 0.026 px


@pytest.mark.parametrize("threads", [1, 2])
def test_the_same_bits_whatever_the_tiling(lattice, threads):
    truth, start = lattice
    img = np.random.default_rng(1).poisson(render(SHAPE, truth, AMP, SA, SB, ANGLE, BG) * 5)
    before = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        # a small in-memory image is fitted whole in this process, in numba's threads
        whole = _fit(img.astype(float), start)
    finally:
        numba.set_num_threads(before)
    tiled = _fit(img.astype(float), start, chunks=64)
    one_tile = _fit(da.from_array(img.astype(float)), start)  # dask input: one dask task
    for name in whole.data_vars:
        np.testing.assert_array_equal(whole[name].values, tiled[name].values)
        np.testing.assert_array_equal(whole[name].values, one_tile[name].values)


def test_each_frame_of_a_stack_is_fitted_on_its_own_pixels(lattice):
    truth, start = lattice
    img = render(SHAPE, truth, AMP, SA, SB, ANGLE, BG)
    one = _fit(img, start)
    shifted = np.roll(img, (3, -2), axis=(0, 1))
    both = np.concatenate([start, start + np.array([3, -2])])
    atoms = atom_table(both, spacing_px=SPACING).assign(
        frame=("atom", np.repeat([0, 1], len(start)).astype(np.int32)))
    stack = dmotif.refine_columns(np.stack([img, shifted]), atoms, chunks=96)
    core = inside(truth, SHAPE, 2 * SPACING)
    n = len(start)
    np.testing.assert_allclose(stack["fit_y"].values[:n][core], one["fit_y"].values[core],
                               atol=1e-9)
    np.testing.assert_allclose(stack["fit_y"].values[n:][core], one["fit_y"].values[core] + 3,
                               atol=1e-6)
    np.testing.assert_allclose(stack["fit_sigma_a"].values[n:][core],
                               one["fit_sigma_a"].values[core], atol=1e-6)


def test_dark_columns_are_fitted_on_the_negated_image(lattice):
    truth, start = lattice
    img = render(SHAPE, truth, AMP, SA, SB, ANGLE, BG)
    core = inside(truth, SHAPE, 2 * SPACING)
    bright = _fit(img, start)
    dark = dmotif.refine_columns(1000 - img, atom_table(start, spacing_px=SPACING,
                                                        contrast="dark"))
    np.testing.assert_allclose(dark["fit_y"].values[core], bright["fit_y"].values[core],
                               atol=1e-6)
    np.testing.assert_allclose(dark["fit_amplitude"].values[core], AMP, rtol=1e-3)


def test_a_fit_that_runs_off_keeps_the_start():
    # An empty patch of background: no column to fit.
    img = np.random.default_rng(0).normal(10, 1, (64, 64))
    cols = dmotif.refine_columns(img, atom_table(np.array([[32.0, 32.0]])), spacing=14.0)
    assert np.isnan(cols["fit_amplitude"].values[0]) or cols["fit_amplitude"].values[0] < 5
    assert np.isfinite(cols["fit_y"].values[0])


def test_bad_input_is_refused():
    img = np.zeros((64, 64))
    with pytest.raises(DataError, match="lacks"):
        dmotif.refine_columns(img, atom_table(np.array([[3.0, 3.0]])).drop_vars("x"))
    with pytest.raises(ParameterError, match="window"):
        dmotif.refine_columns(img, atom_table(np.array([[3.0, 3.0]])), spacing=10, window=-1)
    with pytest.raises(DataError, match="NaN or inf"):
        dmotif.refine_columns(img, atom_table(np.array([[np.nan, 3.0]])), spacing=10)
    with pytest.raises(DataError, match="frames"):
        dmotif.refine_columns(img, atom_table(np.array([[3.0, 3.0]])).assign(
            frame=("atom", [2])), spacing=10)
