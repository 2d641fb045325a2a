"""Kernels of 4D-STEM: detector weights, weighted pattern sums, CoM integration (numpy/numba).

Every per-pattern reduction of dmotif — a virtual BF/ABF/ADF/HAADF detector, the centre of mass,
ring and angular descriptors, Zernike moments — is one sparse product ``patterns @ W`` with a
detector-weight matrix ``W`` of shape ``(ky * kx, n_outputs)`` stored by pixel (CSR).
:func:`weighted_sums` runs it in parallel over patterns, each pattern summed in float64 in a
fixed pixel order, so a pattern's result does not depend on how the scan is chunked or how many
threads run.

No dask or xarray here: the wrappers are :mod:`dmotif.features.virtual` and
:mod:`dmotif.features.diffraction`.
"""

from __future__ import annotations

import itertools
import math

import numba
import numpy as np

from . import _zernike

__all__ = [
    "DetectorWeights",
    "annulus_weights",
    "bin_patterns",
    "binned_geometry",
    "com_weights",
    "integrate_gradient",
    "max_radius",
    "radial_grid",
    "ring_weights",
    "weighted_sums",
    "zernike_weights",
]


class DetectorWeights:
    """A sparse detector-weight matrix ``(n_pixels, n_outputs)`` stored row by pixel (CSR).

    Attributes
    ----------
    pixel : ndarray of int64
        Flat pattern index of each pixel that has a non-zero weight, ascending.
    indptr : ndarray of int64
        Entries ``indptr[p]:indptr[p + 1]`` of ``target``/``weight`` belong to ``pixel[p]``.
    target, weight : ndarray
        Output index (int64) and weight (float64) of each entry.
    n_out : int
        Number of outputs per pattern.
    """

    def __init__(self, dense: np.ndarray) -> None:
        dense = np.asarray(dense, dtype=np.float64)
        flat = dense.reshape(dense.shape[0], -1).T  # (n_pixels, n_out)
        rows, cols = np.nonzero(flat)
        self.n_out = int(dense.shape[0])
        self.pixel, counts = np.unique(rows, return_counts=True)
        self.indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.target = cols.astype(np.int64)
        self.weight = flat[rows, cols]

    def __call__(self, patterns: np.ndarray) -> np.ndarray:
        """Apply to ``patterns`` of shape ``(..., ky, kx)``; return ``(..., n_out)`` float64."""
        return weighted_sums(patterns, self)


def radial_grid(shape: tuple[int, int], center: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Return ``(dy, dx, r)`` of every pattern pixel from ``center`` (pixels, float64)."""
    dy = np.arange(shape[0], dtype=np.float64)[:, None] - center[0]
    dx = np.arange(shape[1], dtype=np.float64)[None, :] - center[1]
    dy, dx = np.broadcast_arrays(dy, dx)
    return dy, dx, np.hypot(dy, dx)


def max_radius(shape: tuple[int, int], center: tuple[float, float]) -> float:
    """The largest radius (pixels) of a ring about ``center`` that lies wholly in the pattern."""
    cy, cx = center
    return float(min(cy + 0.5, shape[0] - 0.5 - cy, cx + 0.5, shape[1] - 0.5 - cx))


def annulus_weights(
    shape: tuple[int, int], center: tuple[float, float], inner: float, outer: float
) -> np.ndarray:
    """A ``(1, ky, kx)`` 0/1 mask of the pixels with ``inner <= r < outer`` (pixels)."""
    r = radial_grid(shape, center)[2]
    return ((r >= inner) & (r < outer)).astype(np.float64)[None]


def com_weights(
    shape: tuple[int, int], center: tuple[float, float], outer: float = math.inf
) -> np.ndarray:
    """Weights ``(3, ky, kx)``: total intensity, ``Σ I dy`` and ``Σ I dx`` within ``outer``."""
    dy, dx, r = radial_grid(shape, center)
    inside = (r < outer).astype(np.float64)
    return np.stack([inside, inside * dy, inside * dx])


def ring_weights(
    shape: tuple[int, int],
    center: tuple[float, float],
    edges: np.ndarray,
    m_max: int,
) -> np.ndarray:
    """Ring and angular-harmonic weights ``(n_rings * (2 m_max + 1), ky, kx)``.

    For ring ``k`` (``edges[k] <= r < edges[k + 1]``) the outputs are, in order, the mean
    intensity over the ring, then for ``m = 1..m_max`` the ring means of ``I cos(mθ)`` and
    ``I sin(mθ)`` (θ measured from +kx towards +ky).
    """
    dy, dx, r = radial_grid(shape, center)
    theta = np.arctan2(dy, dx)
    out = []
    for lo, hi in itertools.pairwise(edges):
        ring = ((r >= lo) & (r < hi)).astype(np.float64)
        ring /= max(ring.sum(), 1.0)
        out.append(ring)
        for m in range(1, m_max + 1):
            out.append(ring * np.cos(m * theta))
            out.append(ring * np.sin(m * theta))
    return np.stack(out)


def zernike_weights(
    shape: tuple[int, int], center: tuple[float, float], radius: float, n_max: int,
    inner: float = 0.0,
) -> np.ndarray:
    """Weights ``(n_coefficients, ky, kx)``: the real Zernike coefficients of a pattern.

    The disk of ``radius`` pixels about ``center`` is the unit disk. The pattern is sampled as
    :func:`._zernike.sample_patches` samples an image around a sub-pixel atom — cubic
    B-spline interpolation at ``center + (dy, dx)`` over the disk offsets of
    :func:`._zernike.zernike_basis`, the image mirrored at its edge — and multiplied by
    the cached basis. Prefilter, interpolation and projection are linear and separable, so
    they fold into one weight per pattern pixel, and a pattern's coefficients are those of
    :func:`._zernike.patch_features` on the pattern taken as an image with an atom at
    ``center``. Samples closer than ``inner`` pixels to the centre are left out (e.g. to mask
    the bright-field disk).
    """
    basis = _zernike.zernike_basis(radius, n_max)
    rows = basis.matrix * (np.hypot(basis.dy, basis.dx) >= inner)
    wy = _spline_sampling(shape[0], center[0] + basis.dy)
    wx = _spline_sampling(shape[1], center[1] + basis.dx)
    # Σ_s rows[k, s] wy[s, a] wx[s, b], without a (k, s, a, b) intermediate
    by_row = rows[:, :, None] * wy[None, :, :]
    return np.einsum("ksa,sb->kab", by_row, wx, optimize=True)


def _spline_sampling(n: int, t: np.ndarray) -> np.ndarray:
    """Row s: the weights of the ``n`` pixels of a mirrored line in its cubic B-spline at t[s].

    The prefilter matrix comes from the sampler's own prefilter applied to unit impulses, and
    the taps and mirrored coefficient indices are the sampler's, so the two agree to rounding.
    """
    impulses = np.eye(n, dtype=np.float32)
    prefilter = np.stack(
        [_zernike.spline_coefficients(impulses[:, i : i + 1], 0, 0, n, 1)[:, 0]
         for i in range(n)], axis=1).astype(np.float64)
    base = np.floor(t).astype(np.int64)
    f = t - base
    g = 1.0 - f
    taps = (g**3 / 6.0, 2.0 / 3.0 - f * f + 0.5 * f**3, 2.0 / 3.0 - g * g + 0.5 * g**3, f**3 / 6.0)
    on_coef = np.zeros((t.size, n))
    for offset, weight in zip((-1, 0, 1, 2), taps, strict=True):
        np.add.at(on_coef, (np.arange(t.size), _mirror(base + offset, n)), weight)
    return on_coef @ prefilter


def _mirror(i: np.ndarray, n: int) -> np.ndarray:
    """Indices of the mirrored line (``… d c b a | a b c d | d c b a …``, period 2n)."""
    i = np.mod(i, 2 * n)
    return np.where(i < n, i, 2 * n - 1 - i)


def binned_geometry(
    shape: tuple[int, int], center: tuple[float, float], factor: int
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Shape and centre (pixels) of patterns binned ``factor × factor`` (a ragged edge dropped)."""
    binned = (shape[0] // factor, shape[1] // factor)
    return binned, ((center[0] + 0.5) / factor - 0.5, (center[1] + 0.5) / factor - 0.5)


def bin_patterns(patterns: np.ndarray, factor: int) -> np.ndarray:
    """Sum ``factor × factor`` blocks of pixels of ``patterns (..., ky, kx)`` (float64).

    Rows and columns beyond the last whole block are dropped. The blocks are summed in a fixed
    order pixel by pixel, so a pattern's bins do not depend on the batch it arrives in.
    """
    (by, bx), _ = binned_geometry(patterns.shape[-2:], (0.0, 0.0), factor)
    out = np.zeros((*patterns.shape[:-2], by, bx))
    for i in range(factor):
        for j in range(factor):
            out += patterns[..., i : by * factor : factor, j : bx * factor : factor]
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _weighted_sums(patterns, pixel, indptr, target, weight, n_out):  # pragma: no cover - jit
    n = patterns.shape[0]
    out = np.zeros((n, n_out), dtype=np.float64)
    for i in numba.prange(n):
        row = patterns[i]
        acc = np.zeros(n_out, dtype=np.float64)
        for p in range(pixel.size):
            v = np.float64(row[pixel[p]])
            for e in range(indptr[p], indptr[p + 1]):
                acc[target[e]] += v * weight[e]
        out[i] = acc
    return out


def weighted_sums(patterns: np.ndarray, weights: DetectorWeights) -> np.ndarray:
    """Return ``patterns @ W`` for diffraction patterns ``(..., ky, kx)``: shape ``(..., n_out)``.

    Sums run in float64 in ascending pixel order, one pattern per parallel iteration, so every
    pattern's result is bit-identical whatever the batch it arrives in.
    """
    lead = patterns.shape[:-2]
    flat = np.ascontiguousarray(patterns).reshape(-1, patterns.shape[-2] * patterns.shape[-1])
    out = _weighted_sums(flat, weights.pixel, weights.indptr, weights.target, weights.weight,
                         weights.n_out)
    return out.reshape(*lead, weights.n_out)


def integrate_gradient(gy: np.ndarray, gx: np.ndarray) -> np.ndarray:
    """Integrate a gradient field ``(gy, gx)`` on a unit grid to its potential (iCoM, DPC).

    Solves ``∇φ = g`` in the least-squares sense by Fourier division (Lazić et al.,
    Ultramicroscopy 160, 265 (2016)) after a mirror extension that makes the field periodic
    without jumps at the edges; φ has zero mean.
    """
    gy = np.asarray(gy, dtype=np.float64)
    gx = np.asarray(gx, dtype=np.float64)
    # Mirror φ about both edges: gy is odd under the y-flip, gx under the x-flip.
    ey = np.block([[gy, gy[:, ::-1]], [-gy[::-1], -gy[::-1, ::-1]]])
    ex = np.block([[gx, -gx[:, ::-1]], [gx[::-1], -gx[::-1, ::-1]]])
    ny, nx = ey.shape
    qy = np.fft.fftfreq(ny)[:, None]
    qx = np.fft.rfftfreq(nx)[None, :]
    q2 = qy**2 + qx**2
    q2[0, 0] = 1.0
    spec = (qy * np.fft.rfft2(ey) + qx * np.fft.rfft2(ex)) / (2j * math.pi * q2)
    spec[0, 0] = 0.0
    phi = np.fft.irfft2(spec, s=(ny, nx))[: gy.shape[0], : gy.shape[1]]
    return phi - phi.mean()
