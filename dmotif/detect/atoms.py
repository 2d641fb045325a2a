"""Atom-column detection: the public, chunked wrappers around the kernels of this package.

:func:`estimate_spacing` reads the nearest-neighbour column distance off the image's own
autocorrelation; :func:`detect_atoms` derives every other scale from it (smoothing, minimum
distance, refinement window) and a threshold from the image's background and noise, then
detects tile by tile with an overlap, each column reported by the one tile whose core holds its
integer peak — so the atoms do not depend on the chunking or on the number of workers.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Literal

import dask
import dask.array as da
import numba
import numpy as np
import xarray as xr

from .._image import (
    as_image_stack,
    check_finite_nonconstant,
    normalize_chunks,
    pixel_size_of,
    refuse_bad_frames,
    whole_chunk_window,
)
from ..errors import NoAtomsError, NoLatticeError, ParameterError
from ._peaks import GAUSS_TRUNCATE
from ._refine import FIT_WINDOW
from ._statistics import autocorrelation_spacing, background_and_noise
from ._tile import detect_tile

__all__ = ["detect_atoms", "estimate_spacing"]

# Scales as fractions of the nearest-neighbour spacing. The smoothing is about the width of a
# column in a typical STEM image; two columns closer than MIN_DISTANCE are one; the refinement
# disk stays well inside the half-distance to the nearest neighbour.
SIGMA_FRACTION = 1 / 6
MIN_DISTANCE_FRACTION = 0.45
WINDOW_FRACTION = 0.3
# A peak must rise this many noise sigmas (of the smoothed image) above the background, and at
# least this fraction of the bright level above it (which matters only for noise-free images).
# A peak below STRONG_SNR needs support. Where the image shows a lattice, a weak column is the
# highest pixel above the site level where, for half of the lattice translations t, a peak above
# SUPPORT_SNR lies within TOLERANCE_FRACTION spacings of pixel + t: weak columns repeat with
# the lattice, noise in empty sites (honeycomb centres), between columns or in vacuum does not.
# The site level is SITE_SNR noise sigmas from the background plus SITE_CONTRAST of the bright
# level: the background (the mode of the smoothed image) sits about a sigma above the empty
# floor in a dense lattice, so at a peak SNR of 5 the level is near the floor and a single
# chalcogen four sigmas above it is not missed even in 10^4 columns (an empty lattice site,
# a vacancy, is then reported about half the time); in a cleaner image the contrast term keeps
# vacancies out. Without a lattice, a weak peak needs a pixel of STRONG_SNR within
# LINK_FRACTION spacings.
MIN_SNR = 1.5
SITE_SNR = -1.0
SUPPORT_SNR = 3.0
STRONG_SNR = 5.0
LINK_FRACTION = 1.5
TOLERANCE_FRACTION = 0.15
MIN_CONTRAST = 0.05
SITE_CONTRAST = 0.03
# The central crop that spacing and threshold statistics are read from: fixed, so they do not
# depend on the chunking.
STATS_CROP = 1024
# An autocorrelation ring this far (in units of the zero-lag value) above its floor is a lattice;
# white noise gives about 1/sqrt(n_pixels).
MIN_LATTICE_CONTRAST = 0.02
MIN_SPACING = 2.0

_NM_PER_UNIT = {"nm": 1.0, "Å": 0.1, "A": 0.1, "angstrom": 0.1, "pm": 1e-3, "um": 1e3,
                "µm": 1e3}

Refine = Literal["com", "gaussian"] | None


class _Sliced:
    """A numpy array that dask reads by slicing only.

    ``dask.array.from_array`` copies an ndarray whole before slicing it (268 MB and 0.8 s for
    a 4096² x 4 stack), to guard against later writes by the caller; detect_atoms computes
    before it returns, so the caller's array cannot change under it.
    """

    def __init__(self, array: np.ndarray) -> None:
        self._array = array
        self.shape = array.shape
        self.dtype = array.dtype
        self.ndim = array.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        return self._array[key]


def _central_crop(image: xr.DataArray) -> tuple[slice, slice]:
    ny, nx = image.sizes["y"], image.sizes["x"]
    cy, cx = min(ny, STATS_CROP), min(nx, STATS_CROP)
    y0, x0 = (ny - cy) // 2, (nx - cx) // 2
    return slice(y0, y0 + cy), slice(x0, x0 + cx)


def estimate_spacing(image: Any, *, frame: int = 0) -> float:
    """Estimate the nearest-neighbour column spacing of an image, in pixels.

    The spacing is the radius of the nearest strong peak of the 2-D autocorrelation of the
    central ``1024²`` pixels (at most) of one frame: the distance between neighbouring columns,
    whatever their kind (for a honeycomb, metal to chalcogen, not metal to metal).

    Parameters
    ----------
    image : array-like or xarray.DataArray
        A 2-D image or a ``(frame, y, x)`` stack (see :func:`dmotif.detect_atoms`).
    frame : int
        The frame to read the spacing from.

    Returns
    -------
    float
        The spacing in pixels (sub-pixel).

    Raises
    ------
    NoLatticeError
        When the autocorrelation shows no lattice (a constant or pure-noise image), or the
        spacing found is below 2 px or above a quarter of the image.

    Examples
    --------
    >>> import dmotif
    >>> syn = dmotif.synthetic.perovskite(size=256, seed=0)
    >>> round(dmotif.estimate_spacing(syn.image))
    13
    """
    return _lattice(as_image_stack(image), frame)[0]


def _lattice(img: xr.DataArray, frame: int = 0) -> tuple[float, np.ndarray]:
    """The spacing and the lattice translations of one frame (see :func:`estimate_spacing`)."""
    if not 0 <= frame < img.sizes["frame"]:
        raise ParameterError(
            f"frame must be in [0, {img.sizes['frame']}); got {frame!r}."
        )
    ys, xs = _central_crop(img)
    crop = np.asarray(img.data[frame, ys, xs].compute(), dtype=np.float64)
    if not np.all(np.isfinite(crop)):
        raise NoLatticeError(
            "the image holds NaN or inf pixels, so no lattice spacing can be read from it; "
            "replace them first, e.g. image.fillna(image.median())."
        )
    max_lag = min(crop.shape) / 4
    spacing, contrast, translations = (math.nan, 0.0, np.zeros((0, 2))) if np.ptp(crop) == 0 \
        else autocorrelation_spacing(crop, max_lag=max_lag)
    if not math.isfinite(spacing) or contrast < MIN_LATTICE_CONTRAST:
        raise NoLatticeError(
            f"no lattice found: the autocorrelation of frame {frame} has no ring of columns "
            f"within {max_lag:.0f} px (contrast {contrast:.3g} < {MIN_LATTICE_CONTRAST}). The "
            "image looks constant or like pure noise; check it, or pass spacing= (pixels) "
            "if the columns are there but not periodic."
        )
    _check_spacing(spacing, img, NoLatticeError, "the estimated")
    return spacing, translations


def _check_spacing(spacing: float, img: xr.DataArray, error: type[Exception], what: str) -> None:
    limit = min(img.sizes["y"], img.sizes["x"]) / 4
    if not MIN_SPACING <= spacing <= limit:
        raise error(
            f"{what} column spacing is {spacing:.3g} px, outside [{MIN_SPACING}, {limit:.0f}] "
            "(2 px to a quarter of the image). Columns must span a few pixels and the image "
            "must hold a few of them: resample the image, crop less, or pass spacing= in pixels."
        )


def _positive(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if not (isinstance(value, int | float | np.number) and math.isfinite(value) and value > 0):
        raise ParameterError(f"{name} must be a positive number of pixels or None; got {value!r}.")
    return float(value)


def _levels(crop: np.ndarray, sigma: float, min_snr: float) -> tuple[float, ...]:
    """The (threshold, site, support, strong) levels of the smoothed image of one frame, read
    off its central crop."""
    crop = np.asarray(crop, dtype=np.float64)
    if not np.isfinite(crop).all():
        # No levels for a frame with NaN/inf: its tiles find nothing, and refuse the frame.
        return (math.nan,) * 4
    bg, noise, bright = background_and_noise(crop, sigma)
    contrast = bright - bg
    return (bg + max(min_snr * noise, MIN_CONTRAST * contrast),
            bg + SITE_SNR * noise + SITE_CONTRAST * contrast,
            *(bg + max(max(snr, min_snr) * noise, MIN_CONTRAST * contrast)
              for snr in (SUPPORT_SNR, STRONG_SNR)))


def _detect_block(
    block: np.ndarray,
    *,
    frame: int,
    origin: tuple[int, int],
    core: tuple[int, int, int, int],
    levels: tuple[float, ...],
    **params: Any,
) -> dict[str, np.ndarray]:
    # dask already runs one tile per core; numba threads inside a tile would only contend.
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        found = detect_tile(block, threshold=levels[0], site=levels[1], support=levels[2],
                            strong=levels[3], core=core, origin=origin, **params)
    finally:
        numba.set_num_threads(threads)
    found["frame"] = np.full(found["y"].shape, frame, dtype=np.int32)
    # (all finite, min, max) of the pixels read, for the frame's validity check
    found["pixels"] = (bool(np.isfinite(block).all()), float(np.min(block)), float(np.max(block)))
    return found


def detect_atoms(
    image: Any,
    *,
    spacing: float | None = None,
    min_distance: float | None = None,
    sigma: float | None = None,
    threshold: float | None = None,
    min_snr: float = MIN_SNR,
    refine: Refine = "com",
    window: float | None = None,
    chunks: Any = None,
) -> xr.Dataset:
    """Detect atom columns with sub-pixel positions.

    Each frame is smoothed with a Gaussian of width ``sigma``; its local maxima that rise above
    the strong level, and weaker columns where the lattice predicts one (see ``threshold``),
    that no higher column within ``min_distance`` outranks are the columns; each is refined
    by an iterated, background-subtracted centre of mass in a disk of radius ``window`` and,
    with ``refine="gaussian"``, by a 2-D Gaussian fit. The work runs tile by tile (dask) with
    an overlap; every column is reported by the tile whose core holds its integer peak, so
    the result is the same whatever the chunking or the number of workers.

    Parameters
    ----------
    image : array-like or xarray.DataArray
        A 2-D image or a ``(frame, y, x)`` stack; numpy, dask or xarray (see
        :func:`dmotif._image.as_image_stack`). The calibration of a DataArray is kept.
    spacing : float, optional
        Nearest-neighbour column distance, pixels. Default: ``min_distance / 0.45`` when that is
        given, else :func:`estimate_spacing`.
    min_distance : float, optional
        Smallest distance between two columns, pixels. Default ``0.45 × spacing``.
    sigma : float, optional
        Smoothing scale, pixels. Default ``spacing / 6``.
    threshold : float, optional
        Lowest value of a column in the smoothed image (image units), for every column. Default,
        per frame: the background (the mode of the smoothed image) plus ``min_snr`` times the
        smoothed noise, both read from the image. A column below 5 noise sigmas needs support.
        Where the image shows a lattice (translations read off its autocorrelation), a weak
        column is the highest pixel near a lattice site: for half of the translations, a peak
        of 3 sigmas lies within 0.15 spacing of the pixel moved by the translation; it must
        reach the site level (about the empty floor at a peak SNR of 5, see ``SITE_SNR``), not
        ``threshold``, and need not be a local maximum. Without a lattice, a weak column needs
        a pixel of 5 sigmas within 1.5 spacings. So weak columns (a single chalcogen, an O
        column) are kept while noise in vacuum, between columns or in empty sites (the centre
        of a honeycomb) is not; an empty site of the lattice (a vacancy) may be reported in a
        noisy image.
    min_snr : float
        Used when ``threshold`` is None: how many noise sigmas a column must rise above the
        background of the smoothed image.
    refine : {"com", "gaussian", None}
        ``"com"``: centre of mass; ``"gaussian"``: centre of mass, then a 2-D Gaussian fit whose
        amplitude and width are kept; None: the integer peaks.
    window : float, optional
        Radius of the refinement disk, pixels. Default ``0.3 × spacing``.
    chunks : "auto", int or tuple, optional
        Tile size. Default: the chunks of a dask-backed input, else 1024² tiles.

    Returns
    -------
    xarray.Dataset
        Over dim ``atom``, sorted by (frame, y, x): ``frame`` (int32), ``y``, ``x`` (float64,
        pixels), ``intensity`` (float32, the smoothed peak value), with ``refine="gaussian"``
        also ``amplitude`` and ``width`` (float32; NaN where the fit was rejected and the
        centre of mass kept), and
        ``y_nm``, ``x_nm`` when the image is calibrated. Attrs: ``spacing_px``,
        ``min_distance_px``, ``sigma_px``, ``window_px``, ``link_px``, ``translations_px``,
        ``tolerance_px``, ``threshold``, ``site_threshold``, ``support_threshold`` and
        ``strong_threshold`` (per frame), ``refine``, ``pixel_size``, ``units``, ``shape``.

    Raises
    ------
    DataError
        When the image holds NaN/inf or a constant frame, or has the wrong dims.
    NoLatticeError
        When no spacing is given and none can be read from the image.
    ParameterError
        When a parameter is out of range.
    NoAtomsError
        When no column rises above the threshold.

    Examples
    --------
    >>> import dmotif
    >>> syn = dmotif.synthetic.perovskite(size=256, seed=0, dose=None, read_noise=0)
    >>> atoms = dmotif.detect_atoms(syn.image)
    >>> round(atoms.attrs["spacing_px"], 1), sorted(atoms.data_vars)[:4]
    (13.0, ['frame', 'intensity', 'x', 'x_nm'])
    """
    if refine not in ("com", "gaussian", None):
        raise ParameterError(f"refine must be 'com', 'gaussian' or None; got {refine!r}.")
    if isinstance(min_snr, bool) or not isinstance(min_snr, int | float) or min_snr < 0:
        raise ParameterError(f"min_snr must be a number >= 0; got {min_snr!r}.")
    if threshold is not None and not (isinstance(threshold, int | float | np.number)
                                      and math.isfinite(threshold)):
        raise ParameterError(f"threshold must be a finite number or None; got {threshold!r}.")
    spacing = _positive("spacing", spacing)
    min_distance = _positive("min_distance", min_distance)
    sigma = _positive("sigma", sigma)
    window = _positive("window", window)
    data = image.data if isinstance(image, xr.DataArray) else image
    if chunks is None:
        chunks = data.chunksize[-2:] if isinstance(data, da.Array) else "auto"
    if isinstance(data, np.ndarray) and data.ndim in (2, 3):
        # dask would name a numpy array by hashing every byte of it; a random name is free.
        tiles = normalize_chunks(chunks, ((1,) * (3 - data.ndim)) + data.shape)
        lazy = da.from_array(_Sliced(data), chunks=tiles[3 - data.ndim :], name=False,
                             meta=data[:0, :0])
        image = image.copy(data=lazy) if isinstance(image, xr.DataArray) else lazy
    img = as_image_stack(image, chunks=chunks)
    # NaN/inf and constant frames are refused from what the tiles see as they are detected,
    # not by a pass of its own over the pixels (each pass decompresses the whole stack again).
    if spacing is None and min_distance is None:
        try:
            spacing, translations = _lattice(img)
        except NoLatticeError:
            # A NaN or constant frame is the better explanation, if there is one.
            check_finite_nonconstant(img)
            raise
    else:
        spacing = spacing or min_distance / MIN_DISTANCE_FRACTION
        _check_spacing(spacing, img, ParameterError, "the given")
        try:
            translations = _lattice(img)[1]
        except NoLatticeError:
            # Columns without a lattice (amorphous, a particle): weak ones need a bright
            # neighbour instead of a lattice repeat.
            translations = np.zeros((0, 2))
    min_distance = min_distance or MIN_DISTANCE_FRACTION * spacing
    sigma = sigma or SIGMA_FRACTION * spacing
    window = window or WINDOW_FRACTION * spacing
    link = LINK_FRACTION * spacing
    tolerance = TOLERANCE_FRACTION * spacing
    # How far beyond itself the support of a competitor reads: the strong peaks (and the pixels
    # they compete with) about its lattice repeats, or the link disk.
    if len(translations):
        context = np.hypot(*np.round(translations).T).max() + tolerance + min_distance + 1
    else:
        context = max(link, min_distance + 1)

    # The smoothed value of a pixel needs the raw pixels within the kernel radius; a core peak
    # needs the competitors within min_distance and what their support reads; the centre of
    # mass may move by a window, and the Gaussian fit reads a wider disk around it.
    smooth_reach = int(GAUSS_TRUNCATE * sigma + 0.5)
    depth = max(smooth_reach + math.ceil(min_distance + context) + 1,
                math.ceil((1 + FIT_WINDOW) * window) + 3)
    arr = img.data
    ny, nx = arr.shape[1:]
    starts_y = np.cumsum((0, *arr.chunks[1]))
    starts_x = np.cumsum((0, *arr.chunks[2]))
    params = {"sigma": sigma, "min_distance": min_distance, "refine": refine, "window": window,
              "link": link, "translations": translations, "tolerance": tolerance}
    pieces = arr.to_delayed()
    if threshold is None:
        # Each frame's levels come from its central crop, cut from the same chunk tasks as the
        # tiles: one pass over the stack, and a frame's tiles wait only for their own levels.
        ys, xs = _central_crop(img)
        levels = [dask.delayed(_levels, pure=True)(
            whole_chunk_window(arr, pieces, f, ys.start, ys.stop, xs.start, xs.stop),
            sigma, float(min_snr)) for f in range(arr.shape[0])]
    else:
        levels = [(float(threshold),) * 4] * arr.shape[0]
    tasks = []
    for f in range(arr.shape[0]):
        for y0, y1 in itertools.pairwise(starts_y.tolist()):
            for x0, x1 in itertools.pairwise(starts_x.tolist()):
                # The tile's core plus a margin of depth, cut at the image edge: the same pixels
                # around every core pixel as in the whole image.
                oy, ox = max(y0 - depth, 0), max(x0 - depth, 0)
                block = whole_chunk_window(arr, pieces, f, oy, min(y1 + depth, ny), ox,
                                            min(x1 + depth, nx))
                tasks.append(dask.delayed(_detect_block, pure=True)(
                    block, frame=f, origin=(oy, ox), core=(y0 - oy, y1 - oy, x0 - ox, x1 - ox),
                    levels=levels[f], **params,
                ))
    parts, levels = dask.compute(tasks, levels)
    stats = np.array([p.pop("pixels") for p in parts]).reshape(arr.shape[0], -1, 3)
    refuse_bad_frames(stats[..., 0].all(axis=1), stats[..., 1].min(axis=1),
                      stats[..., 2].max(axis=1))
    found = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    if found["y"].size == 0:
        raise NoAtomsError(
            f"no atom columns found: no peak of the smoothed image (sigma {sigma:.3g} px) rises "
            f"above the threshold {min(t[0] for t in levels):.4g} (background + {min_snr} noise "
            "sigmas). "
            "The image may hold no columns at this spacing; pass a lower threshold= or min_snr=, "
            "or the right spacing=."
        )
    order = np.lexsort((found["x"], found["y"], found["frame"]))
    data_vars = {k: ("atom", found[k][order]) for k in ("frame", "y", "x", "intensity")}
    data_vars |= {k: ("atom", v[order]) for k, v in found.items() if k not in data_vars}
    pixel_size = pixel_size_of(img)
    units = img.attrs.get("units", "px")
    if pixel_size is not None and units in _NM_PER_UNIT:
        scale = pixel_size * _NM_PER_UNIT[units]
        data_vars["y_nm"] = ("atom", data_vars["y"][1] * scale, {"units": "nm"})
        data_vars["x_nm"] = ("atom", data_vars["x"][1] * scale, {"units": "nm"})
    attrs = {
        "spacing_px": float(spacing),
        "min_distance_px": float(min_distance),
        "sigma_px": float(sigma),
        "window_px": float(window),
        "threshold": [float(t[0]) for t in levels],
        "site_threshold": [float(t[1]) for t in levels],
        "support_threshold": [float(t[2]) for t in levels],
        "strong_threshold": [float(t[3]) for t in levels],
        "link_px": float(link),
        "translations_px": np.round(translations, 3).tolist(),
        "tolerance_px": float(tolerance),
        "refine": refine or "none",
        "pixel_size": float(img.attrs.get("pixel_size", 1.0)),
        "units": units,
        "shape": [int(s) for s in img.shape],
    }
    return xr.Dataset(data_vars, attrs=attrs)
