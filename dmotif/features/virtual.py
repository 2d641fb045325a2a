"""Virtual detectors of 4D-STEM data: BF/ABF/ADF/HAADF annuli, centre of mass and iCoM.

Every reduction maps :func:`dmotif.features._fourd_kernels.weighted_sums` over the scan
chunks: a ``(sy, sx, ky, kx)`` chunk becomes ``(sy, sx, n)``, so memory holds a few chunks,
never the dataset, and each pattern's result is the same whatever the chunking.
"""

from __future__ import annotations

import math
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from .._image import DEFAULT_TILE, as_image_stack
from ..errors import DataError, ParameterError
from ..io.stem4d import as_4dstem
from . import _fourd_kernels

__all__ = ["DETECTORS", "virtual_image"]

DETECTORS = ("bf", "abf", "adf", "haadf", "com", "icom")


# --------------------------------------------------------------------------- reductions


def _apply(block: np.ndarray, weights: _fourd_kernels.DetectorWeights, binning: int) -> np.ndarray:
    if binning > 1:
        block = _fourd_kernels.bin_patterns(block, binning)
    return _fourd_kernels.weighted_sums(block, weights)


def _reduce(full: xr.DataArray, dense: np.ndarray, binning: int = 1) -> da.Array:
    """``(frame, sy, sx, n)`` float64: the weights ``dense (n, ky, kx)`` applied per pattern.

    With ``binning > 1`` each chunk's patterns are first binned
    (:func:`_fourd_kernels.bin_patterns`) and ``dense`` holds weights of the binned pattern.
    """
    weights = _fourd_kernels.DetectorWeights(dense)
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
    rmax = _fourd_kernels.max_radius(full.shape[3:], tuple(full.attrs["center"]))
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
    center = tuple(full.attrs["center"])
    sums = _reduce(full, _fourd_kernels.com_weights(full.shape[3:], center, outer))
    kps = full.attrs["k_pixel_size"]

    def com(block: np.ndarray) -> np.ndarray:
        total = block[..., :1]
        out = np.zeros((*block.shape[:-1], 2))
        np.divide(block[..., 1:], total, out=out, where=total != 0)
        return out * kps

    return sums.map_blocks(com, dtype=np.float64, chunks=(*sums.chunks[:3], (2,)))


def _icom(block: np.ndarray) -> np.ndarray:
    return np.stack([_fourd_kernels.integrate_gradient(f[..., 0], f[..., 1]) for f in block])


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
    full = as_4dstem(data)
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
        center = tuple(full.attrs["center"])
        weights = _fourd_kernels.annulus_weights(full.shape[3:], center, lo, hi)
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
