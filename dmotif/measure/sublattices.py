"""Sublattices: the lattice vectors of each level-1 motif's columns, frame by frame."""

from __future__ import annotations

from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import NoLatticeError
from ._geometry import mean_basis
from ._source import columns_of

__all__ = ["frame_bases", "sublattices"]

# A motif with fewer columns in a frame has no lattice there.
MIN_COLUMNS = 6


def _basis_or_nan(yx: np.ndarray) -> np.ndarray:
    if len(yx) < MIN_COLUMNS:
        return np.full(5, np.nan)
    try:
        u, v, support = mean_basis(yx)
    except NoLatticeError:
        return np.full(5, np.nan)
    return np.concatenate([u, v, [support]])


def frame_bases(frame: np.ndarray, yx: np.ndarray, mask: np.ndarray,
                frames: np.ndarray) -> np.ndarray:
    """``(len(frames), 5)``: ``u``, ``v`` (dy, dx) and support of the ``mask`` columns in each
    frame (one dask task per frame; NaN where they form no lattice)."""
    tasks = [dask.delayed(_basis_or_nan)(yx[mask & (frame == f)]) for f in frames]
    return np.array(dask.compute(*tasks)).reshape(len(frames), 5)


def sublattices(source: Any, *, labels: Any = None) -> xr.Dataset:
    """One sublattice per level-1 motif: its columns' mean lattice vectors in every frame.

    A motif's columns in a frame form a Bravais sublattice when the two shortest translations
    between them map most of them onto each other (see
    :func:`dmotif.hierarchy._lattice.lattice_basis`); each vector is the mean of all the
    neighbour vectors near it. Motifs that form no lattice in a frame (defects, too few
    columns) get NaN there.

    Parameters
    ----------
    source : dmotif.Result or xarray.Dataset
        A run's result, or an atom table with ``y``, ``x`` (and ``frame``, ``label``).
        Positions are those of the elliptical Gaussian fit where there is one.
    labels : array_like of int, optional
        The motif of each column; default the table's ``label``.

    Returns
    -------
    xarray.Dataset
        Over ``(motif, frame)``: ``lattice`` ``(motif, frame, vector, axis)`` in pixels (rows
        ``u``, ``v``; ``(dy, dx)``; ``u`` nearest the +x axis), ``support`` (the fraction of
        the columns the weaker vector maps onto a column) and ``count`` (columns); with a
        calibration ``lattice_nm`` too.

    Examples
    --------
    >>> import numpy as np, xarray as xr, dmotif
    >>> y, x = np.mgrid[0:10, 0:10] * 12.0
    >>> atoms = xr.Dataset({"y": ("atom", y.ravel()), "x": ("atom", x.ravel()),
    ...                     "label": ("atom", np.zeros(100, int))})
    >>> dmotif.sublattices(atoms)["lattice"].sel(motif=0, frame=0).values.tolist()
    [[0.0, 12.0], [12.0, 0.0]]
    """
    cols = columns_of(source, labels)
    motifs = np.unique(cols.labels[cols.labels >= 0])
    frames = np.unique(cols.frame)
    found = np.stack([frame_bases(cols.frame, cols.yx, cols.labels == m, frames)
                      for m in motifs]) if len(motifs) else np.zeros((0, len(frames), 5))
    count = np.array([[np.sum((cols.labels == m) & (cols.frame == f)) for f in frames]
                      for m in motifs], dtype=np.int64).reshape(len(motifs), len(frames))
    coords = {"motif": motifs, "frame": frames, "vector": ["u", "v"], "axis": ["y", "x"]}
    lattice = found[..., :4].reshape(len(motifs), len(frames), 2, 2)
    out = xr.Dataset(
        {"lattice": (("motif", "frame", "vector", "axis"), lattice, {"units": "px"}),
         "support": (("motif", "frame"), found[..., 4]),
         "count": (("motif", "frame"), count)},
        coords=coords,
    )
    if cols.nm_per_px is not None:
        out["lattice_nm"] = out["lattice"] * cols.nm_per_px
        out["lattice_nm"].attrs["units"] = "nm"
    return out
