"""The pipeline on an existing cluster: real ``dask scheduler``/``dask worker`` processes on
127.0.0.1 give the same result as the embedded LocalCluster, even when a worker dies."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import dmotif

from ..conftest import DaskProcesses


@pytest.fixture(scope="module")
def sample_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dist") / "tmd.zarr"
    dmotif.synthetic.save(dmotif.synthetic.tmd(size=640, frames=2, seed=4, chunks=320), path)
    return path


@pytest.fixture(scope="module")
def local_result(sample_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dmotif.Result:
    """The run on the embedded LocalCluster (two worker processes)."""
    return dmotif.run(sample_path, tmp_path_factory.mktemp("local") / "r.zarr", workers=2)


def _same(a: dmotif.Result, b: dmotif.Result) -> None:
    for name in ("y", "x", "zernike", "layout", "label"):
        np.testing.assert_array_equal(a.dataset[name].values, b.dataset[name].values)
    assert nx.utils.graphs_equal(a.hierarchy, b.hierarchy)
    assert dict(a.hierarchy.nodes(data="count")) == dict(b.hierarchy.nodes(data="count"))


@pytest.mark.slow
def test_existing_cluster_gives_the_local_result(
    dask_processes: DaskProcesses, sample_path: Path, local_result: dmotif.Result,
    tmp_path: Path,
) -> None:
    res = dmotif.run(sample_path, tmp_path / "d.zarr", scheduler=dask_processes.address)
    _same(res, local_result)


@pytest.mark.slow
def test_a_worker_killed_mid_run_changes_nothing(
    dask_processes: DaskProcesses, sample_path: Path, local_result: dmotif.Result,
    tmp_path: Path,
) -> None:
    killed = threading.Event()

    def kill_one_worker(stage: str, message: str) -> None:
        # Kill as the per-tile Zernike stage starts: its tasks must move to the survivor.
        if stage == "features" and message == "start" and not killed.is_set():
            dask_processes.workers[0].send_signal(signal.SIGKILL)
            killed.set()

    res = dmotif.run(sample_path, tmp_path / "k.zarr", scheduler=dask_processes.address,
                     progress=kill_one_worker)
    assert killed.is_set() and dask_processes.workers[0].wait(timeout=30) == -signal.SIGKILL
    _same(res, local_result)
