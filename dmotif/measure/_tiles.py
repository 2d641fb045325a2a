"""Columns cut into square tiles of each frame with a halo: one dask task per tile.

A per-column kernel that reads only the columns within ``halo`` of each column gives the same
numbers tile by tile as on the whole frame: each tile passes the kernel its core's columns and
every support column within the halo of the core, so a task holds a tile's columns, not a
frame's, and a frame of millions of columns spreads over the cluster.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import dask
import numpy as np

from ..errors import ParameterError

__all__ = ["TILE_PX", "check_tile", "map_tiles"]

#: The default side of a tile, pixels.
TILE_PX = 1024


def check_tile(tile: Any) -> float:
    """``tile`` (pixels) as a float, or :data:`TILE_PX` for None."""
    if tile is None:
        return float(TILE_PX)
    if isinstance(tile, bool) or not (isinstance(tile, int | float | np.number)
                                      and math.isfinite(tile) and tile > 0):
        raise ParameterError(f"tile must be a positive number of pixels or None; got {tile!r}.")
    return float(tile)


def map_tiles(kernel: Callable[..., np.ndarray], frame: np.ndarray, yx: np.ndarray,
              core: np.ndarray, support: np.ndarray, per_frame: Mapping[int, tuple[float, tuple]],
              *, tile: float, out: np.ndarray) -> np.ndarray:
    """Fill ``out[core]`` with ``kernel(points, sites, *args)`` tile by tile.

    Parameters
    ----------
    kernel : callable
        ``kernel(points, sites, *args)`` -> one row per point; it may read only the sites
        within ``halo`` of a point.
    frame, yx : ndarray
        Each column's frame and ``(y, x)`` position.
    core, support : ndarray of bool
        The columns to compute and the columns the kernel reads (the sites).
    per_frame : mapping
        ``{frame: (halo, args)}``; frames not in it are skipped.
    tile : float
        The side of a tile, pixels (tiles start at the frame's first column).
    out : ndarray
        Filled in place at the core's rows, and returned.
    """
    tasks, where = [], []
    for f, (halo, args) in per_frame.items():
        mine = core & (frame == f)
        if not mine.any():
            continue
        here = frame == f
        first = yx[mine].min(axis=0)
        cell = np.floor((yx - first) / tile)
        sites = support & here
        for i, j in itertools.product(*(np.unique(cell[mine, a]) for a in (0, 1))):
            lo = first + np.array([i, j]) * tile
            hi = lo + tile
            in_core = mine & (cell[:, 0] == i) & (cell[:, 1] == j)
            if not in_core.any():
                continue
            near = sites & ((yx >= lo - halo) & (yx < hi + halo)).all(axis=1)
            tasks.append(dask.delayed(kernel, pure=True)(yx[in_core], yx[near], *args))
            where.append(np.flatnonzero(in_core))
    for idx, part in zip(where, dask.compute(*tasks), strict=True):
        out[idx] = part
    return out
