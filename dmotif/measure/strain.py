"""Strain: the local deformation of a sublattice against its mean lattice or a given one."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..errors import ParameterError
from ._geometry import deformation, reach
from ._source import columns_of, motif_mask
from ._tiles import check_tile, map_tiles
from .sublattices import frame_bases

__all__ = ["strain"]


def _reference(reference_lattice: Any) -> np.ndarray | None:
    if reference_lattice is None:
        return None
    ref = np.asarray(getattr(reference_lattice, "values", reference_lattice), dtype=np.float64)
    if ref.shape != (2, 2) or not np.isfinite(ref).all() or abs(np.linalg.det(ref)) < 1e-9:
        raise ParameterError(
            "reference_lattice must be two independent vectors [[u_y, u_x], [v_y, v_x]] in "
            f"pixels (as dmotif.sublattices gives them); got {ref.tolist()!r}."
        )
    return ref


def _matched(measured: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """The vectors of the lattice ``ref`` that correspond to the rows of ``measured``: the
    integer combinations of ``ref`` nearest them (the two may name the lattice by different
    bases)."""
    m = np.round(np.linalg.solve(ref.T, measured.T)).T
    return m @ ref


def strain(source: Any, *, motif: int, reference_lattice: Any = None,
           labels: Any = None, tile: float | None = None) -> xr.Dataset:
    """Per column of ``motif``: the strain and rotation of its sublattice about it.

    The columns at ``±u``, ``±v``, ``±(u+v)``, ``±(u−v)`` of each column (``u``, ``v`` the
    sublattice's mean vectors in its frame, see :func:`dmotif.sublattices`) are compared with
    the same vectors of the reference lattice: the least-squares deformation gradient ``F``
    (``x``, ``y`` order) gives the small strain ``ε = (F + Fᵀ)/2 − I`` and the rotation
    ``ω = (F_yx − F_xy)/2``.

    Parameters
    ----------
    source : dmotif.Result or xarray.Dataset
        A run's result, or an atom table with ``y``, ``x`` (and ``frame``, ``label``).
    motif : int
        The label of the sublattice's columns.
    reference_lattice : array_like (2, 2), optional
        Reference vectors ``[[u_y, u_x], [v_y, v_x]]`` in pixels, in the image's orientation
        (e.g. a bulk region's from :func:`dmotif.sublattices` with ``regions=``, or a
        crystal's from :func:`dmotif.projected_lattice` with ``align_to=``). Default: each
        frame's own mean lattice, so the strains of a frame average to about zero.
    labels : array_like of int, optional
        The motif of each column; default the table's ``label``.
    tile : float, optional
        Side of the square tiles, pixels, each a dask task with the sublattice's columns of a
        halo about it (default 1024); the numbers do not depend on it.

    Returns
    -------
    xarray.Dataset
        Over ``atom`` (NaN but for the columns of ``motif`` with at least 5 of their 8
        neighbours): ``strain_xx``, ``strain_yy``, ``strain_xy`` (dimensionless) and
        ``rotation`` (radians, from +x towards +y). Attrs ``motif`` and ``reference_lattice``
        (the given one, or None).

    Raises
    ------
    ParameterError
        When ``motif`` is no label of the columns or ``reference_lattice`` is no basis.

    Examples
    --------
    >>> import numpy as np, xarray as xr, dmotif
    >>> yx = np.mgrid[0:8, 0:8].reshape(2, -1).T * (10.0, 10.2)
    >>> atoms = xr.Dataset({"y": ("atom", yx[:, 0]), "x": ("atom", yx[:, 1]),
    ...                     "label": ("atom", np.zeros(64, int))})
    >>> s = dmotif.strain(atoms, motif=0, reference_lattice=[[0, 10], [10, 0]])
    >>> round(float(np.nanmedian(s["strain_xx"])), 4), round(float(np.nanmedian(s["strain_yy"])), 4)
    (0.02, 0.0)
    """
    cols = columns_of(source, labels)
    mask = motif_mask(cols, motif, "motif")
    ref = _reference(reference_lattice)
    frames = np.unique(cols.frame)
    bases = frame_bases(cols.frame, cols.yx, mask, frames)
    per_frame = {}
    for f, basis in zip(frames, bases, strict=True):
        if np.isfinite(basis[:4]).all():
            measured = basis[:4].reshape(2, 2)
            ideal = measured if ref is None else _matched(measured, ref)
            per_frame[int(f)] = (reach(*measured), (*measured, *ideal))
    grad = map_tiles(deformation, cols.frame, cols.yx, mask, mask, per_frame,
                     tile=check_tile(tile), out=np.full((len(cols.yx), 2, 2), np.nan))
    units = {"units": "1"}
    return xr.Dataset(
        {"strain_xx": ("atom", grad[:, 0, 0] - 1, units),
         "strain_yy": ("atom", grad[:, 1, 1] - 1, units),
         "strain_xy": ("atom", (grad[:, 0, 1] + grad[:, 1, 0]) / 2, units),
         "rotation": ("atom", (grad[:, 1, 0] - grad[:, 0, 1]) / 2, {"units": "rad"})},
        attrs={"motif": int(motif),
               "reference_lattice": None if ref is None else ref.tolist()},
    )
