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

Samples outside the image are mirror-reflected (``d c b a | a b c d``, numpy's ``"symmetric"``
mode) from the pixels inside it, so that a patch is the same whatever tile it is cut from.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numba
import numpy as np
from scipy.special import eval_jacobi

__all__ = [
    "ZernikeBasis",
    "disk_offsets",
    "n_coefficients",
    "nm_table",
    "patch_features",
    "radial_polynomial",
    "rotation_invariant",
    "sample_patches",
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
        self.matrix_t = np.ascontiguousarray(self.matrix.T)
        for arr in (self.dy, self.dx, self.n, self.m, self.part, self.matrix, self.matrix_t):
            arr.flags.writeable = False
        # Rotation-invariant reduction: one output per (n, m ≥ 0); m > 0 pairs its cos and sin.
        first = self.part == "cos"
        self.rotinv_cos = np.flatnonzero(first)
        self.rotinv_sin = np.where(self.m[first] > 0, self.rotinv_cos + 1, -1)

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


@numba.njit(cache=True, inline="always")
def _reflect(i: int, n: int) -> int:
    # One mirror suffices: callers keep patches smaller than the image (radius <= size / 4).
    if i < 0:
        return -i - 1
    if i >= n:
        return 2 * n - 1 - i
    return i


@numba.njit(cache=True)
def _sample_one(region, oy, ox, ny, nx, y, x, dy, dx, subpixel, out):
    if subpixel:
        y0 = math.floor(y)
        x0 = math.floor(x)
        fy = y - y0
        fx = x - x0
    else:
        y0 = math.floor(y + 0.5)
        x0 = math.floor(x + 0.5)
        fy = 0.0
        fx = 0.0
    w00 = (1.0 - fy) * (1.0 - fx)
    w01 = (1.0 - fy) * fx
    w10 = fy * (1.0 - fx)
    w11 = fy * fx
    reach_y = max(abs(dy.min()), abs(dy.max())) + 1
    reach_x = max(abs(dx.min()), abs(dx.max())) + 1
    if y0 - reach_y >= 0 and y0 + reach_y < ny and x0 - reach_x >= 0 and x0 + reach_x < nx:
        # Fast path: no mirroring, runs of consecutive pixels that LLVM vectorises.
        p = 0
        while p < dy.shape[0]:
            q = p
            while q + 1 < dy.shape[0] and dy[q + 1] == dy[p]:
                q += 1
            r0 = y0 + dy[p] - oy
            c0 = x0 + dx[p] - ox
            for j in range(q - p + 1):
                out[p + j] = (w00 * region[r0, c0 + j] + w01 * region[r0, c0 + j + 1]
                              + w10 * region[r0 + 1, c0 + j] + w11 * region[r0 + 1, c0 + j + 1])
            p = q + 1
    else:
        for p in range(dy.shape[0]):
            r0 = _reflect(y0 + dy[p], ny) - oy
            c0 = _reflect(x0 + dx[p], nx) - ox
            r1 = _reflect(y0 + dy[p] + 1, ny) - oy
            c1 = _reflect(x0 + dx[p] + 1, nx) - ox
            out[p] = (w00 * region[r0, c0] + w01 * region[r0, c1]
                      + w10 * region[r1, c0] + w11 * region[r1, c1])


# The kernels below are serial on purpose: they run inside dask tasks, which already keep every
# core busy with one tile each; numba (OpenMP) or BLAS threads nested in them oversubscribed the
# cores and ran 4-7× slower on 2 cores.


@numba.njit(cache=True)
def sample_patches(
    region: np.ndarray,
    oy: int,
    ox: int,
    ny: int,
    nx: int,
    ys: np.ndarray,
    xs: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    subpixel: bool,
    out: np.ndarray,
) -> None:
    """Sample the image around each atom at integer offsets ``(dy, dx)`` into ``out``.

    ``region`` holds the pixels ``[oy, oy + region.shape[0]) × [ox, ox + region.shape[1])`` of
    a frame of shape ``(ny, nx)``; it must contain every pixel that the atoms' patches read
    (after mirroring at the image border). Atom ``k`` at ``(ys[k], xs[k])`` (pixels) gives
    ``out[k, p]`` = the image at ``(ys[k] + dy[p], xs[k] + dx[p])``, bilinearly interpolated
    when ``subpixel``; otherwise the image at the pixel nearest the atom plus the offset.
    The offsets must come in runs of consecutive ``dx`` along each ``dy`` (row-major, as
    :func:`disk_offsets` gives them). Weights and indices are computed from the global
    position, so a patch is bitwise the same whatever region it is cut from.
    """
    for k in range(ys.shape[0]):
        _sample_one(region, oy, ox, ny, nx, ys[k], xs[k], dy, dx, subpixel, out[k])


@numba.njit(cache=True)
def zernike_moments(
    region: np.ndarray,
    oy: int,
    ox: int,
    ny: int,
    nx: int,
    ys: np.ndarray,
    xs: np.ndarray,
    dy: np.ndarray,
    dx: np.ndarray,
    subpixel: bool,
    basis_t: np.ndarray,
    out: np.ndarray,
) -> None:
    """Real Zernike coefficients ``out[k] = basis · patch_k`` of each atom, fused.

    Samples each atom's disk pixels as :func:`sample_patches` (same arguments) into a small
    buffer and multiplies it by ``basis_t`` (``(n_disk, n_coefficients)``, the transposed
    basis) in a fixed order, so the coefficients of an atom are bitwise the same whatever
    tile, batch or machine computes them.
    """
    patch = np.empty(dy.shape[0])
    acc = np.empty(basis_t.shape[1])
    for k in range(ys.shape[0]):
        _sample_one(region, oy, ox, ny, nx, ys[k], xs[k], dy, dx, subpixel, patch)
        acc[:] = 0.0
        for p in range(patch.shape[0]):
            v = patch[p]
            for j in range(acc.shape[0]):
                acc[j] += v * basis_t[p, j]
        out[k] = acc


def rotation_invariant(coefficients: np.ndarray, basis: ZernikeBasis) -> np.ndarray:
    """Reduce real coefficients ``(N, n_coefficients)`` to the rotation-invariant features.

    One feature per ``(n, m ≥ 0)``: the signed ``m = 0`` coefficient, and for ``m > 0`` the
    magnitude ``sqrt(c_cos² + c_sin²)`` of the pair — the modulus of ``Z_nm``, unchanged when
    the patch turns.
    """
    out = np.empty((coefficients.shape[0], basis.rotinv_cos.size), dtype=coefficients.dtype)
    _pair_magnitudes(coefficients, basis.rotinv_cos, basis.rotinv_sin, out)
    return out


@numba.njit(cache=True)
def _pair_magnitudes(coef: np.ndarray, cos: np.ndarray, sin: np.ndarray, out: np.ndarray) -> None:
    for k in range(coef.shape[0]):
        for j in range(cos.shape[0]):
            c = coef[k, cos[j]]
            out[k, j] = math.sqrt(c * c + coef[k, sin[j]] ** 2) if sin[j] >= 0 else c


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

    Samples the disk pixels of each patch (float64) and multiplies it by the basis in one
    fused pass (:func:`zernike_moments`). See :func:`sample_patches` for
    ``region``, ``oy``, ``ox`` and ``shape`` (the frame's ``(ny, nx)``).

    Returns
    -------
    ndarray, shape (N, n_coefficients) or, when ``rotinv``, (N, number of (n, m ≥ 0) pairs)
    """
    basis = zernike_basis(radius, n_max)
    coef = np.empty((ys.size, basis.matrix.shape[0]))
    zernike_moments(region, oy, ox, shape[0], shape[1], ys, xs, basis.dy, basis.dx, subpixel,
                    basis.matrix_t, coef)
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

    See :func:`sample_patches` for ``region``, ``oy``, ``ox`` and ``shape``.
    """
    dy, dx = np.mgrid[-half : half + 1, -half : half + 1]
    size = 2 * half + 1
    out = np.empty((ys.size, size * size), dtype=np.float32)
    sample_patches(region, oy, ox, shape[0], shape[1], ys, xs, dy.ravel(), dx.ravel(), subpixel,
                   out)
    return out.reshape(ys.size, size, size)
