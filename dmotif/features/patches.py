"""Atom-centred patches, cut tile by tile.

Every per-atom computation on the image (the patches themselves, their Zernike features) runs
through :func:`map_atoms`: an atom belongs to the tile whose core holds its nearest pixel; each
tile with atoms becomes one task that reads the tile plus a margin of ``half + READ_MARGIN``
pixels (the cubic spline's taps and prefilter) and runs a kernel of :mod:`._zernike` on
that tile's atoms; the per-tile results are gathered back into the order of the atom table.
Pixels that a patch reads outside the image are mirror-reflected from inside it (numpy's
``"symmetric"`` mode); such atoms are flagged ``edge``. The kernels compute every value from
the atom's global position, so the result is the same whatever the tiling.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from .._image import as_image_stack, whole_chunk_window
from .._shared import share
from ..errors import DataError, ParameterError
from . import _zernike

__all__ = ["extract_patches"]

# Output rows per gathered chunk are chosen so that a chunk holds about this many bytes.
_CHUNK_BYTES = 32 * 2**20


def extract_patches(
    image: Any,
    atoms: xr.Dataset,
    *,
    radius: float | None = None,
    subpixel: bool = True,
) -> xr.DataArray:
    """Cut a square patch of ``(2h+1)²`` pixels, ``h = floor(radius)``, around every atom.

    Parameters
    ----------
    image : xarray.DataArray or array-like
        The image stack ``(frame, y, x)`` (or a single ``(y, x)`` image) the atoms were found
        in; its tiling is kept.
    atoms : xarray.Dataset
        The atom table: ``frame`` (may be omitted for a single frame), ``y``, ``x`` in pixels.
        ``attrs["spacing_px"]``, when present, sets the default radius.
    radius : float, optional
        Patch radius in pixels, at least 2 and at most a quarter of the image. Default: half the
        nearest-neighbour distance (``attrs["spacing_px"]``, else the median distance from each
        atom to its nearest neighbour), which covers one column of a single-column motif.
    subpixel : bool
        True: sample the patch centred on the refined (sub-pixel) position by cubic B-spline
        interpolation, so the centre pixel is the atom. False: the pixels around the nearest
        pixel, as they are.

    Returns
    -------
    xarray.DataArray
        ``(atom, py, px)`` float32, dask-backed, in the order of ``atoms``; coords ``py``,
        ``px`` (offsets from the atom, pixels) and ``edge`` (bool, on ``atom``): the patch
        reaches beyond the image, whose pixels there are mirror images of those inside.

    Raises
    ------
    DataError
        When the atom table lacks ``y``/``x``, holds non-finite positions, positions outside the
        image or frames that the image does not have.
    ParameterError
        When ``radius`` is below 2 px or above a quarter of the image, or cannot be estimated
        (fewer than two atoms per frame and no ``spacing_px``).

    Examples
    --------
    >>> import dmotif
    >>> s = dmotif.synthetic.tmd(size=128, seed=0)
    >>> p = dmotif.extract_patches(s.image, s.atoms, radius=6)
    >>> p.dims, p.shape[1:]
    (('atom', 'py', 'px'), (13, 13))
    """
    img = as_tiled_stack(image)
    table = atom_table(atoms, img)
    r = check_radius(default_radius(atoms, table) if radius is None else radius, img.shape)
    half = math.floor(r)
    size = 2 * half + 1
    data = map_atoms(
        img, table, half, _zernike.square_patches, (size, size), np.float32,
        half=half, subpixel=bool(subpixel),
    )
    offsets = np.arange(-half, half + 1)
    coords = atom_coords(atoms, table, half, subpixel, img.shape)
    return xr.DataArray(
        data,
        dims=("atom", "py", "px"),
        coords={**coords, "py": offsets, "px": offsets},
        name="patches",
        attrs={"radius": r, "subpixel": bool(subpixel), "boundary": "symmetric",
               "units": "px"},
    )


# --------------------------------------------------------------------------- shared helpers


def as_tiled_stack(image: Any) -> xr.DataArray:
    """Validate ``image`` as a stack, keeping the tiles of a dask-backed input."""
    arr = image.data if isinstance(image, xr.DataArray) else image
    chunks: Any = "auto"
    if isinstance(arr, da.Array) and arr.ndim in (2, 3):
        chunks = tuple(c[0] for c in arr.chunks[-2:])
    return as_image_stack(image, chunks=chunks)


def atom_table(atoms: xr.Dataset, image: xr.DataArray) -> dict[str, np.ndarray]:
    """Return ``frame`` (int64), ``y`` and ``x`` (float64) of ``atoms`` after checking them."""
    if not isinstance(atoms, xr.Dataset) or "y" not in atoms or "x" not in atoms:
        found = list(atoms.data_vars) if isinstance(atoms, xr.Dataset) else type(atoms).__name__
        raise DataError(
            f"atoms must be an xarray.Dataset with variables 'frame', 'y' and 'x' (pixels); "
            f"got {found}. Pass the table from dmotif.detect_atoms or a synthetic truth."
        )
    n_frames, ny, nx = image.shape
    y = np.asarray(atoms["y"].values, dtype=np.float64).ravel()
    x = np.asarray(atoms["x"].values, dtype=np.float64).ravel()
    if "frame" in atoms:
        frame = np.asarray(atoms["frame"].values).astype(np.int64).ravel()
    elif n_frames == 1:
        frame = np.zeros(y.size, dtype=np.int64)
    else:
        raise DataError(
            f"the atom table has no 'frame' variable but the image has {n_frames} frames; "
            "add atoms['frame'] (int, the frame of each atom)."
        )
    bad = ~(np.isfinite(y) & np.isfinite(x))
    if bad.any():
        raise DataError(
            f"{int(bad.sum())} atoms have non-finite positions (first at index "
            f"{int(np.flatnonzero(bad)[0])}); drop them, e.g. atoms.dropna('atom')."
        )
    outside = (y < -0.5) | (y >= ny - 0.5) | (x < -0.5) | (x >= nx - 0.5)
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise DataError(
            f"{int(outside.sum())} atoms lie outside the {ny}×{nx} image, e.g. atom {k} at "
            f"(y={y[k]:.2f}, x={x[k]:.2f}); positions must be pixels in [-0.5, size - 0.5). "
            "Check that y/x are pixel positions (not nm) of this image."
        )
    wrong = (frame < 0) | (frame >= n_frames)
    if wrong.any():
        raise DataError(
            f"atoms refer to frames {np.unique(frame[wrong])[:5].tolist()} but the image has "
            f"{n_frames} frame(s); pass the image the atoms were found in."
        )
    return {"frame": frame, "y": y, "x": x}


def default_radius(atoms: xr.Dataset, table: dict[str, np.ndarray]) -> float:
    """Half the nearest-neighbour column distance: ``spacing_px`` or the median NN distance."""
    spacing = atoms.attrs.get("spacing_px")
    if spacing is None:
        dists = []
        for f in np.unique(table["frame"]):
            sel = table["frame"] == f
            if sel.sum() >= 2:
                pts = np.column_stack([table["y"][sel], table["x"][sel]])
                dists.append(cKDTree(pts).query(pts, k=2)[0][:, 1])
        if not dists:
            raise ParameterError(
                "cannot estimate the patch radius: no frame has two atoms and the atom table "
                "has no attrs['spacing_px']. Pass radius= (pixels)."
            )
        spacing = float(np.median(np.concatenate(dists)))
    return 0.5 * float(spacing)


def check_radius(radius: float, shape: tuple[int, int, int] | None = None) -> float:
    """Return ``radius`` as a float after checking 2 ≤ radius (≤ min(image size) / 4)."""
    try:
        r = float(radius)
    except (TypeError, ValueError):
        raise ParameterError(f"radius must be a number of pixels; got {radius!r}.") from None
    if not math.isfinite(r) or r < 2:
        raise ParameterError(
            f"radius must be at least 2 px; got {radius!r}. A patch needs a few pixels around "
            "the atom: pass e.g. radius=half the column spacing in pixels."
        )
    if shape is not None and r > (limit := min(shape[1], shape[2]) / 4):
        raise ParameterError(
            f"radius {r:g} px is larger than a quarter of the {shape[1]}×{shape[2]} image "
            f"({limit:g} px); pass a smaller radius or a larger image."
        )
    return r


def atom_coords(atoms: xr.Dataset, table: dict[str, np.ndarray], half: int, subpixel: bool,
                shape: tuple[int, int, int]) -> dict[str, Any]:
    """Coords on ``atom`` for a per-atom result: the table's own index, if any, and ``edge``.

    ``edge`` is True where the square patch of half-width ``half`` reaches beyond the image.
    """
    y, x = table["y"], table["x"]
    if not subpixel:
        y, x = np.floor(y + 0.5), np.floor(x + 0.5)
    edge = (y - half < 0) | (y + half > shape[1] - 1) | (x - half < 0) | (x + half > shape[2] - 1)
    coords: dict[str, Any] = {"edge": ("atom", edge)}
    if "atom" in atoms.coords:
        coords["atom"] = atoms["atom"].values
    return coords


def map_atoms(
    image: xr.DataArray,
    table: dict[str, np.ndarray],
    reach: int,
    kernel: Callable[..., np.ndarray],
    tail: tuple[int, ...],
    dtype: Any,
    **kwargs: Any,
) -> da.Array:
    """Run ``kernel`` on each tile's atoms; return the rows ``(atom, *tail)`` in table order.

    ``kernel(region, oy, ox, (ny, nx), ys, xs, **kwargs)`` receives the tile grown by
    ``reach + READ_MARGIN`` pixels (``reach``: the patch half-width; the margin covers the
    interpolation, see :mod:`dmotif.features._zernike`; clipped to the image), its origin
    and the frame shape, and returns one row per atom. An atom belongs to the tile holding the
    pixel nearest to it.
    """
    data = image.data
    _, ny, nx = data.shape
    n = table["y"].size
    row_bytes = np.dtype(dtype).itemsize * max(math.prod(tail), 1)
    if n == 0:
        return da.empty((0, *tail), dtype=dtype, chunks=((0,), *((t,) for t in tail)))
    bounds_y = np.cumsum((0, *data.chunks[1]))
    bounds_x = np.cumsum((0, *data.chunks[2]))
    iy = np.searchsorted(bounds_y, np.clip(np.floor(table["y"] + 0.5), 0, ny - 1), "right") - 1
    ix = np.searchsorted(bounds_x, np.clip(np.floor(table["x"] + 0.5), 0, nx - 1), "right") - 1
    tile = (table["frame"] * (len(bounds_y) - 1) + iy) * (len(bounds_x) - 1) + ix
    order = np.argsort(tile, kind="stable")
    tiles, starts, counts = np.unique(tile[order], return_index=True, return_counts=True)
    # position of every atom within its tile's result
    within = np.empty(n, dtype=np.int64)
    within[order] = np.arange(n) - np.repeat(starts, counts)
    depth = reach + _zernike.READ_MARGIN
    pieces = data.to_delayed()
    # Every task reads a slice of these (tens of MB for a million atoms): on a cluster they go
    # to each worker once instead of into the task graph.
    rows = share((table["y"][order], table["x"][order]))
    places = share((tile, within))
    results = {}
    for t, s, c in zip(tiles, starts, counts, strict=True):
        first = order[s]
        f = int(table["frame"][first])
        y0, y1 = bounds_y[iy[first]], bounds_y[iy[first] + 1]
        x0, x1 = bounds_x[ix[first]], bounds_x[ix[first] + 1]
        oy, ox = max(0, y0 - depth), max(0, x0 - depth)
        region = whole_chunk_window(data, pieces, f, oy, min(ny, y1 + depth), ox,
                                    min(nx, x1 + depth))
        results[int(t)] = dask.delayed(_run_tile, pure=True)(
            kernel, region, int(oy), int(ox), (int(ny), int(nx)), rows, int(s), int(c),
            **kwargs,
        )
    step = max(1, _CHUNK_BYTES // row_bytes)
    blocks = []
    for a in range(0, n, step):
        b = min(a + step, n)
        needed = np.unique(tile[a:b])
        part = dask.delayed(_gather, pure=True)(
            places, a, b, needed, [results[int(t)] for t in needed], tail, dtype
        )
        blocks.append(da.from_delayed(part, shape=(b - a, *tail), dtype=dtype))
    return da.concatenate(blocks, axis=0)


def _run_tile(kernel: Callable[..., np.ndarray], region: np.ndarray, oy: int, ox: int,
              shape: tuple[int, int], rows: tuple[np.ndarray, np.ndarray], start: int,
              count: int, **kwargs: Any) -> np.ndarray:
    """``kernel`` on the atoms ``start:start + count`` of ``rows`` (their y, x in tile order)."""
    ys, xs = rows
    return kernel(region, oy, ox, shape, ys[start : start + count], xs[start : start + count],
                  **kwargs)


def _gather(places: tuple[np.ndarray, np.ndarray], a: int, b: int, needed: np.ndarray,
            parts: list[np.ndarray], tail: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Rows ``a:b`` of the table from the tile results ``parts`` (of the tiles ``needed``);
    ``places`` holds each atom's tile and its position within the tile's result."""
    tile, within = places[0][a:b], places[1][a:b]
    out = np.empty((tile.size, *tail), dtype=dtype)
    for t, rows in zip(needed, parts, strict=True):
        sel = tile == t
        out[sel] = rows[within[sel]]
    return out
