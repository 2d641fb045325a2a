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
    "autocorrelation",
    "autocorrelation_peaks",
    "autocorrelation_spacing",
    "background_and_noise",
    "centre_of_mass",
    "detect_tile",
    "disk_offsets",
    "gaussian_fit",
    "local_maxima",
    "noise_gain",
    "refined_lags",
    "smooth",
]

# Smoothing kernels are cut at this many sigmas (scipy's default is 4).
GAUSS_TRUNCATE = 4.0
# Centre-of-mass iterations; the window re-centres on each estimate, so a pedestal left by the
# background estimate pulls towards the current centre only and the fixed point is unbiased.
# On noisy data the window's pixel set keeps changing, so the tolerance is seldom met; the
# error stops falling after about five iterations (0.228 px on a peak-SNR-5 metal column with
# 5 or 10). A start for the Gaussian fit needs only two: the fit's error is the same from it.
COM_ITERATIONS = 6
START_ITERATIONS = 2
COM_TOLERANCE = 1e-3
GAUSS_ITERATIONS = 20
# Gauss-Newton converges quadratically on clean data: a last step of 1e-4 px leaves an error
# far below it. On noisy data a fit stops once a step lowers chi² by less than FIT_CHI2.
GAUSS_TOLERANCE = 1e-4
FIT_CHI2 = 0.01
# The fitted width stays within this factor of the starting width.
WIDTH_RANGE = 2.0
# Largest move of the fit from the centre of mass, as a fraction of the centre-of-mass window.
FIT_MOVE = 0.25
# Columns per block of the parallel fit (scratch arrays are allocated once per block).
FIT_BLOCK = 256
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


@numba.njit(cache=True, nogil=True)
def _beats(w: float, v: float, dy: int, dx: int) -> bool:
    # Does the pixel at offset (dy, dx) outrank the centre? Ties go to the first in raster order.
    return w > v or (w == v and (dy < 0 or (dy == 0 and dx < 0)))


@numba.njit(cache=True, nogil=True, parallel=True)
def _candidates(sm: np.ndarray, threshold: float, region: tuple[int, int, int, int]
                ) -> np.ndarray:
    # Values of the 3x3 local maxima of at least threshold in region (y0, y1, x0, x1), off the
    # array edge; -inf elsewhere. Lower maxima could never outrank a peak, so they are skipped.
    ny, nx = sm.shape
    y0, y1, x0, x1 = region
    cand = np.full(sm.shape, -np.inf)
    # A maximum on the image edge is the flank of a column outside the image.
    for y in numba.prange(max(y0, 1), min(y1, ny - 1)):
        for x in range(max(x0, 1), min(x1, nx - 1)):
            v = sm[y, x]
            if v < threshold:
                continue
            ok = True
            for dy in range(-1, 2):
                for dx in range(-1, 2):
                    if (dy != 0 or dx != 0) and _beats(sm[y + dy, x + dx], v, dy, dx):
                        ok = False
            if ok:
                cand[y, x] = v
    return cand


@numba.njit(cache=True, nogil=True)
def _wins(comp: np.ndarray, y: int, x: int, disk: np.ndarray) -> bool:
    # Does (y, x) outrank every competitor at the offsets of disk (nearest first, so that a
    # loser usually meets its winner within a few reads)?
    ny, nx = comp.shape
    v = comp[y, x]
    for k in range(disk.shape[0]):
        dy = disk[k, 0]
        dx = disk[k, 1]
        qy = y + dy
        qx = x + dx
        if 0 <= qy < ny and 0 <= qx < nx and _beats(comp[qy, qx], v, dy, dx):
            return False
    return True


@numba.njit(cache=True, nogil=True, parallel=True)
def _winners(comp: np.ndarray, disk: np.ndarray, region: tuple[int, int, int, int]
             ) -> np.ndarray:
    # Competitors in region (y0, y1, x0, x1) that no other competitor within the disk
    # outranks; False elsewhere.
    y0, y1, x0, x1 = region
    mask = np.zeros(comp.shape, dtype=np.bool_)
    for y in numba.prange(y0, y1):
        for x in range(x0, x1):
            if comp[y, x] > -np.inf:
                mask[y, x] = _wins(comp, y, x, disk)
    return mask


@numba.njit(cache=True, nogil=True)
def _reaches(sm: np.ndarray, y: int, x: int, disk: np.ndarray, level: float) -> bool:
    # Does any pixel at (y, x) + disk reach level?
    ny, nx = sm.shape
    for k in range(disk.shape[0]):
        qy = y + disk[k, 0]
        qx = x + disk[k, 1]
        if 0 <= qy < ny and 0 <= qx < nx and sm[qy, qx] >= level:
            return True
    return False


@numba.njit(cache=True, nogil=True, parallel=True)
def _linked(sm: np.ndarray, cand: np.ndarray, strong_peaks: np.ndarray, link_disk: np.ndarray,
            strong: float, region: tuple[int, int, int, int]) -> np.ndarray:
    # Competitors in region without a lattice: the strong peaks, and the weaker 3x3 maxima
    # with a pixel of at least strong within the link disk.
    y0, y1, x0, x1 = region
    comp = np.full(sm.shape, -np.inf)
    for y in numba.prange(y0, y1):
        for x in range(x0, x1):
            weak = -np.inf < cand[y, x] < strong
            if strong_peaks[y, x] or (weak and _reaches(sm, y, x, link_disk, strong)):
                comp[y, x] = cand[y, x]
    return comp


@numba.njit(cache=True, nogil=True, parallel=True)
def _on_lattice(sm: np.ndarray, cand: np.ndarray, peaks: np.ndarray, translations: np.ndarray,
                disk: np.ndarray, site: float, strong: float, needed: int,
                region: tuple[int, int, int, int]) -> np.ndarray:
    # Competitors in region on a lattice: the peaks of at least strong, and every pixel of at
    # least site (a local maximum or not) where, for `needed` of the lattice translations t, a
    # peak lies within the disk of pixel + t. At the image edge a translation that leaves the image
    # counts when its opposite lands on a peak: the edge cuts the lattice line, the column
    # beyond it is unseen (vacuum beside the edge has no peak on the inward side).
    ny, nx = sm.shape
    # Pixels within the disk of a peak: the peaks are few, so scatter their disks.
    near = np.zeros(sm.shape, dtype=np.bool_)
    for y in range(ny):
        for x in range(nx):
            if peaks[y, x]:
                for k in range(disk.shape[0]):
                    qy = y + disk[k, 0]
                    qx = x + disk[k, 1]
                    if 0 <= qy < ny and 0 <= qx < nx:
                        near[qy, qx] = True
    y0, y1, x0, x1 = region
    comp = np.full(sm.shape, -np.inf)
    for y in numba.prange(y0, y1):
        for x in range(x0, x1):
            if peaks[y, x] and cand[y, x] >= strong:
                comp[y, x] = cand[y, x]
                continue
            v = sm[y, x]
            if v < site or v >= strong:
                continue
            found = 0
            for k in range(translations.shape[0]):
                qy = y + translations[k, 0]
                qx = x + translations[k, 1]
                if not (0 <= qy < ny and 0 <= qx < nx):
                    qy = y - translations[k, 0]
                    qx = x - translations[k, 1]
                if 0 <= qy < ny and 0 <= qx < nx and near[qy, qx]:
                    found += 1
            if found >= needed:
                comp[y, x] = v
    return comp


def disk_offsets(radius: float) -> np.ndarray:
    """Integer offsets within ``radius`` of the origin, nearest first, as rows ``(dy, dx)``."""
    r = math.ceil(radius)
    grid = np.stack(np.mgrid[-r : r + 1, -r : r + 1], axis=-1).reshape(-1, 2)
    d2 = (grid**2).sum(axis=1)
    grid = grid[d2 <= radius * radius]
    return grid[np.argsort((grid**2).sum(axis=1), kind="stable")].astype(np.int64)


def local_maxima(
    sm: np.ndarray,
    *,
    min_distance: float,
    threshold: float,
    strong: float | None = None,
    site: float | None = None,
    support: float | None = None,
    translations: np.ndarray | None = None,
    tolerance: float = 0.0,
    link: float = 0.0,
    core: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Integer peaks of ``sm``: columns that no higher column within ``min_distance``
    outranks.

    A strong column is a 3x3 maximum of at least ``strong``. Only columns compete: the flank
    of a bright column does not hide a weak column beside it (a plain maximum filter of radius
    ``min_distance`` would). The rule is local and order-free, unlike greedy suppression, so a
    tile with a margin of ``min_distance + 1`` beyond the context the weak columns read decides
    exactly as the whole image does.

    Weaker columns are found in one of two ways.

    - With lattice ``translations`` (both signs), a weak column is the highest pixel of at
      least ``site`` where the lattice predicts one: for at least half of the translations t a
      peak of at least ``support`` (a 3x3 maximum that no higher one within ``min_distance``
      outranks) lies within ``tolerance`` of ``pixel + t``. It need not be a local maximum
      (noise at a faint column often puts the maximum beside it), and half the translations
      rule out both the empty sites of the lattice (the centre of a honeycomb repeats only onto
      empty centres) and vacuum beyond an edge of the crystal (only the translations back into
      the crystal land on columns there).
    - Without, a weak column is a 3x3 maximum of at least ``threshold`` with a pixel reaching
      ``strong`` within ``link`` (weak columns sit beside bright ones; noise in vacuum does
      not).

    Parameters
    ----------
    sm : ndarray (ny, nx)
        A smoothed image.
    min_distance : float
        Radius of the disk a peak must dominate; two peaks are never closer than this.
    threshold : float
        Lowest value of a peak without a lattice.
    strong : float, optional
        Lowest value of a peak that needs no support; default ``threshold``.
    site : float, optional
        Lowest value of a weak column where the lattice predicts one; default ``threshold``.
    support : float, optional
        Lowest value of a peak that supports a weak column on a lattice; default ``strong``.
    translations : ndarray (k, 2), optional
        Lattice translations ``(dy, dx)``, pixels (rounded to whole pixels); give both signs.
    tolerance : float
        Radius about each translated position, pixels.
    link : float
        Radius of the bright-neighbour test without a lattice.
    core : (y0, y1, x0, x1), optional
        Report only peaks in this region (the rest of ``sm`` is context).

    Returns
    -------
    ndarray (n, 2) int64
        ``(row, col)`` in raster order.
    """
    ny, nx = sm.shape
    core = tuple(int(c) for c in core) if core is not None else (0, ny, 0, nx)
    sm = np.ascontiguousarray(sm, dtype=np.float64)
    strong = threshold if strong is None else max(strong, threshold)
    site = threshold if site is None else site
    support = strong if support is None else max(support, threshold)
    rivals = disk_offsets(min_distance)[1:]
    shifts = np.zeros((0, 2)) if translations is None else np.asarray(translations, float)
    shifts = np.round(shifts).astype(np.int64).reshape(-1, 2)

    def grow(region: tuple[int, ...], by_y: int, by_x: int) -> tuple[int, int, int, int]:
        return (max(region[0] - by_y, 0), min(region[1] + by_y, ny),
                max(region[2] - by_x, 0), min(region[3] + by_x, nx))

    # Each step is computed only where the next reads it: the competitors within
    # min_distance of the core, the peaks their lattice repeats land near, and the 3x3
    # maxima those peaks compete with.
    reach = math.floor(min_distance)
    comp_region = grow(core, reach, reach)
    tol = math.floor(tolerance)
    peak_region = grow(comp_region, int(np.abs(shifts[:, 0]).max(initial=0)) + tol,
                       int(np.abs(shifts[:, 1]).max(initial=0)) + tol) if len(shifts) \
        else comp_region
    cand = _candidates(sm, float(threshold), grow(peak_region, reach, reach))
    # The peaks of at least support; those of at least strong are the strong columns (a lower
    # maximum never outranks them, so they win among these as among all).
    top = np.where(cand >= min(support, strong), cand, -np.inf)
    peaks = _winners(top, rivals, peak_region)
    if len(shifts):
        comp = _on_lattice(sm, cand, peaks, shifts, disk_offsets(tolerance), float(site),
                           float(strong), max(len(shifts) // 2, 1), comp_region)
    else:
        comp = _linked(sm, cand, peaks & (cand >= strong), disk_offsets(link), float(strong),
                       comp_region)
    y0, y1, x0, x1 = core
    peaks = np.argwhere(_winners(comp, rivals, core)[y0:y1, x0:x1])
    peaks[:, 0] += y0
    peaks[:, 1] += x0
    return peaks


@numba.njit(cache=True, nogil=True)
def _aperture(dy: float, dx: float, window: float) -> float:
    # A disk with a one-pixel linear edge: pixels enter the window gradually as the centre
    # moves, so the centre of mass has no pixel-grid bias from a hard edge.
    return min(max(window + 0.5 - math.sqrt(dy * dy + dx * dx), 0.0), 1.0)


@numba.njit(cache=True, nogil=True, parallel=True)
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
    inner2 = (window - 0.5) ** 2 if window > 0.5 else -1.0
    outer2 = (window + 0.5) ** 2
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
                ry = dy - cy
                for dx in range(max(ix - r, -px[k]), min(ix + r + 1, nx - px[k])):
                    rx = dx - cx
                    d2 = ry * ry + rx * rx
                    # the square root only on the aperture's one-pixel edge
                    if d2 >= outer2:
                        continue
                    a = 1.0 if d2 <= inner2 else _aperture(ry, rx, window)
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


@numba.njit(cache=True, nogil=True)
def _cholesky_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Solve a symmetric positive definite system (the damped normal equations); NaNs when it
    # is not positive definite.
    n = b.shape[0]
    c = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            s = a[i, j]
            for k in range(j):
                s -= c[i, k] * c[j, k]
            if i == j:
                if s <= 0.0:
                    return np.full(n, np.nan)
                c[i, i] = math.sqrt(s)
            else:
                c[i, j] = s / c[j, j]
    y = np.empty(n)
    for i in range(n):
        s = b[i]
        for k in range(i):
            s -= c[i, k] * y[k]
        y[i] = s / c[i, i]
    x = np.empty(n)
    for i in range(n - 1, -1, -1):
        s = y[i]
        for k in range(i + 1, n):
            s -= c[k, i] * x[k]
        x[i] = s / c[i, i]
    return x


@numba.njit(cache=True, nogil=True)
def _varpro(vals, rows, cols, npix, ylo, xlo, t, gy, gx, lin, jtj, jtr):
    # Variable projection for A g(y, x, s) + b: for the nonlinear t = (y, x, s) the amplitude
    # and background are solved exactly (stored in lin), so Gauss-Newton runs on three
    # parameters whose Jacobian is projected off the linear ones (Kaufman). One pass of sums,
    # in scalars (no allocation per call); returns the residual sum of squares (inf when g
    # and 1 are collinear).
    s2 = t[2] * t[2]
    k = -0.5 / s2
    for i in range(gy.shape[0]):
        gy[i] = math.exp(k * (ylo + i - t[0]) ** 2)
        gx[i] = math.exp(k * (xlo + i - t[1]) ** 2)
    sgg = sg = sv = sgv = svv = 0.0
    # Sums of d_i d_j, d_i g, d_i and d_i v for the derivatives d of g by y, x and s.
    d00 = d01 = d02 = d11 = d12 = d22 = 0.0
    g0 = g1 = g2 = o0 = o1 = o2 = v0 = v1 = v2 = 0.0
    for n in range(npix):
        ey = ylo + rows[n] - t[0]
        ex = xlo + cols[n] - t[1]
        g = gy[rows[n]] * gx[cols[n]]
        v = vals[n]
        sgg += g * g
        sg += g
        sv += v
        sgv += g * v
        svv += v * v
        gs = g / s2
        a0 = gs * ey
        a1 = gs * ex
        a2 = gs * (ey * ey + ex * ex) / t[2]
        d00 += a0 * a0
        d01 += a0 * a1
        d02 += a0 * a2
        d11 += a1 * a1
        d12 += a1 * a2
        d22 += a2 * a2
        g0 += a0 * g
        g1 += a1 * g
        g2 += a2 * g
        o0 += a0
        o1 += a1
        o2 += a2
        v0 += a0 * v
        v1 += a1 * v
        v2 += a2 * v
    det = sgg * npix - sg * sg
    if not det > 1e-12 * sgg * npix:
        return np.inf
    amp = (npix * sgv - sg * sv) / det
    bg = (sgg * sv - sg * sgv) / det
    lin[0] = amp
    lin[1] = bg
    dg = (g0, g1, g2)
    d1 = (o0, o1, o2)
    dv = (v0, v1, v2)
    dd = ((d00, d01, d02), (d01, d11, d12), (d02, d12, d22))
    for i in range(3):
        jtr[i] = amp * (dv[i] - amp * dg[i] - bg * d1[i])
        for j in range(i + 1):
            proj = (dg[i] * (npix * dg[j] - sg * d1[j]) + d1[i] * (sgg * d1[j] - sg * dg[j])) / det
            jtj[i, j] = amp * amp * (dd[i][j] - proj)
            jtj[j, i] = jtj[i, j]
    return max(svv - amp * sgv - bg * sv, 0.0)


@numba.njit(cache=True, nogil=True)
def _fit_one(img, y0, x0, cy0, cx0, r, w2, s_init, n_iter, vals, rows, cols, profiles, mats,
             vecs, out):
    # Fit one column whose integer peak is (y0, x0), starting at offset (cy0, cx0) from it; the
    # other arguments are scratch. Writes amplitude, y and x offsets, width, background to out.
    ny, nx = img.shape
    gy = profiles[0]
    gx = profiles[1]
    jtj, tjtj, damped = mats[0], mats[1], mats[2]
    jtr, tjtr, lin, tlin, t, q = vecs[0], vecs[1], vecs[2], vecs[3], vecs[4], vecs[5]
    ylo = max(round(cy0) - r, -y0)
    yhi = min(round(cy0) + r + 1, ny - y0)
    xlo = max(round(cx0) - r, -x0)
    xhi = min(round(cx0) + r + 1, nx - x0)
    # The disk's pixels, read once: values and their row and column in the box.
    npix = 0
    for dy in range(ylo, yhi):
        for dx in range(xlo, xhi):
            if (dy - cy0) ** 2 + (dx - cx0) ** 2 <= w2:
                vals[npix] = img[y0 + dy, x0 + dx]
                rows[npix] = dy - ylo
                cols[npix] = dx - xlo
                npix += 1
    # Nonlinear parameters: y offset, x offset, width.
    t[0] = cy0
    t[1] = cx0
    t[2] = s_init
    cost = _varpro(vals, rows, cols, npix, ylo, xlo, t, gy, gx, lin, jtj, jtr)
    lam = 1e-3
    for _ in range(n_iter if cost < np.inf else 0):
        improved = False
        moved = 0.0
        gain = 0.0
        for _try in range(8):
            damped[:] = jtj
            for i in range(3):
                damped[i, i] *= 1.0 + lam
            step = _cholesky_solve(damped, jtr)
            if np.isnan(step[0]):
                lam *= 10.0
                continue
            for i in range(3):
                q[i] = t[i] + step[i]
            # The width stays within a factor WIDTH_RANGE of the start: on a faint column a
            # free width trades against the background and runs away.
            q[2] = min(max(q[2], s_init / WIDTH_RANGE), s_init * WIDTH_RANGE)
            c = _varpro(vals, rows, cols, npix, ylo, xlo, q, gy, gx, tlin, tjtj, tjtr)
            if c < cost:
                # The trial point's normal equations come with its cost: an accepted step
                # needs no second pass.
                t[:] = q
                gain = cost - c
                cost = c
                jtj[:] = tjtj
                jtr[:] = tjtr
                lin[:] = tlin
                lam = max(lam * 0.3, 1e-9)
                improved = True
                moved = max(abs(step[0]), abs(step[1]), abs(step[2]))
                break
            lam *= 10.0
        # On noisy data Gauss-Newton converges only linearly; once a step lowers chi² (the
        # cost over the per-pixel noise variance, cost / npix) by less than FIT_CHI2, further
        # steps move the centre by a small fraction of its standard error.
        if not improved or moved < GAUSS_TOLERANCE or gain * npix < FIT_CHI2 * cost:
            break
    # A fit that moves by more than FIT_MOVE of the centre-of-mass window (window / FIT_WINDOW)
    # from the centre of mass, or finds no column, has latched onto noise or a neighbour: the
    # two estimates of a real column differ by a fraction of its standard error. Keep the start.
    if cost < np.inf and lin[0] > 0.0 and (
            (t[0] - cy0) ** 2 + (t[1] - cx0) ** 2 <= w2 * (FIT_MOVE / FIT_WINDOW) ** 2):
        out[0] = lin[0]
        out[1] = t[0]
        out[2] = t[1]
        out[3] = t[2]
        out[4] = lin[1]
    else:
        out[0] = np.nan
        out[1] = cy0
        out[2] = cx0
        out[3] = np.nan
        out[4] = np.nan


@numba.njit(cache=True, nogil=True, parallel=True)
def _gauss(img, py, px, oy, ox, window, s_init, n_iter):
    # Coordinates are offsets from the integer peak (py, px), as in _com.
    n = py.shape[0]
    out = np.empty((n, 5))
    r = math.ceil(window) + 1
    w2 = window * window
    size = 2 * r + 1
    # Columns go in blocks, so that the scratch arrays are allocated per block, not per column.
    n_blocks = (n + FIT_BLOCK - 1) // FIT_BLOCK
    for blk in numba.prange(n_blocks):
        vals = np.empty(size * size)
        rows = np.empty(size * size, dtype=np.int64)
        cols = np.empty(size * size, dtype=np.int64)
        profiles = np.empty((2, size))
        mats = np.empty((3, 3, 3))
        vecs = np.empty((6, 3))
        for k in range(blk * FIT_BLOCK, min((blk + 1) * FIT_BLOCK, n)):
            _fit_one(img, py[k], px[k], oy[k], ox[k], r, w2, s_init, n_iter, vals, rows, cols,
                     profiles, mats, vecs, out[k])
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

    Variable projection: for a centre and width the amplitude and background are solved
    exactly, and a damped Gauss-Newton (Levenberg-Marquardt) loop with an analytic, projected
    Jacobian runs on the centre and width alone; columns in parallel, each with its own fixed
    sequence of operations, so results do not depend on the thread count. The width stays
    within a factor of two of ``sigma``. A fit stops when its step falls below 1e-4 px or
    lowers chi² by less than 0.01, after at most ``n_iter`` steps.

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
        Columns amplitude, y offset, x offset (from the peaks), width, background. Where the
        fit moves farther than ``FIT_MOVE * window / FIT_WINDOW`` from its start, or finds no
        positive amplitude, the start is kept and amplitude, width and background are NaN.
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
    site: float | None = None,
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
    strong, site, support, translations, tolerance, link
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
                         site=site, support=support, translations=translations,
                         tolerance=tolerance, link=link, core=core)
    out = {"intensity": sm[peaks[:, 0], peaks[:, 1]].astype(np.float32)}
    dy = np.zeros(len(peaks))
    dx = np.zeros(len(peaks))
    if refine is not None:
        n_iter = START_ITERATIONS if refine == "gaussian" else COM_ITERATIONS
        dy, dx = centre_of_mass(img, peaks, window=window, n_iter=n_iter)
    if refine == "gaussian":
        fit = gaussian_fit(img, peaks, dy, dx, window=FIT_WINDOW * window, sigma=sigma)
        dy, dx = fit[:, 1], fit[:, 2]
        out["amplitude"] = fit[:, 0].astype(np.float32)
        out["width"] = fit[:, 3].astype(np.float32)
    out["y"] = (peaks[:, 0] + origin[0]).astype(np.float64) + dy
    out["x"] = (peaks[:, 1] + origin[1]).astype(np.float64) + dx
    return out


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
