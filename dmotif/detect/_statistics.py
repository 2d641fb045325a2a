"""Kernels of image statistics: the lattice spacing from the autocorrelation, and the
background, noise and bright levels that set the detection thresholds (numpy/scipy)."""

from __future__ import annotations

import math

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage as ndi

from ._peaks import noise_gain, smooth

__all__ = [
    "autocorrelation",
    "autocorrelation_peaks",
    "autocorrelation_spacing",
    "background_and_noise",
    "refined_lags",
]


def autocorrelation(img: np.ndarray, *, max_lag: float) -> np.ndarray:
    """The 2-D autocorrelation of an image for lags up to ``max_lag`` (+2) pixels.

    Parameters
    ----------
    img : ndarray (ny, nx)
    max_lag : float
        Largest lag needed, pixels.

    Returns
    -------
    ndarray (2m + 1, 2m + 1)
        The autocorrelation of the mean-subtracted image at lags ``-m .. m`` in each axis,
        ``m = ceil(max_lag) + 2`` (zero lag at ``[m, m]``), per overlapping pixel and in units
        of the zero-lag value. It is the same for the image and its negative.
    """
    a = np.asarray(img, dtype=np.float64)
    a = a - a.mean()
    ny, nx = a.shape
    m = math.ceil(max_lag) + 2
    # Zero padding by the largest lag keeps the circular correlation from wrapping round.
    shape = (sp_fft.next_fast_len(ny + m, real=True), sp_fft.next_fast_len(nx + m, real=True))
    f = sp_fft.rfft2(a, s=shape)
    ac = sp_fft.irfft2(f * np.conj(f), s=shape)
    lag_y = np.arange(-m, m + 1)
    lag_x = np.arange(-m, m + 1)
    sub = ac[np.ix_(lag_y % shape[0], lag_x % shape[1])]
    # Divide by the number of overlapping pixels so that large lags are not damped.
    sub = sub / np.outer(ny - np.abs(lag_y), nx - np.abs(lag_x))
    return sub / sub[m, m]


def autocorrelation_peaks(ac: np.ndarray, *, max_lag: float
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The peaks of an :func:`autocorrelation` within ``max_lag`` (and beyond 2 px).

    Returns
    -------
    lags : ndarray (k, 2) int
        ``(dy, dx)`` of the peaks (5x5 maxima).
    heights : ndarray (k,)
        Their heights above the floor (the minimum within ``max_lag``).
    floor : float
    """
    m = ac.shape[0] // 2
    yy, xx = np.mgrid[-m : m + 1, -m : m + 1]
    rad = np.hypot(yy, xx)
    peak = (ac == ndi.maximum_filter(ac, size=5)) & (rad >= 2) & (rad <= max_lag)
    floor = float(ac[rad <= max_lag].min())
    iy, ix = np.nonzero(peak)
    return np.c_[iy - m, ix - m], ac[iy, ix] - floor, floor


def refined_lags(ac: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """Sub-pixel ``(dy, dx)`` of autocorrelation peaks at integer ``lags``: the centroid of
    each peak's 3x3 neighbourhood above its minimum."""
    m = ac.shape[0] // 2
    out = []
    for ly, lx in np.asarray(lags, dtype=np.int64).reshape(-1, 2):
        y, x = ly + m, lx + m
        dy = dx = 0.0
        if 1 <= y < ac.shape[0] - 1 and 1 <= x < ac.shape[1] - 1:
            w = ac[y - 1 : y + 2, x - 1 : x + 2]
            w = w - w.min()
            total = w.sum()
            if total > 0:
                dy = (w.sum(axis=1) @ np.arange(-1, 2)) / total
                dx = (w.sum(axis=0) @ np.arange(-1, 2)) / total
        out.append((ly + dy, lx + dx))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def autocorrelation_spacing(
    img: np.ndarray, *, max_lag: float, ac: np.ndarray | None = None
) -> tuple[float, float, np.ndarray]:
    """Nearest-neighbour spacing and lattice translations from the image's autocorrelation.

    Parameters
    ----------
    img : ndarray (ny, nx)
    max_lag : float
        Largest spacing considered, pixels.
    ac : ndarray, optional
        The image's :func:`autocorrelation` for ``max_lag``, if already computed.

    Returns
    -------
    spacing : float
        Median radius of the nearest ring of strong autocorrelation peaks (sub-pixel); NaN when
        there is none.
    contrast : float
        Height of that ring above the minimum inside it, in units of the zero-lag value: a
        lattice gives tenths, noise gives about ``1/sqrt(n_pixels)``.
    translations : ndarray (k, 2)
        ``(dy, dx)`` of the nearest ring of the highest peaks, where like columns meet like
        columns: the lattice translations (both signs).
    """
    sub = autocorrelation(img, max_lag=max_lag) if ac is None else ac
    lags, heights, floor = autocorrelation_peaks(sub, max_lag=max_lag)
    if not len(lags):
        return math.nan, 0.0, np.zeros((0, 2))
    r = np.hypot(*lags.T)
    # A lattice gives rings of strong peaks; noise ripples are far weaker than the strongest
    # ring, so the nearest peak rising a tenth as high above the floor is the first ring (a
    # ring of unlike neighbours, e.g. metal-chalcogen, is a third of the like ring).
    strong = heights >= 0.1 * heights.max()
    first = r[strong].min()
    ring = strong & (r <= 1.1 * first)
    spacing = float(np.median(np.hypot(*refined_lags(sub, lags[ring]).T)))
    m = sub.shape[0] // 2
    yy, xx = np.mgrid[-m : m + 1, -m : m + 1]
    rad = np.hypot(yy, xx)
    lo = sub[(rad >= 1) & (rad <= first)].min()
    top = heights >= 0.8 * heights.max()
    nearest_top = top & (r <= 1.1 * r[top].min())
    translations = refined_lags(sub, lags[nearest_top])
    return spacing, float(heights[ring].max() + floor - lo), translations


def background_and_noise(
    img: np.ndarray, sigma: float, smoothed: np.ndarray | None = None
) -> tuple[float, float, float]:
    """Background level, noise and bright level of an image smoothed at ``sigma``
    (``smoothed``, if the caller has it already: :func:`smooth` of ``img`` at ``sigma``).

    The noise of the raw image is the scaled median absolute difference of horizontal pixel
    neighbours, taken where the smoothed image lies below its median (between the columns,
    where the signal is flat); smoothing divides it by :func:`noise_gain`. In an image of
    electron counts at low dose (a light-element ADF image at a few 10⁴ e/Å²) most pixels
    between the columns hold 0 or 1 count, so most differences are equal and their median
    absolute difference is 0, which would make every count a column: when at least half of
    the differences equal their median, their root mean square is taken instead (over the
    whole image if even that is 0). The background is
    the mode of the smoothed values: the centre of the densest interval two noise sigmas wide
    (flat background piles up there, column flanks spread over a wide range). The bright level
    is the 99.9th percentile.

    Returns
    -------
    background, noise, bright : float
    """
    a = np.asarray(img, dtype=np.float64)
    sm = smooth(a, sigma) if smoothed is None else smoothed
    # The median and the 99.9th percentile read order statistics only, so they are the same
    # on any permutation of the values: one partition at both ranks makes theirs cheap.
    n, top = sm.size, int(0.999 * (sm.size - 1))
    ranked = np.partition(sm, np.unique(np.clip([(n - 1) // 2, n // 2, top, top + 1], 0, n - 1)),
                          axis=None)
    low = sm <= np.median(ranked)
    pair = low[:, 1:] & low[:, :-1]
    diff = (a[:, 1:] - a[:, :-1])[pair]
    raw = _difference_noise(diff) or _difference_noise((a[:, 1:] - a[:, :-1]).ravel())
    noise = raw * noise_gain(sigma)
    # Every other pixel in each direction gives the mode as well, at a quarter of the sort.
    values = np.sort(sm[::2, ::2], axis=None)
    width = max(2.0 * noise, 1e-6 * (values[-1] - values[0]))
    ends = np.searchsorted(values, values + width, side="right")
    start = int(np.argmax(ends - np.arange(values.size)))
    background = float(np.median(values[start : ends[start]]))
    return background, noise, float(np.percentile(ranked, 99.9))


#: Share of equal neighbour differences above which the median absolute difference fails.
QUANTISED_TIES = 0.5


def _difference_noise(diff: np.ndarray) -> float:
    """The noise of one pixel from differences of pixel neighbours: robust (scaled median
    absolute difference), or their root mean square when quantised counts make most of them
    equal (see :func:`background_and_noise`)."""
    if diff.size == 0:
        return 0.0
    centred = diff - np.median(diff)
    if np.mean(centred == 0) >= QUANTISED_TIES:
        return math.sqrt(np.mean(centred**2) / 2.0)
    return 1.4826 * np.median(np.abs(centred)) / math.sqrt(2.0)
