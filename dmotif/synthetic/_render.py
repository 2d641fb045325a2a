"""Kernels that render synthetic atomic-resolution tiles (numpy/numba, no dask or xarray).

A tile is rendered from the columns that can reach it; noise is drawn in fixed blocks of
:data:`NOISE_BLOCK` pixels, each from its own stream keyed by (seed, frame, block row, block
column), so that a stack is identical whatever tiles it is computed in.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["NOISE_BLOCK", "add_noise", "reach", "render_columns"]

NOISE_BLOCK = 128
# Gaussian tails beyond this many sigmas are below float32 resolution of a unit peak.
_TRUNCATE = 5.0


def reach(sigma_major: np.ndarray) -> float:
    """Distance (px) beyond which a column adds nothing to a pixel."""
    return float(_TRUNCATE * np.max(sigma_major, initial=0.0)) + 1.0


@numba.njit(cache=True)
def render_columns(
    out: np.ndarray,
    y0: float,
    x0: float,
    ys: np.ndarray,
    xs: np.ndarray,
    amp: np.ndarray,
    s_major: np.ndarray,
    s_minor: np.ndarray,
    angle: np.ndarray,
) -> None:
    """Add anisotropic Gaussian columns to ``out`` in place.

    ``out[r, c]`` is the pixel at image position ``(y0 + r, x0 + c)``. Column ``k`` is
    ``amp[k] * exp(-(u² / 2 s_major² + v² / 2 s_minor²))`` with ``(u, v)`` the offset rotated by
    ``angle[k]`` (radians, from the x axis towards y).
    """
    ny, nx = out.shape
    for k in range(ys.shape[0]):
        ca = math.cos(angle[k])
        sa = math.sin(angle[k])
        ia = 0.5 / (s_major[k] * s_major[k])
        ib = 0.5 / (s_minor[k] * s_minor[k])
        half = _TRUNCATE * s_major[k]
        r0 = max(math.floor(ys[k] - y0 - half), 0)
        r1 = min(math.ceil(ys[k] - y0 + half) + 1, ny)
        c0 = max(math.floor(xs[k] - x0 - half), 0)
        c1 = min(math.ceil(xs[k] - x0 + half) + 1, nx)
        for r in range(r0, r1):
            dy = y0 + r - ys[k]
            for c in range(c0, c1):
                dx = x0 + c - xs[k]
                u = ca * dx + sa * dy
                v = -sa * dx + ca * dy
                out[r, c] += amp[k] * math.exp(-(u * u * ia + v * v * ib))


def add_noise(
    clean: np.ndarray,
    *,
    by0: int,
    bx0: int,
    seed: int,
    frame: int,
    dose: float | None,
    read_noise: float,
) -> np.ndarray:
    """Return ``clean`` with Poisson (``dose`` counts per unit intensity) and Gaussian noise.

    ``clean`` must cover whole noise blocks: it starts at block ``(by0, bx0)`` and its shape is
    a multiple of :data:`NOISE_BLOCK`.
    """
    out = np.empty_like(clean)
    b = NOISE_BLOCK
    for i in range(clean.shape[0] // b):
        for j in range(clean.shape[1] // b):
            rng = np.random.default_rng([seed, frame, by0 + i, bx0 + j])
            block = clean[i * b : (i + 1) * b, j * b : (j + 1) * b]
            noisy = block
            if dose is not None:
                noisy = rng.poisson(np.clip(block, 0.0, None) * dose) / dose
            if read_noise > 0:
                noisy = noisy + rng.normal(0.0, read_noise, size=block.shape)
            out[i * b : (i + 1) * b, j * b : (j + 1) * b] = noisy
    return out
