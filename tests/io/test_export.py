"""Export of a real result store: every format read back by its own library equals the store."""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import dmotif
from dmotif import MissingDependencyError, ParameterError, StoreExistsError
from dmotif.cli import app
from dmotif.errors import require
from dmotif.io.export import FORMATS, atom_table, frame_sources, graphml_ready, to_ase


@pytest.fixture(scope="module")
def result(client: object, tmp_path_factory: pytest.TempPathFactory) -> dmotif.Result:
    """A finished run over a 2-frame calibrated TMD stack (file on disk, so its path is kept)."""
    folder = tmp_path_factory.mktemp("export")
    src = folder / "tmd.zarr"
    dmotif.synthetic.save(dmotif.synthetic.tmd(size=256, frames=2, seed=0), src)
    return dmotif.run(src, folder / "tmd.dmotif.zarr", client=client)


@pytest.fixture(scope="module")
def store(result: dmotif.Result):
    """The store's per-atom values, computed once."""
    return result.atoms.compute()


def test_csv_round_trip_equals_store(result, store, tmp_path: Path) -> None:
    path = dmotif.export(result, tmp_path / "atoms.csv")
    table = pd.read_csv(path)
    n = store.sizes["atom"]
    assert list(table["atom"]) == list(range(n))
    np.testing.assert_array_equal(table["frame"], store["frame"])
    # CSV writes floats as their shortest exact repr, so positions come back bit for bit
    for column, name in [("y_px", "y"), ("x_px", "x"), ("y_nm", "y_nm"), ("x_nm", "x_nm")]:
        np.testing.assert_array_equal(table[column].to_numpy(), store[name].values)
    np.testing.assert_array_equal(table["label"], store["label"])
    np.testing.assert_array_equal(table["intensity"].astype(np.float32), store["intensity"])
    assert set(table["source"]) == {result.config["input"]["path"]}
    names = {int(k): v for k, v in dmotif.active_labels(result).attrs["motif_names"].items()}
    assert all(names.get(lab, "unassigned") == m for lab, m in zip(table["label"], table["motif"],
                                                                    strict=True))


def test_parquet_round_trip_keeps_values_and_dtypes(result, store, tmp_path: Path) -> None:
    table = pd.read_parquet(dmotif.export(result, tmp_path / "atoms.parquet"))
    for column, name in [("frame", "frame"), ("y_px", "y"), ("x_px", "x"), ("y_nm", "y_nm"),
                         ("x_nm", "x_nm"), ("label", "label"), ("intensity", "intensity")]:
        got = table[column].to_numpy()
        np.testing.assert_array_equal(got, store[name].values)
    assert table["label"].dtype == store["label"].dtype
    assert table["intensity"].dtype == store["intensity"].dtype


def test_level_labels_are_columns_when_the_store_has_them(result, tmp_path: Path) -> None:
    ds = result.dataset.compute()
    rng = np.random.default_rng(0)
    levels = rng.integers(-1, 3, ds.sizes["atom"]).astype(np.int32)
    ds["label_L2"] = ("atom", levels)
    path = dmotif.write_result(ds, tmp_path / "levels.zarr", config=result.config,
                               hierarchy=result.hierarchy)
    table = pd.read_csv(dmotif.export(path, tmp_path / "atoms.csv"))
    np.testing.assert_array_equal(table["label_L2"], levels)
    # A run's result holds level 3 too; it is exported as stored.
    np.testing.assert_array_equal(table["label_L3"], ds["label_L3"].values)


def test_ase_gives_one_atoms_per_frame_in_angstrom_with_motif_tags(result, store,
                                                                   tmp_path: Path) -> None:
    path = dmotif.export(result, tmp_path / "atoms.extxyz", format="ase")
    frames = ase.io.read(path, index=":")
    assert len(frames) == 2
    for f, atoms in enumerate(frames):
        mine = store["frame"].values == f
        assert atoms.info["frame"] == f and atoms.info["units"] == "Å"
        assert atoms.info["source"] == result.config["input"]["path"]
        # extended XYZ writes 8 decimals: equal to half a unit of the last one (5e-9 Å)
        np.testing.assert_allclose(atoms.positions[:, 0], store["x_nm"].values[mine] * 10,
                                   rtol=0, atol=5e-9)
        np.testing.assert_allclose(atoms.positions[:, 1], store["y_nm"].values[mine] * 10,
                                   rtol=0, atol=5e-9)
        np.testing.assert_array_equal(atoms.positions[:, 2], 0.0)
        np.testing.assert_array_equal(atoms.get_tags(), store["label"].values[mine])
        np.testing.assert_array_equal(atoms.arrays["atom"], np.flatnonzero(mine))
        assert set(atoms.get_chemical_symbols()) == {"X"}


def test_ase_without_calibration_is_in_pixels_and_says_so(result, store, tmp_path: Path) -> None:
    ds = result.dataset.compute().drop_vars(["y_nm", "x_nm"])
    path = dmotif.write_result(ds, tmp_path / "px.zarr", config=result.config)
    atoms = to_ase(path)[0]
    mine = store["frame"].values == 0
    assert atoms.info["units"] == "px"
    np.testing.assert_array_equal(atoms.positions[:, :2],
                                  np.c_[store["x"].values[mine], store["y"].values[mine]])
    table = atom_table(path)
    assert "y_nm" not in table and "y_px" in table


def test_graphml_round_trip_scalars_equal_lists_as_json(result, tmp_path: Path) -> None:
    graph = result.hierarchy
    back = nx.read_graphml(dmotif.export(result, tmp_path / "hierarchy.graphml"))
    assert isinstance(back, nx.DiGraph)
    assert set(back.nodes) == set(graph.nodes) and set(back.edges) == set(graph.edges)
    json_keys = set()
    for node, attrs in graph.nodes(data=True):
        for key, value in attrs.items():
            got = back.nodes[node][key]
            if isinstance(value, list | dict):
                json_keys.add(key)
                assert json.loads(got) == value
            else:
                assert got == value
    for u, v, attrs in graph.edges(data=True):
        assert back.edges[u, v] == attrs
    assert json_keys and all(k in back.graph["dmotif_note"] for k in json_keys)


def test_graphml_ready_drops_none_and_says_so() -> None:
    graph = nx.DiGraph(note=None)
    graph.add_node("a", level=np.int64(1), patch=np.eye(2), missing=None)
    ready = graphml_ready(graph)
    assert ready.nodes["a"] == {"level": 1, "patch": "[[1.0, 0.0], [0.0, 1.0]]"}
    assert "dropped (no value): missing, note" in ready.graph["dmotif_note"]
    assert graph.nodes["a"]["missing"] is None  # the input graph is left as it was


def test_json_is_networkx_node_link(result, tmp_path: Path) -> None:
    path = dmotif.export(result, tmp_path / "hierarchy.json")
    back = nx.node_link_graph(json.loads(Path(path).read_text()), edges="edges")
    graph = result.hierarchy
    assert back.is_directed()
    assert dict(back.nodes(data=True)) == dict(graph.nodes(data=True))
    assert list(back.edges(data=True)) == list(graph.edges(data=True))


def test_export_refuses_an_existing_file_and_replaces_it_when_asked(result,
                                                                    tmp_path: Path) -> None:
    path = tmp_path / "atoms.csv"
    path.write_text("mine\n")
    with pytest.raises(StoreExistsError, match="overwrite"):
        dmotif.export(result, path)
    assert path.read_text() == "mine\n"
    dmotif.export(result, path, overwrite=True)
    assert pd.read_csv(path).shape[0] == result.dataset.sizes["atom"]
    assert [p.name for p in tmp_path.iterdir()] == ["atoms.csv"]  # no temporary file left


def test_format_from_suffix_or_refused(result, tmp_path: Path) -> None:
    assert set(FORMATS) == {"csv", "parquet", "ase", "graphml", "json"}
    with pytest.raises(ParameterError, match="suffix"):
        dmotif.export(result, tmp_path / "atoms.txt")
    with pytest.raises(ParameterError, match="xlsx"):
        dmotif.export(result, tmp_path / "atoms.csv", format="xlsx")
    assert not list(tmp_path.iterdir())


def test_missing_package_names_the_extra() -> None:
    with pytest.raises(MissingDependencyError, match=r"pip install 'dmotif\[export\]'"):
        require("dmotif_no_such_package", extra="export", feature="ASE export")


def test_frame_sources_of_a_run_over_several_files(result) -> None:
    config = {"input": [{"path": "a.dm4", "frames": [0]}, {"path": "b.dm4", "frames": [1, 2]}]}
    several = dmotif.Result(result.path, result.dataset, config, result.attrs)
    assert frame_sources(several, 3) == ["a.dm4", "b.dm4", "b.dm4"]
    one_each = dmotif.Result(result.path, result.dataset,
                             {"input": [{"path": "a.tif"}, {"path": "b.tif"}]}, result.attrs)
    assert frame_sources(one_each, 2) == ["a.tif", "b.tif"]
    assert frame_sources(dmotif.Result(result.path, result.dataset, {}, {}), 2) is None


def test_cli_export_writes_and_refuses_to_overwrite(result, tmp_path: Path) -> None:
    out = tmp_path / "atoms.parquet"
    runner = CliRunner()
    done = runner.invoke(app, ["export", result.path, "-o", str(out)])
    assert done.exit_code == 0, done.output
    assert len(pd.read_parquet(out)) == result.dataset.sizes["atom"]
    again = runner.invoke(app, ["export", result.path, "--format", "parquet", "-o", str(out)])
    assert again.exit_code == 2 and "exists" in again.output
    forced = runner.invoke(app, ["export", result.path, "--format", "graphml", "-o",
                                 str(tmp_path / "h.xml"), "--overwrite"])
    assert forced.exit_code == 0, forced.output
    assert nx.read_graphml(tmp_path / "h.xml").number_of_nodes() == \
        result.hierarchy.number_of_nodes()


def test_to_hyperspy_reopens_the_recorded_input_file(result, store) -> None:
    # Lives here because this module's run read a file: no image= needed to mark it.
    signal = dmotif.to_hyperspy(result, frame=1)
    image = dmotif.open_image(result.config["input"]["path"])
    np.testing.assert_array_equal(signal.data, image.isel(frame=1).values)
    assert signal.axes_manager.signal_axes[0].units == "nm"
    counts = sum(len(m.kwargs["offsets"]) for _, m in signal.metadata.Markers)
    assert counts == int((store["frame"].values == 1).sum())
    only = dmotif.to_hyperspy(result, frame=1, motifs=[0])
    assert [m.name for _, m in only.metadata.Markers] == [
        dmotif.active_labels(result).attrs["motif_names"][0]]
