"""Readable cell titles, per-atom level labels and the graph stored as arrays."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import networkx as nx
import numpy as np
import xarray as xr

import dmotif
from dmotif.hierarchy._names import letter_names, type_titles
from dmotif.hierarchy.graph import atom_levels, level1_hierarchy
from dmotif.hierarchy.serialisation import graph_dataset, graph_from_dataset


def _title_counts(atoms: xr.Dataset) -> Counter:
    cells = dmotif.motif_cells(atoms, atoms["label"])
    titles = np.array(cells.attrs["type_titles"])[cells["type"].values]
    return Counter(titles.tolist())


def _type_counts(atoms: xr.Dataset) -> Counter:
    cells = dmotif.motif_cells(atoms, atoms["label"])
    names = np.array(cells.attrs["type_names"])[cells["type"].values]
    return Counter(names.tolist())


def test_titles_of_a_tmd_survive_a_quarter_turn_and_a_mirror(tmd_small) -> None:
    atoms = tmd_small.atoms
    side = tmd_small.image.sizes["x"] - 1
    turned = atoms.assign(y=atoms["x"], x=side - atoms["y"])
    mirrored = turned.assign(x=side - turned["x"])
    ref = _title_counts(atoms)
    # measured on this seed: 317 perfect cells, 11 single chalcogens, 3 antisites, 2 vacancies
    assert ref == {"metal + chalcogen_pair": 317,
                   "one chalcogen_pair → single_chalcogen": 11,
                   "one chalcogen_pair → antisite": 3, "metal vacancy": 2}
    assert _title_counts(turned) == ref
    assert _title_counts(mirrored) == ref
    # the types themselves (slot labels in canonical order), not only their titles
    types = _type_counts(atoms)
    assert sorted(types.values(), reverse=True) == [317, 11, 3, 2]
    assert _type_counts(turned) == types
    assert _type_counts(mirrored) == types


def test_titles_depend_on_composition_not_on_slot_order() -> None:
    names = {0: "Mo", 1: "S2", 2: "S1"}
    # a hexagonal cell's three chalcogens in both angular senses (mirror images)
    titles = type_titles([(0, 1, 1, 1), (0, 1, 2, 1), (0, 1, 1, 2), (-1, 1, 1, 1),
                          (0, 1, 1, -1), (0, 2, 2, 1)], "lattice", names)
    assert titles == ["Mo + 3 S2", "one S2 → S1", "one S2 → S1", "Mo vacancy",
                      "S2 vacancy", "2 S2 → S1"]
    # the lattice point apart: a metal on the chalcogen site beside an empty lattice point
    # is not a missing chalcogen (both have the composition "Mo")
    assert type_titles([(0, 1), (-1, 0), (0, -1), (1, -1)], "lattice", names) == [
        "Mo + S2", "Mo vacancy, one S2 → Mo", "S2 vacancy", "one Mo → S2, S2 vacancy"]
    rings = type_titles([(6, 0, 1, 0, 1, 0, 1), (5, 0, 1, 0, 1, 0)], "rings", names)
    assert rings == ["6-ring: 3 Mo + 3 S2", "5-ring: S2 vacancy"]


def test_letters_rank_motifs_by_brightness() -> None:
    lab = np.array([0, 0, 1, 1, 2, -1])
    assert letter_names(lab, np.array([1.0, 1.0, 9.0, 9.0, 4.0, 99.0])) == {
        1: "A", 2: "B", 0: "C"}
    assert letter_names(np.arange(28), None)[27] == "AB"


def test_level_labels_follow_the_cells(tmd_small) -> None:
    atoms = tmd_small.atoms
    cells = dmotif.motif_cells(atoms, atoms["label"])
    g = dmotif.build_hierarchy(atoms, atoms["label"], cells=cells)
    levels = atom_levels(cells, g, atoms.sizes["atom"])
    l2, l3 = levels["label_L2"].values, levels["label_L3"].values
    assert l2.dtype == l3.dtype == np.int32
    members = cells["members"].values
    # every atom in a cell carries that cell's type, every other atom -1
    inside = np.zeros(len(l2), bool)
    inside[members[members >= 0]] = True
    assert (l2[~inside] == -1).all() and (l2[inside] >= 0).all()
    for c in (0, 5, len(members) - 1):
        m = members[c][members[c] >= 0]
        assert (l2[m] == cells["type"].values[c]).all()
    # the level-3 pattern's atoms are those of its occurrences' cells, all in defect cells
    l3_nodes = levels["label_L3"].attrs["nodes"]
    occ = [c for n in l3_nodes for o in g.nodes[n]["occurrences"] for c in o]
    assert sorted(np.flatnonzero(l3 >= 0).tolist()) == sorted(
        members[occ][members[occ] >= 0].tolist())
    assert (cells["type"].values[occ] != 0).all()


def test_graph_round_trips_through_arrays(tmd_small, tmp_path: Path) -> None:
    g = dmotif.build_hierarchy(tmd_small.atoms, tmd_small.atoms["label"],
                               image=tmd_small.image)
    assert any("mean_patch" in d for _, d in g.nodes(data=True))
    path = dmotif.write_result(tmd_small.atoms[["y", "x"]], tmp_path / "r.zarr", hierarchy=g)
    back = dmotif.open_result(path).hierarchy
    # node-link JSON is the reference: what the graph was when stored as attributes
    ref = nx.node_link_graph(
        dmotif.hierarchy.serialisation._node_link(g), directed=True, edges="edges")
    assert nx.utils.graphs_equal(back, ref)
    for n, d in g.nodes(data=True):
        if "mean_patch" in d:
            np.testing.assert_array_equal(np.asarray(back.nodes[n]["mean_patch"], np.float32),
                                          d["mean_patch"])
    # nothing of the graph is left in the root attributes
    assert (Path(path) / "zarr.json").stat().st_size < 10_000
    assert graph_from_dataset(xr.Dataset()) is None
    assert graph_dataset(nx.DiGraph())["hierarchy_patch"].shape == (0, 0, 0)


def test_level1_hierarchy_says_why(tmd_small) -> None:
    g = level1_hierarchy(tmd_small.atoms, tmd_small.atoms["label"], reason="no lattice")
    assert g.graph["no_cells"] == "no lattice"
    assert {d["level"] for _, d in g.nodes(data=True)} == {1}
    assert sum(d["count"] for _, d in g.nodes(data=True)) == int(
        (tmd_small.atoms["label"].values >= 0).sum())


def test_types_of_an_abtem_mose2_survive_a_quarter_turn_and_a_mirror() -> None:
    # the corpus image's true columns (drift-sheared, with single Se, antisites, W, a Mo
    # vacancy): a simulation's geometry, not the generator's
    data = np.load(Path(__file__).parents[1] / "data" / "abtem_mose2_adf.npz")
    _, lab = np.unique(data["column_type"], return_inverse=True)
    y, x = data["column_y"], data["column_x"]
    side = max(data["image"].shape) - 1
    views = [(y, x), (x, side - y), (x, y)]  # as is, a quarter turn, a mirror of the turn
    counts = [_type_counts(xr.Dataset({"y": ("atom", a), "x": ("atom", b),
                                       "label": ("atom", lab.astype(np.int32))}))
              for a, b in views]
    assert sum(counts[0].values()) == 59
    assert counts[1] == counts[0] and counts[2] == counts[0]
