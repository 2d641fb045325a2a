"""Displacements: each column of a motif against the centre of its cell of another sublattice
(the polarisation of a ferroelectric perovskite: the B column in its A cell)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ._geometry import cell_centres, reach
from ._source import columns_of, motif_mask
from ._tiles import check_tile, map_tiles
from .sublattices import frame_bases

__all__ = ["displacements"]


def displacements(source: Any, *, motif: int, reference: int, labels: Any = None,
                  tile: float | None = None) -> xr.Dataset:
    """Each column of ``motif`` against the centre of the ``reference`` cell that holds it.

    In each frame the reference motif's lattice vectors ``u``, ``v`` (see
    :func:`dmotif.sublattices`) place the four reference columns about each column of
    ``motif``; their mean is the cell's centre, and the displacement is the column's position
    minus it. The cell is made of the actual reference columns, so a uniformly strained or
    rotated region shows no displacement.

    Parameters
    ----------
    source : dmotif.Result or xarray.Dataset
        A run's result, or an atom table with ``y``, ``x`` (and ``frame``, ``label``).
        Positions are the elliptical Gaussian fit's where there is one (see
        :func:`dmotif.refine_columns`).
    motif : int
        The label of the displaced columns (e.g. the B columns).
    reference : int
        The label of the columns whose cells hold them (e.g. the A columns).
    labels : array_like of int, optional
        The motif of each column; default the table's ``label``.
    tile : float, optional
        Side of the square tiles, pixels, each a dask task with the reference columns about
        it (default 1024); the numbers do not depend on it.

    Returns
    -------
    xarray.Dataset
        Over ``atom`` (every column of ``source``; NaN but for the columns of ``motif`` whose
        four cell corners were found): ``disp_y``, ``disp_x`` (pixels), ``disp`` (length) and
        ``disp_angle`` (radians, from +x towards +y); with a calibration ``disp_y_nm``,
        ``disp_x_nm`` and ``disp_nm``. Attrs ``motif``, ``reference``.

    Raises
    ------
    ParameterError
        When ``motif`` or ``reference`` is no label of the columns.

    Examples
    --------
    >>> import numpy as np, xarray as xr, dmotif
    >>> a = np.mgrid[0:6, 0:6].reshape(2, -1).T * 10.0
    >>> yx = np.concatenate([a, a + (5.2, 4.9)])
    >>> atoms = xr.Dataset({"y": ("atom", yx[:, 0]), "x": ("atom", yx[:, 1]),
    ...                     "label": ("atom", np.repeat([0, 1], 36))})
    >>> d = dmotif.displacements(atoms, motif=1, reference=0)
    >>> round(float(np.nanmean(d["disp_y"])), 2), round(float(np.nanmean(d["disp_x"])), 2)
    (0.2, -0.1)
    """
    cols = columns_of(source, labels)
    moving = motif_mask(cols, motif, "motif")
    ref = motif_mask(cols, reference, "reference")
    frames = np.unique(cols.frame)
    bases = frame_bases(cols.frame, cols.yx, ref, frames)
    per_frame = {int(f): (reach(b[:2], b[2:4]), (b[:2], b[2:4]))
                 for f, b in zip(frames, bases, strict=True) if np.isfinite(b[:4]).all()}
    centres = map_tiles(cell_centres, cols.frame, cols.yx, moving, ref, per_frame,
                        tile=check_tile(tile), out=np.full((len(cols.yx), 2), np.nan))
    disp = cols.yx - centres
    out = xr.Dataset(
        {"disp_y": ("atom", disp[:, 0], {"units": "px"}),
         "disp_x": ("atom", disp[:, 1], {"units": "px"}),
         "disp": ("atom", np.hypot(disp[:, 0], disp[:, 1]), {"units": "px"}),
         "disp_angle": ("atom", np.arctan2(disp[:, 0], disp[:, 1]), {"units": "rad"})},
        attrs={"motif": int(motif), "reference": int(reference)},
    )
    if cols.nm_per_px is not None:
        for name in ("disp_y", "disp_x", "disp"):
            out[f"{name}_nm"] = ("atom", out[name].values * cols.nm_per_px, {"units": "nm"})
    return out
