"""Reading and writing image stacks.

``open_image`` turns arrays and files into the image stack of DESIGN.md §2; ``save_image`` writes
a stack to a zarr (v3) store, ``.npy`` or ImageJ TIFF. Formats of the microscope vendors (``.dm3``,
``.dm4``, ``.emd``, ``.mrc``, ``.hspy``) are read through rosettasciio (the ``io`` extra).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .._image import (
    STACK_DIMS,
    as_image_stack,
    check_finite_nonconstant,
    check_pixel_size,
    normalize_chunks,
    pixel_size_of,
)
from ..errors import DataError, ImageFileError
from ._npy import NpyFile, lazy_npy
from .store import (
    Result,
    atomic_file,
    is_remote,
    open_zarr_group,
    unreadable_chunks_named,
    write_dataset,
)

__all__ = [
    "SUFFIXES",
    "open_image",
    "result_image",
    "save_image",
    "source_identity",
    "source_path",
]

# Unit names rosettasciio and TIFF metadata use, to nm.
_TO_NM = {
    "nm": 1.0, "nanometer": 1.0, "nanometre": 1.0,
    "å": 0.1, "Å": 0.1, "a": 0.1, "angstrom": 0.1, "ångström": 0.1, "Ångström": 0.1,
    "pm": 1e-3, "µm": 1e3, "um": 1e3, "micron": 1e3, "micrometer": 1e3, "mm": 1e6,
    "m": 1e9, "cm": 1e7, "inch": 2.54e7,
}
_RSCIIO = {
    ".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph", ".emd": "emd",
    ".mrc": "mrc", ".hspy": "hspy",
}


def unit_to_nm(unit: Any) -> float | None:
    """nm per ``unit``, or None for an unknown or absent unit (then the image is in pixels)."""
    if not unit or not isinstance(unit, str):
        return None
    return _TO_NM.get(unit, _TO_NM.get(unit.strip().lower()))


SUFFIXES = (".npy", ".tif", ".tiff", ".zarr", *_RSCIIO)


def open_image(
    source: Any,
    *,
    pixel_size: float | None = None,
    chunks: Any = "auto",
    check: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> xr.DataArray:
    """Open an image or image stack as a lazy, chunked ``(frame, y, x)`` DataArray.

    Parameters
    ----------
    source : str, os.PathLike, array, hyperspy Signal2D or list of Signal2D
        An array (2-D or 3-D); a (lazy) HyperSpy ``Signal2D``, its one navigation axis becoming
        ``frame``, or a list of same-shaped ``Signal2D`` (one frame each), with the signal axes'
        calibration (scale, units, offset) in the coords; or a file: ``.npy``,
        ``.tif``/``.tiff`` (pixel size from the ImageJ or resolution tags), a ``.zarr`` store
        (a stack saved by :func:`save_image`, a synthetic sample, or a plain 2-D/3-D zarr
        array; local or an fsspec URL such as ``s3://bucket/scan.zarr``), or through
        rosettasciio ``.dm3``, ``.dm4``, ``.emd``, ``.mrc``, ``.hspy``.
    pixel_size : float, optional
        nm per pixel; overrides the file's calibration (use it when the file has none).
    chunks : "auto", int or tuple
        Tile size (default 1024 × 1024 per frame).
    check : bool
        Read the pixels once to refuse NaN/inf and constant frames now rather than deep inside
        a run. Pass False to keep opening free of reads (e.g. a huge remote stack).
    storage_options : dict, optional
        fsspec options for a remote ``.zarr`` (endpoint, credentials); by default they come
        from the environment (e.g. ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``).

    Returns
    -------
    xarray.DataArray
        dims ``("frame", "y", "x")``, float32, dask-backed, coords in nm where calibrated
        (attrs ``units``, ``pixel_size``), else in pixels; attrs ``source`` name the input.

    Raises
    ------
    ImageFileError
        When the file does not exist, cannot be read, or has an unsupported suffix.
    DataError
        When the data are not a 2-D image or a 3-D stack, or hold NaN/inf or constant frames.

    Examples
    --------
    >>> import numpy as np, dmotif
    >>> img = dmotif.open_image(np.ones((64, 80)), pixel_size=0.02)
    >>> img.dims, img.shape, img.attrs["units"]
    (('frame', 'y', 'x'), (1, 64, 80), 'nm')
    """
    if pixel_size is not None:
        pixel_size = check_pixel_size(pixel_size)
    from .hyperspy import is_signals, signal_stack

    if is_signals(source):
        stack = signal_stack(source, pixel_size=pixel_size, chunks=chunks)
    elif isinstance(source, np.ndarray | da.Array | xr.DataArray):
        stack = as_image_stack(source, pixel_size=pixel_size, chunks=chunks)
    else:
        stack = _open_path(source, pixel_size, chunks, storage_options)
    if check:
        with unreadable_chunks_named(source, "checking the pixels"):
            check_finite_nonconstant(stack)
    return stack


def source_path(
    source: Any, suffixes: tuple[str, ...], *, kind: str, array: str
) -> tuple[str, str]:
    """Check that ``source`` names an existing file (or a URL) of a supported format.

    Returns the path as text and its lower-case suffix; ``kind`` ("image", "4D-STEM") and
    ``array`` (what else could be passed) word the errors.
    """
    if not isinstance(source, str | os.PathLike):
        raise ImageFileError(
            f"cannot open {kind} data from a {type(source).__name__}; pass a path, a URL or "
            f"{array}."
        )
    text = os.fspath(source)
    suffix = Path(text.rstrip("/")).suffix.lower()
    if suffix not in suffixes:
        raise ImageFileError(
            f"unsupported {kind} format {suffix or '(no suffix)'!r} for {text!r}; dmotif reads "
            f"{', '.join(suffixes)}. Convert the file, or load it yourself and pass the array."
        )
    if not is_remote(text) and not Path(text).exists():
        raise ImageFileError(f"no such file: {text!r}. Check the path.")
    return text, suffix


def _open_path(
    source: Any, pixel_size: float | None, chunks: Any, storage_options: dict[str, Any] | None
) -> xr.DataArray:
    text, suffix = source_path(source, SUFFIXES, kind="image", array="a 2-D/3-D array")
    if is_remote(text) and suffix != ".zarr":
        raise ImageFileError(
            f"only .zarr stores can be read from a URL; got {text!r}. Copy the file locally."
        )
    if suffix == ".zarr":
        data, calib = _read_zarr(text, storage_options)
    elif suffix == ".npy":
        data, calib = _read_npy(text, chunks), {}
    elif suffix in (".tif", ".tiff"):
        data, calib = _read_tiff(text)
    else:
        data, calib = _read_rsciio(text, _RSCIIO[suffix])
    if pixel_size is None:
        pixel_size = calib.pop("pixel_size", None)
    stack = as_image_stack(data, pixel_size=pixel_size, chunks=chunks)
    stack.attrs["source"] = text
    return stack


def _read_zarr(
    path: str, storage_options: dict[str, Any] | None
) -> tuple[Any, dict[str, Any]]:
    group = open_zarr_group(path, storage_options)
    if group is None:  # a bare array, not a group
        import zarr

        return da.from_zarr(zarr.open_array(path, mode="r", storage_options=storage_options)), {}
    ds = xr.open_zarr(path, consolidated=False, zarr_format=3, storage_options=storage_options)
    if "image" not in ds.data_vars:
        raise ImageFileError(
            f"the zarr store {path!r} holds no 'image' variable (it has "
            f"{sorted(ds.data_vars)}). Is it a dmotif result? Use dmotif.open_result for those."
        )
    return ds["image"], {}


def _read_npy(path: str, chunks: Any) -> Any:
    """A 2-D/3-D ``.npy`` file as a dask array in tiles, each read (memory-mapped) by its own
    task; every way the file can be unreadable is an ImageFileError."""
    npy = open_npy(path)
    if npy.dtype.kind not in "biuf":
        raise DataError(
            f"{path!r} holds {npy.dtype} data; an image must be numeric (integers or floats)."
        )
    if npy.ndim not in (2, 3):
        return lazy_npy(npy, "auto")  # as_image_stack names what is wrong
    tiles = normalize_chunks(chunks, (1,) * (3 - npy.ndim) + npy.shape)
    return lazy_npy(npy, tiles[3 - npy.ndim:])


def open_npy(path: str) -> NpyFile:
    """A ``.npy`` file's header, checked to be mappable; an ImageFileError otherwise."""
    if Path(path).is_dir():
        raise ImageFileError(f"{path!r} is a folder, not a .npy file. Check the path.")
    try:
        return NpyFile(path)
    except EOFError:
        raise ImageFileError(f"{path!r} is empty (0 bytes or no array). Save it again.") from None
    except (OSError, ValueError) as exc:
        # Truncated files fail to map ("mmap length is greater than file size"), object arrays
        # cannot be mapped, and a file of another format has no .npy header.
        raise ImageFileError(
            f"cannot read {path!r} as a .npy array ({exc}); it may be truncated, hold Python "
            "objects or not be a .npy file. Save it again with numpy.save."
        ) from None


def _read_tiff(path: str) -> tuple[np.ndarray, dict[str, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            page = tif.pages.first
            calib: dict[str, Any] = {}
            ij = tif.imagej_metadata or {}
            res = page.tags.get("XResolution")
            if res is not None:
                num, den = res.value
                per_unit = num / den if den else 0.0
                unit = ij.get("unit")
                if unit is None:
                    runit = page.tags.get("ResolutionUnit")
                    unit = {2: "inch", 3: "cm"}.get(int(runit.value) if runit else 1)
                factor = unit_to_nm(unit)
                if factor is not None and per_unit > 0:
                    calib["pixel_size"] = factor / per_unit
    except (OSError, ValueError, tifffile.TiffFileError) as exc:
        raise ImageFileError(f"cannot read TIFF {path!r}: {exc}") from exc
    if data.ndim == 3 and data.shape[-1] in (3, 4) and data.shape[0] > 4:
        raise DataError(
            f"{path!r} looks like an RGB picture (shape {data.shape}), not a detector image. "
            "Export the raw signal (grey scale) from the microscope software."
        )
    return data, calib


def read_rsciio_signals(path: str, plugin: str) -> list[dict[str, Any]]:
    """The signals (dicts with ``data``, ``axes``…) of a file, lazily, via rosettasciio."""
    import importlib

    try:
        reader = importlib.import_module(f"rsciio.{plugin}").file_reader
    except ImportError as exc:
        raise ImageFileError(
            f"reading {Path(path).suffix} files needs rosettasciio: pip install 'dmotif[io]' "
            f"({exc})."
        ) from exc
    try:
        return reader(path, lazy=True)
    except Exception as exc:  # rosettasciio raises many types for a corrupt file
        raise ImageFileError(f"cannot read {path!r} with rosettasciio ({plugin}): {exc}") from exc


def _read_rsciio(path: str, plugin: str) -> tuple[Any, dict[str, Any]]:
    signals = read_rsciio_signals(path, plugin)
    images = [s for s in signals if np.ndim(s["data"]) in (2, 3)]
    if not images:
        shapes = [tuple(np.shape(s["data"])) for s in signals]
        raise DataError(
            f"{path!r} holds no 2-D image or 3-D stack (signals of shapes {shapes}). For 4D-STEM "
            "data use dmotif.open_4dstem."
        )
    sig = images[0]
    axes = sig.get("axes", [])
    calib: dict[str, Any] = {}
    last = axes[-1] if axes else {}
    factor = unit_to_nm(last.get("units"))
    if factor is not None:
        calib["pixel_size"] = float(last.get("scale", 1.0) or 1.0) * factor
    return sig["data"], calib


def save_image(
    stack: xr.DataArray,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write an image stack to ``path``: a ``.zarr`` store (v3), ``.npy`` or ``.tif``.

    The zarr store is written atomically (to a temporary sibling, moved into place when
    complete) and keeps coords and calibration; ``.npy`` keeps pixels only; ``.tif`` is an
    ImageJ hyperstack with the pixel size in nm.

    Parameters
    ----------
    stack : xarray.DataArray
        An image or stack (anything :func:`open_image` accepts as an array).
    path : str or os.PathLike
        Output file; its suffix chooses the format. Local, or an fsspec URL for ``.zarr``.
    overwrite : bool
        Replace an existing output. Default: refuse.
    storage_options : dict, optional
        fsspec options for a remote ``.zarr``.

    Returns
    -------
    str
        The path written.
    """
    stack = as_image_stack(stack)
    text = os.fspath(path)
    suffix = Path(text.rstrip("/")).suffix.lower()
    if suffix == ".zarr":
        write_dataset(stack.to_dataset(name="image"), text, overwrite=overwrite,
                      storage_options=storage_options)
        return text
    if suffix not in (".npy", ".tif", ".tiff"):
        raise ImageFileError(
            f"save_image writes .zarr, .npy or .tif; got {suffix or '(no suffix)'!r} in {text!r}."
        )
    with atomic_file(text, overwrite=overwrite) as tmp:
        data = stack.data.compute()
        if suffix == ".npy":
            with open(tmp, "wb") as fh:
                np.save(fh, data)
        else:
            import tifffile

            ps = pixel_size_of(stack)
            kwargs: dict[str, Any] = {"imagej": True, "metadata": {"axes": "ZYX"}}
            if ps is not None:
                kwargs["resolution"] = (1.0 / ps, 1.0 / ps)
                kwargs["metadata"]["unit"] = "nm"
            tifffile.imwrite(tmp, data, **kwargs)
    return text


def source_identity(source: Any) -> dict[str, Any]:
    """Describe the input of a run: its path, size and a SHA-256 checksum.

    A file is hashed whole; a directory store by its file names, sizes and metadata documents;
    an in-memory array (or HyperSpy signal) by its bytes.
    """
    digest = hashlib.sha256()
    from .hyperspy import is_signals, signal_stack

    if is_signals(source):  # nothing on disk to name: identified by its pixels, as an array
        source = signal_stack(source).data
    if isinstance(source, np.ndarray | da.Array | xr.DataArray):
        arr = source.data if isinstance(source, xr.DataArray) else source
        digest.update(np.ascontiguousarray(np.asarray(arr)).tobytes())
        return {"path": None, "kind": "array", "shape": list(np.shape(arr)),
                "sha256": digest.hexdigest()}
    text = os.fspath(source)
    if is_remote(text):
        return {"path": text, "kind": "url", "sha256": None}
    p = Path(text)
    if p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            digest.update(f"{f.relative_to(p)}:{f.stat().st_size}".encode())
            if f.name in ("zarr.json", ".zarray", ".zattrs"):
                digest.update(f.read_bytes())
        size = sum(q.stat().st_size for q in p.rglob("*") if q.is_file())
    else:
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        size = p.stat().st_size
    return {"path": str(p.resolve()), "kind": "file", "bytes": size,
            "sha256": digest.hexdigest()}



def result_image(result: Result, image: Any = None) -> xr.DataArray:
    """The image stack behind a result: ``image`` if given, else the run's recorded input.

    Parameters
    ----------
    result : Result
        An opened result store.
    image : path, array, DataArray or Signal2D, optional
        The image; by default the file named by ``result.config["input"]["path"]`` (a relative
        path is tried against the working directory, then beside the store).

    Returns
    -------
    xarray.DataArray
        The stack, opened lazily and unchecked (it was checked when the run read it).

    Raises
    ------
    ImageFileError
        When the result records no image, or it cannot be opened; pass ``image``.
    """
    if isinstance(image, xr.DataArray) and image.dims == STACK_DIMS and image.chunks:
        return image  # already a stack: keep its tiling
    if image is not None and not isinstance(image, str | os.PathLike):
        return open_image(image, check=False)
    record = result.config.get("input")
    path = image if image is not None else (
        record.get("path") if isinstance(record, dict) else None)
    if path is None:
        raise ImageFileError(
            f"{result.path!r} does not record its image (config['input']['path']); "
            "pass the image explicitly (image=... / --image)."
        )
    text = os.fspath(path)
    beside = os.path.join(os.path.dirname(os.path.abspath(result.path)), text)
    if not os.path.isabs(text) and not os.path.exists(text) and os.path.exists(beside):
        text = beside
    try:
        return open_image(text, check=False)
    except ImageFileError as exc:
        raise ImageFileError(
            f"cannot open the image of {result.path!r}: {exc} If it moved, pass its "
            "new path (image=... / --image)."
        ) from exc
