"""Several input files as one run: paths, globs and folders, opened as one frame stack.

Motifs are learned across all the files of a run, so that the same motif gets the same label
in every image: the files become the frames of one ``(frame, y, x)`` stack, and each frame
keeps the identity of its file (path, size, SHA-256 checksum) and its calibration.

* **Sizes**: frames of different sizes are padded to the largest height and width by
  mirroring the image across its bottom and right edges (:func:`pad_frames`); atoms found in
  the padding are dropped (:func:`drop_padding`), so a smaller image gives the atoms it holds.
* **Pixel sizes**: the Zernike patch radius is in pixels, so motifs can be compared only at
  one pixel size. Files whose pixel sizes differ by more than :data:`PIXEL_SIZE_TOLERANCE`
  are refused with the two values; resample them to one pixel size, or run them apart.
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .._image import as_image_stack, pixel_size_of
from ..errors import DataError, ImageFileError
from .images import SUFFIXES, open_image, source_identity, unit_to_nm
from .store import is_remote

__all__ = [
    "PIXEL_SIZE_TOLERANCE",
    "InputFiles",
    "drop_padding",
    "expand_inputs",
    "identify",
    "input_folders",
    "is_several",
    "open_inputs",
    "pad_frames",
]

#: Largest relative difference between the pixel sizes of two files of one run.
PIXEL_SIZE_TOLERANCE = 1e-3
_GLOB_CHARS = frozenset("*?[")


def _is_glob(text: str) -> bool:
    return not is_remote(text) and bool(_GLOB_CHARS & set(text))


def _is_folder(text: str) -> bool:
    """A local folder not named as an image (a ``*.zarr`` store is one; a folder ``x.npy``
    is a mistake that opening it as an image reports)."""
    return (not is_remote(text) and Path(text).is_dir()
            and Path(text.rstrip("/")).suffix.lower() not in SUFFIXES)


def is_several(source: Any) -> bool:
    """True when ``source`` names input files rather than one image: a list or tuple of paths,
    a glob pattern, or a folder (other than a ``.zarr`` store or a folder named as an image)."""
    if isinstance(source, list | tuple):
        return bool(source) and all(isinstance(s, str | os.PathLike) for s in source)
    if isinstance(source, str | os.PathLike):
        text = os.fspath(source)
        return _is_glob(text) or _is_folder(text)
    return False


def input_folders(source: Any) -> list[str]:
    """The folders among the inputs ``source`` names (an output may not sit inside them)."""
    items = list(source) if isinstance(source, list | tuple) else [source]
    return [os.fspath(s) for s in items if isinstance(s, str | os.PathLike)
            and _is_folder(os.fspath(s))]


def expand_inputs(source: Any) -> list[str]:
    """The input files that ``source`` names, in order.

    Parameters
    ----------
    source : path, glob, folder, or a list of them
        A folder gives the images directly inside it (files and ``.zarr`` stores with a
        suffix :func:`dmotif.open_image` reads), sorted by name; a glob gives its matches,
        sorted; a list keeps its order. A file named twice is read once.

    Returns
    -------
    list of str

    Raises
    ------
    ImageFileError
        When a glob matches nothing or a folder holds no image.
    """
    items = list(source) if isinstance(source, list | tuple) else [source]
    out: list[str] = []
    for item in items:
        text = os.fspath(item)
        if _is_glob(text):
            found = sorted(glob.glob(text))
            if not found:
                raise ImageFileError(f"no file matches {text!r}. Check the pattern.")
        elif _is_folder(text):
            found = sorted(str(p) for p in Path(text).iterdir()
                           if p.suffix.lower() in SUFFIXES and not p.name.startswith("."))
            if not found:
                raise ImageFileError(
                    f"the folder {text!r} holds no image ({', '.join(SUFFIXES)}). Check the path."
                )
        else:
            found = [text]
        out.extend(f for f in found if f not in out)
    return out


@dataclass(frozen=True)
class InputFiles:
    """The input files of a run as one stack.

    Attributes
    ----------
    image : xarray.DataArray
        Every frame of every file, in order, ``(frame, y, x)``, padded to a common shape.
    files : list of dict
        Per file: its ``path``, the stack's ``frames`` it became, its own ``shape``
        ``[ny, nx]``, ``pixel_size`` and ``units`` (as the file gives them); see
        :func:`identify` for its checksum.
    """

    image: xr.DataArray
    files: list[dict[str, Any]]


def open_inputs(
    paths: list[str], *, pixel_size: float | None = None, chunks: Any = "auto"
) -> InputFiles:
    """Open input files lazily as one stack; see the module docstring for sizes and pixel sizes.

    Parameters
    ----------
    paths : list of str
        Files :func:`dmotif.open_image` reads (e.g. from :func:`expand_inputs`).
    pixel_size : float, optional
        nm per pixel for every file, overriding their calibration.
    chunks : "auto", int or tuple
        Tile size of the stack.

    Returns
    -------
    InputFiles

    Raises
    ------
    DataError
        When the files' pixel sizes differ, or some are calibrated and others not.
    """
    images = [open_image(p, pixel_size=pixel_size, chunks=chunks, check=False) for p in paths]
    scale = _common_pixel_size(paths, images)
    files, start = [], 0
    for path, img in zip(paths, images, strict=True):
        n = img.sizes["frame"]
        files.append({"path": path, "frames": list(range(start, start + n)),
                      "shape": [img.sizes["y"], img.sizes["x"]],
                      "pixel_size": pixel_size_of(img), "units": img.attrs.get("units", "px")})
        start += n
    ny = max(img.sizes["y"] for img in images)
    nx = max(img.sizes["x"] for img in images)
    data = da.concatenate([pad_frames(img.data, ny, nx) for img in images], axis=0)
    stack = as_image_stack(data, pixel_size=scale, chunks=chunks)
    stack.attrs["source"] = [f["path"] for f in files]
    return InputFiles(stack, files)


def identify(files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``files`` (as :class:`InputFiles` lists them) with each file's identity: its absolute
    ``path``, ``bytes`` and ``sha256`` (see :func:`dmotif.io.images.source_identity`)."""
    return [{**f, **source_identity(f["path"])} for f in files]


def _common_pixel_size(paths: list[str], images: list[xr.DataArray]) -> float | None:
    """The pixel size (nm) all ``images`` share, None when none is calibrated."""
    sizes = [_nm_per_pixel(img) for img in images]
    if all(s is None for s in sizes):
        return None
    first = next(i for i, s in enumerate(sizes) if s is not None)
    for i, s in enumerate(sizes):
        if s is None or not math.isclose(s, sizes[first], rel_tol=PIXEL_SIZE_TOLERANCE):
            seen = "no calibration" if s is None else f"{s:.6g} nm"
            raise DataError(
                f"the inputs have different pixel sizes: {paths[first]!r} {sizes[first]:.6g} nm, "
                f"{paths[i]!r} {seen}. Motifs are compared in patches of a fixed size in "
                "pixels, so a run needs one pixel size: resample the files to one, run them "
                "apart, or give pixel_size (--config) if the calibration is wrong."
            )
    return sizes[first]


def _nm_per_pixel(img: xr.DataArray) -> float | None:
    size = pixel_size_of(img)
    factor = unit_to_nm(img.attrs.get("units"))
    return None if size is None else size * (factor or 1.0)


def pad_frames(data: da.Array, ny: int, nx: int) -> da.Array:
    """Frames ``(frame, y, x)`` grown to ``ny × nx`` by mirroring them across their bottom and
    right edges (as often as needed), lazily.

    A mirror continues the lattice's local statistics (no step for the detection's smoothing
    to turn into false columns); a reflected index, not :func:`dask.array.pad`, so that padding
    wider than the image works.
    """
    if data.shape[1:] == (ny, nx):
        return data
    rows = np.pad(np.arange(data.shape[1]), (0, ny - data.shape[1]), mode="symmetric")
    cols = np.pad(np.arange(data.shape[2]), (0, nx - data.shape[2]), mode="symmetric")
    return data[:, rows, :][:, :, cols]


def drop_padding(atoms: xr.Dataset, shape: tuple[int, int] | list[int]) -> xr.Dataset:
    """The atoms whose centre lies in an image of ``shape`` ``(ny, nx)``, not in the padding
    :func:`pad_frames` added."""
    keep = (atoms["y"].values < shape[0] - 0.5) & (atoms["x"].values < shape[1] - 0.5)
    return atoms if keep.all() else atoms.isel(atom=np.flatnonzero(keep))
