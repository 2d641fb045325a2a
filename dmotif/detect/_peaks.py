"""Kernels of peak finding: smoothing at the column scale and local maxima (numpy/scipy/numba).

A tile is smoothed at the column scale and its local maxima above a threshold and at least
``min_distance`` apart are found; weak columns need the support of the lattice or of a bright
neighbour (:func:`local_maxima`). Every step is local: a pixel's result depends only on the
pixels within a fixed reach, so a tile computed with enough overlap gives exactly what the
whole image gives. No dask or xarray here: the wrappers live in :mod:`dmotif.detect.atoms`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numba
import numpy as np
from scipy import ndimage as ndi

__all__ = ["GAUSS_TRUNCATE", "disk_offsets", "local_maxima", "noise_gain", "smooth"]

# Smoothing kernels are cut at this many sigmas (scipy's default is 4).
GAUSS_TRUNCATE = 4.0


def smooth(tile: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-smooth a 2-D tile in float64 (mirror boundary, truncated at 4 sigma).

    The same bits as ``scipy.ndimage.gaussian_filter(tile, sigma, mode="reflect",
    truncate=4)``: the same kernel, applied along y then x, each output pixel summed in the
    same order; but without holding the GIL, so the tiles that dask runs on threads are
    smoothed in parallel (scipy's filter holds it: two threads took as long as one).
    """
    img = np.asarray(tile, dtype=np.float64)
    if not sigma > 1e-15:  # scipy skips such an axis
        return img.copy()
    radius = int(GAUSS_TRUNCATE * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1)
    # scipy.ndimage._filters._gaussian_kernel1d, order 0
    weights = np.exp(-0.5 / (sigma * sigma) * x**2)
    weights = weights / weights.sum()
    out = np.empty_like(img)
    _smooth_y(img, weights, out)
    return _smooth_x(out, weights)


@numba.njit(cache=True, nogil=True)
def _reflected(k: int, n: int) -> int:
    # scipy's "reflect" extension (d c b a | a b c d | d c b a), repeated for short lines
    k %= 2 * n
    return k if k < n else 2 * n - 1 - k


@numba.njit(cache=True, nogil=True)
def _smooth_y(img: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
    # As scipy's symmetric-kernel correlation: centre first, then the pairs (i - j, i + j)
    # from the outermost in; row by row so that the inner loop runs along memory.
    ny, nx = img.shape
    r = (len(w) - 1) // 2
    for i in range(ny):
        for c in range(nx):
            out[i, c] = img[i, c] * w[r]
        for j in range(r, 0, -1):
            a, b = _reflected(i - j, ny), _reflected(i + j, ny)
            for c in range(nx):
                out[i, c] += (img[a, c] + img[b, c]) * w[r - j]


@numba.njit(cache=True, nogil=True)
def _smooth_x(img: np.ndarray, w: np.ndarray) -> np.ndarray:
    # each row extended by its reflections once, then the same sums as along y; summed in a
    # row of its own over slices of the line, which LLVM vectorises (2x the speed of indexing
    # the 2-D output and the line by c + r ± j)
    ny, nx = img.shape
    r = (len(w) - 1) // 2
    out = np.empty_like(img)
    line = np.empty(nx + 2 * r)
    acc = np.empty(nx)
    for i in range(ny):
        for k in range(nx + 2 * r):
            line[k] = img[i, _reflected(k - r, nx)]
        centre = line[r : r + nx]
        for c in range(nx):
            acc[c] = centre[c] * w[r]
        for j in range(r, 0, -1):
            before, after, wj = line[r - j : r - j + nx], line[r + j : r + j + nx], w[r - j]
            for c in range(nx):
                acc[c] += (before[c] + after[c]) * wj
        out[i, :] = acc
    return out


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


@numba.njit(cache=True, nogil=True)
def _near(peaks: np.ndarray, disk: np.ndarray) -> np.ndarray:
    # Pixels within the disk of a peak: the peaks are few, so scatter their disks.
    ny, nx = peaks.shape
    near = np.zeros(peaks.shape, dtype=np.bool_)
    for y in range(ny):
        for x in range(nx):
            if peaks[y, x]:
                for k in range(disk.shape[0]):
                    qy = y + disk[k, 0]
                    qx = x + disk[k, 1]
                    if 0 <= qy < ny and 0 <= qx < nx:
                        near[qy, qx] = True
    return near


@numba.njit(cache=True, nogil=True)
def _beside_anchors(near: np.ndarray, y: int, x: int, offsets: np.ndarray,
                    groups: np.ndarray) -> bool:
    # Does some group of offsets (contiguous rows) land on anchors from (y, x), for more than
    # half of the group? An offset that leaves the image counts as a miss: at the edge, the
    # flank of a column beyond it is no faint column.
    ny, nx = near.shape
    k = 0
    while k < offsets.shape[0]:
        g = groups[k]
        total = 0
        found = 0
        while k < offsets.shape[0] and groups[k] == g:
            qy = y + offsets[k, 0]
            qx = x + offsets[k, 1]
            total += 1
            if 0 <= qy < ny and 0 <= qx < nx and near[qy, qx]:
                found += 1
            k += 1
        if 2 * found > total:
            return True
    return False


@numba.njit(cache=True, nogil=True, parallel=True)
def _on_lattice(sm: np.ndarray, cand: np.ndarray, peaks: np.ndarray, translations: np.ndarray,
                disk: np.ndarray, site: float, strong: float, needed: int,
                anchors: np.ndarray, offsets: np.ndarray, groups: np.ndarray,
                cell_site: float, rim: int, region: tuple[int, int, int, int]) -> np.ndarray:
    # Competitors in region on a lattice: the peaks of at least strong; every pixel of at
    # least site and below strong (a local maximum or not) where, for `needed` of the lattice
    # translations t, a peak lies within the disk of pixel + t; and every pixel of at least
    # cell_site (a local maximum or not, below strong or not) and rim pixels off the image
    # edge (nearer, it may be the flank of a column beyond the edge) where,
    # for a group of sublattice offsets, most land within the disk of an anchor. At the image
    # edge a translation that leaves the image counts when its opposite lands on a peak: the
    # edge cuts the lattice line, the column beyond it is unseen (vacuum beside the edge has
    # no peak on the inward side).
    ny, nx = sm.shape
    near = _near(peaks, disk)
    near_anchor = _near(anchors, disk)
    low = min(site, cell_site)
    y0, y1, x0, x1 = region
    comp = np.full(sm.shape, -np.inf)
    for y in numba.prange(y0, y1):
        for x in range(x0, x1):
            if peaks[y, x] and cand[y, x] >= strong:
                comp[y, x] = cand[y, x]
                continue
            v = sm[y, x]
            if v < low:
                continue
            # A faint column on the flank of a bright neighbour may rise above strong without
            # being a maximum of its own: its neighbours decide.
            inner = rim <= y < ny - rim and rim <= x < nx - rim
            if v >= cell_site and inner and _beside_anchors(near_anchor, y, x, offsets, groups):
                # Ranked below every peak of strong: a bright column's flank must not hide a
                # weaker peak beside it.
                comp[y, x] = min(v, strong)
                continue
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
    neighbours: Sequence[np.ndarray] = (),
    cell_site: float | None = None,
    anchor: float | None = None,
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
    - With sublattice ``neighbours`` as well, a weak column is also the highest pixel of at
      least ``cell_site`` from which, for one sublattice, more than half of the offsets to its
      neighbours on the brightest sublattice land within ``tolerance`` of a peak of at least
      ``anchor``. A faint sublattice is supported by the bright one, whatever share of its
      own sites is faint, while a hollow of a honeycomb (whose offsets land on the faint
      sublattice) and the space between columns are not.
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
    neighbours : sequence of ndarray (m, 2)
        Per sublattice but the brightest, the offsets ``(dy, dx)`` (pixels, rounded) from its
        site to its neighbours on the brightest one; used only with ``translations``.
    cell_site : float, optional
        Lowest value of a weak column that ``neighbours`` support; default ``site``.
    anchor : float, optional
        Lowest value of a peak that ``neighbours`` land on; default ``strong``.
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
    cell_site = site if cell_site is None else cell_site
    anchor = strong if anchor is None else max(anchor, support)
    groups = np.concatenate([np.full(len(n), i, dtype=np.int64) for i, n in enumerate(neighbours)]
                            + [np.zeros(0, dtype=np.int64)])
    offsets = np.round(np.concatenate([np.asarray(n, float).reshape(-1, 2) for n in neighbours]
                                      + [np.zeros((0, 2))])).astype(np.int64)
    reads = np.concatenate([shifts, offsets])

    def grow(region: tuple[int, ...], by_y: int, by_x: int) -> tuple[int, int, int, int]:
        return (max(region[0] - by_y, 0), min(region[1] + by_y, ny),
                max(region[2] - by_x, 0), min(region[3] + by_x, nx))

    # Each step is computed only where the next reads it: the competitors within
    # min_distance of the core, the peaks their lattice repeats land near, and the 3x3
    # maxima those peaks compete with.
    reach = math.floor(min_distance)
    comp_region = grow(core, reach, reach)
    tol = math.floor(tolerance)
    peak_region = grow(comp_region, int(np.abs(reads[:, 0]).max(initial=0)) + tol,
                       int(np.abs(reads[:, 1]).max(initial=0)) + tol) if len(shifts) \
        else comp_region
    cand = _candidates(sm, float(threshold), grow(peak_region, reach, reach))
    # The peaks of at least support; those of at least strong are the strong columns (a lower
    # maximum never outranks them, so they win among these as among all).
    top = np.where(cand >= min(support, strong), cand, -np.inf)
    peaks = _winners(top, rivals, peak_region)
    if len(shifts):
        comp = _on_lattice(sm, cand, peaks, shifts, disk_offsets(tolerance), float(site),
                           float(strong), max(len(shifts) // 2, 1), peaks & (cand >= anchor),
                           offsets, groups, float(cell_site), math.ceil(min_distance),
                           comp_region)
    else:
        comp = _linked(sm, cand, peaks & (cand >= strong), disk_offsets(link), float(strong),
                       comp_region)
    y0, y1, x0, x1 = core
    peaks = np.argwhere(_winners(comp, rivals, core)[y0:y1, x0:x1])
    peaks[:, 0] += y0
    peaks[:, 1] += x0
    return peaks
