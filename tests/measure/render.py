"""Images of elliptical Gaussian columns with known parameters, rendered with numpy alone (not
dmotif's generator), for the tests of dmotif.measure."""

from __future__ import annotations

import numpy as np
import xarray as xr


def render(shape: tuple[int, int], yx: np.ndarray, amplitude: np.ndarray | float,
           sigma_a: float, sigma_b: float, angle: float, background: float) -> np.ndarray:
    """``background + Σ A exp(-Q/2)``; the ``sigma_a`` axis at ``angle`` from +x towards +y."""
    amplitude = np.broadcast_to(np.asarray(amplitude, dtype=float), (len(yx),))
    c, s = np.cos(angle), np.sin(angle)
    ia, ib = sigma_a**-2, sigma_b**-2
    a, b, d = ia * c * c + ib * s * s, (ia - ib) * c * s, ia * s * s + ib * c * c
    img = np.full(shape, float(background))
    r = int(np.ceil(6 * max(sigma_a, sigma_b)))
    for (y0, x0), amp in zip(yx, amplitude, strict=True):
        iy, ix = round(float(y0)), round(float(x0))
        ys = slice(max(iy - r, 0), min(iy + r + 1, shape[0]))
        xs = slice(max(ix - r, 0), min(ix + r + 1, shape[1]))
        yy, xx = np.mgrid[ys, xs]
        dy, dx = yy - y0, xx - x0
        img[ys, xs] += amp * np.exp(-0.5 * (a * dx * dx + 2 * b * dx * dy + d * dy * dy))
    return img


def square(n: int, spacing: float, origin: float) -> np.ndarray:
    """``(n², 2)`` sites ``(y, x)`` of a square lattice."""
    return np.mgrid[0:n, 0:n].reshape(2, -1).T * spacing + origin


def atom_table(yx: np.ndarray, labels: np.ndarray | None = None, **attrs: object) -> xr.Dataset:
    """An atom table over ``atom`` as dmotif.detect_atoms gives one (frame 0)."""
    data = {"frame": ("atom", np.zeros(len(yx), np.int32)), "y": ("atom", yx[:, 0]),
            "x": ("atom", yx[:, 1])}
    if labels is not None:
        data["label"] = ("atom", np.asarray(labels, np.int32))
    return xr.Dataset(data, attrs=attrs)


def inside(yx: np.ndarray, shape: tuple[int, int], margin: float) -> np.ndarray:
    """The sites at least ``margin`` px from the image border."""
    return ((yx >= margin) & (yx <= np.array(shape) - 1 - margin)).all(axis=1)
