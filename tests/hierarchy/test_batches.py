"""Per-frame work in tasks of consecutive frames: the batches, and results that do not depend
on them or on the cluster, with nothing per atom sent inside a task graph."""

from __future__ import annotations

import warnings

import dask
import networkx as nx
import pytest
import xarray as xr

import dmotif
from dmotif import synthetic
from dmotif.hierarchy import _batches


@pytest.mark.parametrize(
    ("sizes", "target", "expected"),
    [
        ([5, 5, 5, 5], 10, [(0, 2), (2, 4)]),
        ([5, 5, 5], 12, [(0, 2), (2, 3)]),
        ([30, 1, 1, 30, 1], 10, [(0, 1), (1, 3), (3, 4), (4, 5)]),
        ([3], 1, [(0, 1)]),
        ([], 10, []),
    ],
)
def test_frame_batches_are_consecutive_runs_of_at_most_target_atoms(sizes, target, expected):
    batches = _batches.frame_batches(sizes, target)
    assert [(b.start, b.stop) for b in batches] == expected


@pytest.fixture(scope="module")
def stack() -> synthetic.Synthetic:
    """Six 384² TMD frames (~4·10³ atoms) with vacancies."""
    return synthetic.tmd(size=384, frames=6, seed=3, metal_vacancy=0.02)


def _graph_data(g: nx.DiGraph) -> dict:
    data = nx.node_link_data(g, edges="edges")
    for node in data["nodes"]:
        patch = node.pop("mean_patch", None)
        node["patch"] = None if patch is None else patch.tobytes()
    return data


def test_cells_and_graph_do_not_depend_on_the_batching(stack, monkeypatch):
    atoms, labels = stack.atoms, stack.atoms["label"]
    with dask.config.set(scheduler="threads"):
        cells = dmotif.motif_cells(atoms, labels)
        graph = dmotif.build_hierarchy(atoms, labels, image=stack.image, cells=cells)
        # one task per frame, as before batching
        monkeypatch.setattr(_batches, "BATCH_ATOMS", 1)
        alone = dmotif.motif_cells(atoms, labels)
        graph_alone = dmotif.build_hierarchy(atoms, labels, image=stack.image, cells=alone)
    xr.testing.assert_identical(cells, alone)
    assert _graph_data(graph) == _graph_data(graph_alone)
    assert cells.sizes["cell"] > 1000


def test_no_per_atom_data_in_the_cells_task_graphs(stack, threads):
    """At 10⁶ atoms the unwrapped sites (24 bytes an atom) made a 24 MiB graph: here 4·10³
    atoms would send ~100 kB through the graph; the limit is far below that."""
    atoms, labels = stack.atoms, stack.atoms["label"]
    assert 24 * atoms.sizes["atom"] > 64_000
    with dask.config.set(scheduler="threads"):
        local = dmotif.motif_cells(atoms, labels)
    with (threads.as_current(), warnings.catch_warnings(),
          dask.config.set({"distributed.admin.large-graph-warning-threshold": "16kB"})):
        warnings.simplefilter("error")
        remote = dmotif.motif_cells(atoms, labels)
    xr.testing.assert_identical(local, remote)
