"""Diffraction descriptors of 4D-STEM data: ring harmonics or Zernike moments per pattern.

Each descriptor is one weighted sum per pattern and output (:mod:`dmotif.features._fourd_kernels`),
mapped over the scan chunks like the virtual detectors, so each pattern's features are
bit-identical whatever the chunking.
"""

from __future__ import annotations

import math
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import DataError, ParameterError
from ..io.stem4d import as_4dstem
from . import _fourd_kernels, _zernike
from .virtual import _detector_range, _reduce
from .zernike import _check_n_max, _labels

__all__ = ["FEATURE_KINDS", "ZERNIKE_PATTERN_SIZE", "diffraction_features"]

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
    shape, center = _fourd_kernels.binned_geometry(pattern, tuple(full.attrs["center"]), binning)
    radius = min(hi / binning, _fourd_kernels.max_radius(shape, center))
    if radius < 2 or n_max > radius:
        raise ParameterError(
            f"the Zernike disk (outer={hi * kps:.4g} {units}) spans {radius:.3g} px of the "
            f"patterns binned {binning} × {binning}, too few for n_max={n_max} (a disk of radius "
            f"R px resolves n_max <= R, and R must be >= 2). Use n_max <= "
            f"{max(0, math.floor(radius))}, a smaller binning or a larger outer."
        )
    dense = np.concatenate([
        _fourd_kernels.zernike_weights(shape, center, radius, n_max, lo / binning),
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
        _fourd_kernels.ring_weights(pattern, center, np.linspace(lo, hi, n_rings + 1), m_max),
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

    Both are one weighted sum per pattern and output (:mod:`._fourd_kernels`), mapped over the
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
    full = as_4dstem(data)
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
