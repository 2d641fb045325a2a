"""Kernels of sub-pixel refinement: iterated centre of mass and 2-D Gaussian fit (numba).

Each integer peak is refined by an iterated, background-subtracted centre of mass and
optionally a 2-D Gaussian fit, columns in parallel, each with its own fixed sequence of
operations, so results do not depend on the thread count or on where a tile starts.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = [
    "COM_ITERATIONS",
    "FIT_WINDOW",
    "START_ITERATIONS",
    "centre_of_mass",
    "gaussian_fit",
]

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
