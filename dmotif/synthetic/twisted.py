"""A twisted bilayer: two honeycomb lattices rotated by ± twist/2, with the continuous local
registry (stacking) between the layers as its truth."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._random import Seed
from ._assembly import Columns, build, columns, with_common_params
from ._lattice import hexagonal, rotation_matrix
from .sample import Synthetic

__all__ = ["twisted_bilayer", "twisted_registry"]


def twisted_registry(
    y: np.ndarray, x: np.ndarray, *, twist: float, lattice_px: float, center: tuple[float, float],
    rotation: float = 0.0,
) -> np.ndarray:
    """The local stacking of a twisted bilayer: distance from AA registry, in lattice constants.

    At image position ``(y, x)`` the two layers (rotated by ``rotation ± twist/2`` about
    ``center``) are displaced by a vector that varies continuously across the moiré; this
    returns its length reduced to the nearest lattice vector, divided by the lattice constant:
    0 at AA stacking, 1/√3 at AB/BA.

    Parameters
    ----------
    y, x : array_like
        Positions in pixels.
    twist : float
        Twist angle, degrees.
    lattice_px : float
        Lattice constant in pixels.
    center : (float, float)
        ``(y, x)`` of the rotation centre, where the layers are in AA registry.
    rotation : float
        Mean rotation of the two layers, degrees.
    """
    p = np.stack([np.asarray(x, float) - center[1], np.asarray(y, float) - center[0]], axis=-1)
    a1 = np.array([1.0, 0.0])
    a2 = np.array([0.5, math.sqrt(3) / 2])
    m = np.column_stack([a1, a2]) * lattice_px
    # Fractional coordinates of p in each layer's lattice; their difference is the registry.
    f1 = p @ np.linalg.inv(rotation_matrix(rotation + twist / 2) @ m).T
    f2 = p @ np.linalg.inv(rotation_matrix(rotation - twist / 2) @ m).T
    d = f1 - f2
    d = d - np.round(d)
    best = np.full(d.shape[:-1], np.inf)
    for si in (-1, 0, 1):
        for sj in (-1, 0, 1):
            v = (d[..., 0:1] + si) * a1 + (d[..., 1:2] + sj) * a2
            best = np.minimum(best, np.linalg.norm(v, axis=-1))
    return best


@with_common_params
def twisted_bilayer(
    *,
    size: int | tuple[int, int] = 512,
    frames: int = 1,
    pixel_size: float = 0.015,
    lattice_constant: float = 0.246,
    twist: float = 3.0,
    column_width: float = 0.03,
    dose: float | None = 100.0,
    read_noise: float = 0.17,
    background: float = 0.05,
    drift: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    rotation: float = 10.0,
    seed: Seed = 0,
    chunks: Any = "auto",
) -> Synthetic:
    """Two graphene-like honeycomb layers twisted by ``twist`` degrees (a moiré).

    Labels are the layer (0 or 1); ``atoms["registry"]`` holds the continuous truth, the local
    stacking at each column from :func:`twisted_registry` (0 = AA, 1/√3 = AB). The layers are
    in AA registry at the image centre.

    Parameters
    ----------
    twist : float
        Twist angle between the layers, degrees (moiré period a / (2 sin(twist/2))).
    """
    a = lattice_constant / pixel_size
    sigma = column_width / pixel_size
    basis = np.array([[0.0, 0.0], [1 / 3, 1 / 3]])

    def frame(f: int, ny: int, nx: int, rng: np.random.Generator) -> tuple[Columns, Columns]:
        center = np.array([nx / 2, ny / 2])
        parts = []
        for layer, sign in enumerate((1, -1)):
            lat = hexagonal(a, rotation + sign * twist / 2, center, basis)
            sites = lat.sites(ny, nx, margin=a)
            sites["b"] = sites["b"] + 2 * layer
            n = sites["b"].size
            parts.append(columns(sites, np.ones(n, bool), np.full(n, layer), np.full(n, 0.5),
                                  np.full(n, sigma), np.full(n, sigma), np.zeros(n)))
        cols = {k: np.concatenate([p[0][k] for p in parts]) for k in parts[0][0]}
        vac = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
        cols["registry"] = twisted_registry(
            cols["y"], cols["x"], twist=twist, lattice_px=a, center=(ny / 2, nx / 2),
            rotation=rotation,
        )
        return cols, vac

    return build(
        "twisted", frame, ["layer_0", "layer_1"], 0,
        size=size, frames=frames, pixel_size=pixel_size, dose=dose, read_noise=read_noise,
        background=background, drift=drift, shear=shear, seed=seed, chunks=chunks,
        params={"lattice_constant": lattice_constant, "twist": twist,
                "column_width": column_width, "rotation": rotation},
    )
