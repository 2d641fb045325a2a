"""Task progress of a run's distributed work, counted on a real scheduler."""

from __future__ import annotations

import time

import dask
import pytest

from dmotif.pipeline import _progress


def _slow(i: int) -> int:
    time.sleep(0.1)
    return i


def test_counts_the_blocks_tasks_only(client: object) -> None:
    # work before the block does not count
    dask.compute(*[dask.delayed(_slow)(i) for i in range(5)])
    seen: list[tuple[int, int]] = []
    with _progress.stage_tasks(client, lambda done, total: seen.append((done, total))):
        total = dask.compute(*[dask.delayed(_slow)(i, dask_key_name=f"slow-{i}")
                               for i in range(30)])
    assert total == tuple(range(30))
    # 30 tasks of 0.1 s on 2 workers take 1.5 s: the poll reports while they run
    assert len(seen) >= 2
    assert all(0 <= d <= t for d, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[0][0] < 30
    assert seen[-1] == (30, 30)


def test_nothing_reported_when_nothing_is_submitted(client: object) -> None:
    seen: list[tuple[int, int]] = []
    with _progress.stage_tasks(client, lambda done, total: seen.append((done, total))):
        time.sleep(2 * _progress.INTERVAL)
    assert seen == []


def test_the_error_of_a_failing_block_passes_through(client: object) -> None:
    with pytest.raises(ZeroDivisionError), _progress.stage_tasks(client, lambda d, t: None):
        dask.compute(dask.delayed(_slow)(1), dask.delayed(lambda: 1 / 0)())
