"""Kernels of atom-column detection (numpy/scipy/numba; no dask or xarray).

A tile is smoothed at the column scale, its local maxima above a threshold and at least
``min_distance`` apart are found, and each maximum is refined to sub-pixel precision by an
iterated, background-subtracted centre of mass and optionally a 2-D Gaussian fit. Every step is
local: a pixel's result depends only on the pixels within a fixed reach, so a tile computed with
enough overlap gives exactly what the whole image gives.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage as ndi

__all__ = [
    "GAUSS_TRUNCATE",
    "autocorrelation_spacing",
    "background_and_noise",
    "centre_of_mass",
    "detect_tile",
    "disk_offsets",
    "gaussian_fit",
    "local_maxima",
    "noise_gain",
    "smooth",
]

# Smoothing kernels are cut at this many sigmas (scipy's default is 4).
GAUSS_TRUNCATE = 4.0
# Centre-of-mass iterations; the window re-centres on each estimate, so a pedestal left by the
# background estimate pulls towards the current centre only and the fixed point is unbiased.
COM_ITERATIONS = 10
COM_TOLERANCE = 1e-3
GAUSS_ITERATIONS = 20
GAUSS_TOLERANCE = 1e-5
# The Gaussian fit reads a wider disk than the centre of mass: the tails fix the background
# and the width, which a disk of under two widths leaves free to trade against each other.
FIT_WINDOW = 4 / 3


def smooth(tile: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth a 2-D tile in float64 (mirror boundary, truncated at 4 sigma)."""
    return ndi.gaussian_filter(
        np.asarray(tile, dtype=np.float64), sigma, mode="reflect", truncate=GAUSS_TRUNCATE
    )


def noise_gain(sigma: float) -> float:
    """Factor by which :func:`smooth` scales the standard deviation of white noise."""
    impulse = np.zeros((2 * int(GAUSS_TRUNCATE * sigma + 0.5) + 1,) * 2)
    impulse[impulse.shape[0] // 2, impulse.shape[1] // 2] = 1.0
    k = ndi.gaussian_filter(impulse, sigma, mode="constant", truncate=GAUSS_TRUNCATE)
    return float(np.sqrt(np.sum(k * k)))


@numba.njit(cache=True)
def _beats(w: float, v: float, dy: int, dx: int) -> bool:
    # Does the pixel at offset (dy, dx) outrank the centre? Ties go to the first in raster order.
    return w > v or (w == v and (dy < 0 or (dy == 0 and dx < 0)))


@numba.njit(cache=True, parallel=True)
def _candidates(
    sm: np.ndarray, threshold: float, y0: int, y1: int, x0: int, x1: int
) -> np.ndarray:
    # Values of the 3x3 local maxima of at least threshold in [y0, y1) x [x0, x1), off the
    # array edge; -inf elsewhere. Lower maxima could never outrank a peak, so they are skipped.
    ny, nx = sm.shape
    cand = np.full(sm.shape, -np.inf)
    for y in numba.prange(y0, y1):
        for x in range(x0, x1):
            v = sm[y, x]
            if v < threshold:
                continue
            # A maximum on the image edge is the flank of a column outside the image.
            ok = 0 < y < ny - 1 and 0 < x < nx - 1
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    qy = y + dy
                    qx = x + dx
                    inside = 0 <= qy < ny and 0 <= qx < nx
                    if (dy != 0 or dx != 0) and inside and _beats(sm[qy, qx], v, dy, dx):
                        ok = False
            if ok:
                cand[y, x] = v
    return cand


@numba.njit(cache=True)
def _reaches(sm: np.ndarray, y: int, x: int, disk: np.ndarray, level: float) -> bool:
    # Does any pixel at (y, x) + disk reach level?
    ny, nx = sm.shape
    for k in range(disk.shape[0]):
        qy = y + disk[k, 0]
        qx = x + disk[k, 1]
        if 0 <= qy < ny and 0 <= qx < nx and sm[qy, qx] >= level:
            return True
    return False


@numba.njit(cache=True)
def _supported(sm: np.ndarray, y: int, x: int, translations: np.ndarray, disk: np.ndarray,
               link_disk: np.ndarray, support: float, strong: float) -> bool:
    # A pixel within the link disk reaches strong and, with lattice translations (both signs),
    # a column (>= support) lies about some y + t.
    if not _reaches(sm, y, x, link_disk, strong):
        return False
    if translations.shape[0] == 0:
        return True
    for k in range(translations.shape[0]):
        ty = translations[k, 0]
        tx = translations[k, 1]
        if _reaches(sm, y + ty, x + tx, disk, support):
            return True
    return False


def disk_offsets(radius: float) -> np.ndarray:
    """Integer offsets within ``radius`` of the origin, nearest first, as rows ``(dy, dx)``."""
    r = math.ceil(radius)
    grid = np.stack(np.mgrid[-r : r + 1, -r : r + 1], axis=-1).reshape(-1, 2)
    d2 = (grid**2).sum(axis=1)
    grid = grid[d2 <= radius * radius]
    return grid[np.argsort((grid**2).sum(axis=1), kind="stable")].astype(np.int64)


@numba.njit(cache=True, parallel=True)
def _peak_mask(
    sm: np.ndarray,
    cand: np.ndarray,
    radius: float,
    threshold: float,
    support: float,
    strong: float,
    translations: np.ndarray,
    disk: np.ndarray,
    link_disk: np.ndarray,
    core: tuple[int, int, int, int],
) -> np.ndarray:
    ny, nx = cand.shape
    y0, y1, x0, x1 = core
    r = math.floor(radius)
    r2 = radius * radius
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.bool_)
    for yy in numba.prange(y1 - y0):
        y = yy + y0
        for x in range(x0, x1):
            v = cand[y, x]
            if v < threshold:
                continue
            ok = True
            for dy in range(-r, r + 1):
                qy = y + dy
                if qy < 0 or qy >= ny:
                    continue
                for dx in range(-r, r + 1):
                    qx = x + dx
                    if qx < 0 or qx >= nx or (dy == 0 and dx == 0) or dy * dy + dx * dx > r2:
                        continue
                    if _beats(cand[qy, qx], v, dy, dx):
                        ok = False
                        break
                if not ok:
                    break
            if ok and v < strong:
                ok = _supported(sm, y, x, translations, disk, link_disk, support, strong)
            mask[yy, x - x0] = ok
    return mask


def local_maxima(
    sm: np.ndarray,
    *,
    min_distance: float,
    threshold: float,
    strong: float | None = None,
    support: float | None = None,
    translations: np.ndarray | None = None,
    tolerance: float = 0.0,
    link: float = 0.0,
    core: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Integer peaks of ``sm``: 3x3 maxima at least ``threshold`` that no higher 3x3 maximum
    within ``min_distance`` outranks.

    Only maxima compete: the flank of a bright column does not hide a weak column beside it (a
    plain maximum filter of radius ``min_distance`` would). The rule is local and order-free,
    unlike greedy suppression, so a tile with a margin of ``min_distance + 1`` decides exactly as
    the whole image does. A weak peak (below ``strong``) needs support: a pixel within
    ``link`` must reach ``strong`` (a weak column sits beside bright ones, a noise peak in
    vacuum does not) and, with lattice ``translations`` t (both signs), a pixel of at least
    ``support`` must lie within ``tolerance`` of ``peak + t`` for some t (a weak column repeats
    with the lattice, a noise peak in an empty site such as the centre of a honeycomb does
    not).

    Parameters
    ----------
    sm : ndarray (ny, nx)
        A smoothed image.
    min_distance : float
        Radius of the disk a peak must dominate; two peaks are never closer than this.
    threshold : float
        Lowest value of a peak.
    strong : float, optional
        Lowest value of a peak that needs no support; default ``threshold``.
    support : float, optional
        Level the lattice repeats of a weak peak must reach; default ``threshold``.
    translations : ndarray (k, 2), optional
        Lattice translations ``(dy, dx)``, pixels (rounded to whole pixels); give both signs.
    tolerance : float
        Radius about each translated position, pixels.
    link : float
        Radius of the bright-neighbour test.
    core : (y0, y1, x0, x1), optional
        Report only peaks in this region (the rest of ``sm`` is context).

    Returns
    -------
    ndarray (n, 2) int64
        ``(row, col)`` in raster order.
    """
    y0, y1, x0, x1 = core if core is not None else (0, sm.shape[0], 0, sm.shape[1])
    sm = np.ascontiguousarray(sm, dtype=np.float64)
    reach = math.floor(min_distance)
    cand = _candidates(sm, float(threshold), max(y0 - reach, 0), min(y1 + reach, sm.shape[0]),
                       max(x0 - reach, 0), min(x1 + reach, sm.shape[1]))
    strong = threshold if strong is None else max(strong, threshold)
    support = threshold if support is None else support
    shifts = np.zeros((0, 2)) if translations is None else np.asarray(translations, float)
    mask = _peak_mask(sm, cand, float(min_distance), float(threshold), float(support),
                      float(strong),
                      np.round(shifts).astype(np.int64).reshape(-1, 2), disk_offsets(tolerance),
                      disk_offsets(link), (int(y0), int(y1), int(x0), int(x1)))
    peaks = np.argwhere(mask)
    peaks[:, 0] += y0
    peaks[:, 1] += x0
    return peaks


@numba.njit(cache=True)
def _aperture(dy: float, dx: float, window: float) -> float:
    # A disk with a one-pixel linear edge: pixels enter the window gradually as the centre
    # moves, so the centre of mass has no pixel-grid bias from a hard edge.
    return min(max(window + 0.5 - math.sqrt(dy * dy + dx * dx), 0.0), 1.0)


@numba.njit(cache=True, parallel=True)
def _com(img: np.ndarray, py: np.ndarray, px: np.ndarray, window: float,
         n_iter: int) -> tuple[np.ndarray, np.ndarray]:
    # Works in offsets from the integer peak, so the arithmetic does not depend on where the
    # tile starts and tiles agree with the whole image to the last bit.
    ny, nx = img.shape
    n = py.shape[0]
    off_y = np.zeros(n)
    off_x = np.zeros(n)
    r = math.ceil(window) + 1
    w2 = window * window
    for k in numba.prange(n):
        cy = 0.0
        cx = 0.0
        for _ in range(n_iter):
            iy = round(cy)
            ix = round(cx)
            # One pass: the window minimum is subtracted afterwards, through the sums of the
            # aperture weights, so each pixel is read once.
            lo = np.inf
            sa = 0.0
            say = 0.0
            sax = 0.0
            sv = 0.0
            svy = 0.0
            svx = 0.0
            for dy in range(max(iy - r, -py[k]), min(iy + r + 1, ny - py[k])):
                for dx in range(max(ix - r, -px[k]), min(ix + r + 1, nx - px[k])):
                    a = _aperture(dy - cy, dx - cx, window)
                    if a > 0.0:
                        v = img[py[k] + dy, px[k] + dx]
                        lo = min(lo, v)
                        sa += a
                        say += a * dy
                        sax += a * dx
                        av = a * v
                        sv += av
                        svy += av * dy
                        svx += av * dx
            sw = sv - lo * sa
            sy = svy - lo * say
            sx = svx - lo * sax
            if sw <= 0.0:
                break
            ny_ = sy / sw
            nx_ = sx / sw
            # A centre that runs off towards a neighbour is not this column's: keep the peak.
            if ny_ * ny_ + nx_ * nx_ > w2:
                cy = 0.0
                cx = 0.0
                break
            moved = abs(ny_ - cy) + abs(nx_ - cx)
            cy = ny_
            cx = nx_
            if moved < COM_TOLERANCE:
                break
        off_y[k] = cy
        off_x[k] = cx
    return off_y, off_x


def centre_of_mass(
    img: np.ndarray, peaks: np.ndarray, *, window: float, n_iter: int = COM_ITERATIONS
) -> tuple[np.ndarray, np.ndarray]:
    """Iterated centre of mass of ``img`` in a disk of radius ``window`` around each peak.

    The window minimum is subtracted before weighting, so the flat background and the tails of
    brighter neighbours do not pull the centre; the disk re-centres on each new estimate.

    Returns
    -------
    dy, dx : ndarray (n,) float64
        Offsets of the centres from the integer peaks.
    """
    peaks = np.asarray(peaks, dtype=np.int64).reshape(-1, 2)
    return _com(np.ascontiguousarray(img, dtype=np.float64), peaks[:, 0].copy(),
                peaks[:, 1].copy(), float(window), int(n_iter))


@numba.njit(cache=True)
def _solve5(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Gaussian elimination with partial pivoting on a 5x5 system; returns NaNs when singular.
    m = a.copy()
    v = b.copy()
    n = 5
    for i in range(n):
        p = i
        for j in range(i + 1, n):
            if abs(m[j, i]) > abs(m[p, i]):
                p = j
        if abs(m[p, i]) < 1e-300:
            return np.full(n, np.nan)
        if p != i:
            for c in range(n):
                m[i, c], m[p, c] = m[p, c], m[i, c]
            v[i], v[p] = v[p], v[i]
        for j in range(i + 1, n):
            f = m[j, i] / m[i, i]
            for c in range(i, n):
                m[j, c] -= f * m[i, c]
            v[j] -= f * v[i]
    x = np.empty(n)
    for i in range(n - 1, -1, -1):
        s = v[i]
        for c in range(i + 1, n):
            s -= m[i, c] * x[c]
        x[i] = s / m[i, i]
    return x


@numba.njit(cache=True)
def _profiles(p, ylo, yhi, xlo, xhi, gy, gx):
    # The Gaussian is separable: one exp per row and per column of the box, not per pixel.
    k = -0.5 / (p[3] * p[3])
    for dy in range(ylo, yhi):
        gy[dy - ylo] = math.exp(k * (dy - p[1]) ** 2)
    for dx in range(xlo, xhi):
        gx[dx - xlo] = math.exp(k * (dx - p[2]) ** 2)


@numba.njit(cache=True)
def _gauss_cost(img, y0, x0, box, w2, oy, ox, p, gy, gx):
    # Squared residual over the disk of radius sqrt(w2) about offset (oy, ox) from (y0, x0).
    ylo, yhi, xlo, xhi = box
    _profiles(p, ylo, yhi, xlo, xhi, gy, gx)
    cost = 0.0
    for dy in range(ylo, yhi):
        for dx in range(xlo, xhi):
            if (dy - oy) ** 2 + (dx - ox) ** 2 > w2:
                continue
            e = img[y0 + dy, x0 + dx] - (p[0] * gy[dy - ylo] * gx[dx - xlo] + p[4])
            cost += e * e
    return cost


@numba.njit(cache=True, parallel=True)
def _gauss(img, py, px, oy, ox, window, s_init, n_iter):
    # Coordinates are offsets from the integer peak (py, px), as in _com.
    ny, nx = img.shape
    n = py.shape[0]
    out = np.empty((n, 5))
    r = math.ceil(window) + 1
    w2 = window * window
    for k in numba.prange(n):
        y0 = py[k]
        x0 = px[k]
        cy0 = oy[k]
        cx0 = ox[k]
        iy = round(cy0)
        ix = round(cx0)
        box = (max(iy - r, -y0), min(iy + r + 1, ny - y0), max(ix - r, -x0),
               min(ix + r + 1, nx - x0))
        ylo, yhi, xlo, xhi = box
        gy = np.empty(2 * r + 1)
        gx = np.empty(2 * r + 1)
        lo = np.inf
        hi = -np.inf
        for dy in range(ylo, yhi):
            for dx in range(xlo, xhi):
                if (dy - cy0) ** 2 + (dx - cx0) ** 2 <= w2:
                    lo = min(lo, img[y0 + dy, x0 + dx])
                    hi = max(hi, img[y0 + dy, x0 + dx])
        # Parameters: amplitude, y offset, x offset, sigma, background.
        p = np.array([max(hi - lo, 1e-12), cy0, cx0, s_init, lo])
        lam = 1e-3
        cost = _gauss_cost(img, y0, x0, box, w2, cy0, cx0, p, gy, gx)
        jtj = np.empty((5, 5))
        jte = np.empty(5)
        for _ in range(n_iter):
            jtj[:] = 0.0
            jte[:] = 0.0
            _profiles(p, ylo, yhi, xlo, xhi, gy, gx)
            s2 = p[3] * p[3]
            for dy in range(ylo, yhi):
                for dx in range(xlo, xhi):
                    if (dy - cy0) ** 2 + (dx - cx0) ** 2 > w2:
                        continue
                    ey = dy - p[1]
                    ex = dx - p[2]
                    g = gy[dy - ylo] * gx[dx - xlo]
                    e = img[y0 + dy, x0 + dx] - (p[0] * g + p[4])
                    ag = p[0] * g
                    jac = (g, ag * ey / s2, ag * ex / s2, ag * (ey * ey + ex * ex) / (s2 * p[3]),
                           1.0)
                    for i in range(5):
                        jte[i] += jac[i] * e
                        for j in range(i, 5):
                            jtj[i, j] += jac[i] * jac[j]
            for i in range(5):
                for j in range(i):
                    jtj[i, j] = jtj[j, i]
            improved = False
            step = np.zeros(5)
            for _try in range(8):
                a = jtj.copy()
                for i in range(5):
                    a[i, i] *= 1.0 + lam
                step = _solve5(a, jte)
                if np.isnan(step[0]):
                    lam *= 10.0
                    continue
                q = p + step
                if q[3] > 0.0 and q[0] > 0.0:
                    c = _gauss_cost(img, y0, x0, box, w2, cy0, cx0, q, gy, gx)
                    if c < cost:
                        p = q
                        cost = c
                        lam = max(lam * 0.3, 1e-9)
                        improved = True
                        break
                lam *= 10.0
            if not improved or max(abs(step[1]), abs(step[2]), abs(step[3])) < GAUSS_TOLERANCE:
                break
        # A fit whose centre leaves the window has latched onto something else: keep the start.
        if (p[1] - cy0) ** 2 + (p[2] - cx0) ** 2 > w2 or p[3] > window:
            p[0] = hi - lo
            p[1] = cy0
            p[2] = cx0
            p[3] = np.nan
            p[4] = lo
        for i in range(5):
            out[k, i] = p[i]
    return out


def gaussian_fit(
    img: np.ndarray,
    peaks: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    *,
    window: float,
    sigma: float,
    n_iter: int = GAUSS_ITERATIONS,
) -> np.ndarray:
    """Least-squares fit of ``A exp(-r²/2s²) + b`` to ``img`` in a disk around each start.

    A damped Gauss-Newton (Levenberg-Marquardt) loop per column, all columns in parallel.

    Parameters
    ----------
    img : ndarray (ny, nx)
    peaks : ndarray (n, 2) int
        Integer peaks ``(row, col)``.
    dy, dx : ndarray (n,)
        Starting offsets from the peaks (e.g. from :func:`centre_of_mass`); the fitting disk
        stays centred there.
    window : float
        Radius of the fitting disk, pixels.
    sigma : float
        Starting width.

    Returns
    -------
    ndarray (n, 5)
        Columns amplitude, y offset, x offset (from the peaks), width (NaN where the fit failed
        and the start was kept), background.
    """
    peaks = np.asarray(peaks, dtype=np.int64).reshape(-1, 2)
    return _gauss(np.ascontiguousarray(img, dtype=np.float64), peaks[:, 0].copy(),
                  peaks[:, 1].copy(), np.ascontiguousarray(dy, dtype=np.float64),
                  np.ascontiguousarray(dx, dtype=np.float64), float(window), float(sigma),
                  int(n_iter))


def detect_tile(
    tile: np.ndarray,
    *,
    sigma: float,
    min_distance: float,
    threshold: float,
    refine: str | None,
    window: float,
    strong: float | None = None,
    support: float | None = None,
    translations: np.ndarray | None = None,
    tolerance: float = 0.0,
    link: float = 0.0,
    core: tuple[int, int, int, int] | None = None,
    origin: tuple[int, int] = (0, 0),
) -> dict[str, np.ndarray]:
    """Detect the atom columns of one 2-D tile.

    Parameters
    ----------
    tile : ndarray (ny, nx)
    sigma : float
        Smoothing scale, pixels.
    min_distance : float
        Smallest distance between two columns, pixels.
    threshold : float
        Lowest smoothed value of a column.
    strong, support, translations, tolerance, link
        How a column below ``strong`` is supported (see :func:`local_maxima`).
    refine : {"com", "gaussian", None}
        Sub-pixel refinement.
    window : float
        Radius of the centre-of-mass disk, pixels; the Gaussian fit reads ``4/3`` of it.
    core : (y0, y1, x0, x1), optional
        Only columns whose integer peak lies in this region are returned.
    origin : (int, int)
        Image position of the tile's first pixel; positions are returned in image pixels as
        ``(peak + origin) + offset``, the same bits whatever the tile.

    Returns
    -------
    dict of ndarray
        ``y``, ``x`` (float64, image pixels), ``intensity`` (the smoothed peak value, float32)
        and, for ``"gaussian"``, ``amplitude`` and ``width``; in raster order of the peaks.
    """
    img = np.asarray(tile, dtype=np.float64)
    sm = smooth(img, sigma)
    peaks = local_maxima(sm, min_distance=min_distance, threshold=threshold, strong=strong,
                         support=support, translations=translations, tolerance=tolerance, link=link,
                         core=core)
    out = {"intensity": sm[peaks[:, 0], peaks[:, 1]].astype(np.float32)}
    dy = np.zeros(len(peaks))
    dx = np.zeros(len(peaks))
    if refine is not None:
        dy, dx = centre_of_mass(img, peaks, window=window)
    if refine == "gaussian":
        fit = gaussian_fit(img, peaks, dy, dx, window=FIT_WINDOW * window, sigma=sigma)
        dy, dx = fit[:, 1], fit[:, 2]
        out["amplitude"] = fit[:, 0].astype(np.float32)
        out["width"] = fit[:, 3].astype(np.float32)
    out["y"] = (peaks[:, 0] + origin[0]).astype(np.float64) + dy
    out["x"] = (peaks[:, 1] + origin[1]).astype(np.float64) + dx
    return out


def _refined_vectors(sub: np.ndarray, iy: np.ndarray, ix: np.ndarray, m: int) -> np.ndarray:
    # Sub-pixel lag of each peak: centroid of its 3x3 neighbourhood above the local minimum.
    out = []
    for y, x in zip(iy, ix, strict=True):
        dy = dx = 0.0
        if 1 <= y < sub.shape[0] - 1 and 1 <= x < sub.shape[1] - 1:
            w = sub[y - 1 : y + 2, x - 1 : x + 2]
            w = w - w.min()
            total = w.sum()
            if total > 0:
                dy = (w.sum(axis=1) @ np.arange(-1, 2)) / total
                dx = (w.sum(axis=0) @ np.arange(-1, 2)) / total
        out.append((y - m + dy, x - m + dx))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def autocorrelation_spacing(
    img: np.ndarray, *, max_lag: float
) -> tuple[float, float, np.ndarray]:
    """Nearest-neighbour spacing and lattice translations from the image's autocorrelation.

    Parameters
    ----------
    img : ndarray (ny, nx)
    max_lag : float
        Largest spacing considered, pixels.

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
    sub = sub / sub[m, m]
    yy, xx = np.mgrid[-m : m + 1, -m : m + 1]
    rad = np.hypot(yy, xx)
    peak = (sub == ndi.maximum_filter(sub, size=5)) & (rad >= 2) & (rad <= max_lag)
    if not peak.any():
        return math.nan, 0.0, np.zeros((0, 2))
    iy, ix = np.nonzero(peak)
    heights, r = sub[iy, ix], rad[iy, ix]
    # A lattice gives rings of strong peaks; noise ripples are far weaker than the strongest
    # ring, so the nearest peak rising a tenth as high above the floor is the first ring (a
    # ring of unlike neighbours, e.g. metal-chalcogen, is a third of the like ring).
    floor = sub[rad <= max_lag].min()
    strong = heights - floor >= 0.1 * (heights.max() - floor)
    first = r[strong].min()
    ring = strong & (r <= 1.1 * first)
    spacing = float(np.median(np.hypot(*_refined_vectors(sub, iy[ring], ix[ring], m).T)))
    lo = sub[(rad >= 1) & (rad <= first)].min()
    top = heights - floor >= 0.8 * (heights.max() - floor)
    nearest_top = top & (r <= 1.1 * r[top].min())
    translations = _refined_vectors(sub, iy[nearest_top], ix[nearest_top], m)
    return spacing, float(heights[ring].max() - lo), translations


def background_and_noise(img: np.ndarray, sigma: float) -> tuple[float, float, float]:
    """Background level, noise and bright level of an image smoothed at ``sigma``.

    The noise of the raw image is the scaled median absolute difference of horizontal pixel
    neighbours, taken where the smoothed image lies below its median (between the columns,
    where the signal is flat); smoothing divides it by :func:`noise_gain`. The background is
    the mode of the smoothed values: the centre of the densest interval two noise sigmas wide
    (flat background piles up there, column flanks spread over a wide range). The bright level
    is the 99.9th percentile.

    Returns
    -------
    background, noise, bright : float
    """
    a = np.asarray(img, dtype=np.float64)
    sm = smooth(a, sigma)
    low = sm <= np.median(sm)
    pair = low[:, 1:] & low[:, :-1]
    diff = (a[:, 1:] - a[:, :-1])[pair]
    raw = 1.4826 * np.median(np.abs(diff - np.median(diff))) / math.sqrt(2.0)
    noise = raw * noise_gain(sigma)
    # Every other pixel in each direction gives the mode as well, at a quarter of the sort.
    values = np.sort(sm[::2, ::2], axis=None)
    width = max(2.0 * noise, 1e-6 * (values[-1] - values[0]))
    ends = np.searchsorted(values, values + width, side="right")
    start = int(np.argmax(ends - np.arange(values.size)))
    background = float(np.median(values[start : ends[start]]))
    return background, noise, float(np.percentile(sm, 99.9))
