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
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

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
from . import _sublattice
from ._peaks import GAUSS_TRUNCATE, smooth
from ._refine import FIT_WINDOW
from ._statistics import autocorrelation, autocorrelation_spacing, background_and_noise
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
# Where the unit-cell average shows more than one sublattice, a weak column is also the
# highest pixel where most offsets to its neighbours on the brightest sublattice land on peaks
# above the anchor level (midway between the brightest and the next sublattice of the smoothed
# cell average) and that reaches the cell-site level: the floor of that average (the empty
# sites) plus CELL_SITE_SNR noise sigmas or CELL_SITE_CONTRAST of the faintest sublattice's
# height above it. The Bravais rule fails exactly where faint columns are common (the
# translations of a chalcogen land on chalcogens, themselves faint), and the mode sits ~12
# noise sigmas above the hollows of a dense real MoS2 lattice, so its faint chalcogens, 5 to
# 25 sigmas above the hollows, were missed.
MIN_SNR = 1.5
SITE_SNR = -1.0
SUPPORT_SNR = 3.0
STRONG_SNR = 5.0
CELL_SITE_SNR = 4.0
CELL_SITE_CONTRAST = 0.25
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
# A site of the unit-cell average (see dmotif._sublattice.cell_sites) is a column when its
# prominence reaches CELL_SNR noise sigmas of the average and CELL_PROMINENCE of the highest
# site's, and its height above the cell's floor CELL_HEIGHT of the highest site's: a
# sublattice at a fifth of the strongest contrast counts. Measured: the S2 sites of a real
# MoS2 image at 0.39 height, 0.093 prominence (kept); maxima of the halo between the columns
# of an ABF image at 0.42 height, 0.045 prominence and noise ripples at 0.08 height (not).
CELL_SNR = 5.0
CELL_HEIGHT = 0.15
CELL_PROMINENCE = 0.06
# The sites are trusted when the cell average holds this share of the signal (see
# dmotif._sublattice.periodic_share; a twisted bilayer gives 0.02, lattices 0.6 to 1).
MIN_CELL_SHARE = 0.3

_NM_PER_UNIT = {"nm": 1.0, "Å": 0.1, "A": 0.1, "angstrom": 0.1, "pm": 1e-3, "um": 1e3,
                "µm": 1e3}

Refine = Literal["com", "gaussian"] | None
Contrast = Literal["auto", "bright", "dark"]


class _Lattice(NamedTuple):
    """What the central crop of one frame tells about its lattice."""

    spacing: float  # nearest-neighbour column distance, pixels
    translations: np.ndarray  # (k, 2) lattice translations (dy, dx), both signs
    contrast: str  # "bright" or "dark" columns
    cell: np.ndarray  # (2, 2) basis of the unit-cell average, rows (dy, dx); empty if none
    sites: np.ndarray  # (k, 2) image pixels (y, x) of one of each site of the cell
    prominence: np.ndarray  # (k,) each site's prominence, in units of the highest's


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


def estimate_spacing(image: Any, *, frame: int = 0, contrast: Contrast = "auto") -> float:
    """Estimate the nearest-neighbour column spacing of an image, in pixels.

    The spacing is the distance between neighbouring columns, whatever their kind (for a
    honeycomb, metal to chalcogen, not metal to metal), read off the central ``1024²`` pixels
    (at most) of one frame. The 2-D autocorrelation gives the lattice: its translations, and
    the radius of its nearest strong peak. The crop is then averaged onto one unit cell of the
    lattice (every pixel with its lattice-equivalent pixels, see
    :mod:`dmotif._sublattice`); the maxima of this average that stand out of its noise and
    reach a fifth or so of the strongest column's contrast are the sites of all sublattices,
    and the spacing is the shortest distance between two of them (or their repeats). A faint
    sublattice, which hardly shows in the autocorrelation, is found this way; an empty site
    (the hollow of a honeycomb) is a minimum of the average and is not. When the average shows
    no nearer sites than the autocorrelation's peak (a moiré or a bent lattice blurs it), the
    peak's radius is the spacing.

    Parameters
    ----------
    image : array-like or xarray.DataArray
        A 2-D image or a ``(frame, y, x)`` stack (see :func:`dmotif.detect_atoms`).
    frame : int
        The frame to read the spacing from.
    contrast : {"auto", "bright", "dark"}
        Whether the columns are bright (ADF) or dark (ABF, BF); see
        :func:`dmotif.detect_atoms`.

    Returns
    -------
    float
        The spacing in pixels (sub-pixel).

    Raises
    ------
    NoLatticeError
        When the autocorrelation shows no lattice (a constant or pure-noise image), or the
        spacing found is below 2 px or above a quarter of the image.
    ParameterError
        When ``frame`` or ``contrast`` is out of range.

    Examples
    --------
    >>> import dmotif
    >>> syn = dmotif.synthetic.perovskite(size=256, seed=0)
    >>> round(dmotif.estimate_spacing(syn.image))
    13
    """
    return _lattice(as_image_stack(image), frame=frame, contrast=_contrast(contrast)).spacing


def _contrast(contrast: Any) -> Contrast:
    if contrast not in ("auto", "bright", "dark"):
        raise ParameterError(f"contrast must be 'auto', 'bright' or 'dark'; got {contrast!r}.")
    return contrast


def _orientation(crop: np.ndarray, contrast: Contrast, spacing: float) -> str:
    """``contrast``, or for "auto" whether the columns of ``crop`` are bright or dark."""
    if contrast != "auto":
        return contrast
    # ADF columns are narrow peaks on a broad, dark background, so the smoothed values have a
    # long upper tail (positive skewness); ABF and BF columns are narrow dips on a bright
    # background (negative). Measured: +0.4 to +1.9 on ADF images (real, abTEM, synthetic,
    # a twisted bilayer), -0.5 to -2.0 on ABF ones.
    sm = smooth(crop, SIGMA_FRACTION * spacing)
    dev = sm - sm.mean()
    return "bright" if np.mean(dev**3) >= 0 else "dark"


def _frame_crop(img: xr.DataArray, frame: int) -> np.ndarray:
    """The central crop of one frame (float64), checked to be finite."""
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
    return crop


def _frame_list(frames: Sequence[int] | None, n_frames: int) -> list[int]:
    """The frames to detect in, checked against the stack's ``n_frames``."""
    if frames is None:
        return list(range(n_frames))
    out = [int(f) for f in frames]
    if not out or len(set(out)) != len(out) or not all(0 <= f < n_frames for f in out):
        raise ParameterError(
            f"frames must be distinct frame numbers in [0, {n_frames}); got {list(frames)!r}."
        )
    return sorted(out)


#: The last lattice read, by the stack's dask name and the arguments: a stack detected in parts
#: (:func:`detect_atoms` with ``frames``) reads its lattice once, not once per part.
_LAST_LATTICE: dict[tuple[Any, ...], _Lattice] = {}


def _lattice(img: xr.DataArray, *, frame: int = 0, contrast: Contrast = "auto",
             spacing: float | None = None) -> _Lattice:
    """The lattice of one frame (see :func:`estimate_spacing`); with ``spacing`` given, that
    spacing decides the smoothing for ``contrast="auto"`` and is returned as it is."""
    key = (img.data.name, frame, contrast, spacing)
    if key not in _LAST_LATTICE:
        lattice = _read_lattice(img, frame=frame, contrast=contrast, spacing=spacing)
        _LAST_LATTICE.clear()
        _LAST_LATTICE[key] = lattice
    return _LAST_LATTICE[key]


def _read_lattice(img: xr.DataArray, *, frame: int, contrast: Contrast,
                  spacing: float | None) -> _Lattice:
    crop = _frame_crop(img, frame)
    max_lag = min(crop.shape) / 4
    ac = None if np.ptp(crop) == 0 else autocorrelation(crop, max_lag=max_lag)
    ring, strength, translations = (math.nan, 0.0, np.zeros((0, 2))) if ac is None \
        else autocorrelation_spacing(crop, max_lag=max_lag, ac=ac)
    if not math.isfinite(ring) or strength < MIN_LATTICE_CONTRAST:
        raise NoLatticeError(
            f"no lattice found: the autocorrelation of frame {frame} has no ring of columns "
            f"within {max_lag:.0f} px (contrast {strength:.3g} < {MIN_LATTICE_CONTRAST}). The "
            "image looks constant or like pure noise; check it, or pass spacing= (pixels) "
            "if the columns are there but not periodic."
        )
    contrast = _orientation(crop, contrast, spacing or ring)
    # The autocorrelation is the same for the image and its negative; the cell average is not.
    sign = 1.0 if contrast == "bright" else -1.0
    basis = _sublattice.cell_basis(ac, max_lag=max_lag)
    cell, sites, prominence = np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)
    nearest = math.nan
    average, noise = (None, 0.0) if basis is None else _sublattice.fold(sign * crop, basis)
    if average is not None and _sublattice.periodic_share(average, crop, ac) >= MIN_CELL_SHARE:
        frac, prominence = _sublattice.cell_sites(
            average, noise=noise, min_snr=CELL_SNR, min_height=CELL_HEIGHT,
            min_prominence=CELL_PROMINENCE)
        nearest = _sublattice.site_spacing(frac, basis)
        # Each site's repeat nearest the crop's centre, in image pixels.
        ys, xs = _central_crop(img)
        at = frac @ basis
        centre = np.array(crop.shape) / 2
        shift = np.round(np.linalg.solve(basis.T, (centre - at).T)).T @ basis
        cell, sites = basis, at + shift + (ys.start, xs.start)
    # The sites are read only where the average holds most of the signal: the layers of a
    # moiré drift across it and leave maxima between their columns. And the average can only
    # add sites that the autocorrelation misses: a nearest pair farther apart than its ring
    # means the average lost columns (a lattice bent across the crop), and the ring is kept.
    found = min(ring, nearest) if math.isfinite(nearest) else ring
    if spacing is None:
        spacing = found
        _check_spacing(spacing, img, NoLatticeError, "the estimated")
    return _Lattice(spacing, translations, contrast, cell, sites, prominence)


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


def _levels(crop: np.ndarray, sigma: float, min_snr: float, cell: np.ndarray,
            frac: np.ndarray) -> tuple[float, ...]:
    """The (threshold, site, support, strong, cell site, anchor) levels of the smoothed image
    of one frame, read off its central crop; ``cell`` and ``frac`` are the lattice's unit cell
    and sites (fractional, from the crop's first pixel), empty without."""
    crop = np.asarray(crop, dtype=np.float64)
    if not np.isfinite(crop).all():
        # No levels for a frame with NaN/inf: its tiles find nothing, and refuse the frame.
        return (math.nan,) * 6
    sm = smooth(crop, sigma)
    bg, noise, bright = background_and_noise(crop, sigma, sm)
    contrast = bright - bg
    site = bg + SITE_SNR * noise + SITE_CONTRAST * contrast
    support, strong = (bg + max(max(snr, min_snr) * noise, MIN_CONTRAST * contrast)
                       for snr in (SUPPORT_SNR, STRONG_SNR))
    cell_site, anchor = site, strong
    if len(frac) > 1:
        # The smoothed crop folded onto its cell: its floor is the empty sites' level (the
        # hollow of a honeycomb), its sites the level of each sublattice.
        average, _ = _sublattice.fold(sm, cell)
        heights = _sublattice.site_heights(average, frac)
        floor = float(average.min())
        cell_site = floor + max(CELL_SITE_SNR * noise,
                                CELL_SITE_CONTRAST * float(heights[1:].min() - floor))
        anchor = (float(heights[0]) + float(heights[1:].max())) / 2
    return (bg + max(min_snr * noise, MIN_CONTRAST * contrast), site, support, strong,
            cell_site, anchor)


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
                            strong=levels[3], cell_site=levels[4], anchor=levels[5], core=core,
                            origin=origin, **params)
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
    contrast: Contrast = "auto",
    frames: Sequence[int] | None = None,
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
        ``threshold``, and need not be a local maximum. Where the unit-cell average shows
        more than one sublattice, a weak column is also the highest pixel from which most of
        the offsets to its neighbours on the brightest sublattice land on its columns (peaks
        above ``anchor_threshold``, midway between the brightest and the next sublattice of
        the smoothed average), at least ``cell_site_threshold`` (the average's floor, the
        empty sites, plus 4 noise sigmas or a quarter of the faintest sublattice's height):
        so a faint chalcogen (a single S, an S2 column dimmed by implantation) is found
        however many of its own sublattice are faint too. Without a lattice, a weak column
        needs a pixel of 5 sigmas within 1.5 spacings. So weak columns (a single chalcogen, an O
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
    contrast : {"auto", "bright", "dark"}
        ``"bright"``: columns are peaks (ADF, HAADF). ``"dark"``: columns are dips on a
        bright background (ABF, BF); the image is negated for detection, so ``threshold``,
        the levels in the attrs and ``intensity`` are those of the negated image (a deeper
        column has a larger intensity). ``"auto"``: bright when the smoothed central crop of
        the first frame is skewed towards high values (narrow peaks on a broad background),
        else dark.

    Returns
    -------
    xarray.Dataset
        Over dim ``atom``, sorted by (frame, y, x): ``frame`` (int32), ``y``, ``x`` (float64,
        pixels), ``intensity`` (float32, the smoothed peak value; negated for dark columns),
        with ``refine="gaussian"`` also ``amplitude`` and ``width`` (float32; NaN where the
        fit was rejected and the centre of mass kept), and ``y_nm``, ``x_nm`` when the image
        is calibrated. Attrs: ``spacing_px``, ``min_distance_px``, ``sigma_px``,
        ``window_px``, ``link_px``, ``translations_px``, ``contrast`` ("bright" or "dark"),
        ``cell_px`` (the unit cell's two vectors, rows ``(dy, dx)``), ``sublattices_px``
        (image pixels ``(y, x)`` of each site of that cell, the repeat nearest the centre of
        the first frame, the most prominent first: one per sublattice),
        ``sublattice_prominence`` (each site's, in units of the highest's), ``tolerance_px``,
        ``threshold``, ``site_threshold``, ``support_threshold``, ``strong_threshold``,
        ``cell_site_threshold`` and ``anchor_threshold`` (per frame detected), ``refine``,
        ``pixel_size``, ``units``, ``shape``.

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
    contrast = _contrast(contrast)
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
    frame_list = _frame_list(frames, img.sizes["frame"])
    # NaN/inf and constant frames are refused from what the tiles see as they are detected,
    # not by a pass of its own over the pixels (each pass decompresses the whole stack again).
    if spacing is None and min_distance is None:
        try:
            lattice = _lattice(img, contrast=contrast)
        except NoLatticeError:
            # A NaN or constant frame is the better explanation, if there is one.
            check_finite_nonconstant(img)
            raise
        spacing = lattice.spacing
    else:
        spacing = spacing or min_distance / MIN_DISTANCE_FRACTION
        _check_spacing(spacing, img, ParameterError, "the given")
        try:
            lattice = _lattice(img, contrast=contrast, spacing=spacing)
        except NoLatticeError:
            # Columns without a lattice (amorphous, a particle): weak ones need a bright
            # neighbour instead of a lattice repeat. (A NaN frame is refused by its tiles.)
            ys, xs = _central_crop(img)
            crop = np.asarray(img.data[0, ys, xs].compute(), dtype=np.float64)
            contrast = _orientation(crop, contrast, spacing) if np.isfinite(crop).all() \
                else "bright" if contrast == "auto" else contrast
            lattice = _Lattice(spacing, np.zeros((0, 2)), contrast, np.zeros((0, 2)),
                               np.zeros((0, 2)), np.zeros(0))
    translations = lattice.translations
    neighbours = [] if len(lattice.sites) < 2 else _sublattice.neighbour_offsets(
        np.linalg.solve(lattice.cell.T, lattice.sites.T).T, lattice.cell)
    if lattice.contrast == "dark":
        # Dark columns are detected as the bright columns of the negated image: every level,
        # the threshold and the intensity are in its units.
        img = img.copy(data=-img.data)
    min_distance = min_distance or MIN_DISTANCE_FRACTION * spacing
    sigma = sigma or SIGMA_FRACTION * spacing
    window = window or WINDOW_FRACTION * spacing
    link = LINK_FRACTION * spacing
    tolerance = TOLERANCE_FRACTION * spacing
    # How far beyond itself the support of a competitor reads: the strong peaks (and the pixels
    # they compete with) about its lattice repeats, or the link disk.
    if len(translations):
        reads = np.concatenate([np.round(translations), *(np.round(n) for n in neighbours)])
        context = np.hypot(*reads.T).max() + tolerance + min_distance + 1
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
              "link": link, "translations": translations, "neighbours": neighbours,
              "tolerance": tolerance}
    pieces = arr.to_delayed()
    if threshold is None:
        # Each frame's levels come from its central crop, cut from the same chunk tasks as the
        # tiles: one pass over the stack, and a frame's tiles wait only for their own levels.
        ys, xs = _central_crop(img)
        frac = np.zeros((0, 2)) if len(lattice.sites) < 2 else np.mod(np.linalg.solve(
            lattice.cell.T, (lattice.sites - (ys.start, xs.start)).T).T, 1.0)
        levels = [dask.delayed(_levels, pure=True)(
            whole_chunk_window(arr, pieces, f, ys.start, ys.stop, xs.start, xs.stop),
            sigma, float(min_snr), lattice.cell, frac) for f in frame_list]
    else:
        levels = [(float(threshold),) * 6] * len(frame_list)
    tasks = []
    for i, f in enumerate(frame_list):
        for y0, y1 in itertools.pairwise(starts_y.tolist()):
            for x0, x1 in itertools.pairwise(starts_x.tolist()):
                # The tile's core plus a margin of depth, cut at the image edge: the same pixels
                # around every core pixel as in the whole image.
                oy, ox = max(y0 - depth, 0), max(x0 - depth, 0)
                block = whole_chunk_window(arr, pieces, f, oy, min(y1 + depth, ny), ox,
                                            min(x1 + depth, nx))
                tasks.append(dask.delayed(_detect_block, pure=True)(
                    block, frame=f, origin=(oy, ox), core=(y0 - oy, y1 - oy, x0 - ox, x1 - ox),
                    levels=levels[i], **params,
                ))
    parts, levels = dask.compute(tasks, levels)
    # Read, not popped: a cluster may hand the same result objects to a later computation of
    # the same tiles (a batch of files detected again file by file).
    stats = np.array([p["pixels"] for p in parts]).reshape(len(frame_list), -1, 3)
    refuse_bad_frames(stats[..., 0].all(axis=1), stats[..., 1].min(axis=1),
                      stats[..., 2].max(axis=1), frames=frame_list)
    found = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "pixels"}
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
        "cell_site_threshold": [float(t[4]) for t in levels],
        "anchor_threshold": [float(t[5]) for t in levels],
        "link_px": float(link),
        "translations_px": np.round(translations, 3).tolist(),
        "contrast": lattice.contrast,
        "cell_px": np.round(lattice.cell, 3).tolist(),
        "sublattices_px": np.round(lattice.sites, 2).tolist(),
        "sublattice_prominence": np.round(lattice.prominence, 3).tolist(),
        "tolerance_px": float(tolerance),
        "refine": refine or "none",
        "pixel_size": float(img.attrs.get("pixel_size", 1.0)),
        "units": units,
        "shape": [int(s) for s in img.shape],
    }
    return xr.Dataset(data_vars, attrs=attrs)
