"""Synthetic atomic-resolution images with exact ground truth.

Each generator places atom columns on a lattice (with point defects drawn in exact numbers),
renders them as Gaussian columns tile by tile with dask, and adds Poisson and Gaussian noise
drawn in fixed blocks — so a stack of any size is generated in bounded memory and is identical
whatever its chunking. The truth comes with it: per column the position and motif label, per
Bravais cell the labels of its basis sites, the removed sites (vacancies).

Kinds
-----
``tmd``
    A 2H transition-metal-dichalcogenide monolayer (MoS2-like) seen along c: a honeycomb of
    metal columns and chalcogen-pair columns, with single-chalcogen columns (one S missing),
    empty chalcogen sites, metal vacancies and metal-on-chalcogen antisites.
``perovskite``
    An ABO3 perovskite along [001]: A, B(-O) and O columns of decreasing weight.
``shapes``
    A square lattice of columns of equal peak intensity that differ only by shape (round or
    elongated) and orientation, so rotation-invariant features merge the orientations and
    oriented ones separate them.
``twisted``
    A twisted bilayer: two honeycomb lattices rotated by ± twist/2; the truth is the continuous
    local registry (stacking) between the layers, see :func:`twisted_registry`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ._image import STACK_DIMS, check_pixel_size, image_coords, normalize_chunks
from ._random import Seed, as_generator, seed_int
from ._render import NOISE_BLOCK, add_noise, reach, render_columns
from .errors import DataError, ParameterError
from .store import write_dataset

__all__ = [
    "KINDS",
    "Synthetic",
    "generate",
    "load",
    "perovskite",
    "rings",
    "save",
    "shapes",
    "tmd",
    "twisted_bilayer",
    "twisted_registry",
]


@dataclass(frozen=True)
class Synthetic:
    """A synthetic image stack and its ground truth.

    Attributes
    ----------
    image : xarray.DataArray
        ``(frame, y, x)`` float32, dask-backed (lazy), coords in nm.
    atoms : xarray.Dataset
        Truth over dim ``atom``: ``frame``, ``y``, ``x`` (pixels), ``label`` (int32, index
        into ``attrs["motif_names"]``), ``amplitude``, ``site_i``, ``site_j``, ``basis``.
    vacancies : xarray.Dataset
        Lattice sites left empty, over dim ``vacancy``: ``frame``, ``y``, ``x``, ``basis``.
    cells : xarray.Dataset or None
        Truth per Bravais cell over dim ``cell``: ``frame``, ``y``, ``x`` (position of basis
        site 0), ``site_i``, ``site_j`` and ``labels(cell, basis)`` (-1 where a site is empty).
    params : dict
        Every parameter of the generator (JSON-serialisable).
    """

    image: xr.DataArray
    atoms: xr.Dataset
    vacancies: xr.Dataset
    cells: xr.Dataset | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def motif_names(self) -> list[str]:
        """Names of the true motif labels, indexed by label."""
        return list(self.atoms.attrs["motif_names"])

    def to_dataset(self) -> xr.Dataset:
        """Return one Dataset (image plus truth, truth variables prefixed) for storage."""
        parts = [self.image.to_dataset(name="image")]
        for prefix, ds in (("atom", self.atoms), ("vacancy", self.vacancies), ("cell", self.cells)):
            if ds is None:
                continue
            renamed = ds.rename({v: f"{prefix}_{v}" for v in ds.data_vars})
            parts.append(renamed.drop_attrs())
        out = xr.merge(parts, combine_attrs="override", compat="no_conflicts", join="outer")
        out.attrs = {
            "dmotif_synthetic": self.params["kind"],
            "params": dict(self.params),
            "motif_names": self.motif_names,
        }
        out["image"].attrs = dict(self.image.attrs)
        return out


_TRUTH_PREFIXES = ("atom", "vacancy", "cell")


def save(sample: Synthetic, path: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Write a synthetic sample (image and truth) to a zarr store, atomically.

    :func:`dmotif.open_image` reads the image back; :func:`load` the whole sample.
    """
    return write_dataset(sample.to_dataset(), path, overwrite=overwrite)


def load(path: str | os.PathLike) -> Synthetic:
    """Read a sample written by :func:`save` (or ``dmotif synth``)."""
    ds = xr.open_zarr(os.fspath(path), consolidated=False, zarr_format=3)
    if "dmotif_synthetic" not in ds.attrs:
        raise DataError(
            f"{os.fspath(path)!r} is not a synthetic sample (no truth). Write one with "
            "`dmotif synth KIND -o FILE.zarr`."
        )
    parts: dict[str, xr.Dataset | None] = {}
    for prefix in _TRUTH_PREFIXES:
        names = [v for v in ds.data_vars if v.startswith(prefix + "_")]
        part = ds[names].rename({v: v[len(prefix) + 1 :] for v in names}).compute()
        parts[prefix] = part.drop_vars(list(part.coords)).drop_attrs() if names else None
    atoms = parts["atom"]
    atoms.attrs = {"motif_names": list(ds.attrs["motif_names"]),
                   "kind": ds.attrs["dmotif_synthetic"]}
    image = ds["image"]
    return Synthetic(image, atoms, parts["vacancy"], parts["cell"], dict(ds.attrs["params"]))


# --------------------------------------------------------------------------- lattices


@dataclass(frozen=True)
class _Lattice:
    """A 2-D Bravais lattice with a basis, in pixels, already rotated into the image."""

    a1: np.ndarray
    a2: np.ndarray
    basis: np.ndarray  # (n_basis, 2) fractional coordinates
    origin: np.ndarray  # (2,) pixel position of site (0, 0, 0), as (x, y)

    def sites(self, ny: int, nx: int, margin: float) -> dict[str, np.ndarray]:
        """Every site whose position lies within the image extended by ``margin``."""
        m = np.column_stack([self.a1, self.a2])
        inv = np.linalg.inv(m)
        corners = np.array(
            [[-margin, -margin], [nx + margin, -margin], [-margin, ny + margin],
             [nx + margin, ny + margin]]
        ) - self.origin
        frac = corners @ inv.T
        lo = np.floor(frac.min(axis=0)).astype(int) - 1
        hi = np.ceil(frac.max(axis=0)).astype(int) + 1
        ii, jj = np.meshgrid(
            np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij"
        )
        ii, jj = ii.ravel(), jj.ravel()
        nb = len(self.basis)
        i = np.repeat(ii, nb)
        j = np.repeat(jj, nb)
        b = np.tile(np.arange(nb), ii.size)
        fx = i + self.basis[b, 0]
        fy = j + self.basis[b, 1]
        pos = self.origin + np.outer(fx, self.a1) + np.outer(fy, self.a2)
        keep = (
            (pos[:, 0] >= -margin) & (pos[:, 0] < nx + margin)
            & (pos[:, 1] >= -margin) & (pos[:, 1] < ny + margin)
        )
        return {"x": pos[keep, 0], "y": pos[keep, 1], "i": i[keep], "j": j[keep], "b": b[keep]}


def _rotation(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def _hexagonal(a: float, rotation: float, origin: np.ndarray, basis: np.ndarray) -> _Lattice:
    r = _rotation(rotation)
    return _Lattice(
        r @ np.array([a, 0.0]), r @ np.array([a / 2, a * math.sqrt(3) / 2]), basis, origin
    )


def _square(a: float, rotation: float, origin: np.ndarray, basis: np.ndarray) -> _Lattice:
    r = _rotation(rotation)
    return _Lattice(r @ np.array([a, 0.0]), r @ np.array([0.0, a]), basis, origin)


# --------------------------------------------------------------------------- column tables


def _choose_exact(
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


def _check_fractions(fractions: dict[str, float]) -> None:
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


def _distort(cols: Columns, frame: int, drift: tuple[float, float], shear: float) -> None:
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


def _build(
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
        _distort(cols, f, drift, shear)
        _distort(vac, f, drift, shear)
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


def _columns(sites: dict[str, np.ndarray], keep: np.ndarray, label: np.ndarray,
             amp: np.ndarray, s_major: np.ndarray, s_minor: np.ndarray,
             angle: np.ndarray) -> tuple[Columns, Columns]:
    cols = {
        "x": sites["x"][keep], "y": sites["y"][keep], "i": sites["i"][keep],
        "j": sites["j"][keep], "b": sites["b"][keep], "label": label[keep], "amp": amp[keep],
        "s_major": s_major[keep], "s_minor": s_minor[keep], "angle": angle[keep],
    }
    vac = {k: sites[k][~keep] for k in ("x", "y", "i", "j", "b")}
    return cols, vac


def _origin(rng: np.random.Generator, a: float, nx: int, ny: int) -> np.ndarray:
    # A sub-pixel origin so that columns do not sit on the pixel grid.
    return np.array([nx / 2, ny / 2]) + rng.uniform(0.0, a, size=2)


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


def _with_common_params(func: Callable[..., Synthetic]) -> Callable[..., Synthetic]:
    """Append the parameters every generator shares to its docstring."""
    func.__doc__ = (func.__doc__ or "").rstrip() + "\n" + _COMMON_PARAMS
    return func


@_with_common_params
def tmd(
    *,
    size: int | tuple[int, int] = 512,
    frames: int = 1,
    pixel_size: float = 0.015,
    lattice_constant: float = 0.316,
    column_width: float = 0.03,
    chalcogen_vacancy: float = 0.04,
    double_vacancy: float = 0.005,
    metal_vacancy: float = 0.005,
    antisite: float = 0.01,
    dose: float | None = 100.0,
    read_noise: float = 0.17,
    background: float = 0.05,
    drift: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    rotation: float = 10.0,
    seed: Seed = 0,
    chunks: Any = "auto",
) -> Synthetic:
    """A 2H-MoS2-like monolayer with point defects.

    Labels: 0 metal (weight 1), 1 chalcogen pair (0.4), 2 single chalcogen — one of the pair
    missing (0.2), 3 antisite — a metal atom replacing one chalcogen of a pair (1.2). Metal
    vacancies and double chalcogen vacancies leave their site empty (see ``vacancies``).
    Defect arguments are fractions of the eligible sites, drawn in exact numbers per frame.
    The defaults give a peak signal-to-noise of about 5 on a metal column.

    Parameters
    ----------
    lattice_constant : float
        In-plane lattice constant a, nm (metal–chalcogen distance a/√3).
    chalcogen_vacancy, double_vacancy, antisite : float
        Fractions of chalcogen sites with one chalcogen missing, both missing, a metal antisite.
    metal_vacancy : float
        Fraction of metal sites left empty.
    """
    _check_fractions({"chalcogen_vacancy": chalcogen_vacancy, "double_vacancy": double_vacancy,
                      "antisite": antisite})
    _check_fractions({"metal_vacancy": metal_vacancy})
    a = lattice_constant / pixel_size
    sigma = column_width / pixel_size
    amps = np.array([1.0, 0.4, 0.2, 1.2])

    def frame(f: int, ny: int, nx: int, rng: np.random.Generator) -> tuple[Columns, Columns]:
        lat = _hexagonal(a, rotation, _origin(as_generator(seed, 1_000_003), a, nx, ny),
                         np.array([[0.0, 0.0], [1 / 3, 1 / 3]]))
        sites = lat.sites(ny, nx, margin=a)
        metal = sites["b"] == 0
        label = np.where(metal, 0, 1)
        chal = _choose_exact(rng, ~metal, {2: chalcogen_vacancy, -5: double_vacancy,
                                           3: antisite})
        label = np.where(chal >= 0, chal, label)
        keep = chal != -5
        met = _choose_exact(rng, metal, {-5: metal_vacancy})
        keep &= met != -5
        n = label.size
        return _columns(sites, keep, label, amps[label], np.full(n, sigma), np.full(n, sigma),
                        np.zeros(n))

    return _build(
        "tmd", frame, ["metal", "chalcogen_pair", "single_chalcogen", "antisite"], 2,
        size=size, frames=frames, pixel_size=pixel_size, dose=dose, read_noise=read_noise,
        background=background, drift=drift, shear=shear, seed=seed, chunks=chunks,
        params={"lattice_constant": lattice_constant, "column_width": column_width,
                "chalcogen_vacancy": chalcogen_vacancy, "double_vacancy": double_vacancy,
                "metal_vacancy": metal_vacancy, "antisite": antisite, "rotation": rotation},
    )


@_with_common_params
def perovskite(
    *,
    size: int | tuple[int, int] = 512,
    frames: int = 1,
    pixel_size: float = 0.015,
    lattice_constant: float = 0.39,
    column_width: float = 0.03,
    weights: tuple[float, float, float] = (1.0, 0.6, 0.3),
    a_vacancy: float = 0.0,
    dose: float | None = 100.0,
    read_noise: float = 0.17,
    background: float = 0.05,
    drift: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    rotation: float = 10.0,
    seed: Seed = 0,
    chunks: Any = "auto",
) -> Synthetic:
    """An ABO3 perovskite along [001] (SrTiO3-like).

    Labels: 0 A column, 1 B(-O) column, 2 O column, with peak ``weights``; the cell has one
    A at the corner, B at the centre and O at the two edge centres.

    Parameters
    ----------
    weights : (float, float, float)
        Peak intensities of the A, B and O columns.
    a_vacancy : float
        Fraction of A sites left empty.
    """
    _check_fractions({"a_vacancy": a_vacancy})
    a = lattice_constant / pixel_size
    sigma = column_width / pixel_size
    amps = np.asarray(weights, dtype=float)
    basis = np.array([[0.0, 0.0], [0.5, 0.5], [0.5, 0.0], [0.0, 0.5]])

    def frame(f: int, ny: int, nx: int, rng: np.random.Generator) -> tuple[Columns, Columns]:
        lat = _square(a, rotation, _origin(as_generator(seed, 1_000_003), a, nx, ny), basis)
        sites = lat.sites(ny, nx, margin=a)
        label = np.array([0, 1, 2, 2])[sites["b"]]
        keep = _choose_exact(rng, label == 0, {-5: a_vacancy}) != -5
        n = label.size
        return _columns(sites, keep, label, amps[label], np.full(n, sigma), np.full(n, sigma),
                        np.zeros(n))

    return _build(
        "perovskite", frame, ["A", "B", "O"], 4,
        size=size, frames=frames, pixel_size=pixel_size, dose=dose, read_noise=read_noise,
        background=background, drift=drift, shear=shear, seed=seed, chunks=chunks,
        params={"lattice_constant": lattice_constant, "column_width": column_width,
                "weights": [float(w) for w in weights], "a_vacancy": a_vacancy,
                "rotation": rotation},
    )


@_with_common_params
def shapes(
    *,
    size: int | tuple[int, int] = 512,
    frames: int = 1,
    pixel_size: float = 0.015,
    lattice_constant: float = 0.24,
    column_width: float = 0.025,
    elongation: float = 2.2,
    orientations: tuple[float, ...] = (0.0, 90.0),
    round_fraction: float = 1 / 3,
    dose: float | None = 100.0,
    read_noise: float = 0.17,
    background: float = 0.05,
    drift: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    rotation: float = 10.0,
    seed: Seed = 0,
    chunks: Any = "auto",
) -> Synthetic:
    """A square lattice of equal-peak columns that differ only by shape and orientation.

    Label 0 is a round column; label ``k ≥ 1`` is a column elongated by ``elongation`` along
    ``orientations[k-1]`` degrees (plus the lattice ``rotation``), with the same peak height.
    A rotation-invariant description tells round from elongated but merges the orientations;
    an oriented one separates them all.

    Parameters
    ----------
    elongation : float
        Ratio of the long to the short Gaussian width of an elongated column.
    orientations : tuple of float
        Directions of the elongated motifs, degrees.
    round_fraction : float
        Fraction of round columns; the rest is shared equally among the orientations.
    """
    if elongation < 1:
        raise ParameterError(f"elongation must be >= 1; got {elongation!r}.")
    _check_fractions({"round_fraction": round_fraction})
    a = lattice_constant / pixel_size
    sigma = column_width / pixel_size
    n_or = len(orientations)
    rod = (1.0 - round_fraction) / max(n_or, 1)
    angles = np.radians(np.array([0.0, *orientations]) + rotation)
    major = np.array([sigma] + [sigma * math.sqrt(elongation)] * n_or)
    minor = np.array([sigma] + [sigma / math.sqrt(elongation)] * n_or)

    def frame(f: int, ny: int, nx: int, rng: np.random.Generator) -> tuple[Columns, Columns]:
        lat = _square(a, rotation, _origin(as_generator(seed, 1_000_003), a, nx, ny),
                      np.zeros((1, 2)))
        sites = lat.sites(ny, nx, margin=a)
        label = _choose_exact(rng, np.ones(sites["b"].size, bool),
                              {k + 1: rod for k in range(n_or)})
        label = np.where(label < 0, 0, label)
        keep = np.ones(label.size, bool)
        return _columns(sites, keep, label, np.ones(label.size), major[label], minor[label],
                        angles[label])

    return _build(
        "shapes", frame, ["round", *(f"rod_{o:g}" for o in orientations)], 1,
        size=size, frames=frames, pixel_size=pixel_size, dose=dose, read_noise=read_noise,
        background=background, drift=drift, shear=shear, seed=seed, chunks=chunks,
        params={"lattice_constant": lattice_constant, "column_width": column_width,
                "elongation": elongation, "orientations": [float(o) for o in orientations],
                "round_fraction": round_fraction, "rotation": rotation},
    )


def twisted_registry(
    y: np.ndarray, x: np.ndarray, *, twist: float, lattice_px: float, center: tuple[float, float],
    rotation: float = 0.0,
) -> np.ndarray:
    """The local stacking of a twisted bilayer: distance from AA registry, in lattice constants.

    At image position ``(y, x)`` the two layers (rotated by ``rotation ± twist/2`` about
    ``center``) are displaced by a vector that varies continuously across the moiré; this
    returns its length reduced to the nearest lattice vector, divided by the lattice constant:
    0 at AA stacking, 1/√3 at AB/BA.

    Parameters
    ----------
    y, x : array_like
        Positions in pixels.
    twist : float
        Twist angle, degrees.
    lattice_px : float
        Lattice constant in pixels.
    center : (float, float)
        ``(y, x)`` of the rotation centre, where the layers are in AA registry.
    rotation : float
        Mean rotation of the two layers, degrees.
    """
    p = np.stack([np.asarray(x, float) - center[1], np.asarray(y, float) - center[0]], axis=-1)
    a1 = np.array([1.0, 0.0])
    a2 = np.array([0.5, math.sqrt(3) / 2])
    m = np.column_stack([a1, a2]) * lattice_px
    # Fractional coordinates of p in each layer's lattice; their difference is the registry.
    f1 = p @ np.linalg.inv(_rotation(rotation + twist / 2) @ m).T
    f2 = p @ np.linalg.inv(_rotation(rotation - twist / 2) @ m).T
    d = f1 - f2
    d = d - np.round(d)
    best = np.full(d.shape[:-1], np.inf)
    for si in (-1, 0, 1):
        for sj in (-1, 0, 1):
            v = (d[..., 0:1] + si) * a1 + (d[..., 1:2] + sj) * a2
            best = np.minimum(best, np.linalg.norm(v, axis=-1))
    return best


@_with_common_params
def twisted_bilayer(
    *,
    size: int | tuple[int, int] = 512,
    frames: int = 1,
    pixel_size: float = 0.015,
    lattice_constant: float = 0.246,
    twist: float = 3.0,
    column_width: float = 0.03,
    dose: float | None = 100.0,
    read_noise: float = 0.17,
    background: float = 0.05,
    drift: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    rotation: float = 10.0,
    seed: Seed = 0,
    chunks: Any = "auto",
) -> Synthetic:
    """Two graphene-like honeycomb layers twisted by ``twist`` degrees (a moiré).

    Labels are the layer (0 or 1); ``atoms["registry"]`` holds the continuous truth, the local
    stacking at each column from :func:`twisted_registry` (0 = AA, 1/√3 = AB). The layers are
    in AA registry at the image centre.

    Parameters
    ----------
    twist : float
        Twist angle between the layers, degrees (moiré period a / (2 sin(twist/2))).
    """
    a = lattice_constant / pixel_size
    sigma = column_width / pixel_size
    basis = np.array([[0.0, 0.0], [1 / 3, 1 / 3]])

    def frame(f: int, ny: int, nx: int, rng: np.random.Generator) -> tuple[Columns, Columns]:
        center = np.array([nx / 2, ny / 2])
        parts = []
        for layer, sign in enumerate((1, -1)):
            lat = _hexagonal(a, rotation + sign * twist / 2, center, basis)
            sites = lat.sites(ny, nx, margin=a)
            sites["b"] = sites["b"] + 2 * layer
            n = sites["b"].size
            parts.append(_columns(sites, np.ones(n, bool), np.full(n, layer), np.full(n, 0.5),
                                  np.full(n, sigma), np.full(n, sigma), np.zeros(n)))
        cols = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
        vac = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
        cols["registry"] = twisted_registry(
            cols["y"], cols["x"], twist=twist, lattice_px=a, center=(ny / 2, nx / 2),
            rotation=rotation,
        )
        return cols, vac

    return _build(
        "twisted", frame, ["layer_0", "layer_1"], 0,
        size=size, frames=frames, pixel_size=pixel_size, dose=dose, read_noise=read_noise,
        background=background, drift=drift, shear=shear, seed=seed, chunks=chunks,
        params={"lattice_constant": lattice_constant, "twist": twist,
                "column_width": column_width, "rotation": rotation},
    )


@_with_common_params
def rings(
    *,
    size: int | tuple[int, int] = 512,
    frames: int = 1,
    pixel_size: float = 0.015,
    lattice_constant: float = 0.36,
    column_width: float = 0.03,
    stone_wales: float = 0.01,
    dose: float | None = 100.0,
    read_noise: float = 0.17,
    background: float = 0.05,
    drift: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    rotation: float = 10.0,
    seed: Seed = 0,
    chunks: Any = "auto",
) -> Synthetic:
    """A network of columns in 5-, 6- and 7-membered rings (like the M1 Mo-V-Te-Nb oxide).

    A honeycomb of equal columns (label 0) with Stone–Wales defects: a bond turned by 90° about
    its centre turns the two hexagons that shared it into pentagons and the two at its ends into
    heptagons. Defects lie at least 2 lattice constants inside the image and 4 apart, so each
    is a separate 5-7-5-7 group. ``cells`` holds the truth per ring over dim ``cell``:
    ``frame``, ``y``, ``x`` (ring centre) and ``size``, for every ring whose vertices all lie
    inside the image.

    Parameters
    ----------
    lattice_constant : float
        Honeycomb lattice constant, nm (column spacing a/√3).
    stone_wales : float
        Number of Stone–Wales defects as a fraction of the rings, drawn exactly per frame
        (fewer if they do not fit apart).
    """
    _check_fractions({"stone_wales": stone_wales})
    a = lattice_constant / pixel_size
    sigma = column_width / pixel_size
    d = a / math.sqrt(3)
    ring_truth: dict[int, Columns] = {}

    def frame(f: int, ny: int, nx: int, rng: np.random.Generator) -> tuple[Columns, Columns]:
        origin = _origin(as_generator(seed, 1_000_003), a, nx, ny)
        lat = _hexagonal(a, rotation, origin, np.array([[0.0, 0.0], [1 / 3, 1 / 3]]))
        sites = lat.sites(ny, nx, margin=a)
        hexes = _hexagonal(a, rotation, origin, np.array([[2 / 3, 2 / 3]])).sites(ny, nx, a)
        hy, hx = hexes["y"], hexes["x"]
        vert = np.array([[math.cos(t), math.sin(t)] for t in
                         np.radians(rotation + 30 + 60 * np.arange(6))])  # (dx, dy)
        inside = np.ones(hy.size, bool)
        for dx, dy in vert * d:
            inside &= (hy + dy >= 0) & (hy + dy <= ny - 1) & (hx + dx >= 0) & (hx + dx <= nx - 1)
        size_ = np.full(hy.size, 6)
        x, y = sites["x"].copy(), sites["y"].copy()
        metal = np.flatnonzero(sites["b"] == 0)
        other = {(int(i), int(j)): k for k, (i, j, b) in
                 enumerate(zip(sites["i"], sites["j"], sites["b"], strict=True)) if b == 1}
        n_sw = round(stone_wales * int(inside.sum()))
        centres: list[np.ndarray] = []
        for k in rng.permutation(metal):
            if len(centres) >= n_sw:
                break
            step = rng.integers(3)
            i, j = int(sites["i"][k]), int(sites["j"][k])
            partner = other.get([(i, j), (i - 1, j), (i, j - 1)][step])
            if partner is None:
                continue
            mid = np.array([(x[k] + x[partner]) / 2, (y[k] + y[partner]) / 2])
            if (mid[0] < 2 * a or mid[0] > nx - 1 - 2 * a or mid[1] < 2 * a
                    or mid[1] > ny - 1 - 2 * a
                    or any(np.hypot(*(mid - c)) < 4 * a for c in centres)):
                continue
            centres.append(mid)
            for atom in (k, partner):
                off = np.array([x[atom], y[atom]]) - mid
                x[atom], y[atom] = mid[0] - off[1], mid[1] + off[0]
            dist = np.hypot(hx - mid[0], hy - mid[1])
            size_[dist < 0.6 * a] = 5
            size_[(dist >= 0.6 * a) & (dist < a)] = 7
        sites = sites | {"x": x, "y": y}
        ring_truth[f] = {"y": hy[inside], "x": hx[inside], "size": size_[inside]}
        n = x.size
        return _columns(sites, np.ones(n, bool), np.zeros(n, np.int64), np.ones(n),
                        np.full(n, sigma), np.full(n, sigma), np.zeros(n))

    syn = _build(
        "rings", frame, ["column"], 0,
        size=size, frames=frames, pixel_size=pixel_size, dose=dose, read_noise=read_noise,
        background=background, drift=drift, shear=shear, seed=seed, chunks=chunks,
        params={"lattice_constant": lattice_constant, "column_width": column_width,
                "stone_wales": stone_wales, "rotation": rotation},
    )
    for f, ring in ring_truth.items():
        _distort(ring, f, drift, shear)
    order = sorted(ring_truth)
    cells = xr.Dataset({
        "frame": ("cell", np.concatenate([np.full(ring_truth[f]["y"].size, f, np.int32)
                                          for f in order])),
        "y": ("cell", np.concatenate([ring_truth[f]["y"] for f in order])),
        "x": ("cell", np.concatenate([ring_truth[f]["x"] for f in order])),
        "size": ("cell", np.concatenate([ring_truth[f]["size"] for f in order]).astype(np.int32)),
    })
    return Synthetic(syn.image, syn.atoms, syn.vacancies, cells, syn.params)


KINDS: dict[str, Callable[..., Synthetic]] = {
    "tmd": tmd,
    "perovskite": perovskite,
    "shapes": shapes,
    "twisted": twisted_bilayer,
    "rings": rings,
}


def generate(kind: str, **kwargs: Any) -> Synthetic:
    """Generate a synthetic sample of ``kind`` (one of :data:`KINDS`) with ``kwargs``."""
    try:
        maker = KINDS[kind]
    except KeyError:
        raise ParameterError(
            f"unknown synthetic kind {kind!r}; choose one of {sorted(KINDS)}."
        ) from None
    return maker(**kwargs)
