"""Assembly of a synthetic sample: column tables (exact defect counts), tile-by-tile rendering
with dask, and the truth tables (atoms, vacancies, cells)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .._image import STACK_DIMS, check_pixel_size, image_coords, normalize_chunks
from .._random import Seed, as_generator, seed_int
from ..errors import ParameterError
from ._render import NOISE_BLOCK, add_noise, reach, render_columns
from .sample import Synthetic

__all__ = [
    "Columns",
    "FrameBuilder",
    "build",
    "check_fractions",
    "choose_exact",
    "columns",
    "distort",
    "with_common_params",
]


def choose_exact(
    rng: np.random.Generator, eligible: np.ndarray, fractions: dict[int, float]
) -> np.ndarray:
    """Assign exactly round(f × n) of the ``eligible`` items to each code; others get -1."""
    out = np.full(eligible.size, -1, dtype=np.int64)
    idx = rng.permutation(np.flatnonzero(eligible))
    start = 0
    for code, frac in fractions.items():
        count = round(frac * idx.size)
        out[idx[start : start + count]] = code
        start += count
    return out


def check_fractions(fractions: dict[str, float]) -> None:
    for name, value in fractions.items():
        if not 0.0 <= value <= 1.0:
            raise ParameterError(f"{name} must be a fraction in [0, 1]; got {value!r}.")
    if sum(fractions.values()) > 1.0:
        raise ParameterError(
            f"defect fractions add up to {sum(fractions.values()):.3f} > 1: {fractions}."
        )


# A frame's columns: dict of equal-length arrays x, y, i, j, b, label, amp, s_major, s_minor,
# angle; and its vacancies: x, y, i, j, b.
Columns = dict[str, np.ndarray]
FrameBuilder = Callable[[int, int, int, np.random.Generator], tuple[Columns, Columns]]


def distort(cols: Columns, frame: int, drift: tuple[float, float], shear: float) -> None:
    """Apply per-frame drift (px/frame, as dy, dx) and scan shear (dx per px of y) in place."""
    cols["y"] = cols["y"] + frame * drift[0]
    cols["x"] = cols["x"] + frame * drift[1] + shear * cols["y"]


# --------------------------------------------------------------------------- assembly


def _tile_task(
    cols: Columns,
    frame: int,
    y0: int,
    y1: int,
    x0: int,
    x1: int,
    *,
    background: float,
    dose: float | None,
    read_noise: float,
    seed: int,
) -> np.ndarray:
    """Render the clean image over the noise blocks covering a tile, add noise, crop."""
    b = NOISE_BLOCK
    by0, bx0 = y0 // b, x0 // b
    by1, bx1 = -(-y1 // b), -(-x1 // b)
    clean = np.full(((by1 - by0) * b, (bx1 - bx0) * b), background, dtype=np.float64)
    render_columns(
        clean, float(by0 * b), float(bx0 * b), cols["y"], cols["x"], cols["amp"],
        cols["s_major"], cols["s_minor"], cols["angle"],
    )
    noisy = add_noise(clean, by0=by0, bx0=bx0, seed=seed, frame=frame, dose=dose,
                      read_noise=read_noise)
    oy, ox = y0 - by0 * b, x0 - bx0 * b
    return noisy[oy : oy + y1 - y0, ox : ox + x1 - x0].astype(np.float32)[None]


def _frame_image(
    cols: Columns, frame: int, ny: int, nx: int, chunks: tuple[int, int, int], **render: Any
) -> da.Array:
    """A lazy ``(1, ny, nx)`` frame rendered tile by tile; each task holds only its columns."""
    order = np.argsort(cols["y"], kind="stable")
    sorted_cols = {k: v[order] for k, v in cols.items()}
    r = reach(cols["s_major"]) + NOISE_BLOCK
    _, ty, tx = chunks
    rows = []
    for y0 in range(0, ny, ty):
        y1 = min(y0 + ty, ny)
        lo, hi = np.searchsorted(sorted_cols["y"], [y0 - r, y1 + r])
        band = {k: v[lo:hi] for k, v in sorted_cols.items()}
        row = []
        for x0 in range(0, nx, tx):
            x1 = min(x0 + tx, nx)
            sel = (band["x"] >= x0 - r) & (band["x"] < x1 + r)
            tile_cols = {k: np.ascontiguousarray(v[sel]) for k, v in band.items()}
            task = dask.delayed(_tile_task, pure=True)(
                tile_cols, frame, y0, y1, x0, x1, **render
            )
            row.append(da.from_delayed(task, shape=(1, y1 - y0, x1 - x0), dtype=np.float32))
        rows.append(row)
    return da.block([rows])


def build(
    kind: str,
    builder: FrameBuilder,
    motif_names: list[str],
    n_basis: int,
    *,
    size: int | tuple[int, int],
    frames: int,
    pixel_size: float,
    dose: float | None,
    read_noise: float,
    background: float,
    drift: tuple[float, float],
    shear: float,
    seed: Seed,
    chunks: Any,
    params: dict[str, Any],
) -> Synthetic:
    ny, nx = (size, size) if isinstance(size, int | np.integer) else size
    if min(ny, nx) < 16 or frames < 1:
        raise ParameterError(
            f"size must be at least 16 px and frames at least 1; got size={size!r}, "
            f"frames={frames!r}."
        )
    check_pixel_size(pixel_size)
    if dose is not None and dose <= 0:
        raise ParameterError(f"dose must be > 0 counts per unit intensity or None; got {dose!r}.")
    if read_noise < 0:
        raise ParameterError(f"read_noise must be >= 0; got {read_noise!r}.")
    s = seed_int(seed)
    chunk3 = normalize_chunks(chunks, (frames, ny, nx))
    render = {"background": background, "dose": dose, "read_noise": read_noise, "seed": s}
    images, atoms, vacancies = [], [], []
    for f in range(frames):
        cols, vac = builder(f, ny, nx, as_generator(s, f))
        distort(cols, f, drift, shear)
        distort(vac, f, drift, shear)
        images.append(_frame_image(cols, f, ny, nx, chunk3, **render))
        inside = (cols["y"] >= 0) & (cols["y"] <= ny - 1) & (cols["x"] >= 0) & (cols["x"] <= nx - 1)
        # Truth in the canonical atom order of dmotif: by frame, then y, then x.
        order = np.flatnonzero(inside)[np.lexsort((cols["x"][inside], cols["y"][inside]))]
        atoms.append({k: v[order] for k, v in cols.items()} | {"frame": np.full(order.size, f)})
        vin = (vac["y"] >= 0) & (vac["y"] <= ny - 1) & (vac["x"] >= 0) & (vac["x"] <= nx - 1)
        vacancies.append({k: v[vin] for k, v in vac.items()} | {"frame": np.full(vin.sum(), f)})
    data = da.concatenate(images, axis=0).rechunk(chunk3)
    coords, calib = image_coords(ny, nx, pixel_size, "nm")
    coords["frame"] = ("frame", np.arange(frames))
    full_params = {
        "kind": kind, "size": [int(ny), int(nx)], "frames": int(frames),
        "pixel_size": float(pixel_size), "dose": dose, "read_noise": float(read_noise),
        "background": float(background), "drift": [float(d) for d in drift],
        "shear": float(shear), "seed": s, **params,
    }
    image = xr.DataArray(
        data, dims=STACK_DIMS, coords=coords, name="image",
        attrs={**calib, "long_name": f"synthetic {kind}", "signal": "HAADF"},
    )
    base = ["frame", "y", "x", "label", "amp", "i", "j", "b"]
    extra = [k for k in atoms[0] if k not in base and k not in _RENDER_ONLY]
    atom_ds = _table(atoms, "atom", base + extra)
    atom_ds.attrs = {"motif_names": motif_names, "kind": kind}
    vac_ds = _table(vacancies, "vacancy", ["frame", "y", "x", "i", "j", "b"])
    cells = _cells(atom_ds, vac_ds, n_basis) if n_basis else None
    return Synthetic(image, atom_ds, vac_ds, cells, full_params)


_RENDER_ONLY = ("s_major", "s_minor", "angle")
_RENAME = {"amp": "amplitude", "i": "site_i", "j": "site_j", "b": "basis"}
_DTYPES = {"frame": np.int32, "label": np.int32, "i": np.int64, "j": np.int64, "b": np.int32}


def _table(parts: list[Columns], dim: str, keys: list[str]) -> xr.Dataset:
    return xr.Dataset(
        {
            _RENAME.get(k, k): (dim, np.concatenate([p[k] for p in parts]).astype(
                _DTYPES.get(k, np.float64)))
            for k in keys
        }
    )


def _cells(atoms: xr.Dataset, vacancies: xr.Dataset, n_basis: int) -> xr.Dataset:
    """Cells whose every basis site lies inside the image, with the label of each site."""
    frame = np.concatenate([atoms["frame"].values, vacancies["frame"].values])
    i = np.concatenate([atoms["site_i"].values, vacancies["site_i"].values])
    j = np.concatenate([atoms["site_j"].values, vacancies["site_j"].values])
    b = np.concatenate([atoms["basis"].values, vacancies["basis"].values])
    lab = np.concatenate([atoms["label"].values, np.full(vacancies.sizes["vacancy"], -1)])
    y = np.concatenate([atoms["y"].values, vacancies["y"].values])
    x = np.concatenate([atoms["x"].values, vacancies["x"].values])
    keys = np.stack([frame, i, j], axis=1)
    uniq, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    labels = np.full((len(uniq), n_basis), -2, dtype=np.int32)
    labels[inv, b] = lab
    cy = np.full(len(uniq), np.nan)
    cx = np.full(len(uniq), np.nan)
    at0 = b == 0
    cy[inv[at0]] = y[at0]
    cx[inv[at0]] = x[at0]
    whole = (labels > -2).all(axis=1) & np.isfinite(cy)
    return xr.Dataset(
        {
            "frame": ("cell", uniq[whole, 0].astype(np.int32)),
            "site_i": ("cell", uniq[whole, 1]),
            "site_j": ("cell", uniq[whole, 2]),
            "y": ("cell", cy[whole]),
            "x": ("cell", cx[whole]),
            "labels": (("cell", "basis"), labels[whole]),
        }
    )


def columns(sites: dict[str, np.ndarray], keep: np.ndarray, label: np.ndarray,
             amp: np.ndarray, s_major: np.ndarray, s_minor: np.ndarray,
             angle: np.ndarray) -> tuple[Columns, Columns]:
    cols = {
        "x": sites["x"][keep], "y": sites["y"][keep], "i": sites["i"][keep],
        "j": sites["j"][keep], "b": sites["b"][keep], "label": label[keep], "amp": amp[keep],
        "s_major": s_major[keep], "s_minor": s_minor[keep], "angle": angle[keep],
    }
    vac = {k: sites[k][~keep] for k in ("x", "y", "i", "j", "b")}
    return cols, vac


_COMMON_PARAMS = """
    size : int or (int, int)
        Image size in pixels (square when an int).
    frames : int
        Number of frames; each frame draws its own defects.
    pixel_size : float
        nm per pixel.
    column_width : float
        Gaussian sigma of a column, nm.
    dose : float or None
        Poisson counts per unit intensity (None: no shot noise).
    read_noise : float
        Standard deviation of additive Gaussian noise, in units of the brightest column.
    background : float
        Constant background, in units of the brightest column.
    drift : (float, float)
        Shift per frame, pixels (dy, dx).
    shear : float
        Scan distortion: x shift per pixel of y (slow-scan drift).
    rotation : float
        Rotation of the lattice, degrees.
    seed : int, Generator or None
        Seed of every random choice (defects, origin, noise).
    chunks : "auto", int or tuple
        Tile size of the lazy stack.

    Returns
    -------
    Synthetic
        The lazy image stack and its truth.
"""


def with_common_params(func: Callable[..., Synthetic]) -> Callable[..., Synthetic]:
    """Append the parameters every generator shares to its docstring."""
    func.__doc__ = (func.__doc__ or "").rstrip() + "\n" + _COMMON_PARAMS
    return func
