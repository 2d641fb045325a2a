"""Kernels of the unit-cell average: which sites of a lattice hold columns (numpy/scipy/numba).

The autocorrelation gives the lattice, i.e. its translations, but the column spacing is the
distance between neighbouring sites of *all* sublattices, and a faint sublattice (the S2
columns of MoS2 at 40 % of the Mo contrast) hardly shows in it. A microscopist folds the image
onto one unit cell instead: every pixel is averaged with its lattice-equivalent pixels, which
averages the noise away over hundreds of cells and leaves the columns of every sublattice as
peaks of the cell, while empty sites (the hollow of a honeycomb) stay low.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic
from scipy import ndimage as ndi

from ._statistics import autocorrelation_peaks, refined_lags

__all__ = ["cell_basis", "cell_sites", "fold", "neighbour_offsets", "periodic_share",
           "reduce_basis", "site_heights", "site_spacing"]

# The basis comes from the autocorrelation peaks at least this high (of the highest): the
# lattice translations, where like columns meet like columns.
BASIS_HEIGHT = 0.8
# Two translations closer than this |sin| of their angle are one direction.
MIN_SIN = 0.2
# A translation is refined from its multiples up to this many (the farther peaks blur as a
# real lattice bends).
MAX_MULTIPLE = 8
# The neighbours of a site on the brightest sublattice are its repeats of that sublattice
# within this factor of the nearest one (the three metals about a chalcogen of a honeycomb).
NEIGHBOUR_SHELL = 1.2
# Bins of the cell along each basis vector, per pixel of its length, and the smoothing of the
# binned sums (bins), which also fills bins that no pixel lands in.
BINS_PER_PX = 1.0
CELL_SIGMA = 0.75


def reduce_basis(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lagrange–Gauss reduction of a 2-D basis."""
    u, v = u.astype(float), v.astype(float)
    if u @ u > v @ v:
        u, v = v, u
    for _ in range(100):
        m = round(float(u @ v) / float(u @ u))
        if m == 0:
            break
        v = v - m * u
        if u @ u > v @ v:
            u, v = v, u
    return u, v

def cell_basis(ac: np.ndarray, *, max_lag: float) -> np.ndarray | None:
    """Two lattice vectors, reduced and refined to a few thousandths of a pixel.

    Parameters
    ----------
    ac : ndarray (2m + 1, 2m + 1)
        An :func:`dmotif.detect._statistics.autocorrelation`.
    max_lag : float
        Largest lag to read, pixels.

    Returns
    -------
    ndarray (2, 2) or None
        Rows ``a1``, ``a2`` as ``(dy, dx)``, the shortest non-collinear pair of the highest
        autocorrelation peaks, reduced (Lagrange-Gauss), each refined by a least-squares fit
        to its multiples within ``max_lag``; None when the peaks give no two directions.

    Notes
    -----
    A vector read off the first peak is good to about 0.05 px; folding a 1024² crop on it
    would misplace the far cells by tens of times that. The peak at ``k a`` carries the same
    error, so its position divided by ``k`` is ``k`` times more precise.
    """
    lags, heights, _ = autocorrelation_peaks(ac, max_lag=max_lag)
    if not len(lags):
        return None
    top = lags[heights >= BASIS_HEIGHT * heights.max()].astype(np.float64)
    top = top[np.argsort(np.hypot(*top.T), kind="stable")]
    a1 = top[0]
    sin = np.abs(a1[0] * top[:, 1] - a1[1] * top[:, 0]) / (
        np.hypot(*top.T) * np.hypot(*a1))
    if not (sin >= MIN_SIN).any():
        return None
    a1, a2 = reduce_basis(a1, top[np.argmax(sin >= MIN_SIN)])
    return np.array([_refine(ac, a, max_lag) for a in (a1, a2)])


def _refine(ac: np.ndarray, a: np.ndarray, max_lag: float) -> np.ndarray:
    # Walk out along the multiples: each peak is looked for within 2 px of where the estimate
    # so far puts it, and the estimate is the least-squares fit through the origin.
    m = ac.shape[0] // 2
    est = refined_lags(ac, np.round(a)[None])[0]
    num = est.copy()
    den = 1.0
    for k in range(2, MAX_MULTIPLE + 1):
        guess = np.round(k * est).astype(np.int64)
        if np.hypot(*guess) + 3 > max_lag:
            break
        y0, x0 = guess + m
        win = ac[y0 - 2 : y0 + 3, x0 - 2 : x0 + 3]
        iy, ix = np.unravel_index(np.argmax(win), win.shape)
        if not (1 <= iy <= 3 and 1 <= ix <= 3):
            # The maximum is on the window's rim: no peak near the multiple (a bent lattice).
            break
        pos = refined_lags(ac, np.array([[guess[0] + iy - 2, guess[1] + ix - 2]]))[0]
        num += k * pos
        den += k * k
        est = num / den
    return est


def fold(img: np.ndarray, basis: np.ndarray) -> tuple[np.ndarray, float]:
    """Average an image onto one unit cell of a lattice.

    Parameters
    ----------
    img : ndarray (ny, nx)
    basis : ndarray (2, 2)
        Lattice vectors ``a1``, ``a2`` as rows ``(dy, dx)``.

    Returns
    -------
    cell : ndarray (n1, n2)
        The mean of the pixels whose fractional coordinates ``(u, v)`` (pixel = u a1 + v a2)
        fall in each bin of the cell, ``n_i`` about one bin per pixel of ``|a_i|``; bin
        ``(i, j)`` is centred at ``((i + 0.5) / n1, (j + 0.5) / n2)``. Lightly smoothed, with
        wrap-around.
    noise : float
        The standard deviation of the noise left in ``cell``: half the spread of the
        difference between the folds of the even and the odd cells (a chequerboard, so slow
        drifts fall in both halves alike and only the noise differs).
    """
    a = np.ascontiguousarray(img, dtype=np.float64)
    basis = np.asarray(basis, dtype=np.float64)
    n = np.maximum(np.ceil(np.hypot(*basis.T) * BINS_PER_PX), 4).astype(np.int64)
    sums, counts = _cell_sums(a, np.ascontiguousarray(basis.T), int(n[0]), int(n[1]))
    means = []
    for k in range(3):
        # Normalised convolution: smoothing sums and counts alike averages neighbouring bins
        # with their pixel counts as weights, and gives empty bins their neighbours' mean.
        smoothed = ndi.gaussian_filter(sums[k].reshape(n), CELL_SIGMA, mode="wrap")
        weights = ndi.gaussian_filter(counts[k].reshape(n), CELL_SIGMA, mode="wrap")
        means.append(smoothed / np.maximum(weights, 1e-12))
    diff = means[1] - means[2]
    noise = 1.4826 * float(np.median(np.abs(diff - np.median(diff)))) / 2.0
    return means[0], noise


@numba.njit(cache=True, nogil=True)
def _cell_sums(a: np.ndarray, m: np.ndarray, n1: int, n2: int) -> tuple[np.ndarray, np.ndarray]:
    # The sums and counts of the pixels in each bin of the cell, for all pixels, the even and
    # the odd cells; one pass without the GIL. A pixel's cell coordinates solve
    # m @ (u, v) = (y, x) with the arithmetic of LAPACK's dgesv as numpy calls it (OpenBLAS:
    # partial pivoting, reciprocal pivots, fused multiply-adds), so a pixel on a bin's edge
    # lands in the bin it always did.
    a00, a01, a10, a11 = m[0, 0], m[0, 1], m[1, 0], m[1, 1]
    swap = abs(a10) > abs(a00)
    if swap:
        a00, a01, a10, a11 = a10, a11, a00, a01
    inv0 = 1.0 / a00
    low = a10 * inv0
    inv1 = 1.0 / (a11 - low * a01)
    sums = np.zeros((3, n1 * n2))
    counts = np.zeros((3, n1 * n2))
    for y in range(a.shape[0]):
        for x in range(a.shape[1]):
            b0, b1 = (float(x), float(y)) if swap else (float(y), float(x))
            v = _fma(-low, b0, b1) * inv1
            u = _fma(-a01, v, b0) * inv0
            wu, wv = math.floor(u), math.floor(v)
            i = math.floor((u - wu) * n1) % n1
            j = math.floor((v - wv) * n2) % n2
            k = 2 if (wu + wv) % 2 else 1
            for s in (0, k):
                sums[s, i * n2 + j] += a[y, x]
                counts[s, i * n2 + j] += 1.0
    return sums, counts


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's fma), as OpenBLAS's kernels compute it."""
    sig = types.float64(types.float64, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


def periodic_share(cell: np.ndarray, img: np.ndarray, ac: np.ndarray) -> float:
    """The share of an image's signal variance that its unit-cell average holds.

    ``var(cell) / (var(img) * c1)``, with ``c1`` the autocorrelation at the four one-pixel
    lags: white noise does not correlate over a pixel, the columns do, so ``var(img) * c1``
    is about the variance of the signal alone. A lattice gives 0.6 (a real, scan-distorted
    MoS2 image) to 1; a twisted bilayer, whose layers drift across the average, 0.02.
    """
    m = ac.shape[0] // 2
    c1 = float(np.mean([ac[m, m + 1], ac[m, m - 1], ac[m + 1, m], ac[m - 1, m]]))
    signal = float(np.var(img)) * c1
    return float(np.var(cell)) / signal if signal > 0 else 0.0


def _prominences(cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Topographic prominence of the maxima of a periodic grid (8-neighbours): bins are added
    # from the highest down; when a bin joins regions of two maxima, the lower maximum's
    # prominence is its height above that bin (the saddle). The highest one's is its height
    # above the lowest bin.
    n1, n2 = cell.shape
    flat = cell.ravel()
    order = np.argsort(-flat, kind="stable")
    parent = np.full(flat.size, -1, dtype=np.int64)
    peak_of = np.full(flat.size, -1, dtype=np.int64)
    prom: dict[int, float] = {}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for p in order.tolist():
        py, px = divmod(p, n2)
        roots = set()
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                q = ((py + dy) % n1) * n2 + (px + dx) % n2
                if q != p and parent[q] >= 0:
                    roots.add(root(q))
        parent[p] = p
        if not roots:
            peak_of[p] = p
            continue
        best = max(roots, key=lambda r: flat[peak_of[r]])
        for r in roots - {best}:
            prom[int(peak_of[r])] = float(flat[peak_of[r]] - flat[p])
            parent[r] = best
        parent[p] = best
    top = int(order[0])
    prom[top] = float(flat[top] - flat.min())
    idx = np.array(sorted(prom, key=lambda i: (-prom[i], i)), dtype=np.int64)
    return np.c_[idx // n2, idx % n2], np.array([prom[i] for i in idx.tolist()])


def cell_sites(cell: np.ndarray, *, noise: float, min_snr: float, min_height: float,
               min_prominence: float) -> tuple[np.ndarray, np.ndarray]:
    """The columns of a unit-cell average: its maxima that stand out of noise and background.

    Parameters
    ----------
    cell : ndarray (n1, n2)
        A :func:`fold`, columns bright.
    noise : float
        The noise of ``cell``.
    min_snr : float
        A site's prominence must reach ``min_snr`` noise sigmas,
    min_height : float
        its height above the lowest bin of the cell this fraction of the highest site's,
    min_prominence : float
        and its prominence this fraction of the highest site's.

    Returns
    -------
    frac : ndarray (k, 2)
        Fractional coordinates ``(u, v)`` in ``[0, 1)`` of the sites, the most prominent
        first; sub-bin (the vertex of a quadratic through the site's 3x3 bins).
    prominence : ndarray (k,)
        Each site's height above the saddle that joins it to a higher site, in units of the
        highest site's (whose prominence is its height above the lowest bin).

    Notes
    -----
    A site must be a maximum, so an empty site (the hollow of a honeycomb, a minimum between
    its six columns) never is one. Its height measures its contrast; its prominence, that it
    is a peak of its own and not a bump on the flank of a brighter column, whose tail raises
    the bumps around it. Where columns are broad for their spacing the saddle between unlike
    neighbours is high: the S2 sites of a real MoS2 image stand at 0.39 of the Mo height but
    only 0.09 of its prominence.
    """
    n = np.array(cell.shape)
    ij, prom = _prominences(cell)
    height = cell[ij[:, 0], ij[:, 1]] - cell.min()
    keep = (prom >= max(min_snr * noise, min_prominence * prom[0])) & (
        height >= min_height * height[0])
    ij, prom = ij[keep], prom[keep]
    frac = [(np.array([i, j]) + 0.5 + _vertex(cell, i, j)) / n for i, j in ij.tolist()]
    return np.mod(np.array(frac).reshape(-1, 2), 1.0), prom / prom[0]


# Least squares of a quadratic c0 + c1 di + c2 dj + c3 di² + c4 dj² + c5 di dj on 3x3 bins.
_DI, _DJ = (g.ravel() for g in np.mgrid[-1:2, -1:2])
_QUAD = np.linalg.pinv(np.c_[np.ones(9), _DI, _DJ, _DI**2, _DJ**2, _DI * _DJ])


def _vertex(cell: np.ndarray, i: int, j: int) -> np.ndarray:
    # Sub-bin offset of the maximum at bin (i, j): the vertex of the quadratic through its
    # 3x3 bins (wrapping round). A centroid would pull a broad peak to the bin centre, half a
    # bin (about half a pixel) off at worst; the quadratic is good to a few hundredths.
    n1, n2 = cell.shape
    w = cell[np.ix_(np.arange(i - 1, i + 2) % n1, np.arange(j - 1, j + 2) % n2)].ravel()
    c = _QUAD @ w
    hess = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])
    if np.linalg.det(hess) <= 0 or hess[0, 0] >= 0:
        return np.zeros(2)
    return np.clip(-np.linalg.solve(hess, c[1:3]), -1.0, 1.0)


# The cells about the origin whose repeats of the sites are searched for the nearest ones (a
# reduced basis puts them within two cells).
_NEAR_CELLS = np.stack(np.mgrid[-2:3, -2:3], axis=-1).reshape(-1, 2)


def site_spacing(frac: np.ndarray, basis: np.ndarray) -> float:
    """The nearest-neighbour distance, pixels, among the sites ``frac`` of a lattice and all
    their lattice repeats (a reduced ``basis``, rows ``(dy, dx)``)."""
    frac = np.asarray(frac, dtype=np.float64).reshape(-1, 2)
    d = frac[:, None, None, :] - frac[None, :, None, :] + _NEAR_CELLS[None, None]
    dist = np.hypot(*(d @ np.asarray(basis, dtype=np.float64)).transpose(3, 0, 1, 2))
    dist[dist < 1e-9] = np.inf
    return float(dist.min()) if math.isfinite(dist.min()) else math.nan


def neighbour_offsets(frac: np.ndarray, basis: np.ndarray) -> list[np.ndarray]:
    """For each site but the first, the offsets from it to its nearest repeats of the first.

    Parameters
    ----------
    frac : ndarray (k, 2)
        Fractional coordinates of the sites of a cell, the most prominent first (see
        :func:`cell_sites`).
    basis : ndarray (2, 2)
        The cell's vectors, rows ``(dy, dx)``.

    Returns
    -------
    list of ndarray (m, 2)
        ``k - 1`` arrays of offsets ``(dy, dx)``, pixels: the repeats of site 0 within
        ``NEIGHBOUR_SHELL`` times the nearest one's distance (for a chalcogen of a honeycomb,
        its three metals). From an empty site of the lattice (the hollow of a honeycomb) the
        same offsets land on the other sublattices, not on site 0.
    """
    frac = np.asarray(frac, dtype=np.float64).reshape(-1, 2)
    basis = np.asarray(basis, dtype=np.float64)
    out = []
    for i in range(1, len(frac)):
        off = (frac[0] - frac[i] + _NEAR_CELLS) @ basis
        dist = np.hypot(*off.T)
        out.append(off[dist <= NEIGHBOUR_SHELL * dist.min()])
    return out


def site_heights(cell: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """The value of a :func:`fold` at each site ``frac`` (k, 2): its bin's."""
    n = np.array(cell.shape)
    ij = np.floor(np.mod(np.asarray(frac, dtype=np.float64).reshape(-1, 2), 1.0) * n)
    ij = ij.astype(np.int64) % n
    return cell[ij[:, 0], ij[:, 1]]
