"""Sublattices: the lattice vectors of each level-1 motif's columns, per frame and region."""

from __future__ import annotations

import math
from typing import Any

import dask
import numpy as np
import xarray as xr

from ..errors import NoLatticeError, ParameterError
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


def frame_bases(group: np.ndarray, yx: np.ndarray, mask: np.ndarray,
                groups: np.ndarray) -> np.ndarray:
    """``(len(groups), 5)``: ``u``, ``v`` (dy, dx) and support of the ``mask`` columns of each
    group (a frame, or a region of a frame; one dask task per group; NaN where they form no
    lattice)."""
    tasks = [dask.delayed(_basis_or_nan)(yx[mask & (group == g)]) for g in groups]
    return np.array(dask.compute(*tasks)).reshape(len(groups), 5)


def _regions(regions: Any, yx: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
    """Each column's region (-1: none) and the ``region`` coords."""
    if isinstance(regions, int | float | np.number) and not isinstance(regions, bool):
        if not (math.isfinite(regions) and regions > 0):
            raise ParameterError(
                f"regions must be a window side in pixels (> 0) or one int per atom; got "
                f"{regions!r}."
            )
        window = np.floor(yx / regions).astype(np.int64)
        window -= window.min(axis=0) if len(window) else 0
        across = int(window[:, 1].max()) + 1 if len(window) else 1
        region = window[:, 0] * across + window[:, 1]
        ids = np.unique(region)
        first = np.floor(yx.min(axis=0) / regions) if len(yx) else np.zeros(2)
        origin = (np.column_stack([ids // across, ids % across]) + first) * regions
        return region, {"region": ids, "region_y0": ("region", origin[:, 0]),
                        "region_x0": ("region", origin[:, 1])}
    region = np.asarray(getattr(regions, "values", regions))
    if region.shape != (len(yx),) or not np.issubdtype(region.dtype, np.integer):
        raise ParameterError(
            f"regions must be a window side in pixels or {len(yx)} ints, one region per atom "
            f"(-1: none); got shape {region.shape}, dtype {region.dtype}."
        )
    region = region.astype(np.int64)
    return region, {"region": np.unique(region[region >= 0])}


def sublattices(source: Any, *, labels: Any = None, regions: Any = None) -> xr.Dataset:
    """One sublattice per level-1 motif: its columns' mean lattice vectors in every frame, or
    in every region of every frame.

    A motif's columns in a frame (or region) form a Bravais sublattice when the two shortest
    translations between them map most of them onto each other (see
    :func:`dmotif.hierarchy._lattice.lattice_basis`); each vector is the mean of all the
    neighbour vectors near it. Motifs that form no lattice there (defects, too few
    columns) get NaN.

    Parameters
    ----------
    source : dmotif.Result or xarray.Dataset
        A run's result, or an atom table with ``y``, ``x`` (and ``frame``, ``label``).
        Positions are those of the elliptical Gaussian fit where there is one.
    labels : array_like of int, optional
        The motif of each column; default the table's ``label``.
    regions : float or array_like of int, optional
        Vectors per region as well as per frame: a number is the side (pixels) of square
        windows (aligned on multiples of the side), for maps of how the lattice turns
        or stretches across a frame; one int per atom names regions the user drew (grains,
        a strained layer, a mask; -1 for none). Default: per frame only.

    Returns
    -------
    xarray.Dataset
        Over ``(motif, frame)``, or ``(motif, frame, region)`` with ``regions``: ``lattice``
        (``..., vector, axis``) in pixels (rows ``u``, ``v``; ``(dy, dx)``; ``u`` nearest the
        +x axis), ``support`` (the fraction of the columns the weaker vector maps onto a
        column) and ``count`` (columns); with a calibration ``lattice_nm`` too. Windows
        have the coords ``region_y0``, ``region_x0`` (their top-left corner, pixels).

    Raises
    ------
    ParameterError
        When ``regions`` is neither a positive number nor one int per atom.

    Notes
    -----
    A region needs :data:`MIN_COLUMNS` columns of a motif for its lattice; a window should
    hold several cells (five cells a side gives vectors to the positions' noise over 5).

    Examples
    --------
    >>> import numpy as np, xarray as xr, dmotif
    >>> y, x = np.mgrid[0:10, 0:10] * 12.0
    >>> atoms = xr.Dataset({"y": ("atom", y.ravel()), "x": ("atom", x.ravel()),
    ...                     "label": ("atom", np.zeros(100, int))})
    >>> dmotif.sublattices(atoms)["lattice"].sel(motif=0, frame=0).values.tolist()
    [[0.0, 12.0], [12.0, 0.0]]
    >>> dmotif.sublattices(atoms, regions=60.0)["lattice"].sizes["region"]
    4
    """
    cols = columns_of(source, labels)
    motifs = np.unique(cols.labels[cols.labels >= 0])
    frames = np.unique(cols.frame)
    coords: dict[str, Any] = {"motif": motifs, "frame": frames, "vector": ["u", "v"],
                              "axis": ["y", "x"]}
    if regions is None:
        group, keys, shape = cols.frame, frames, (len(frames),)
    else:
        region, region_coords = _regions(regions, cols.yx)
        coords.update(region_coords)
        ids = region_coords["region"]
        # one group per (frame, region): frame-major, region-minor
        pos = np.searchsorted(ids, region)
        group = np.where(region >= 0, np.searchsorted(frames, cols.frame) * len(ids) + pos, -1)
        keys, shape = np.arange(len(frames) * len(ids)), (len(frames), len(ids))
    found = np.stack([frame_bases(group, cols.yx, cols.labels == m, keys)
                      for m in motifs]) if len(motifs) else np.zeros((0, len(keys), 5))
    count = np.array([[np.sum((cols.labels == m) & (group == k)) for k in keys]
                      for m in motifs], dtype=np.int64).reshape(len(motifs), *shape)
    dims = ("motif", "frame") if regions is None else ("motif", "frame", "region")
    lattice = found[..., :4].reshape(len(motifs), *shape, 2, 2)
    out = xr.Dataset(
        {"lattice": ((*dims, "vector", "axis"), lattice, {"units": "px"}),
         "support": (dims, found[..., 4].reshape(len(motifs), *shape)),
         "count": (dims, count)},
        coords=coords,
    )
    if cols.nm_per_px is not None:
        out["lattice_nm"] = out["lattice"] * cols.nm_per_px
        out["lattice_nm"].attrs["units"] = "nm"
    return out
