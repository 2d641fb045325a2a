"""4D-STEM: open, save, virtual detectors and diffraction descriptors, chunk by chunk.

A 4D-STEM dataset is an ``xarray.DataArray`` with dims ``("scan_y", "scan_x", "ky", "kx")``
(or ``("frame", "scan_y", "scan_x", "ky", "kx")``), dask-backed and chunked over the scan only,
whole diffraction patterns per chunk. Coords ``scan_y``/``scan_x`` are in nm (attrs
``scan_pixel_size``, ``scan_units``; ``"px"`` when uncalibrated), ``ky``/``kx`` in mrad (attrs
``k_pixel_size``, ``k_units``; ``"px"`` when uncalibrated) measured from the pattern centre
(attr ``center``, ``(ky, kx)`` in pixels). ``bf_radius`` (pixels) is the bright-field disk
radius, estimated with the centre from the mean pattern of the central scan chunk.

Every reduction (a virtual detector, the centre of mass, ring descriptors) maps
:func:`dmotif._fourd.weighted_sums` over the chunks: a ``(sy, sx, ky, kx)`` chunk becomes
``(sy, sx, n)``, so memory holds a few chunks, never the dataset, and each pattern's result is
the same whatever the chunking.
"""

from __future__ import annotations

import math
import os
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from . import _fourd, _zernike
from ._image import DEFAULT_TILE, as_image_stack, check_pixel_size
from .errors import DataError, ImageFileError, ParameterError
from .io import _unit_to_nm, source_path
from .store import open_zarr_group, write_dataset

__all__ = [
    "DETECTORS",
    "FEATURE_KINDS",
    "FOURD_DIMS",
    "SUFFIXES_4D",
    "diffraction_features",
    "open_4dstem",
    "save_4dstem",
    "virtual_image",
]

FOURD_DIMS = ("frame", "scan_y", "scan_x", "ky", "kx")
DETECTORS = ("bf", "abf", "adf", "haadf", "com", "icom")
SUFFIXES_4D = (".npy", ".zarr", ".h5", ".hdf5", ".emd", ".hspy", ".mib", ".blo")
_RSCIIO_4D = {".hspy": "hspy", ".mib": "quantumdetector", ".blo": "blockfile", ".emd": "emd"}
# A scan chunk of whole patterns holds about this many bytes (64 MiB: 32 × 32 of 128² float32).
_CHUNK_BYTES = 64 * 2**20
_K_TO_MRAD = {"mrad": 1.0, "rad": 1e3, "µrad": 1e-3, "urad": 1e-3}


# --------------------------------------------------------------------------- data model


def _scan_chunks(chunks: Any, shape: tuple[int, ...], itemsize: int) -> tuple[int, int]:
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


def _as_4dstem(
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
    ty, tx = _scan_chunks(chunks, shape, arr.dtype.itemsize)
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
        est_center, est_radius = _fourd.estimate_disk(_mean_pattern(darr))
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


def _public(full: xr.DataArray) -> xr.DataArray:
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
        return _public(_as_4dstem(source, center=center, scan_shape=scan_shape, chunks=chunks,
                                  **over))
    text, suffix = source_path(source, SUFFIXES_4D, kind="4D-STEM", array="a 4-D array")
    if suffix == ".npy":
        data, calib = np.load(text, mmap_mode="r"), {}
    elif suffix == ".zarr":
        data, calib = _read_zarr_4d(text)
    elif suffix in (".h5", ".hdf5", ".emd"):
        found = _read_hdf5_4d(text)
        data, calib = found if found is not None else _read_rsciio_4d(text, "emd")
    else:
        data, calib = _read_rsciio_4d(text, _RSCIIO_4D[suffix])
    calib.update({k: v for k, v in {**over, "center": center}.items() if v is not None})
    full = _as_4dstem(data, scan_shape=scan_shape, chunks=chunks, **calib)
    full.attrs["source"] = text
    return _public(full)


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
    factor = _unit_to_nm(sy.get("units"))
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
    from .io import read_rsciio_signals

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
    full = _public(_as_4dstem(data))
    return write_dataset(full.to_dataset(name="data"), path, overwrite=overwrite)


# --------------------------------------------------------------------------- reductions


def _apply(block: np.ndarray, weights: _fourd.DetectorWeights, binning: int) -> np.ndarray:
    if binning > 1:
        block = _fourd.bin_patterns(block, binning)
    return _fourd.weighted_sums(block, weights)


def _reduce(full: xr.DataArray, dense: np.ndarray, binning: int = 1) -> da.Array:
    """``(frame, sy, sx, n)`` float64: the weights ``dense (n, ky, kx)`` applied per pattern.

    With ``binning > 1`` each chunk's patterns are first binned (:func:`_fourd.bin_patterns`)
    and ``dense`` holds weights of the binned pattern.
    """
    weights = _fourd.DetectorWeights(dense)
    arr = full.data
    return arr.map_blocks(
        _apply, weights, binning, dtype=np.float64, drop_axis=4,
        chunks=(*arr.chunks[:3], (weights.n_out,)),
    )


def _detector_range(
    full: xr.DataArray, detector: str, inner: float | None, outer: float | None
) -> tuple[float, float]:
    """``(inner, outer)`` in pattern pixels, validated against the recorded pattern.

    ``detector`` is one of :data:`DETECTORS` or ``"rings"`` (descriptors: the whole pattern).
    """
    rmax = _fourd.max_radius(full.shape[3:], tuple(full.attrs["center"]))
    units, kps = full.attrs["k_units"], full.attrs["k_pixel_size"]
    radius = full.attrs["bf_radius"]
    defaults = {
        "bf": (0.0, radius), "abf": (0.5 * radius, radius),
        "adf": (1.1 * radius, min(3.0 * radius, rmax)), "haadf": (3.0 * radius, rmax),
        "com": (0.0, math.inf), "icom": (0.0, math.inf), "rings": (0.0, rmax),
    }[detector]
    if (inner is None or outer is None) and detector in ("bf", "abf", "adf", "haadf") \
            and radius <= 0:
        raise DataError(
            f"no bright-field disk was found in the mean pattern, so the default {detector!r} "
            f"range is unknown; pass inner= and outer= in {units}."
        )
    lo = defaults[0] if inner is None else float(inner) / kps
    hi = defaults[1] if outer is None else float(outer) / kps
    shown = f"inner={lo * kps:.4g}, outer={hi * kps:.4g} {units}"
    if lo >= rmax or (hi > rmax + 1e-9 and math.isfinite(hi)):
        raise ParameterError(
            f"the {detector!r} detector ({shown}) leaves the recorded pattern, whose maximum "
            f"angle about the centre is {rmax * kps:.4g} {units} "
            f"(bright-field disk radius {radius * kps:.4g} {units}). Choose outer <= "
            f"{rmax * kps:.4g}."
        )
    if lo < 0 or not lo < hi:
        raise ParameterError(
            f"the {detector!r} detector needs 0 <= inner < outer; got {shown}. Swap or fix them."
        )
    return lo, hi


def _com_field(full: xr.DataArray, outer: float) -> da.Array:
    """``(frame, sy, sx, 2)`` centre of mass (dy, dx) in k units; 0 for an empty pattern."""
    sums = _reduce(full, _fourd.com_weights(full.shape[3:], tuple(full.attrs["center"]), outer))
    kps = full.attrs["k_pixel_size"]

    def com(block: np.ndarray) -> np.ndarray:
        total = block[..., :1]
        out = np.zeros((*block.shape[:-1], 2))
        np.divide(block[..., 1:], total, out=out, where=total != 0)
        return out * kps

    return sums.map_blocks(com, dtype=np.float64, chunks=(*sums.chunks[:3], (2,)))


def _icom(block: np.ndarray) -> np.ndarray:
    return np.stack([_fourd.integrate_gradient(f[..., 0], f[..., 1]) for f in block])


def virtual_image(
    data: Any,
    *,
    detector: str = "adf",
    inner: float | None = None,
    outer: float | None = None,
    chunks: Any = "auto",
) -> xr.DataArray:
    """Reduce a 4D-STEM dataset to a virtual detector image, chunk by chunk.

    Parameters
    ----------
    data : xarray.DataArray or array-like
        4D-STEM data (see :func:`open_4dstem`).
    detector : {"adf", "bf", "abf", "haadf", "com", "icom"}
        The annulus ``inner <= k < outer`` summed per pattern: ``bf`` 0–R, ``abf`` 0.5–1 R,
        ``adf`` 1.1–3 R (clipped to the pattern), ``haadf`` 3 R to the pattern edge, where R
        is the bright-field disk radius (attr ``bf_radius``); ``com`` the centre of mass of
        each pattern relative to ``center``; ``icom`` its Fourier integral (iCoM / DPC,
        Lazić et al. 2016), ∝ the projected potential.
    inner, outer : float, optional
        Detector angles in the data's k units (mrad when calibrated, else pixels) overriding
        the defaults above. For ``com``/``icom``, ``outer`` limits the pattern used.
    chunks : "auto", int or tuple
        Tile size of the returned image stack (default 1024 × 1024, see
        :func:`dmotif._image.normalize_chunks`).

    Returns
    -------
    xarray.DataArray
        An image stack ``(frame, y, x)`` float32 (one frame per 4D frame), scan calibration as
        ``pixel_size``/``units``; attrs ``detector``, ``inner``, ``outer`` (k units). For
        ``com``, a DataArray ``(component, frame, y, x)`` with ``component = ["y", "x"]``
        (k units): each component is an image stack. ``icom`` is in k units × scan pixels.

    Raises
    ------
    ParameterError
        For an unknown detector, ``inner >= outer`` or an annulus beyond the pattern.
    DataError
        For data that are not 4D-STEM (e.g. a 3-D array).

    Examples
    --------
    >>> import numpy as np, dmotif
    >>> data = np.ones((8, 8, 16, 16), np.float32)
    >>> img = dmotif.virtual_image(data, detector="adf", inner=2, outer=6)
    >>> img.dims, float(img[0, 0, 0])
    (('frame', 'y', 'x'), 100.0)
    """
    if detector not in DETECTORS:
        raise ParameterError(f"unknown detector {detector!r}; choose one of {list(DETECTORS)}.")
    full = _as_4dstem(data)
    lo, hi = _detector_range(full, detector, inner, outer)
    kps, k_units = full.attrs["k_pixel_size"], full.attrs["k_units"]
    if detector in ("com", "icom"):
        field = _com_field(full, hi)
        if detector == "com":
            parts = [_stack(field[..., c], full, chunks) for c in range(2)]
            out = xr.concat(parts, dim="component").assign_coords(component=["y", "x"])
            out.attrs = dict(parts[0].attrs)
        else:
            whole = field.rechunk({0: 1, 1: -1, 2: -1})
            out = _stack(whole.map_blocks(_icom, dtype=np.float64, drop_axis=3), full, chunks)
    else:
        weights = _fourd.annulus_weights(full.shape[3:], tuple(full.attrs["center"]), lo, hi)
        out = _stack(_reduce(full, weights)[..., 0], full, chunks)
    out.attrs.update({"detector": detector, "signal": detector.upper(), "k_units": k_units,
                      "inner": lo * kps, "outer": hi * kps if math.isfinite(hi) else None})
    out.name = detector
    return out


def _stack(arr: da.Array, full: xr.DataArray, chunks: Any) -> xr.DataArray:
    calibrated = full.attrs["scan_units"] != "px"
    stack = as_image_stack(
        arr.astype(np.float32),
        pixel_size=full.attrs["scan_pixel_size"] if calibrated else None,
        units=full.attrs["scan_units"] if calibrated else None,
        chunks=DEFAULT_TILE if chunks in (None, "auto") else chunks,
    )
    if "source" in full.attrs:
        stack.attrs["source"] = full.attrs["source"]
    return stack


# --------------------------------------------------------------------------- descriptors

#: Diffraction descriptors of :func:`diffraction_features`.
FEATURE_KINDS = ("radial", "zernike")
#: Patterns larger than this (pixels along the longer side) are binned before Zernike moments.
ZERNIKE_PATTERN_SIZE = 64


def _radial_features(block: np.ndarray, n_rings: int, m_max: int, rotinv: bool) -> np.ndarray:
    """Ring sums ``(..., n_rings * (2 m_max + 1))`` → ring means and harmonics (or magnitudes)."""
    per = 2 * m_max + 1
    rings = block.reshape(*block.shape[:-1], n_rings, per)
    if rotinv:
        mag = np.hypot(rings[..., 1::2], rings[..., 2::2])
        rings = np.concatenate([rings[..., :1], mag], axis=-1)
    return rings.reshape(*block.shape[:-1], -1)


def _zernike_features(block: np.ndarray, radius: float, n_max: int, rotinv: bool) -> np.ndarray:
    """Real Zernike coefficients ``(..., n_coefficients)`` → features (magnitudes if rotinv)."""
    if not rotinv:
        return block
    flat = block.reshape(-1, block.shape[-1])
    out = _zernike.rotation_invariant(flat, _zernike.zernike_basis(radius, n_max))
    return out.reshape(*block.shape[:-1], out.shape[-1])


def _finish(block: np.ndarray, describe: Any, args: tuple, normalize: bool) -> np.ndarray:
    """Weighted sums ``(..., n + 1)`` (last: the pattern mean) → float32 features."""
    out = describe(block[..., :-1], *args)
    if normalize:
        mean = block[..., -1:]
        out = np.divide(out, mean, out=np.zeros_like(out), where=mean > 0)
    return out.astype(np.float32)


def _zernike_setup(
    full: xr.DataArray, lo: float, hi: float, n_max: Any, binning: Any, rotinv: bool
) -> tuple[np.ndarray, int, tuple, dict[str, Any], dict[str, Any]]:
    """Weights on the binned pattern, binning, kernel args, feature coords and attrs."""
    from .zernike import _check_n_max, _labels

    n_max = _check_n_max(n_max)
    pattern, kps, units = full.shape[3:], full.attrs["k_pixel_size"], full.attrs["k_units"]
    if binning is None:
        binning = -(-max(pattern) // ZERNIKE_PATTERN_SIZE)
    if isinstance(binning, bool) or not isinstance(binning, int | np.integer) or not (
        1 <= binning <= min(pattern) // 4
    ):
        raise ParameterError(
            f"binning must be an integer from 1 to {min(pattern) // 4} for {pattern[0]} × "
            f"{pattern[1]} patterns; got {binning!r}. None bins to at most "
            f"{ZERNIKE_PATTERN_SIZE} px."
        )
    binning = int(binning)
    shape, center = _fourd.binned_geometry(pattern, tuple(full.attrs["center"]), binning)
    radius = min(hi / binning, _fourd.max_radius(shape, center))
    if radius < 2 or n_max > radius:
        raise ParameterError(
            f"the Zernike disk (outer={hi * kps:.4g} {units}) spans {radius:.3g} px of the "
            f"patterns binned {binning} × {binning}, too few for n_max={n_max} (a disk of radius "
            f"R px resolves n_max <= R, and R must be >= 2). Use n_max <= "
            f"{max(0, math.floor(radius))}, a smaller binning or a larger outer."
        )
    dense = np.concatenate([
        _fourd.zernike_weights(shape, center, radius, n_max, lo / binning),
        np.full((1, *shape), 1.0 / (shape[0] * shape[1] * binning * binning)),
    ])
    n, m, part = _labels(_zernike.zernike_basis(radius, n_max), rotinv)
    coords = {"n": ("feature", n), "m": ("feature", m), "part": ("feature", part)}
    attrs = {"n_max": n_max, "binning": binning, "radius_px": radius * binning}
    return dense, binning, (radius, n_max, rotinv), coords, attrs


def _radial_setup(
    full: xr.DataArray, lo: float, hi: float, n_rings: Any, m_max: Any, rotinv: bool
) -> tuple[np.ndarray, int, tuple, dict[str, Any], dict[str, Any]]:
    """Ring weights, binning (none), kernel args, feature coords and attrs."""
    if int(n_rings) < 1 or int(m_max) < 0:
        raise ParameterError(
            f"n_rings must be >= 1 and m_max >= 0; got n_rings={n_rings!r}, m_max={m_max!r}."
        )
    n_rings, m_max = int(n_rings), int(m_max)
    pattern, center = full.shape[3:], tuple(full.attrs["center"])
    dense = np.concatenate([
        _fourd.ring_weights(pattern, center, np.linspace(lo, hi, n_rings + 1), m_max),
        np.full((1, *pattern), 1.0 / (pattern[0] * pattern[1])),
    ])
    per = m_max + 1 if rotinv else 2 * m_max + 1
    ring = np.repeat(np.arange(n_rings), per)
    if rotinv:
        m = np.tile(np.arange(m_max + 1), n_rings)
        part = np.where(m == 0, "mean", "abs")
    else:
        m = np.tile(np.concatenate([[0], np.repeat(np.arange(1, m_max + 1), 2)]), n_rings)
        part = np.tile(["mean", *["cos", "sin"] * m_max], n_rings)
    coords = {"ring": ("feature", ring), "m": ("feature", m), "part": ("feature", part)}
    return dense, 1, (n_rings, m_max, rotinv), coords, {"n_rings": n_rings, "m_max": m_max}


def diffraction_features(
    data: Any,
    atoms: xr.Dataset | None = None,
    *,
    kind: str = "radial",
    n_rings: int = 8,
    m_max: int = 6,
    n_max: int = 10,
    binning: int | None = None,
    inner: float = 0.0,
    outer: float | None = None,
    rotinv: bool = True,
    normalize: bool = True,
) -> xr.DataArray:
    """Describe each probe position's diffraction pattern: diffraction motifs' features.

    ``kind="radial"``: rings ``inner <= k < outer`` split into ``n_rings`` equal widths; per
    ring the mean intensity and, for ``m = 1..m_max``, the angular Fourier harmonic of order
    ``m`` (the ring mean of ``I e^{-imθ}``). ``kind="zernike"``: the Zernike moments of the
    pattern on the disk ``k < outer`` about the direct beam, taken as the unit disk, with the
    same basis and conventions as :func:`dmotif.zernike_features` for real-space patches. With
    ``rotinv`` the angular parts enter as magnitudes (invariant to a rotation of the pattern),
    otherwise as cos/sin parts (orientation kept).

    Both are one weighted sum per pattern and output (:mod:`dmotif._fourd`), mapped over the
    scan chunks, so each pattern's features are bit-identical whatever the chunking.

    Parameters
    ----------
    data : xarray.DataArray or array-like
        4D-STEM data (see :func:`open_4dstem`).
    atoms : xarray.Dataset, optional
        An atom table (``frame``, ``y``, ``x`` in pixels of the virtual image = scan steps):
        features are taken at each atom's nearest probe position. Default: every position.
    kind : {"radial", "zernike"}
        The descriptor.
    n_rings : int
        ``radial``: number of rings.
    m_max : int
        ``radial``: highest angular order (0: azimuthal averages only).
    n_max : int
        ``zernike``: highest radial order (10 gives 66 coefficients, 36 with ``rotinv``); at
        most the disk radius in (binned) pattern pixels.
    binning : int, optional
        ``zernike``: sum ``binning × binning`` blocks of detector pixels before the moments
        (a ragged edge is dropped). Default: the smallest factor that brings the patterns to
        at most 64 px (:data:`ZERNIKE_PATTERN_SIZE`), e.g. 128² → 64². The cost per pattern
        is the number of disk pixels times the number of coefficients, so 2 × 2 binning makes
        it 4× cheaper, while a disk of 32 px still resolves orders far above the usual
        ``n_max`` ≤ 20.
    inner, outer : float
        Radial range in k units (mrad when calibrated, else pixels); ``outer`` defaults to the
        largest disk recorded whole. For ``zernike``, ``outer`` is the radius of the unit disk
        and the pixels closer than ``inner`` to the centre are left out (e.g. ``inner`` just
        above the bright-field disk to describe the dark field only).
    rotinv : bool
        Angular magnitudes (True) or cos/sin parts (False).
    normalize : bool
        Divide by each pattern's mean intensity, so that features do not follow the dose.

    Returns
    -------
    xarray.DataArray
        float32, dims ``("atom", "feature")`` with ``atoms``, else ``("position", "feature")``
        with coords ``frame``, ``y``, ``x`` (scan steps) over ``position``. Over ``feature``:
        ``radial`` has coords ``ring``, ``m``, ``part`` (``"mean"``, ``"abs"``, ``"cos"``,
        ``"sin"``); ``zernike`` has ``n``, ``m``, ``part`` (``"cos"``, ``"sin"``, ``"abs"``)
        as :func:`dmotif.zernike_features`. attrs: ``kind``, ``inner``, ``outer``,
        ``k_units``, ``rotinv``, ``normalize`` and the kind's parameters (``zernike``:
        ``n_max``, ``binning``, ``radius_px``, the disk radius in unbinned pattern pixels).

    Raises
    ------
    ParameterError
        For an unknown kind, ``n_rings < 1``, ``m_max < 0``, a range beyond the pattern,
        a bad ``binning``, or ``n_max`` above the radius of the (binned) disk.
    DataError
        When an atom lies outside the scan.

    Notes
    -----
    The Zernike disk is sampled as a real-space patch is about a sub-pixel atom: cubic B-spline
    interpolation at the basis' pixel offsets from the (binned) centre, mirrored at the
    pattern's edge. The moments of a pattern therefore equal
    ``dmotif.zernike_features(pattern, atom at center, radius=..., n_max=...)`` up to rounding.

    Examples
    --------
    >>> import numpy as np, dmotif
    >>> data = np.random.default_rng(0).random((4, 4, 16, 16)).astype(np.float32)
    >>> dmotif.diffraction_features(data, n_rings=3, m_max=2).shape
    (16, 9)
    >>> dmotif.diffraction_features(data, kind="zernike", n_max=6).shape
    (16, 16)
    """
    if kind not in FEATURE_KINDS:
        raise ParameterError(
            f"unknown diffraction feature kind {kind!r}; choose one of {list(FEATURE_KINDS)}."
        )
    full = _as_4dstem(data)
    lo, hi = _detector_range(full, "rings", inner, outer)
    if kind == "zernike":
        dense, binning, args, feature_coords, extra = _zernike_setup(
            full, lo, hi, n_max, binning, rotinv)
        describe = _zernike_features
    else:
        dense, binning, args, feature_coords, extra = _radial_setup(
            full, lo, hi, n_rings, m_max, rotinv)
        describe = _radial_features
    sums = _reduce(full, dense, binning)
    n_feat = feature_coords["part"][1].size
    feats = sums.map_blocks(_finish, describe, args, normalize, dtype=np.float32,
                            chunks=(*sums.chunks[:3], (n_feat,)))
    attrs = {"kind": kind, "inner": lo * full.attrs["k_pixel_size"],
             "outer": hi * full.attrs["k_pixel_size"], "k_units": full.attrs["k_units"],
             "rotinv": rotinv, "normalize": normalize, **extra}
    nf, ny, nx = full.shape[:3]
    if atoms is None:
        f, y, x = (a.ravel() for a in np.indices((nf, ny, nx)))
        flat = feats.reshape(nf * ny * nx, feats.shape[-1])
        return xr.DataArray(flat, dims=("position", "feature"), name="diffraction",
                            coords={"frame": ("position", f), "y": ("position", y),
                                    "x": ("position", x), **feature_coords}, attrs=attrs)
    f = atoms["frame"].values.astype(np.int64) if "frame" in atoms else np.zeros(
        atoms.sizes["atom"], np.int64)
    iy = np.rint(atoms["y"].values).astype(np.int64)
    ix = np.rint(atoms["x"].values).astype(np.int64)
    outside = (f < 0) | (f >= nf) | (iy < 0) | (iy >= ny) | (ix < 0) | (ix >= nx)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise DataError(
            f"{int(outside.sum())} atoms lie outside the {nf} × {ny} × {nx} scan (e.g. atom {k} "
            f"at frame {f[k]}, y={atoms['y'].values[k]:.1f}, x={atoms['x'].values[k]:.1f}); "
            "detect the atoms on a virtual image of these data."
        )
    picked = feats.vindex[f, iy, ix] if f.size else da.zeros((0, feats.shape[-1]), np.float32)
    return xr.DataArray(picked, dims=("atom", "feature"), coords=feature_coords,
                        name="diffraction", attrs=attrs)
