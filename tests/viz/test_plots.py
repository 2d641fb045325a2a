from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from matplotlib.collections import PathCollection

import dmotif
from dmotif.errors import DataError


def test_plot_layout_colours_each_motif():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(300, 2))
    labels = np.repeat([0, 1, 2, -1], 75)
    fig = dmotif.plot_layout(y, labels)
    ax = fig.axes[0]
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    sizes = sorted(len(c.get_offsets()) for c in scatters)
    assert sizes == [75, 75, 75, 75]
    colours = {tuple(np.round(c.get_facecolor()[0], 3)) for c in scatters}
    assert len(colours) == 4


def test_plot_layout_subsamples():
    y = np.random.default_rng(0).normal(size=(1000, 2))
    fig = dmotif.plot_layout(y, max_points=100)
    assert sum(len(c.get_offsets()) for c in fig.axes[0].collections) == 100


def test_plot_motifs_one_panel_per_motif():
    patches = np.stack([np.full((7, 7), m, dtype=float) for m in range(4)])
    summary = xr.Dataset(
        {
            "mean_patch": (("motif", "py", "px"), patches),
            "fraction": ("motif", [0.4, 0.3, 0.2, 0.1]),
        }
    )
    fig = dmotif.plot_motifs(summary, ncols=3)
    assert len(fig.axes) == 4
    assert fig.axes[3].get_title() == "motif 3 (10.0 %)"
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), patches[2])
    # one colour scale for all: motif 3 (constant 3) is drawn brighter than motif 1
    assert {ax.images[0].get_clim() for ax in fig.axes} == {(0.0, 3.0)}


def test_plot_motifs_needs_patches():
    with pytest.raises(DataError, match="mean_patch"):
        dmotif.plot_motifs(xr.Dataset({"count": ("motif", [1])}))
