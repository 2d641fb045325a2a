"""Atom counting: the Gaussian mixture over cross-sections recovers rendered counts."""

from __future__ import annotations

import numpy as np
import pytest

import dmotif
from dmotif.errors import DataError, ParameterError

from .render import atom_table, inside, render, square

SHAPE = (330, 330)


@pytest.fixture(scope="module")
def counted():
    """Columns of 1 to 4 atoms (amplitude 50 each, sigma 1.6) on a 16-px lattice, Poisson noise
    at 5 counts per unit and Gaussian read noise."""
    rng = np.random.default_rng(4)
    sites = square(20, 16.0, 13.0)
    counts = rng.integers(1, 5, len(sites))
    clean = render(SHAPE, sites, 50.0 * counts, 1.6, 1.6, 0.0, 10.0)
    img = rng.poisson(clean * 5) / 5 + rng.normal(0, 1, SHAPE)
    cols = dmotif.refine_columns(img, atom_table(sites, np.zeros(len(sites)), spacing_px=16.0))
    return cols, counts, inside(sites, SHAPE, 8)


def test_bic_finds_the_number_of_counts(counted):
    cols, counts, inner = counted
    stats = dmotif.intensity_statistics(cols.isel(atom=np.flatnonzero(inner)))
    assert int(stats["n_components"][0]) == 4
    # the cross-section grows by one atom's integral, 2π 50 1.6², per atom
    means = stats["component_mean"][0, :4].values
    np.testing.assert_allclose(np.diff(means), 2 * np.pi * 50 * 1.6**2, rtol=0.02)
    klass = stats["intensity_class"].values
    assert (klass == counts[inner] - 1).mean() == 1.0  # classes 800 apart, sd 32 to 45 (measured)
    assert np.isclose(stats["component_weight"][0, :4].sum(), 1.0)


def test_other_variables_and_bad_input(counted):
    cols = counted[0]
    stats = dmotif.intensity_statistics(cols, variable="fit_amplitude", max_components=3)
    assert stats.sizes["component"] == 3 and int(stats["n_components"][0]) <= 3
    with pytest.raises(DataError, match="no 'nope'"):
        dmotif.intensity_statistics(cols, variable="nope")
    with pytest.raises(ParameterError, match="max_components"):
        dmotif.intensity_statistics(cols, max_components=0)
