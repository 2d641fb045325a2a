"""Synthetic 4D-STEM data with ground truth: a kinematic model over the synthetic lattices.

A lattice of :mod:`dmotif.synthetic` rendered without noise is the projected potential ``V``
on the scan grid. The probe at scan position ``s`` records a diffraction pattern made of

- the bright-field disk (radius ``bf_radius`` px, the convergence semi-angle) holding the
  unscattered fraction ``exp(-scatter · V(s))`` of the beam, shifted by ``deflection · ∇V(s)``
  (the beam is pulled towards the columns, so the centre of mass follows ``∇V`` and iCoM
  returns ``V``);
- the scattered fraction ``1 − exp(-scatter · V(s))`` spread over high angles outside the disk
  with a fixed, smoothly decaying profile — so an ADF/HAADF detector sees ≈ ``V``, as in
  HAADF-STEM, and a BF detector its complement;
- optionally Poisson noise, ``dose`` electrons per probe position, drawn from a stream keyed by
  the seed and the probe position alone, so the data are identical whatever the chunking.

The patterns are generated lazily, chunk by chunk, so a dataset larger than memory can be
written straight to a store (see ``benchmarks/bench_fourd.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr

from .._random import Seed, as_generator, seed_int
from ..errors import ParameterError
from ..io.stem4d import as_4dstem, drop_single_frame, scan_chunks
from . import generate

__all__ = ["Synthetic4D", "fourd"]

# Keys the noise streams apart from the lattice's own streams (defects, origin, image noise).
_NOISE_KEY = 4_000_037


@dataclass(frozen=True)
class Synthetic4D:
    """A synthetic 4D-STEM dataset and its ground truth.

    Attributes
    ----------
    data : xarray.DataArray
        ``(scan_y, scan_x, ky, kx)`` float32 (``frame`` first when ``frames > 1``), lazy,
        calibrated (scan nm, k mrad), ``center`` and ``bf_radius`` exact.
    potential : xarray.DataArray
        The projected potential on the scan grid, an image stack ``(frame, y, x)``.
    atoms, vacancies, cells : xarray.Dataset
        The lattice truth of :class:`dmotif.synthetic.Synthetic`; positions in scan steps,
        i.e. pixels of a virtual image.
    sites : xarray.DataArray
        The per-position truth of diffraction motifs: an int32 map ``(frame, y, x)`` over the
        scan holding, at the probe position nearest each column, the column's motif label
        (index into ``attrs["motif_names"]``), and -1 at every other position — the position
        :func:`dmotif.diffraction_features` reads for that column.
    params : dict
        Every parameter of the generator.
    """

    data: xr.DataArray
    potential: xr.DataArray
    atoms: xr.Dataset
    vacancies: xr.Dataset
    cells: xr.Dataset | None
    sites: xr.DataArray
    params: dict[str, Any] = field(default_factory=dict)


def _site_map(atoms: xr.Dataset, shape: tuple[int, int, int]) -> xr.DataArray:
    """Each column's label at its nearest probe position, -1 elsewhere (see Synthetic4D)."""
    out = np.full(shape, -1, dtype=np.int32)
    iy = np.clip(np.rint(atoms["y"].values).astype(np.int64), 0, shape[1] - 1)
    ix = np.clip(np.rint(atoms["x"].values).astype(np.int64), 0, shape[2] - 1)
    out[atoms["frame"].values, iy, ix] = atoms["label"].values
    return xr.DataArray(out, dims=("frame", "y", "x"), name="site",
                        attrs={"motif_names": list(atoms.attrs["motif_names"])})


def _profiles(k_size: int, bf_radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Pattern pixel offsets from the centre and the high-angle profile (sum 1)."""
    c = (k_size - 1) / 2
    yy, xx = np.indices((k_size, k_size), dtype=np.float64)
    r = np.hypot(yy - c, xx - c)
    halo = np.clip(r - bf_radius, 0.0, 1.0) / (1.0 + (r / (2.0 * bf_radius)) ** 2) ** 1.5
    halo /= halo.sum()
    return np.stack([yy - c, xx - c]), halo


def _patterns(
    pot: np.ndarray,
    gy: np.ndarray,
    gx: np.ndarray,
    origin: tuple[int, int, int],
    *,
    k_size: int,
    bf_radius: float,
    scatter: float,
    deflection: float,
    dose: float | None,
    seed: int,
) -> np.ndarray:
    """Patterns ``(1, ty, tx, k, k)`` float32 for the probe positions of one chunk."""
    grid, halo = _profiles(k_size, bf_radius)
    frame, y0, x0 = origin
    ty, tx = pot.shape
    out = np.empty((1, ty, tx, k_size, k_size), dtype=np.float32)
    kept = np.exp(-scatter * pot)
    for i in range(ty):
        # One scan row at a time keeps the temporaries at tx patterns.
        dy = grid[0][None] - deflection * gy[i][:, None, None]
        dx = grid[1][None] - deflection * gx[i][:, None, None]
        disk = np.clip(bf_radius + 0.5 - np.hypot(dy, dx), 0.0, 1.0)
        disk /= disk.sum(axis=(1, 2), keepdims=True)
        row = kept[i][:, None, None] * disk + (1.0 - kept[i])[:, None, None] * halo[None]
        if dose is not None:
            for j in range(tx):
                rng = as_generator(seed, _NOISE_KEY, frame, y0 + i, x0 + j)
                row[j] = rng.poisson(dose * row[j])
        out[0, i] = row
    return out


def fourd(
    kind: str = "tmd",
    *,
    size: int | tuple[int, int] = 64,
    frames: int = 1,
    k_size: int = 32,
    bf_radius: float | None = None,
    convergence: float = 20.0,
    scatter: float = 0.5,
    deflection: float = 2.0,
    dose: float | None = None,
    seed: Seed = 0,
    chunks: Any = "auto",
    **lattice: Any,
) -> Synthetic4D:
    """Generate 4D-STEM data of a synthetic lattice with its truth (see the module docstring).

    Parameters
    ----------
    kind : str
        A lattice of :data:`dmotif.synthetic.KINDS` ("tmd", "perovskite", "shapes", "twisted").
    size : int or (int, int)
        Scan size in probe positions (one scan step = one pixel of the lattice image).
    frames : int
        Number of frames (each draws its own defects).
    k_size : int
        Detector size, pixels (square patterns).
    bf_radius : float, optional
        Bright-field disk radius, pixels; default ``k_size / 8``.
    convergence : float
        Convergence semi-angle, mrad (sets ``k_pixel_size = convergence / bf_radius``).
    scatter : float
        Fraction of the beam scattered out of the disk per unit potential (``1 − e^{−σV}``).
    deflection : float
        Shift of the disk, pattern pixels per unit potential gradient (per scan step).
    dose : float or None
        Electrons per probe position (Poisson noise); None gives the noise-free expectation
        with a total of 1 per pattern.
    seed : int, Generator or None
        Seed of the lattice's defects and of the noise.
    chunks : "auto", int or (int, int)
        Scan tile of the lazy data.
    **lattice
        Passed to the lattice generator (e.g. ``rotation``, ``pixel_size``, defect fractions).

    Returns
    -------
    Synthetic4D
        The lazy data and the truth.

    Examples
    --------
    >>> from dmotif.synthetic.stem4d import fourd
    >>> sample = fourd("tmd", size=32, k_size=16)
    >>> sample.data.dims
    ('scan_y', 'scan_x', 'ky', 'kx')
    """
    if k_size < 8:
        raise ParameterError(f"k_size must be at least 8 pixels; got {k_size!r}.")
    radius = k_size / 8 if bf_radius is None else float(bf_radius)
    if not 0 < radius < k_size / 2 - 1:
        raise ParameterError(
            f"bf_radius must lie in (0, {k_size / 2 - 1:g}) for k_size={k_size}; got {radius!r}."
        )
    if dose is not None and dose <= 0:
        raise ParameterError(
            f"dose must be > 0 electrons per probe position or None; got {dose!r}."
        )
    if scatter < 0 or convergence <= 0:
        raise ParameterError(
            f"scatter must be >= 0 and convergence > 0; got scatter={scatter!r}, "
            f"convergence={convergence!r}."
        )
    sample = generate(kind, size=size, frames=frames, dose=None, read_noise=0.0,
                                background=0.0, seed=seed, **lattice)
    pot = sample.image.values.astype(np.float64)
    gy, gx = np.gradient(pot, axis=(1, 2))
    nf, ny, nx = pot.shape
    ty, tx = scan_chunks(chunks, (nf, ny, nx, k_size, k_size), 4)
    render = {"k_size": k_size, "bf_radius": radius, "scatter": float(scatter),
              "deflection": float(deflection), "dose": dose, "seed": seed_int(seed)}
    blocks = []
    for f in range(nf):
        rows = []
        for y0 in range(0, ny, ty):
            row = []
            for x0 in range(0, nx, tx):
                sl = (f, slice(y0, y0 + ty), slice(x0, x0 + tx))
                task = dask.delayed(_patterns, pure=True)(
                    pot[sl], gy[sl], gx[sl], (f, y0, x0), **render)
                shape = (1, pot[sl].shape[0], pot[sl].shape[1], k_size, k_size)
                row.append([[da.from_delayed(task, shape=shape, dtype=np.float32)]])
            rows.append(row)
        blocks.append(rows)
    arr = da.block(blocks)
    c = (k_size - 1) / 2
    pixel_size = float(sample.image.attrs["pixel_size"])
    data = as_4dstem(arr, scan_pixel_size=pixel_size, k_pixel_size=convergence / radius,
                      center=(c, c), bf_radius=radius, chunks=(ty, tx))
    params = {**sample.params, "kind_4d": kind, "k_size": k_size, "bf_radius": radius,
              "convergence": convergence, "scatter": scatter, "deflection": deflection,
              "dose_4d": dose, "scan_chunks": [ty, tx]}
    potential = sample.image.rename("potential")
    return Synthetic4D(drop_single_frame(data), potential, sample.atoms, sample.vacancies,
                       sample.cells, _site_map(sample.atoms, pot.shape), params)
