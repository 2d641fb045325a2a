"""Kernels for atom-centred patches and Zernike moments (numpy/numba, no dask or xarray).

Conventions
-----------
A patch of radius ``R`` (pixels, a float ≥ 2) is the square of ``(2h+1)²`` pixels, ``h =
floor(R)``, whose centre pixel sits on the atom; the *disk* is the set of its pixels whose
centre lies within ``R`` of the atom (``dy² + dx² ≤ R²``). Offsets are ``dy`` (rows, down) and
``dx`` (columns, right); the polar angle is ``θ = atan2(dy, dx)``, as in mahotas.

The real basis holds, for every ``n ≤ n_max`` and ``0 ≤ m ≤ n`` with ``n − m`` even, the
function ``N_nm R_nm(ρ) cos(mθ)`` (part ``"cos"``) and, for ``m > 0``, ``N_nm R_nm(ρ)
sin(mθ)`` (part ``"sin"``), sampled at the disk pixels with ``ρ = d / R``. With ``A = π /
n_disk`` the area of one pixel in unit-disk units, ``N_nm = sqrt(ε_m (n + 1) A / π)`` and
``ε_0 = 1``, ``ε_m = 2``, the rows are orthonormal over the disk pixels up to the sampling error
of the disk (``Σ_pixels b_k b_l ≈ δ_kl``). A feature is the coefficient ``c_k = Σ I b_k`` of a
patch ``I`` on that basis, so ``Σ c_k b_k`` is the least-squares reconstruction of the patch.
In terms of the textbook moment ``Z_nm = (n+1)/π Σ I V*_nm A`` (``V_nm = R_nm e^{imθ}``):
``c_cos − i c_sin = Z_nm sqrt(ε_m π / ((n + 1) A))``.

A patch centred off the pixel grid is sampled from the cubic B-spline interpolant of the image
(:func:`spline_coefficients`). Samples outside the image are mirror-reflected (``d c b a | a b c
d``, numpy's ``"symmetric"`` mode) from the pixels inside it, so that a patch is the same
whatever tile it is cut from.
"""

from __future__ import annotations

import collections
import math
from functools import lru_cache

import numba
import numpy as np
from scipy.special import eval_jacobi

__all__ = [
    "PREFILTER_HALF",
    "READ_MARGIN",
    "ZernikeBasis",
    "disk_offsets",
    "n_coefficients",
    "nm_table",
    "patch_features",
    "radial_polynomial",
    "rotation_invariant",
    "sample_patches",
    "spline_coefficients",
    "square_patches",
    "zernike_basis",
    "zernike_moments",
]


def n_coefficients(n_max: int) -> int:
    """Number of real coefficients for orders ``0 … n_max``: ``(n_max + 1)(n_max + 2) / 2``."""
    return (n_max + 1) * (n_max + 2) // 2


def nm_table(n_max: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``n``, ``m`` (≥ 0) and ``part`` (``"cos"``/``"sin"``) of every real coefficient.

    Ordered by ``n``, then ``m``, then part (``"cos"`` before ``"sin"``); ``m = 0`` has only a
    ``"cos"`` part. ``n_max = 10`` gives 66 coefficients.
    """
    ns, ms, parts = [], [], []
    for n in range(n_max + 1):
        for m in range(n % 2, n + 1, 2):
            for part in ("cos", "sin") if m else ("cos",):
                ns.append(n)
                ms.append(m)
                parts.append(part)
    return np.array(ns, np.int32), np.array(ms, np.int32), np.array(parts, dtype="<U3")


def radial_polynomial(n: int, m: int, rho: np.ndarray) -> np.ndarray:
    """The Zernike radial polynomial ``R_nm(ρ)`` (``R_nm(1) = 1``).

    Evaluated through the Jacobi form ``R_nm(ρ) = (−1)^k ρ^m P_k^{(m, 0)}(1 − 2ρ²)``, ``k = (n −
    m) / 2``, which stays accurate at high order where the explicit factorial sum cancels.
    """
    m = abs(m)
    if m > n or (n - m) % 2:
        raise ValueError(f"R_nm needs 0 <= |m| <= n and n - |m| even; got n={n}, m={m}.")
    k = (n - m) // 2
    rho = np.asarray(rho, dtype=np.float64)
    return (-1.0) ** k * rho**m * eval_jacobi(k, m, 0.0, 1.0 - 2.0 * rho * rho)


def disk_offsets(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Return the ``(dy, dx)`` integer offsets of the disk pixels, in row-major order."""
    h = math.floor(radius)
    dy, dx = np.mgrid[-h : h + 1, -h : h + 1]
    inside = dy * dy + dx * dx <= radius * radius
    return dy[inside].astype(np.int64), dx[inside].astype(np.int64)


class ZernikeBasis:
    """The real Zernike basis of ``(radius, n_max)`` on the disk pixels (read-only arrays).

    Attributes
    ----------
    radius : float
    n_max : int
    half : int
        ``floor(radius)``: the patch is ``(2 half + 1)²``.
    dy, dx : ndarray of int64, shape (n_disk,)
        Offsets of the disk pixels from the centre pixel.
    matrix : ndarray of float64, shape (n_coefficients, n_disk)
        One orthonormal basis function per row (see the module docstring).
    n, m, part : ndarray, shape (n_coefficients,)
        Labels of the rows, as :func:`nm_table`.
    mirror : ndarray of int64, shape (4, n_quadrant)
        For every disk pixel with ``dy, dx ≥ 0``, the flat index in the square patch of the
        pixel and of its mirror images across x, across y and across both.
    parity : ndarray of int64, shape (n_coefficients,)
        ``2 · (odd in dy) + (odd in dx)`` of every row.
    folded : ndarray of float64, shape (n_coefficients, n_quadrant)
        The rows on the quadrant pixels, divided by the number of times the pixel appears
        among its mirror images; row ``j`` applied to the signed mirror sums of parity
        ``parity[j]`` gives the same coefficient as ``matrix[j]`` applied to the disk.
    """

    def __init__(self, radius: float, n_max: int) -> None:
        self.radius = float(radius)
        self.n_max = int(n_max)
        self.half = math.floor(radius)
        self.dy, self.dx = disk_offsets(radius)
        self.n, self.m, self.part = nm_table(n_max)
        rho = np.hypot(self.dy, self.dx) / self.radius
        theta = np.arctan2(self.dy, self.dx)
        area = math.pi / self.dy.size
        rows = []
        for n, m, part in zip(self.n, self.m, self.part, strict=True):
            norm = math.sqrt((2.0 if m else 1.0) * (n + 1) * area / math.pi)
            angular = np.sin(m * theta) if part == "sin" else np.cos(m * theta)
            rows.append(norm * radial_polynomial(int(n), int(m), rho) * angular)
        self.matrix = np.ascontiguousarray(np.array(rows, dtype=np.float64))
        self._fold_basis()
        for arr in (self.dy, self.dx, self.n, self.m, self.part, self.matrix, self.mirror,
                    self.folded, self.parity):
            arr.flags.writeable = False
        # Rotation-invariant reduction: one output per (n, m ≥ 0); m > 0 pairs its cos and sin.
        first = self.part == "cos"
        self.rotinv_cos = np.flatnonzero(first)
        self.rotinv_sin = np.where(self.m[first] > 0, self.rotinv_cos + 1, -1)

    def _fold_basis(self) -> None:
        # A function is even or odd under each mirror: dy → −dy turns θ into −θ (cos even, sin
        # odd), dx → −dx turns θ into π − θ (parity (−1)^m for cos, −(−1)^m for sin). So each
        # row needs only the pixels with dy, dx ≥ 0, applied to the matching signed sum of the
        # pixel's four mirror images: a quarter of the multiply-adds.
        size = 2 * self.half + 1
        quadrant = (self.dy >= 0) & (self.dx >= 0)
        qy, qx = self.dy[quadrant], self.dx[quadrant]
        self.mirror = np.array([(self.half + sy * qy) * size + self.half + sx * qx
                                for sy, sx in ((1, 1), (-1, 1), (1, -1), (-1, -1))])
        # a pixel on an axis is its own mirror image: its signed sum counts it twice (or 4×)
        copies = np.where(qy == 0, 2, 1) * np.where(qx == 0, 2, 1)
        odd_y = self.part == "sin"
        odd_x = (self.m % 2 == 1) ^ odd_y
        self.parity = (2 * odd_y + odd_x).astype(np.int64)
        self.folded = np.ascontiguousarray(self.matrix[:, quadrant] / copies)

    def image(self) -> np.ndarray:
        """The basis as images ``(n_coefficients, 2h+1, 2h+1)``, zero outside the disk."""
        size = 2 * self.half + 1
        out = np.zeros((self.matrix.shape[0], size, size))
        out[:, self.dy + self.half, self.dx + self.half] = self.matrix
        return out


@lru_cache(maxsize=32)
def zernike_basis(radius: float, n_max: int) -> ZernikeBasis:
    """The cached :class:`ZernikeBasis` of ``(radius, n_max)``."""
    return ZernikeBasis(radius, n_max)


# --------------------------------------------------------------------------- sampling

# Sub-pixel patches are cubic B-spline interpolants of the image. The image is first turned into
# spline coefficients by the inverse of the sampled B-spline, 6 / (z + 4 + 1/z), whose impulse
# response √3 z₁^|k| (z₁ = √3 − 2) is cut at |k| = PREFILTER_HALF where it falls below float32
# resolution; each patch pixel is then a 4 × 4 weighted sum of coefficients. Bilinear
# interpolation, used before, smooths by an amount that depends on the sub-pixel offset and blurs
# each orientation of a motif differently (rotation invariance only within 6e-3 off the pixel
# grid; the spline keeps it within 2e-4).
_POLE = math.sqrt(3.0) - 2.0
PREFILTER_HALF = 12
_PREFILTER = (math.sqrt(3.0) * _POLE ** np.arange(PREFILTER_HALF + 1)).astype(np.float32)
#: How far sampling reads beyond a patch's half-width, counted from the atom's nearest pixel: two
#: spline taps (one more when the atom lies left of or above its nearest pixel) and the prefilter.
READ_MARGIN = PREFILTER_HALF + 2


@numba.njit(cache=True, inline="always")
def _reflect(i: int, n: int) -> int:
    # The mirrored image repeats with period 2n: ... d c b a | a b c d | d c b a ...
    if 0 <= i < n:
        return i
    i %= 2 * n
    return i if i < n else 2 * n - 1 - i


@numba.njit(cache=True, nogil=True)
def spline_coefficients(region: np.ndarray, oy: int, ox: int, ny: int, nx: int) -> np.ndarray:
    """Cubic B-spline coefficients (float32) of the pixels of ``region``.

    ``region`` holds the pixels ``[oy, oy + H) × [ox, ox + W)`` of a frame of shape ``(ny, nx)``;
    the image is mirror-extended at its border. A coefficient whose prefilter window leaves
    ``region`` inside the image is NaN, so a caller whose margin is too small sees NaN instead
    of silently wrong values. Every coefficient is computed by the same vectorised loop from its
    global neighbourhood, so it is bitwise the same whatever region it is computed in.
    """
    h = _PREFILTER
    k_max = h.size - 1
    rows_in, cols_in = region.shape
    width = cols_in + 2 * k_max
    # the K columns either side of the region: mirrored, or missing (-1)
    cols = np.empty(2 * k_max, np.int64)
    for c in range(2 * k_max):
        g = _reflect(ox - k_max + c + (cols_in if c >= k_max else 0), nx) - ox
        cols[c] = g if 0 <= g < cols_in else -1
    line = np.empty(width, np.float32)
    # filtered along x: the rows oy − K … oy + H + K (mirrored at the image border)
    rows = np.empty((rows_in + 2 * k_max, cols_in), np.float32)
    for i in range(rows.shape[0]):
        r = _reflect(oy - k_max + i, ny) - oy
        out = rows[i]
        if r < 0 or r >= rows_in:
            out[:] = np.nan
            continue
        src = region[r]
        line[k_max : k_max + cols_in] = src
        for c in range(k_max):
            line[c] = src[cols[c]] if cols[c] >= 0 else np.nan
            e = cols[k_max + c]
            line[k_max + cols_in + c] = src[e] if e >= 0 else np.nan
        centre = line[k_max : k_max + cols_in]
        for c in range(cols_in):
            out[c] = h[0] * centre[c]
        for k in range(1, k_max + 1):
            # slices keep the indices plain loop counters (see _sample_square)
            left = line[k_max - k : k_max - k + cols_in]
            right = line[k_max + k : k_max + k + cols_in]
            for c in range(cols_in):
                out[c] += h[k] * (left[c] + right[c])
    coef = np.empty((rows_in, cols_in), np.float32)
    for r in range(rows_in):
        out = coef[r]
        centre = rows[r + k_max]
        for c in range(cols_in):
            out[c] = h[0] * centre[c]
        for k in range(1, k_max + 1):
            above = rows[r + k_max - k]
            below = rows[r + k_max + k]
            for c in range(cols_in):
                out[c] += h[k] * (above[c] + below[c])
    return coef


@numba.njit(cache=True, inline="always")
def _bspline_weights(f: float, w: np.ndarray) -> None:
    # the cubic B-spline at f + 1, f, f − 1, f − 2 (taps at −1 … +2 from floor(position))
    g = 1.0 - f
    w[0] = g * g * g / 6.0
    w[1] = 2.0 / 3.0 - f * f + 0.5 * f * f * f
    w[2] = 2.0 / 3.0 - g * g + 0.5 * g * g * g
    w[3] = f * f * f / 6.0


@numba.njit(cache=True)
def _sample_square(src, oy, ox, ny, nx, y, x, half, subpixel, scratch, out):
    # out: (2h+1, 2h+1); scratch: see _scratch.
    size = 2 * half + 1
    taps = 3 if subpixel else 0
    y0 = math.floor(y) if subpixel else math.floor(y + 0.5)
    x0 = math.floor(x) if subpixel else math.floor(x + 0.5)
    top = y0 - half - (1 if subpixel else 0)
    left = x0 - half - (1 if subpixel else 0)
    rows, cols, w = scratch.rows, scratch.cols, scratch.weights
    # mirrored indices only near the image border (a global test: the same in every tile)
    inside = top >= 0 and left >= 0 and top + size + taps <= ny and left + size + taps <= nx
    for i in range(size + taps):
        rows[i] = top + i - oy if inside else _reflect(top + i, ny) - oy
        cols[i] = left + i - ox if inside else _reflect(left + i, nx) - ox
    if not subpixel:
        for i in range(size):
            line = src[rows[i]]
            for c in range(size):
                out[i, c] = line[cols[c]]
        return
    _bspline_weights(x - x0, w[:4])
    _bspline_weights(y - y0, w[4:])
    # scalars, so that LLVM need not reload them after every store and vectorises the loops
    a0, a1, a2, a3, b0, b1, b2, b3 = w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]
    # interpolate along x the 2h + 4 rows that the y taps read, then along y
    buf = scratch.buffer
    for i in range(size + 3):
        line = src[rows[i]]
        row = buf[i]
        if inside:
            # slices, so that indices are plain loop counters: numba's check for negative
            # indices would otherwise keep LLVM from vectorising
            l0 = line[cols[0] : cols[0] + size]
            l1 = line[cols[1] : cols[1] + size]
            l2 = line[cols[2] : cols[2] + size]
            l3 = line[cols[3] : cols[3] + size]
            for c in range(size):
                row[c] = a0 * l0[c] + a1 * l1[c] + a2 * l2[c] + a3 * l3[c]
        else:
            for c in range(size):
                row[c] = (a0 * line[cols[c]] + a1 * line[cols[c + 1]]
                          + a2 * line[cols[c + 2]] + a3 * line[cols[c + 3]])
    for i in range(size):
        r0, r1, r2, r3, row = buf[i], buf[i + 1], buf[i + 2], buf[i + 3], out[i]
        for c in range(size):
            row[c] = b0 * r0[c] + b1 * r1[c] + b2 * r2[c] + b3 * r3[c]


_Scratch = collections.namedtuple("_Scratch", ["buffer", "rows", "cols", "weights"])


def _scratch(half: int) -> _Scratch:
    # per-call work arrays: the x-interpolated rows, the mirrored row and column indices of the
    # taps and the 4 + 4 spline weights (allocated once per tile, not once per atom)
    size = 2 * half + 1
    return _Scratch(np.empty((size + 3, size)), np.empty(size + 3, np.int64),
                    np.empty(size + 3, np.int64), np.empty(8))


# The kernels below are serial on purpose: they run inside dask tasks, which already keep every
# core busy with one tile each; numba (OpenMP) or BLAS threads nested in them oversubscribed the
# cores and ran 4-7× slower on 2 cores. The kernels that dask calls release the GIL (nogil), or
# its threads would take turns instead of running tiles side by side.


@numba.njit(cache=True, nogil=True)
def sample_patches(
    src: np.ndarray,
    oy: int,
    ox: int,
    ny: int,
    nx: int,
    ys: np.ndarray,
    xs: np.ndarray,
    subpixel: bool,
    scratch: _Scratch,
    out: np.ndarray,
) -> None:
    """Sample the square patch ``out[k]`` (``(2h+1, 2h+1)``) around each atom ``k``.

    ``src`` covers the pixels ``[oy, oy + src.shape[0]) × [ox, ox + src.shape[1])`` of a frame
    of shape ``(ny, nx)``: the image itself when not ``subpixel``, else its
    :func:`spline_coefficients`. It must contain every pixel that the patches read (after
    mirroring at the image border): up to ``h + READ_MARGIN`` from an atom's nearest pixel.
    ``out[k, h + dy, h + dx]`` is the image at ``(ys[k] + dy, xs[k] + dx)`` by cubic B-spline
    interpolation when ``subpixel``; otherwise the image at the pixel nearest the atom plus the
    offset. Weights and indices are computed from the global position, so a patch is bitwise
    the same whatever region it is cut from. ``scratch`` is :func:`_scratch` of ``h``.
    """
    half = out.shape[1] // 2
    for k in range(ys.shape[0]):
        _sample_square(src, oy, ox, ny, nx, ys[k], xs[k], half, subpixel, scratch, out[k])


# Reassociation lets LLVM vectorise the dot products; the summation order then depends only on
# the (fixed) number of pixels, so an atom's coefficients stay bitwise reproducible.
@numba.njit(cache=True, fastmath={"reassoc", "contract"})
def _project(folded: np.ndarray, parity: np.ndarray, sums: np.ndarray, out: np.ndarray) -> None:
    for j in range(folded.shape[0]):
        row = folded[j]
        part = sums[parity[j]]
        acc = 0.0
        for q in range(row.shape[0]):
            acc += row[q] * part[q]
        out[j] = acc


@numba.njit(cache=True)
def _fold(patch: np.ndarray, mirror: np.ndarray, sums: np.ndarray) -> None:
    # the four mirror-parity combinations of every pixel of the first quadrant
    for q in range(mirror.shape[1]):
        a = patch[mirror[0, q]]
        b = patch[mirror[1, q]]
        c = patch[mirror[2, q]]
        d = patch[mirror[3, q]]
        sums[0, q] = (a + b) + (c + d)
        sums[1, q] = (a + b) - (c + d)
        sums[2, q] = (a - b) + (c - d)
        sums[3, q] = (a - b) - (c - d)


@numba.njit(cache=True, nogil=True)
def zernike_moments(
    src: np.ndarray,
    oy: int,
    ox: int,
    ny: int,
    nx: int,
    ys: np.ndarray,
    xs: np.ndarray,
    subpixel: bool,
    mirror: np.ndarray,
    folded: np.ndarray,
    parity: np.ndarray,
    scratch: _Scratch,
    out: np.ndarray,
) -> None:
    """Real Zernike coefficients of each atom's patch, sampled and projected in one pass.

    Samples each atom's square patch as :func:`sample_patches` (same first arguments), folds
    it onto its first quadrant with :attr:`ZernikeBasis.mirror` and multiplies the folds by
    :attr:`ZernikeBasis.folded` (see there), so the coefficients of an atom are bitwise the
    same whatever tile or batch computes them.
    """
    size = scratch.buffer.shape[1]
    patch = np.empty((size, size))
    flat = patch.reshape(size * size)
    sums = np.empty((4, mirror.shape[1]))
    for k in range(ys.shape[0]):
        _sample_square(src, oy, ox, ny, nx, ys[k], xs[k], size // 2, subpixel, scratch, patch)
        _fold(flat, mirror, sums)
        _project(folded, parity, sums, out[k])


def rotation_invariant(coefficients: np.ndarray, basis: ZernikeBasis) -> np.ndarray:
    """Reduce real coefficients ``(N, n_coefficients)`` to the rotation-invariant features.

    One feature per ``(n, m ≥ 0)``: the signed ``m = 0`` coefficient, and for ``m > 0`` the
    magnitude ``sqrt(c_cos² + c_sin²)`` of the pair — the modulus of ``Z_nm``, unchanged when
    the patch turns.
    """
    out = np.empty((coefficients.shape[0], basis.rotinv_cos.size), dtype=coefficients.dtype)
    _pair_magnitudes(coefficients, basis.rotinv_cos, basis.rotinv_sin, out)
    return out


@numba.njit(cache=True, nogil=True)
def _pair_magnitudes(coef: np.ndarray, cos: np.ndarray, sin: np.ndarray, out: np.ndarray) -> None:
    for k in range(coef.shape[0]):
        row = coef[k]
        dst = out[k]
        for j in range(cos.shape[0]):
            c = row[cos[j]]
            if sin[j] >= 0:
                s = row[sin[j]]
                c = math.sqrt(c * c + s * s)
            dst[j] = c


def patch_features(
    region: np.ndarray,
    oy: int,
    ox: int,
    shape: tuple[int, int],
    ys: np.ndarray,
    xs: np.ndarray,
    *,
    radius: float,
    n_max: int,
    subpixel: bool,
    rotinv: bool,
    dtype: type = np.float32,
) -> np.ndarray:
    """Zernike features of the atoms at ``(ys, xs)`` whose patches lie in ``region``.

    Turns ``region`` into spline coefficients when ``subpixel``, then samples each patch
    (float64) and projects it on the basis in one fused pass (:func:`zernike_moments`).
    ``region``, ``oy`` and ``ox`` are as ``src`` in :func:`sample_patches` but hold the pixels;
    ``shape`` is the frame's ``(ny, nx)``.

    Returns
    -------
    ndarray, shape (N, n_coefficients) or, when ``rotinv``, (N, number of (n, m ≥ 0) pairs)
    """
    basis = zernike_basis(radius, n_max)
    coef = np.empty((ys.size, basis.matrix.shape[0]))
    src, oy, ox = _source(region, oy, ox, shape, ys, xs, basis.half, subpixel)
    zernike_moments(src, oy, ox, shape[0], shape[1], ys, xs, subpixel, basis.mirror,
                    basis.folded, basis.parity, _scratch(basis.half), coef)
    return (rotation_invariant(coef, basis) if rotinv else coef).astype(dtype)


def square_patches(
    region: np.ndarray,
    oy: int,
    ox: int,
    shape: tuple[int, int],
    ys: np.ndarray,
    xs: np.ndarray,
    *,
    half: int,
    subpixel: bool,
) -> np.ndarray:
    """The square patches ``(N, 2 half + 1, 2 half + 1)`` (float32) around ``(ys, xs)``.

    ``region``, ``oy``, ``ox`` and ``shape`` are as in :func:`patch_features`.
    """
    size = 2 * half + 1
    out = np.empty((ys.size, size, size), dtype=np.float32)
    src, oy, ox = _source(region, oy, ox, shape, ys, xs, half, subpixel)
    sample_patches(src, oy, ox, shape[0], shape[1], ys, xs, subpixel, _scratch(half), out)
    return out


def _source(region: np.ndarray, oy: int, ox: int, shape: tuple[int, int], ys: np.ndarray,
            xs: np.ndarray, half: int, subpixel: bool) -> tuple[np.ndarray, int, int]:
    """What the kernels sample and its origin: the pixels, or the spline coefficients."""
    if not subpixel:
        return region, oy, ox
    # Only the box that the patches read is prefiltered: a tile whose few atoms sit in one
    # corner (a particle on a support, a vacuum region) costs what its atoms need.
    reach = half + READ_MARGIN
    top = max(int(np.floor(ys.min(initial=oy) + 0.5)) - reach - oy, 0)
    left = max(int(np.floor(xs.min(initial=ox) + 0.5)) - reach - ox, 0)
    bottom = int(np.floor(ys.max(initial=oy) + 0.5)) + reach + 1 - oy
    right = int(np.floor(xs.max(initial=ox) + 0.5)) + reach + 1 - ox
    box = region[top:bottom, left:right]
    return spline_coefficients(box, oy + top, ox + left, shape[0], shape[1]), oy + top, ox + left
