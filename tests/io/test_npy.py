"""``.npy`` inputs are read chunk by chunk where the tasks run, never sent inside the graph."""

from __future__ import annotations

import pickle
import tracemalloc
import warnings
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest

import dmotif


def _graph_bytes(arr: da.Array) -> int:
    return len(pickle.dumps(dict(arr.__dask_graph__())))


def test_a_memory_mapped_array_would_be_sent_in_the_graph(threads, tmp_path: Path) -> None:
    # The control: what dmotif used to do makes distributed warn of a large graph.
    np.save(tmp_path / "stack.npy", np.ones((3, 1024, 1024), np.float32))
    mapped = da.from_array(np.load(tmp_path / "stack.npy", mmap_mode="r"), chunks=(1, 512, 512))
    assert _graph_bytes(mapped) > 12 * 2**20
    with threads.as_current(), pytest.warns(UserWarning, match="large graph"):
        mapped.sum().compute()


def test_an_image_stack_npy_is_read_by_the_tasks(threads, tmp_path: Path) -> None:
    stack = np.random.default_rng(0).normal(size=(3, 1024, 1024)).astype(np.float32)
    np.save(tmp_path / "stack.npy", stack)
    img = dmotif.open_image(tmp_path / "stack.npy", chunks=512, check=False)
    assert img.data.chunksize == (1, 512, 512)
    assert _graph_bytes(img.data) < 64 * 2**10  # the file is 12 MiB
    with threads.as_current(), warnings.catch_warnings():
        warnings.simplefilter("error")  # a large-graph warning fails the test
        total = float(img.sum(dtype=np.float64).compute())
    assert total == pytest.approx(float(stack.sum(dtype=np.float64)), rel=1e-9)


@pytest.mark.parametrize("shape", [(16, 16, 96, 96), (2, 16, 16, 96, 96)])
def test_a_4dstem_npy_is_read_by_the_tasks(threads, tmp_path: Path, shape) -> None:
    data = np.random.default_rng(1).random(shape, dtype=np.float32)
    np.save(tmp_path / "scan.npy", data)
    lazy = dmotif.open_4dstem(tmp_path / "scan.npy", chunks=8, center=(47.5, 47.5))
    assert lazy.data.chunksize[-4:] == (8, 8, 96, 96)
    assert _graph_bytes(lazy.data) < 64 * 2**10  # the file is 9-18 MiB
    eager = dmotif.open_4dstem(data, chunks=8, center=(47.5, 47.5))
    with threads.as_current(), warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = dmotif.virtual_image(lazy, detector="adf").values
    np.testing.assert_array_equal(ours, dmotif.virtual_image(eager, detector="adf").values)


def _peak_of_adf(path: Path) -> int:
    """Peak of the memory Python allocates (tracemalloc) while the virtual ADF image of the
    4D-STEM file ``path`` is computed in scan tiles of 8 × 8 on 2 threads."""
    data = dmotif.open_4dstem(path, chunks=8, center=(39.5, 39.5))
    tracemalloc.start()
    try:
        with dask.config.set(scheduler="threads", num_workers=2):
            image = dmotif.virtual_image(data, detector="adf").values
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert np.isfinite(image).all()
    return peak


def _write_patterns(path: Path, scan_y: int) -> Path:
    """Random 80² patterns over a ``scan_y`` × 64 scan, written without holding them."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                    shape=(scan_y, 64, 80, 80))
    for i in range(scan_y):
        out[i] = np.random.default_rng(i).random((64, 80, 80), dtype=np.float32)
    out.flush()
    return path


def test_a_4dstem_file_is_reduced_in_bounded_memory(tmp_path: Path) -> None:
    # Reducing 50 and 100 MiB of patterns holds a few scan tiles (1.6 MiB each) at a time:
    # the peak does not grow with the file.
    _peak_of_adf(_write_patterns(tmp_path / "warm.npy", 8))  # imports and caches, once
    small = _peak_of_adf(_write_patterns(tmp_path / "small.npy", 32))
    large = _peak_of_adf(_write_patterns(tmp_path / "large.npy", 64))
    assert large < 1.2 * small  # measured 7.3 and 6.9 MiB
    assert large < 10 * 2**20
