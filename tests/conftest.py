"""Shared fixtures: small synthetic samples and feature sets (made once per session, they are
pure functions), a LocalCluster client, and real dask processes."""

from __future__ import annotations

import os

# Tests of thread-count invariance compare numba's results on 1 and 2 threads, so its pool must
# hold at least 2 whatever the machine (numba reads this once, when it is first imported: here,
# before anything imports it). A machine with more cores keeps its default.
if int(os.environ.get("NUMBA_NUM_THREADS") or os.cpu_count() or 1) < 2:
    os.environ["NUMBA_NUM_THREADS"] = "2"

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dmotif import synthetic


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    """A LocalCluster of 2 worker processes (1 thread each) and its client, per test module."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                     dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture(scope="module")
def threads() -> Iterator[object]:
    """A LocalCluster of one worker with 2 threads in this process, and its client, per test
    module: a real cluster where worker processes are not what a test is about."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                     dashboard_address="127.0.0.1:0") as cluster,
        Client(cluster, set_as_default=False) as c,
    ):
        yield c


@pytest.fixture(scope="session")
def tmd_small() -> synthetic.Synthetic:
    """A 384² TMD frame with defects and default noise."""
    return synthetic.tmd(size=384, seed=11)


@pytest.fixture(scope="session")
def tmd_clean() -> synthetic.Synthetic:
    """A noise-free 256² TMD frame."""
    return synthetic.tmd(size=256, seed=11, dose=None, read_noise=0.0)


@dataclass
class DaskProcesses:
    """A real ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1."""

    address: str
    scheduler: subprocess.Popen
    workers: list[subprocess.Popen]


def _wait_for(path: Path, timeout: float) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            try:
                return json.loads(path.read_text())
            except json.JSONDecodeError:
                pass  # the scheduler is still writing its file
        time.sleep(0.1)
    raise TimeoutError(f"no dask scheduler file at {path} after {timeout} s")


@pytest.fixture
def dask_processes(tmp_path: Path) -> Iterator[DaskProcesses]:
    """Start one scheduler and two single-threaded workers as separate processes, as on
    separate nodes; stop them all afterwards."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "NUMBA_NUM_THREADS": "1"}
    sched_file = tmp_path / "scheduler.json"
    dask_cli = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler = subprocess.Popen(
        [*dask_cli, "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
         "127.0.0.1:0", "--scheduler-file", str(sched_file)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    procs = [scheduler]
    try:
        address = _wait_for(sched_file, 60)["address"]
        workers = [
            subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                 "--nworkers", "1", "--host", "127.0.0.1", "--no-dashboard",
                 "--name", f"w{i}", "--local-directory", str(tmp_path / f"w{i}")],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            for i in range(2)
        ]
        procs += workers
        from distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)
        yield DaskProcesses(address, scheduler, workers)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def unequal_blobs(
    sizes: tuple[int, ...] = (1500, 900, 400, 150, 50),
    *,
    dim: int = 16,
    spread: float = 2.2,
    seed: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs of unequal sizes (the last ~2 %) and their true labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, (len(sizes), dim))
    x = np.vstack([rng.normal(c, 1.0, (s, dim)) for c, s in zip(centres, sizes, strict=True)])
    return x, np.repeat(np.arange(len(sizes)), sizes)


@pytest.fixture(scope="session")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return unequal_blobs()


@pytest.fixture(scope="session")
def bad(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of bad inputs (tests/test_bad_inputs.py names them), beside one good small
    stack ``t.zarr`` and its copy ``bad.zarr`` with a corrupt chunk."""
    d = tmp_path_factory.mktemp("bad")
    synthetic.save(synthetic.tmd(size=128, seed=1, chunks=64), d / "t.zarr")
    shutil.copytree(d / "t.zarr", d / "bad.zarr")
    (d / "bad.zarr" / "image" / "c" / "0" / "0" / "0").write_bytes(b"not a zstd frame")
    (d / "empty.npy").write_bytes(b"")
    np.save(d / "full.npy", np.random.default_rng(0).random((64, 64)))
    whole = (d / "full.npy").read_bytes()
    (d / "trunc.npy").write_bytes(whole[: len(whole) // 2])
    np.save(d / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "dir.npy").mkdir()
    (d / "plain.txt").write_text("a user's notes\n")
    (d / "ro").mkdir()
    configs = {
        "epochs_lots": '[layout]\nepochs = "lots"\n', "epochs_12": '[layout]\nepochs = "12"\n',
        "radius_big": '[features]\nradius = "big"\n', "radius_neg": "[features]\nradius = -3\n",
        "stages_x": '[layout]\nstages = "x"\n', "seed_abc": 'seed = "abc"\n',
        "chunks_8": "chunks = 8\n", "chunks_1": "chunks = [1, 1]\n",
        "min_size": "[cluster]\nmin_size = -1\n", "unknown": "[layout]\nepoch = 3\n",
    }
    for name, text in configs.items():
        (d / f"{name}.toml").write_text(text)
    (d / "latin1.toml").write_bytes('[detect]\nrefine = "com"  # réglé\n'.encode("latin-1"))
    return d
