"""Kernel of the per-column elliptical 2-D Gaussian fit (numba, no dask).

Each column is fitted by Levenberg-Marquardt to ``A exp(-Q/2) + B`` in a disk about its
detected position, ``Q = a dx² + 2b dx dy + c dy²``: the inverse covariance ``(a, b, c)`` is
well conditioned even for a round column, whose angle is undefined. A first pass fits every
column alone; a second subtracts the first-pass Gaussians of its neighbours from its disk and
fits again, so the tails of a bright neighbour do not pull a faint column. Every column runs
its own fixed sequence of operations in coordinates of the whole image, so a tile gives the
same bits as the whole image whatever the thread count.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..detect._refine import _cholesky_solve

__all__ = ["FIELDS", "fit_columns", "neighbour_lists"]

#: The columns of the kernel's output, in order.
FIELDS = (
    "amplitude", "background", "y", "x", "sigma_a", "sigma_b", "angle",
    "amplitude_err", "background_err", "y_err", "x_err", "sigma_a_err", "sigma_b_err",
    "angle_err", "rms", "cross_section",
)
_NP = 7  # A, B, y0, x0, a, b, c
_MAX_ITER = 60
_CHI2_TOL = 1e-3
_FIRST_TOL = 0.1  # a first pass's, when a second follows
# A fit that moves farther than this fraction of the disk radius from its start, or whose
# width leaves [start / _WIDTH_RANGE, start * _WIDTH_RANGE], is rejected (NaN): it latched
# onto a neighbour or noise.
_MAX_MOVE = 0.5
_WIDTH_RANGE = 4.0
_FAR = 60.0


@numba.njit(cache=True, nogil=True)
def _shape(a: float, b: float, c: float) -> tuple[float, float, float]:
    # (sigma_a >= sigma_b, angle of the a axis from +x towards +y in (-pi/2, pi/2]) of the
    # Gaussian whose inverse covariance in (x, y) is [[a, b], [b, c]].
    mean = 0.5 * (a + c)
    half = math.sqrt(0.25 * (a - c) ** 2 + b * b)
    lo = mean - half
    hi = mean + half
    if lo <= 0.0:
        return np.nan, np.nan, np.nan
    angle = 0.5 * math.atan2(-2.0 * b, c - a)
    if angle <= -0.5 * math.pi:
        angle += math.pi
    return 1.0 / math.sqrt(lo), 1.0 / math.sqrt(hi), angle


@numba.njit(cache=True, nogil=True)
def _normal_equations(vals, ys, xs, npix, p, jtj, jtr, meat):
    # J^T J, J^T r and the residual sum of squares at p, for the pixels (ys, xs, vals); with
    # meat, J^T diag(r²) J in jtj instead (the middle of the sandwich covariance).
    jtj[:] = 0.0
    jtr[:] = 0.0
    cost = 0.0
    d = np.empty(_NP)
    for n in range(npix):
        dy = ys[n] - p[2]
        dx = xs[n] - p[3]
        e = math.exp(-0.5 * (p[4] * dx * dx + 2.0 * p[5] * dx * dy + p[6] * dy * dy))
        g = p[0] * e
        r = vals[n] - g - p[1]
        cost += r * r
        d[0] = e
        d[1] = 1.0
        d[2] = g * (p[5] * dx + p[6] * dy)
        d[3] = g * (p[4] * dx + p[5] * dy)
        d[4] = -0.5 * g * dx * dx
        d[5] = -g * dx * dy
        d[6] = -0.5 * g * dy * dy
        w = r * r if meat else 1.0
        for i in range(_NP):
            jtr[i] += d[i] * r
            for j in range(i + 1):
                jtj[i, j] += w * d[i] * d[j]
    for i in range(_NP):
        for j in range(i):
            jtj[j, i] = jtj[i, j]
    return cost


@numba.njit(cache=True, nogil=True)
def _fit(vals, ys, xs, npix, p, y0, x0, radius, sigma0, tol, errors, out):
    # Levenberg-Marquardt from p (modified in place) until a step lowers chi² by less than
    # tol; writes the FIELDS but cross_section, the standard errors only when asked.
    jtj = np.empty((_NP, _NP))
    jtr = np.empty(_NP)
    tjtj = np.empty((_NP, _NP))
    tjtr = np.empty(_NP)
    damped = np.empty((_NP, _NP))
    q = np.empty(_NP)
    cost = _normal_equations(vals, ys, xs, npix, p, jtj, jtr, False)
    lam = 1e-3
    for _ in range(_MAX_ITER):
        improved = False
        for _try in range(10):
            damped[:] = jtj
            for i in range(_NP):
                damped[i, i] += lam * jtj[i, i]
            step = _cholesky_solve(damped, jtr)
            if np.isnan(step[0]):
                lam *= 10.0
                continue
            for i in range(_NP):
                q[i] = p[i] + step[i]
            # The shape must stay a positive definite ellipse.
            if q[4] <= 0.0 or q[6] <= 0.0 or q[4] * q[6] <= q[5] * q[5]:
                lam *= 10.0
                continue
            # The trial's normal equations come with its cost: most steps are accepted, and
            # an accepted one then needs no second pass over the pixels.
            c = _normal_equations(vals, ys, xs, npix, q, tjtj, tjtr, False)
            if c < cost:
                p[:] = q
                jtj[:] = tjtj
                jtr[:] = tjtr
                gain = cost - c
                cost = c
                lam = max(lam * 0.3, 1e-12)
                # Stop once a step lowers chi² (the cost over the per-pixel noise variance,
                # cost / npix) by less than _CHI2_TOL: further steps move the centre by a tiny
                # fraction of its standard error. Noise-free data stop at stagnation.
                improved = gain * npix > tol * cost
                break
            lam *= 10.0
        if not improved:
            break
    sa, sb, angle = _shape(p[4], p[5], p[6])
    out[:] = np.nan
    moved2 = (p[2] - y0) ** 2 + (p[3] - x0) ** 2
    if (not p[0] > 0.0 or moved2 > (_MAX_MOVE * radius) ** 2 or not sa < sigma0 * _WIDTH_RANGE
            or not sb > sigma0 / _WIDTH_RANGE or npix <= _NP):
        out[2] = y0
        out[3] = x0
        return
    out[0] = p[0]
    out[1] = p[1]
    out[2] = p[2]
    out[3] = p[3]
    out[4] = sa
    out[5] = sb
    out[6] = angle
    out[14] = math.sqrt(cost / npix)
    if not errors:
        return
    # The sandwich covariance H^-1 (J^T diag(r²) J) H^-1 n / (n - 7), H = J^T J: the noise of a
    # column is not uniform (Poisson noise is largest at its peak), and s² H^-1 with the mean
    # residual variance s² underestimates the centre's error there (0.017 px for an observed
    # 0.023 px at a peak SNR of 20). The shape's errors follow by the delta method.
    inv = np.empty((_NP, _NP))
    unit = np.zeros(_NP)
    for j in range(_NP):
        unit[:] = 0.0
        unit[j] = 1.0
        inv[:, j] = _cholesky_solve(jtj, unit)
    _normal_equations(vals, ys, xs, npix, p, damped, jtr, True)
    cov = inv @ damped @ inv * (npix / (npix - _NP))
    for k in range(4):
        out[7 + k] = math.sqrt(cov[k, k]) if cov[k, k] >= 0.0 else np.nan
    grad = np.zeros((3, 3))
    for j in range(3):
        h = 1e-6 * (abs(p[4 + j]) + abs(p[4]))
        hi = p[4:7].copy()
        lo = p[4:7].copy()
        hi[j] += h
        lo[j] -= h
        s_hi = _shape(hi[0], hi[1], hi[2])
        s_lo = _shape(lo[0], lo[1], lo[2])
        for i in range(3):
            diff = s_hi[i] - s_lo[i]
            if i == 2:  # the angle wraps at +-pi/2
                diff = (diff + 0.5 * math.pi) % math.pi - 0.5 * math.pi
            grad[i, j] = diff / (2.0 * h)
    for i in range(3):
        v = 0.0
        for j in range(3):
            for k in range(3):
                v += grad[i, j] * cov[4 + j, 4 + k] * grad[i, k]
        out[11 + i] = math.sqrt(v) if v >= 0.0 else np.nan


@numba.njit(cache=True, nogil=True)
def _reaching(k, cy, cx, radius, ptr, idx, prev):
    # Column k's neighbours whose first-pass Gaussians reach its disk (Q < _FAR at a pixel
    # of it), in the order of its list. A pixel of the disk is at least d - radius from a
    # neighbour d away, where Q >= (d - radius)² / sigma_a²: the others add nothing to
    # _neighbour_model, and testing them once here instead of at every pixel halved the
    # second pass's time on the real perovskite of tests/data.
    near = np.empty(ptr[k + 1] - ptr[k], np.int64)
    m = 0
    for t in range(ptr[k], ptr[k + 1]):
        j = idx[t]
        if not prev[j, 0] > 0.0:
            continue
        a = prev[j, 4]
        b = prev[j, 5]
        c = prev[j, 6]
        smallest = 0.5 * (a + c) - math.sqrt(0.25 * (a - c) ** 2 + b * b)
        gap = math.sqrt((prev[j, 2] - cy[k]) ** 2 + (prev[j, 3] - cx[k]) ** 2) - radius
        # a margin for rounding: a neighbour left out must be far beyond _FAR
        if gap > 0.0 and smallest * gap * gap > 1.01 * _FAR:
            continue
        near[m] = j
        m += 1
    return near[:m]


@numba.njit(cache=True, nogil=True)
def _neighbour_model(img_y, img_x, near, prev):
    # Sum of the first-pass Gaussians (without background) of the neighbours near at a pixel.
    s = 0.0
    for j in near:
        dy = img_y - prev[j, 2]
        dx = img_x - prev[j, 3]
        q = prev[j, 4] * dx * dx + 2.0 * prev[j, 5] * dx * dy + prev[j, 6] * dy * dy
        # Beyond Q = _FAR the Gaussian is below 1e-13 of its height: the exp is not worth it.
        if q < _FAR:
            s += prev[j, 0] * math.exp(-0.5 * q)
    return s


@numba.njit(cache=True, nogil=True)
def _fit_column(img, oy, ox, k, cy, cx, radius, sigma0, ptr, idx, prev, subtract, tol, errors,
                out, p):
    # Gather column k's disk (image coordinates), subtract its neighbours' first-pass models
    # (prev) when asked, and fit; p gets (A, B, y0, x0, a, b, c), A NaN for a rejected fit.
    ny, nx = img.shape
    r = math.ceil(radius)
    iy = round(cy[k])
    ix = round(cx[k])
    size = (2 * r + 1) ** 2
    vals = np.empty(size)
    ys = np.empty(size)
    xs = np.empty(size)
    npix = 0
    lo = np.inf
    hi = -np.inf
    near = _reaching(k, cy, cx, radius, ptr, idx, prev) if subtract else ptr[:0]
    for gy in range(iy - r, iy + r + 1):
        for gx in range(ix - r, ix + r + 1):
            ly = gy - oy
            lx = gx - ox
            if ly < 0 or lx < 0 or ly >= ny or lx >= nx:
                continue
            if (gy - cy[k]) ** 2 + (gx - cx[k]) ** 2 > radius * radius:
                continue
            v = img[ly, lx]
            if subtract:
                v -= _neighbour_model(gy, gx, near, prev)
            vals[npix] = v
            ys[npix] = gy
            xs[npix] = gx
            lo = min(lo, v)
            hi = max(hi, v)
            npix += 1
    if subtract and prev[k, 0] > 0.0:
        # from the first pass, whose background held the neighbours' tails
        p[:] = prev[k]
        p[1] = lo
    else:
        # The width from the disk's second moment above its lowest pixel (within a factor two
        # of sigma0): a start near the answer took 14 % less CPU time on the lattice of
        # benchmarks/bench_measure.py (as much on the real perovskite image of tests/data).
        sw = 0.0
        swr = 0.0
        for n in range(npix):
            w = vals[n] - lo
            sw += w
            swr += w * ((ys[n] - cy[k]) ** 2 + (xs[n] - cx[k]) ** 2)
        s2 = 0.5 * swr / sw if sw > 0.0 else sigma0 * sigma0
        s2 = min(max(s2, 0.25 * sigma0 * sigma0), 4.0 * sigma0 * sigma0)
        inv = 1.0 / s2
        p[0] = hi - lo
        p[1] = lo
        p[2] = cy[k]
        p[3] = cx[k]
        p[4] = inv
        p[5] = 0.0
        p[6] = inv
    if npix <= _NP or not hi > lo:
        out[:] = np.nan
        out[2] = cy[k]
        out[3] = cx[k]
        p[0] = np.nan
        return
    _fit(vals, ys, xs, npix, p, cy[k], cx[k], radius, sigma0, tol, errors, out)
    if np.isnan(out[0]):
        p[0] = np.nan


@numba.njit(cache=True, nogil=True)
def _voronoi_sums(img, oy, ox, k, cy, cx, cap, ptr, idx, background):
    # Sum of (pixel - background) over the pixels within cap of column k that are nearer to k
    # than to any neighbour (ties to the lower index), and their count.
    ny, nx = img.shape
    r = math.ceil(cap)
    iy = round(cy[k])
    ix = round(cx[k])
    total = 0.0
    for gy in range(iy - r, iy + r + 1):
        for gx in range(ix - r, ix + r + 1):
            ly = gy - oy
            lx = gx - ox
            if ly < 0 or lx < 0 or ly >= ny or lx >= nx:
                continue
            d2 = (gy - cy[k]) ** 2 + (gx - cx[k]) ** 2
            if d2 > cap * cap:
                continue
            mine = True
            for t in range(ptr[k], ptr[k + 1]):
                j = idx[t]
                e2 = (gy - cy[j]) ** 2 + (gx - cx[j]) ** 2
                if e2 < d2 or (e2 == d2 and j < k):
                    mine = False
                    break
            if mine:
                total += img[ly, lx] - background
    return total


@numba.njit(cache=True, nogil=True, parallel=True)
def _fit_all(img, oy, ox, cy, cx, wanted, radius, sigma0, cap, ptr, idx, neighbours):
    n = cy.shape[0]
    nf = len(FIELDS)
    out = np.full((n, nf), np.nan)
    # First pass: every column alone (the halo's too: they are the core's neighbours).
    first = np.full((n, _NP), np.nan)
    # A first pass that a second replaces needs neither standard errors nor the last digits
    # of its optimum (a 7 % shorter run on the real perovskite of tests/data; positions
    # moved by < 1e-3 px, cross-sections by < 0.2 %); it must stop alike for core and halo
    # columns, whose centres bound the Voronoi cells.
    tol = _FIRST_TOL if neighbours else _CHI2_TOL
    for k in numba.prange(n):
        _fit_column(img, oy, ox, k, cy, cx, radius, sigma0, ptr, idx, first, False, tol,
                    wanted[k] and not neighbours, out[k], first[k])
    # The Voronoi cells are those of the first pass's centres, which every tile that holds a
    # column's neighbours computes alike (the detected positions are up to half a pixel off,
    # which moves single cross-sections by 0.5 %).
    fy = cy.copy()
    fx = cx.copy()
    for k in range(n):
        if first[k, 0] > 0.0:
            fy[k] = first[k, 2]
            fx[k] = first[k, 3]
    second = np.full((n, _NP), np.nan)
    for k in numba.prange(n):
        if not wanted[k]:
            continue
        if neighbours:
            _fit_column(img, oy, ox, k, cy, cx, radius, sigma0, ptr, idx, first, True,
                        _CHI2_TOL, True, out[k], second[k])
        out[k, 15] = _voronoi_sums(img, oy, ox, k, fy, fx, cap, ptr, idx, out[k, 1])
    return out


def neighbour_lists(y: np.ndarray, x: np.ndarray, reach: float) -> tuple[np.ndarray, np.ndarray]:
    """The columns within ``reach`` of each column, as CSR arrays ``(ptr, idx)``.

    Each list runs from the nearest neighbour out (ties by index), so the Voronoi test of a
    pixel outside the cell usually stops at the first neighbour, and sums over neighbours run
    in the same order whatever the tile the columns were cut from (a tile keeps the atoms'
    global order).
    """
    from scipy.spatial import cKDTree

    pts = np.column_stack([y, x])
    pairs = cKDTree(pts).query_pairs(reach, output_type="ndarray")
    both = np.concatenate([pairs, pairs[:, ::-1]]) if len(pairs) else np.zeros((0, 2), np.int64)
    dist = np.hypot(*(pts[both[:, 0]] - pts[both[:, 1]]).T)
    both = both[np.lexsort((both[:, 1], dist, both[:, 0]))]
    ptr = np.searchsorted(both[:, 0], np.arange(len(pts) + 1)).astype(np.int64)
    return ptr, both[:, 1].astype(np.int64)


def fit_columns(
    img: np.ndarray,
    y: np.ndarray,
    x: np.ndarray,
    *,
    radius: float,
    sigma: float,
    cap: float,
    reach: float,
    origin: tuple[int, int] = (0, 0),
    wanted: np.ndarray | None = None,
    neighbours: bool = True,
) -> np.ndarray:
    """Elliptical 2-D Gaussian fit and Voronoi cross-section of each column of one image.

    Parameters
    ----------
    img : ndarray (ny, nx)
        The pixels; ``img[0, 0]`` is image pixel ``origin``.
    y, x : ndarray (n,)
        Starting positions (image pixels, e.g. the detected ones); each column's fitting disk
        and Voronoi cell are about these, and they order the neighbour sums.
    radius : float
        Radius of the fitting disk, pixels.
    sigma : float
        Starting width, pixels; a fitted width beyond 4x either way is rejected.
    cap : float
        A pixel farther than ``cap`` from every column belongs to no cell.
    reach : float
        Columns within ``reach`` are neighbours: their Gaussians are subtracted, and they bound
        the Voronoi cell (``reach >= 2 * cap`` plus how far fits move for exact cells).
    origin : (int, int)
        Image position of ``img[0, 0]``.
    wanted : ndarray (n,) bool, optional
        The columns to report (the others only serve as neighbours); default all.
    neighbours : bool
        Subtract the neighbours' first-pass Gaussians and fit again (default), or keep the
        first pass.

    Returns
    -------
    ndarray (n, len(FIELDS))
        The :data:`FIELDS` per column: shape parameters, their standard errors (the
        sandwich covariance of the least-squares fit; the shape's through the delta method),
        the residual rms and the cross-section (the sum of pixel minus fitted background over
        the Voronoi cell of the column's first-pass centre). ``sigma_a >= sigma_b``;
        ``angle`` is the direction of the ``sigma_a`` axis from +x towards +y (rows down), in
        (-pi/2, pi/2].
        A rejected fit (see :data:`_MAX_MOVE`) keeps the start as ``y``, ``x`` and NaN
        elsewhere; rows not ``wanted`` are NaN.
    """
    y = np.ascontiguousarray(y, dtype=np.float64)
    x = np.ascontiguousarray(x, dtype=np.float64)
    wanted = np.ones(len(y), bool) if wanted is None else np.asarray(wanted, bool)
    ptr, idx = neighbour_lists(y, x, reach)
    out = _fit_all(np.ascontiguousarray(img, dtype=np.float64), int(origin[0]), int(origin[1]),
                    y, x, wanted, float(radius), float(sigma), float(cap), ptr, idx,
                    bool(neighbours))
    out[~wanted] = np.nan
    return out
