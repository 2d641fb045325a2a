"""Result stores: atomic commit, no overwrite without asking, partial stores refused."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import xarray as xr

import dmotif
from dmotif import StoreError, StoreExistsError, StoreIncompleteError
from dmotif.io.store import StoreWriter


def _atoms(n: int = 50) -> xr.Dataset:
    rng = np.random.default_rng(0)
    return xr.Dataset({
        "frame": ("atom", np.zeros(n, np.int32)),
        "y": ("atom", rng.random(n) * 100),
        "x": ("atom", rng.random(n) * 100),
        "label": ("atom", rng.integers(-1, 3, n).astype(np.int32)),
    })


def test_write_and_open_result(tmp_path: Path) -> None:
    g = nx.DiGraph()
    g.add_node("L2:0", level=2, count=10)
    g.add_node("L1:0", level=1, count=40)
    g.add_edge("L2:0", "L1:0", multiplicity=4)
    config = {"seed": 3, "detect": {"min_distance": None}, "input": {"path": "x.npy"}}
    path = dmotif.write_result(_atoms(), tmp_path / "r.zarr", config=config, hierarchy=g)
    res = dmotif.open_result(path)
    xr.testing.assert_equal(res.atoms.compute(), _atoms())
    assert res.config == config
    assert res.attrs["dmotif_version"] == dmotif.__version__
    assert nx.utils.graphs_equal(res.hierarchy, g)
    assert res.hierarchy.edges["L2:0", "L1:0"]["multiplicity"] == 4
    # Nothing is left beside the store.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr"]


def test_no_overwrite_without_asking(tmp_path: Path) -> None:
    path = tmp_path / "r.zarr"
    dmotif.write_result(_atoms(10), path)
    with pytest.raises(StoreExistsError, match="overwrite"):
        dmotif.write_result(_atoms(20), path)
    assert dmotif.open_result(path).atoms.sizes["atom"] == 10
    dmotif.write_result(_atoms(20), path, overwrite=True)
    assert dmotif.open_result(path).atoms.sizes["atom"] == 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.zarr"]


def test_interrupted_write_leaves_only_a_partial_store(tmp_path: Path) -> None:
    path = tmp_path / "r.zarr"
    writer = StoreWriter(path)
    writer.write_stage("detect", _atoms()[["frame", "y", "x"]])
    # The process dies here: no commit.
    assert not path.exists()
    with pytest.raises(StoreIncompleteError, match="interrupted write"):
        dmotif.open_result(path)
    # A resumed writer sees the finished stage and can complete the store.
    again = StoreWriter(path, resume=True)
    assert again.stages == ["detect"]
    again.write_stage("cluster", _atoms()[["label"]])
    assert again.stages == ["detect", "cluster"]
    again.commit({"config": {"seed": 0}})
    res = dmotif.open_result(path)
    assert set(res.atoms.data_vars) == {"frame", "y", "x", "label"}


def test_fresh_writer_discards_an_old_partial(tmp_path: Path) -> None:
    path = tmp_path / "r.zarr"
    StoreWriter(path).write_stage("detect", _atoms())
    assert StoreWriter(path).stages == []


def test_store_without_completion_mark_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.zarr"
    dmotif.write_result(_atoms(), path)
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["dmotif_complete"] = False
    meta.write_text(json.dumps(doc))
    with pytest.raises(StoreIncompleteError, match="incomplete"):
        dmotif.open_result(path)


def test_missing_and_foreign_stores(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no result store"):
        dmotif.open_result(tmp_path / "none.zarr")
    xr.Dataset({"a": ("x", [1, 2])}).to_zarr(tmp_path / "f.zarr", zarr_format=3,
                                             consolidated=False)
    with pytest.raises(StoreIncompleteError):
        dmotif.open_result(tmp_path / "f.zarr")
