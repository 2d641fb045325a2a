"""4D-STEM data: the data model, reading (npy, zarr, HDF5/EMD, rosettasciio) and writing.

A 4D-STEM dataset is an ``xarray.DataArray`` with dims ``("scan_y", "scan_x", "ky", "kx")``
(or ``("frame", "scan_y", "scan_x", "ky", "kx")``), dask-backed and chunked over the scan only,
whole diffraction patterns per chunk. Coords ``scan_y``/``scan_x`` are in nm (attrs
``scan_pixel_size``, ``scan_units``; ``"px"`` when uncalibrated), ``ky``/``kx`` in mrad (attrs
``k_pixel_size``, ``k_units``; ``"px"`` when uncalibrated) measured from the pattern centre
(attr ``center``, ``(ky, kx)`` in pixels). ``bf_radius`` (pixels) is the bright-field disk
radius, estimated with the centre from the mean pattern of the central scan chunk.

The reductions of such data (virtual detectors, diffraction descriptors) live in
:mod:`dmotif.features.virtual` and :mod:`dmotif.features.diffraction`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .._image import check_pixel_size
from ..errors import DataError, ImageFileError, ParameterError
from ._npy import lazy_npy
from .images import open_npy, read_rsciio_signals, source_path, unit_to_nm
from .store import open_zarr_group, write_dataset

__all__ = ["FOURD_DIMS", "SUFFIXES_4D", "estimate_disk", "open_4dstem", "save_4dstem"]

FOURD_DIMS = ("frame", "scan_y", "scan_x", "ky", "kx")
SUFFIXES_4D = (".npy", ".zarr", ".h5", ".hdf5", ".emd", ".hspy", ".mib", ".blo")
_RSCIIO_4D = {".hspy": "hspy", ".mib": "quantumdetector", ".blo": "blockfile", ".emd": "emd"}
# A scan chunk of whole patterns holds about this many bytes (64 MiB: 32 × 32 of 128² float32).
_CHUNK_BYTES = 64 * 2**20
_K_TO_MRAD = {"mrad": 1.0, "rad": 1e3, "µrad": 1e-3, "urad": 1e-3}


# --------------------------------------------------------------------------- data model


def scan_chunks(chunks: Any, shape: tuple[int, ...], itemsize: int) -> tuple[int, int]:
    """Scan tile ``(ty, tx)`` for ``chunks`` ("auto", an int or a pair)."""
    if chunks is None or chunks == "auto":
        t = max(1, math.isqrt(_CHUNK_BYTES // max(1, shape[-2] * shape[-1] * itemsize)))
        ty = tx = t
    elif isinstance(chunks, int | np.integer):
        ty = tx = int(chunks)
    elif isinstance(chunks, tuple | list) and len(chunks) == 2:
        ty, tx = (int(c) for c in chunks)
    else:
        raise ParameterError(
            f"chunks must be 'auto', an int scan tile or (tile_y, tile_x); got {chunks!r}. "
            "4D-STEM data are chunked over the scan only, whole patterns per chunk."
        )
    if min(ty, tx) < 1:
        raise ParameterError(f"scan chunk sizes must be >= 1; got {chunks!r}.")
    return min(ty, shape[1]), min(tx, shape[2])


def _mean_pattern(arr: da.Array) -> np.ndarray:
    """Mean pattern of the scan chunk at the centre of frame 0 (one chunk read)."""
    bounds = []
    for axis in (1, 2):
        edges = np.cumsum((0, *arr.chunks[axis]))
        k = int(np.searchsorted(edges, arr.shape[axis] // 2, side="right")) - 1
        bounds.append(slice(int(edges[k]), int(edges[k + 1])))
    block = arr[0, bounds[0], bounds[1]].astype(np.float64)
    return np.asarray(block.mean(axis=(0, 1)).compute())


def estimate_disk(mean_pattern: np.ndarray) -> tuple[tuple[float, float], float]:
    """Estimate the bright-field disk of a (mean) pattern: its centre ``(ky, kx)`` and radius.

    The disk is the set of pixels brighter than half-way between the pattern's background
    (its median) and its bright level (the 99th percentile); the centre is their intensity-
    weighted centroid and the radius that of a disk of the same area.
    """
    p = np.asarray(mean_pattern, dtype=np.float64)
    lo, hi = np.median(p), np.percentile(p, 99.0)
    disk = p > lo + 0.5 * (hi - lo)
    if hi <= lo or not disk.any():
        return ((p.shape[0] - 1) / 2, (p.shape[1] - 1) / 2), 0.0
    w = np.where(disk, p - lo, 0.0)
    yy, xx = np.indices(p.shape)
    center = (float((w * yy).sum() / w.sum()), float((w * xx).sum() / w.sum()))
    return center, float(math.sqrt(disk.sum() / math.pi))


def _check_center(center: Any, shape: tuple[int, int]) -> tuple[float, float]:
    try:
        cy, cx = (float(c) for c in center)
    except (TypeError, ValueError):
        raise ParameterError(
            f"center must be (ky, kx) in pattern pixels; got {center!r}."
        ) from None
    if not (0 <= cy <= shape[0] - 1 and 0 <= cx <= shape[1] - 1):
        raise ParameterError(
            f"center {center!r} lies outside the {shape[0]} × {shape[1]} pattern; pass the "
            "pixel (ky, kx) of the direct beam, or None to estimate it."
        )
    return cy, cx


def as_4dstem(
    data: Any,
    *,
    scan_pixel_size: float | None = None,
    scan_units: str | None = None,
    k_pixel_size: float | None = None,
    k_units: str | None = None,
    center: Any = None,
    bf_radius: float | None = None,
    scan_shape: tuple[int, int] | None = None,
    chunks: Any = "auto",
) -> xr.DataArray:
    """Validate ``data`` and return it 5-D ``(frame, scan_y, scan_x, ky, kx)`` (see module)."""
    attrs: dict[str, Any] = {}
    if isinstance(data, xr.DataArray):
        dims = tuple(data.dims)
        if dims not in (FOURD_DIMS, FOURD_DIMS[1:]):
            raise DataError(
                f"a 4D-STEM DataArray must have dims {FOURD_DIMS[1:]} (optionally with a leading "
                f"'frame'); got {dims}. Rename or transpose it."
            )
        attrs = dict(data.attrs)
        arr = data.data
    else:
        arr = data if hasattr(data, "ndim") else np.asarray(data)
    if arr.ndim == 3 and scan_shape is not None:
        ny, nx = (int(s) for s in scan_shape)
        if ny * nx != arr.shape[0]:
            raise DataError(
                f"scan_shape {tuple(scan_shape)} holds {ny * nx} positions but the data have "
                f"{arr.shape[0]} patterns; pass the scan shape the data were recorded with."
            )
        arr = arr.reshape(ny, nx, *arr.shape[1:])
    if arr.ndim not in (4, 5):
        raise DataError(
            f"4D-STEM data must be 4-D (scan_y, scan_x, ky, kx) or 5-D (frame, scan_y, scan_x, "
            f"ky, kx); got {arr.ndim}-D with shape {tuple(arr.shape)}. For a 2-D image or 3-D "
            "stack use dmotif.open_image; for a flat series of patterns pass scan_shape=(ny, nx)."
        )
    if arr.ndim == 4:
        arr = arr[None]
    if 0 in arr.shape:
        raise DataError(f"the 4D-STEM data are empty: shape {tuple(arr.shape)}.")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise DataError(f"diffraction intensities must be real numbers; got dtype {arr.dtype}.")
    shape = tuple(int(s) for s in arr.shape)
    ty, tx = scan_chunks(chunks, shape, arr.dtype.itemsize)
    target = (1, ty, tx, shape[3], shape[4])
    if isinstance(arr, da.Array):
        # Stored data keep their scan tiles (reading across storage chunks costs extra reads)
        # unless they split patterns or frames, which the reductions need whole.
        whole = arr.chunks[3] == (shape[3],) and arr.chunks[4] == (shape[4],)
        keep = chunks in (None, "auto") and whole and set(arr.chunks[0]) == {1}
        darr = arr if keep else arr.rechunk(target)
    else:
        darr = da.from_array(arr, chunks=target)

    def calib(size, units, key_size, key_units, default_units):
        if size is None and attrs.get(key_units, "px") != "px":
            size, units = attrs[key_size], units or attrs[key_units]
        if size is None:
            return 1.0, "px"
        return check_pixel_size(size), units or default_units

    sps, s_units = calib(scan_pixel_size, scan_units, "scan_pixel_size", "scan_units", "nm")
    kps, kk_units = calib(k_pixel_size, k_units, "k_pixel_size", "k_units", "mrad")
    pattern = (shape[3], shape[4])
    if center is None and "center" in attrs:
        center = attrs["center"]
    if bf_radius is None:
        bf_radius = attrs.get("bf_radius")
    if center is None or bf_radius is None:
        est_center, est_radius = estimate_disk(_mean_pattern(darr))
        center = est_center if center is None else center
        bf_radius = est_radius if bf_radius is None else bf_radius
    cy, cx = _check_center(center, pattern)
    attrs.update({
        "scan_pixel_size": sps, "scan_units": s_units, "k_pixel_size": kps, "k_units": kk_units,
        "center": [cy, cx], "bf_radius": float(bf_radius),
    })
    coords = {
        "frame": ("frame", np.arange(shape[0])),
        "scan_y": ("scan_y", np.arange(shape[1]) * sps, {"units": s_units}),
        "scan_x": ("scan_x", np.arange(shape[2]) * sps, {"units": s_units}),
        "ky": ("ky", (np.arange(shape[3]) - cy) * kps, {"units": kk_units}),
        "kx": ("kx", (np.arange(shape[4]) - cx) * kps, {"units": kk_units}),
    }
    name = data.name if isinstance(data, xr.DataArray) and data.name else "data"
    return xr.DataArray(darr, dims=FOURD_DIMS, coords=coords, attrs=attrs, name=name)


def drop_single_frame(full: xr.DataArray) -> xr.DataArray:
    """Drop the frame dim of a one-frame dataset (the form a 4-D file has)."""
    return full.isel(frame=0, drop=True) if full.sizes["frame"] == 1 else full


# --------------------------------------------------------------------------- readers


def open_4dstem(
    source: Any,
    *,
    scan_pixel_size: float | None = None,
    k_pixel_size: float | None = None,
    center: tuple[float, float] | None = None,
    scan_shape: tuple[int, int] | None = None,
    chunks: Any = "auto",
) -> xr.DataArray:
    """Open a 4D-STEM dataset as a lazy DataArray chunked over the scan.

    Parameters
    ----------
    source : str, os.PathLike, numpy.ndarray, dask.array.Array or xarray.DataArray
        An array (4-D, 5-D with a leading frame, or 3-D with ``scan_shape``) or a file:
        ``.npy``, ``.zarr`` (a store of :func:`save_4dstem` or a bare 4-D zarr array),
        ``.h5``/``.hdf5``/``.emd`` (an EMD 1.0 group ``data`` + ``dim1..dimN``, or the first
        4-D dataset; other ``.emd`` through rosettasciio), and through rosettasciio ``.hspy``,
        ``.mib`` (Quantum Detectors Merlin) and ``.blo`` (blockfile).
    scan_pixel_size : float, optional
        nm per scan step; overrides the file's calibration.
    k_pixel_size : float, optional
        mrad per detector pixel; overrides the file's calibration.
    center : (float, float), optional
        ``(ky, kx)`` pixel of the pattern centre (direct beam). Default: the centroid of the
        bright-field disk of the mean pattern of the central scan chunk.
    scan_shape : (int, int), optional
        ``(scan_y, scan_x)`` for data stored as a flat series of patterns ``(n, ky, kx)``.
    chunks : "auto", int or (int, int)
        Scan tile; "auto" keeps a stored tiling of whole patterns, else gives about 64 MiB per
        chunk (32 × 32 patterns of 128 × 128 float32).

    Returns
    -------
    xarray.DataArray
        dims ``("scan_y", "scan_x", "ky", "kx")`` (``frame`` first when the data have frames),
        dask-backed, the stored dtype kept; calibration and ``center``/``bf_radius`` in attrs.

    Raises
    ------
    ImageFileError
        When the file is missing, unreadable or of an unsupported format.
    DataError
        When the data are not 4-D/5-D (a 3-D array without ``scan_shape``), empty or not real.

    Examples
    --------
    >>> import numpy as np, dmotif
    >>> data = dmotif.open_4dstem(np.ones((8, 8, 16, 16), np.float32), center=(7.5, 7.5))
    >>> data.dims, data.attrs["k_units"]
    (('scan_y', 'scan_x', 'ky', 'kx'), 'px')
    """
    over = {"scan_pixel_size": scan_pixel_size, "k_pixel_size": k_pixel_size}
    if isinstance(source, np.ndarray | da.Array | xr.DataArray):
        return drop_single_frame(as_4dstem(source, center=center, scan_shape=scan_shape,
                                           chunks=chunks, **over))
    text, suffix = source_path(source, SUFFIXES_4D, kind="4D-STEM", array="a 4-D array")
    if suffix == ".npy":
        npy = open_npy(text)
        data, calib = lazy_npy(npy, _npy_chunks(npy.shape, npy.dtype.itemsize, chunks)), {}
    elif suffix == ".zarr":
        data, calib = _read_zarr_4d(text)
    elif suffix in (".h5", ".hdf5", ".emd"):
        found = _read_hdf5_4d(text)
        data, calib = found if found is not None else _read_rsciio_4d(text, "emd")
    else:
        data, calib = _read_rsciio_4d(text, _RSCIIO_4D[suffix])
    calib.update({k: v for k, v in {**over, "center": center}.items() if v is not None})
    full = as_4dstem(data, scan_shape=scan_shape, chunks=chunks, **calib)
    full.attrs["source"] = text
    return drop_single_frame(full)


def _npy_chunks(shape: tuple[int, ...], itemsize: int, chunks: Any) -> Any:
    """Chunks to read a ``.npy`` file of ``shape`` in: the run's scan tiles, whole patterns
    (the reductions need them whole)."""
    if len(shape) in (4, 5):
        ty, tx = scan_chunks(chunks, (1, *shape[-4:]), itemsize)
        return (*(1,) * (len(shape) - 4), ty, tx, -1, -1)
    # A flat series of patterns (reshaped with scan_shape), or data that as_4dstem refuses.
    return "auto" if len(shape) < 3 else ("auto", -1, -1)


def _read_zarr_4d(path: str) -> tuple[Any, dict[str, Any]]:
    group = open_zarr_group(path)
    if group is None:
        import zarr

        return da.from_zarr(zarr.open_array(path, mode="r")), {}
    ds = xr.open_zarr(path, consolidated=False, zarr_format=3)
    if "data" not in ds.data_vars:
        raise ImageFileError(
            f"the zarr store {path!r} holds no 'data' variable (it has {sorted(ds.data_vars)}); "
            "write 4D-STEM stores with dmotif.save_4dstem."
        )
    return ds["data"], {}


def _k_calibration(scale: float, units: Any) -> dict[str, Any]:
    """``k_pixel_size``/``k_units`` from an axis scale and unit (mrad kept, rad converted)."""
    if not units or not isinstance(units, str) or units.strip() in ("", "px", "pixel", "pixels"):
        return {}
    factor = _K_TO_MRAD.get(units.strip())
    if factor is not None:
        return {"k_pixel_size": scale * factor, "k_units": "mrad"}
    return {"k_pixel_size": scale, "k_units": units.strip()}  # e.g. 1/nm: kept as given


def _calibration(axes: list[dict[str, Any]]) -> dict[str, Any]:
    """Scan and reciprocal calibration (and the pattern centre) from the last four axes."""
    calib: dict[str, Any] = {}
    if len(axes) < 4:
        return calib
    sy, _, ky, kx = axes[-4:]
    factor = unit_to_nm(sy.get("units"))
    if factor is not None and sy.get("scale"):
        calib["scan_pixel_size"] = float(sy["scale"]) * factor
        calib["scan_units"] = "nm"
    k_scale = float(kx.get("scale") or 1.0)
    calib.update(_k_calibration(k_scale, kx.get("units")))
    offsets = (float(ky.get("offset") or 0.0), float(kx.get("offset") or 0.0))
    if calib.get("k_pixel_size") and all(o < 0 for o in offsets):
        # An axis whose coordinate runs from a negative offset is centred on the beam.
        calib["center"] = (-offsets[0] / float(ky.get("scale") or 1.0), -offsets[1] / k_scale)
    return calib


def _read_hdf5_4d(path: str) -> tuple[Any, dict[str, Any]] | None:
    """An EMD 1.0 data group, else the first 4-D/5-D dataset; None when there is neither."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise ImageFileError(f"cannot read HDF5 file {path!r}: {exc}") from exc
    found: list[Any] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.ndim in (4, 5) and not found:
            found.append(obj)

    handle.visititems(visit)
    if not found:
        handle.close()
        return None
    dset = found[0]
    axes = []
    for i in range(1, dset.ndim + 1):
        dim = dset.parent.get(f"dim{i}")
        if dim is None or dim.ndim != 1 or dim.shape[0] < 2:
            axes = []
            break
        units = dim.attrs.get("units", "")
        units = units.decode() if isinstance(units, bytes) else str(units)
        axes.append({"scale": float(dim[1] - dim[0]), "offset": float(dim[0]), "units": units})
    # h5py reads are serialised by h5py's own lock; the file stays open while the data live.
    return da.from_array(dset, chunks=dset.chunks or "auto"), _calibration(axes)


def _read_rsciio_4d(path: str, plugin: str) -> tuple[Any, dict[str, Any]]:
    signals = read_rsciio_signals(path, plugin)
    for sig in signals:
        if np.ndim(sig["data"]) in (3, 4, 5):
            return sig["data"], _calibration(list(sig.get("axes", [])))
    shapes = [tuple(np.shape(s["data"])) for s in signals]
    raise DataError(f"{path!r} holds no 4D-STEM data (signals of shapes {shapes}).")


def save_4dstem(data: xr.DataArray, path: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Write a 4D-STEM dataset to a zarr (v3) store, atomically, with its calibration.

    Parameters
    ----------
    data : xarray.DataArray or array-like
        Anything :func:`open_4dstem` accepts as an array.
    path : str or os.PathLike
        The ``.zarr`` store (local or an fsspec URL).
    overwrite : bool
        Replace an existing store. Default: refuse.

    Returns
    -------
    str
        The path written; :func:`open_4dstem` reads it back lazily, chunk for chunk.
    """
    full = drop_single_frame(as_4dstem(data))
    return write_dataset(full.to_dataset(name="data"), path, overwrite=overwrite)
