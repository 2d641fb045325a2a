"""The image-stack data model: validation and normalisation at the public boundary.

An image stack is an ``xarray.DataArray`` with dims ``("frame", "y", "x")``, float32, dask-backed
and chunked ``(1, tile, tile)``; coords ``y`` and ``x`` are in physical units where the pixel size
is known (attrs ``units`` and ``pixel_size``), else in pixels (``units == "px"``).
"""

from __future__ import annotations

import math
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .errors import DataError, ParameterError

__all__ = [
    "DEFAULT_TILE",
    "STACK_DIMS",
    "as_image_stack",
    "check_finite_nonconstant",
    "image_coords",
    "normalize_chunks",
    "pixel_size_of",
    "refuse_bad_frames",
    "whole_chunk_window",
]

STACK_DIMS = ("frame", "y", "x")
DEFAULT_TILE = 1024


def normalize_chunks(chunks: Any, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """Return ``(1, tile_y, tile_x)`` chunk sizes for a stack of ``shape``.

    ``"auto"`` gives square tiles of :data:`DEFAULT_TILE`; an int gives square tiles of that
    size; a pair gives ``(tile_y, tile_x)``; a triple is taken as ``(frames, tile_y, tile_x)``.
    """
    if chunks is None or chunks == "auto":
        ty = tx = DEFAULT_TILE
        tf = 1
    elif isinstance(chunks, int | np.integer):
        ty = tx = int(chunks)
        tf = 1
    elif isinstance(chunks, tuple | list) and len(chunks) in (2, 3):
        tf, ty, tx = (1, *chunks) if len(chunks) == 2 else chunks
    else:
        raise ParameterError(
            f"chunks must be 'auto', an int tile size, (tile_y, tile_x) or (frames, tile_y, "
            f"tile_x); got {chunks!r}."
        )
    if min(tf, ty, tx) < 1:
        raise ParameterError(f"chunk sizes must be >= 1; got {chunks!r}.")
    return (min(int(tf), shape[0]), min(int(ty), shape[1]), min(int(tx), shape[2]))


def image_coords(
    ny: int, nx: int, pixel_size: float | None, units: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the ``y``/``x`` coordinates and the calibration attrs for an image."""
    if pixel_size is None:
        scale, units = 1.0, "px"
    else:
        scale = check_pixel_size(pixel_size)
        units = units or "nm"
    coords = {
        "y": ("y", np.arange(ny) * scale, {"units": units}),
        "x": ("x", np.arange(nx) * scale, {"units": units}),
    }
    attrs = {"units": units, "pixel_size": scale}
    return coords, attrs


def check_pixel_size(pixel_size: float) -> float:
    """Return ``pixel_size`` as a float after checking it is finite and positive."""
    try:
        value = float(pixel_size)
    except (TypeError, ValueError):
        raise ParameterError(
            f"pixel_size must be a positive number (nm per pixel); got {pixel_size!r}."
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ParameterError(
            f"pixel_size must be a positive, finite number (nm per pixel); got {pixel_size!r}. "
            "Pass the calibration of the scan, e.g. pixel_size=0.015."
        )
    return value


def pixel_size_of(image: xr.DataArray) -> float | None:
    """Return the physical pixel size of a stack, or None when it is uncalibrated."""
    if image.attrs.get("units", "px") == "px":
        return None
    return float(image.attrs["pixel_size"])


def as_image_stack(
    data: Any,
    *,
    pixel_size: float | None = None,
    units: str | None = None,
    chunks: Any = "auto",
    name: str = "image",
) -> xr.DataArray:
    """Return ``data`` as a validated image stack (see the module docstring).

    Parameters
    ----------
    data : array-like or xarray.DataArray
        A 2-D image ``(y, x)`` or a 3-D stack ``(frame, y, x)``; numpy, dask or xarray.
        A DataArray keeps its coords and attrs; its dims must be a subset of
        ``("frame", "y", "x")`` in that order.
    pixel_size : float, optional
        nm per pixel; overrides the calibration carried by ``data``.
    units : str, optional
        Unit of ``pixel_size``; default ``"nm"`` when a pixel size is given.
    chunks : "auto", int or tuple
        Tile size; see :func:`normalize_chunks`. With "auto" a dask array chunked one frame
        at a time keeps its chunks.
    name : str
        Name of the returned DataArray.

    Returns
    -------
    xarray.DataArray
        dims ``("frame", "y", "x")``, float32, dask-backed, chunked ``(1, tile, tile)``.

    Raises
    ------
    DataError
        When ``data`` is not 2-D or 3-D, has unknown dims, or is empty.
    """
    attrs: dict[str, Any] = {}
    if isinstance(data, xr.DataArray):
        dims = tuple(data.dims)
        if dims not in (("y", "x"), ("frame", "y", "x")):
            raise DataError(
                f"an image DataArray must have dims ('y', 'x') or ('frame', 'y', 'x'); got "
                f"{dims}. Rename or transpose it, e.g. da.rename({{'dim_0': 'y', 'dim_1': 'x'}})."
            )
        attrs = dict(data.attrs)
        if pixel_size is None and attrs.get("units", "px") != "px" and "pixel_size" in attrs:
            pixel_size = attrs["pixel_size"]
            units = units or attrs["units"]
        arr = data.data
    else:
        arr = data
    if not hasattr(arr, "ndim"):
        arr = np.asarray(arr)
    if arr.ndim not in (2, 3):
        raise DataError(
            f"an image must be 2-D (y, x) or 3-D (frame, y, x); got {arr.ndim}-D with shape "
            f"{tuple(arr.shape)}. For 4D-STEM data use dmotif.open_4dstem and a virtual detector."
        )
    if arr.ndim == 2:
        arr = arr[None]
    if 0 in arr.shape:
        raise DataError(f"the image is empty: shape {tuple(arr.shape)}. Pass a non-empty image.")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(
            f"image pixels must be real numbers; got dtype {arr.dtype}. Take the modulus or the "
            "real part first."
        )
    shape = tuple(int(s) for s in arr.shape)
    target = normalize_chunks(chunks, shape)
    if isinstance(arr, da.Array):
        # A stored stack (zarr, HDF5) keeps its own tiles unless asked otherwise: rechunking
        # across storage chunks makes every task read several of them.
        keep = chunks in (None, "auto") and set(arr.chunks[0]) == {1}
        darr = arr.astype(np.float32) if keep else arr.astype(np.float32).rechunk(target)
    else:
        darr = da.from_array(np.asarray(arr), chunks=target).astype(np.float32)
    coords, calib = image_coords(shape[1], shape[2], pixel_size, units)
    coords["frame"] = ("frame", np.arange(shape[0]))
    attrs.update(calib)
    return xr.DataArray(darr, dims=STACK_DIMS, coords=coords, attrs=attrs, name=name)


def check_finite_nonconstant(image: xr.DataArray) -> None:
    """Raise :class:`DataError` when a stack holds NaN/inf or a frame is constant.

    This computes two small reductions per frame (min, max and a finiteness test).
    """
    finite = da.isfinite(image.data).all(axis=(1, 2))
    lo = image.data.min(axis=(1, 2))
    hi = image.data.max(axis=(1, 2))
    refuse_bad_frames(*da.compute(finite, lo, hi))


def refuse_bad_frames(
    finite: np.ndarray, lo: np.ndarray, hi: np.ndarray, *, frames: Any = None
) -> None:
    """Raise :class:`DataError` for the frames that are not all ``finite`` or whose smallest
    pixel ``lo`` is not below their largest ``hi`` (one value of each per frame; ``frames``
    numbers them, default 0, 1, …)."""
    numbers = np.arange(len(lo)) if frames is None else np.asarray(frames)
    bad = numbers[~np.asarray(finite)]
    if bad.size:
        raise DataError(
            f"the image holds NaN or inf pixels (frames {bad[:5].tolist()}). Replace them, "
            "e.g. image.fillna(image.median()), or crop them away."
        )
    flat = np.flatnonzero(np.asarray(hi) <= np.asarray(lo))
    if flat.size:
        raise DataError(
            f"frames {numbers[flat[:5]].tolist()} are constant (every pixel = "
            f"{float(lo[flat[0]])!r}); "
            "there is nothing to detect. Check the file or drop those frames."
        )


def whole_chunk_window(
    arr: da.Array, pieces: np.ndarray, f: int, y0: int, y1: int, x0: int, x1: int
) -> Any:
    """Pixels ``[f, y0:y1, x0:x1]`` of ``arr`` as a delayed array cut from whole chunks
    (``pieces``: ``arr.to_delayed()``).

    A dask slice is pushed down to the reader, so every tile whose margin overlaps a storage
    chunk would read (and decompress) all of it again for its sliver: 6 reads per chunk on
    1024² tiles. Whole chunks are tasks shared by the tiles that need them, read once per
    compute.
    """
    edges = [np.cumsum((0, *c)) for c in arr.chunks]
    lo = [int(np.searchsorted(e, v, side="right")) - 1
          for e, v in zip(edges, (f, y0, x0), strict=True)]
    hi = [int(np.searchsorted(e, v, side="left"))
          for e, v in zip(edges, (f + 1, y1, x1), strict=True)]
    parts = [[pieces[lo[0], i, j] for j in range(lo[2], hi[2])] for i in range(lo[1], hi[1])]
    start = [int(e[i]) for e, i in zip(edges, lo, strict=True)]
    return dask.delayed(_cut, pure=True)(parts, f - start[0], y0 - start[1], y1 - start[1],
                                         x0 - start[2], x1 - start[2])


def _cut(parts: list[list[np.ndarray]], f: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """Pixels ``[f, y0:y1, x0:x1]`` of the grid of chunks ``parts``, copied piece by piece.

    Joining the chunks first (``np.block``) would copy up to nine whole chunks to keep one
    tile's window of them.
    """
    out = np.empty((y1 - y0, x1 - x0), dtype=parts[0][0].dtype)
    top = 0
    for row in parts:
        left = 0
        for chunk in row:
            h, w = chunk.shape[1:]
            a, b = max(top, y0), min(top + h, y1)
            c, d = max(left, x0), min(left + w, x1)
            if a < b and c < d:
                piece = chunk[f, a - top : b - top, c - left : d - left]
                out[a - y0 : b - y0, c - x0 : d - x0] = piece
            left += w
        top += h
    return out
