"""The hierarchy stage on real images: it never ends a run, and stores small root attributes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dmotif
from dmotif.hierarchy import build_hierarchy
from dmotif.pipeline.runner import _hierarchy_stage

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def perovskite(client, tmp_path_factory) -> dmotif.Result:
    out = tmp_path_factory.mktemp("perovskite") / "p.zarr"
    return dmotif.run(DATA / "real_perovskite_adf.npy", out, client=client)


def test_real_perovskite_runs_and_reports(perovskite: dmotif.Result, tmp_path: Path) -> None:
    res = perovskite
    status = res.attrs["hierarchy_attrs"]["status"]
    assert "cells" in status, status
    graph = res.hierarchy
    assert {1, 2} <= {d["level"] for _, d in graph.nodes(data=True)}
    ds = res.dataset
    n = ds.sizes["atom"]
    assert n == 221
    for name in ("label_L2", "label_L3"):
        assert ds[name].dtype == np.int32 and ds[name].shape == (n,)
    l2 = ds["label_L2"].values
    # the cell table gives each atom in a cell that cell's type
    members, ctype = ds["cell_members"].values, ds["cell_type"].values
    rows = np.broadcast_to(np.arange(len(ctype))[:, None], members.shape)[members >= 0]
    np.testing.assert_array_equal(l2[members[members >= 0]], ctype[rows])
    # the A and B columns alike are in cells, all but the border's (measured 192 of 221)
    assert (l2 >= 0).mean() > 0.85
    # the graph and its patches live in arrays, not in the root zarr.json
    assert (Path(res.path) / "zarr.json").stat().st_size < 50_000
    html = dmotif.report(res, tmp_path / "r.html").read_text()
    assert status in html


def test_no_cell_gives_level_one_and_the_reason(tmd_small) -> None:
    # twelve columns in a row: no lattice (one direction) and no ring (no bounded face)
    n = 12
    atoms = xr.Dataset({"frame": ("atom", np.zeros(n, np.int32)),
                        "y": ("atom", 50.0 + np.random.default_rng(0).normal(0, 0.3, n)),
                        "x": ("atom", 10.0 + 20.0 * np.arange(n))})
    labels = np.arange(n, dtype=np.int32) % 2
    data, attrs = _hierarchy_stage(build_hierarchy, None, atoms, labels, {})
    assert attrs["hierarchy_attrs"]["status"].startswith("level 1 only: no cell could be built")
    assert "no rings cell found" in attrs["hierarchy_attrs"]["status"]
    assert (data["label_L2"].values == -1).all() and (data["label_L3"].values == -1).all()
    from dmotif.hierarchy.serialisation import graph_from_dataset

    g = graph_from_dataset(data)
    assert sorted(d["count"] for _, d in g.nodes(data=True)) == [6, 6]
    assert "no rings cell found" in g.graph["no_cells"]
