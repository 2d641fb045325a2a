"""Per-frame work of the hierarchy in dask tasks of consecutive frames.

A task per frame costs the scheduler about a millisecond and a transfer of its result; the
frames of a series of small images hold ~10³ atoms each, whose cells take about as long. So
consecutive frames are batched into tasks of up to :data:`BATCH_ATOMS` atoms (a frame larger
than that is a task alone) and each task runs the per-frame function frame after frame. The
per-frame results, and so every reduction over them in frame order, do not depend on the
batching.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dask
import numpy as np

__all__ = ["BATCH_ATOMS", "batch_tasks", "compute_batches", "frame_batches"]

#: Atoms of the frames one task handles: large enough that a series of 512² images (1.3·10³
#: atoms each) makes tasks of ~15 frames, small enough that 10⁵ atoms still make several
#: tasks for the workers to share.
BATCH_ATOMS = 20_000


def frame_batches(sizes: Sequence[int], target: int | None = None) -> list[slice]:
    """Consecutive runs of frames whose ``sizes`` (atoms) add up to at most ``target``
    (default :data:`BATCH_ATOMS`) each; a frame larger than ``target`` is a run alone."""
    target = BATCH_ATOMS if target is None else target
    out: list[slice] = []
    start, total = 0, 0
    for k, n in enumerate(sizes):
        if k > start and total + n > target:
            out.append(slice(start, k))
            start, total = k, 0
        total += int(n)
    if len(sizes):
        out.append(slice(start, len(sizes)))
    return out


def _each(func: Callable[..., Any], calls: list[tuple], *earlier: list) -> list:
    return [func(*call, *(e[k] for e in earlier)) for k, call in enumerate(calls)]


def batch_tasks(
    func: Callable[..., Any], calls: list[tuple], sizes: Sequence[int] | np.ndarray,
    *earlier: Sequence[Any],
) -> list[Any]:
    """``func(*calls[k], *earlier_k)`` for each frame ``k``, as one delayed task per batch of
    :func:`frame_batches` (``sizes``: the frames' atoms), each returning its frames' results
    in order.

    ``earlier`` are the outputs of earlier calls of this function on the same frames and sizes
    (delayed or persisted tasks): each frame's items are appended to its arguments, so results
    that stay on a cluster's workers (``dask.persist``) never pass through the client or the
    task graph.
    """
    return [dask.delayed(_each)(func, calls[s], *(e[b] for e in earlier))
            for b, s in enumerate(frame_batches(sizes))]


def compute_batches(tasks: Sequence[Any]) -> list[Any]:
    """The per-frame results of :func:`batch_tasks`, in frame order."""
    return [r for part in dask.compute(*tasks) for r in part]
