"""2-D Bravais lattices with a basis, placed and rotated in the image (pixels)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Lattice", "hexagonal", "random_origin", "rotation_matrix", "square"]


@dataclass(frozen=True)
class Lattice:
    """A 2-D Bravais lattice with a basis, in pixels, already rotated into the image."""

    a1: np.ndarray
    a2: np.ndarray
    basis: np.ndarray  # (n_basis, 2) fractional coordinates
    origin: np.ndarray  # (2,) pixel position of site (0, 0, 0), as (x, y)

    def sites(self, ny: int, nx: int, margin: float) -> dict[str, np.ndarray]:
        """Every site whose position lies within the image extended by ``margin``."""
        m = np.column_stack([self.a1, self.a2])
        inv = np.linalg.inv(m)
        corners = np.array(
            [[-margin, -margin], [nx + margin, -margin], [-margin, ny + margin],
             [nx + margin, ny + margin]]
        ) - self.origin
        frac = corners @ inv.T
        lo = np.floor(frac.min(axis=0)).astype(int) - 1
        hi = np.ceil(frac.max(axis=0)).astype(int) + 1
        ii, jj = np.meshgrid(
            np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij"
        )
        ii, jj = ii.ravel(), jj.ravel()
        nb = len(self.basis)
        i = np.repeat(ii, nb)
        j = np.repeat(jj, nb)
        b = np.tile(np.arange(nb), ii.size)
        fx = i + self.basis[b, 0]
        fy = j + self.basis[b, 1]
        pos = self.origin + np.outer(fx, self.a1) + np.outer(fy, self.a2)
        keep = (
            (pos[:, 0] >= -margin) & (pos[:, 0] < nx + margin)
            & (pos[:, 1] >= -margin) & (pos[:, 1] < ny + margin)
        )
        return {"x": pos[keep, 0], "y": pos[keep, 1], "i": i[keep], "j": j[keep], "b": b[keep]}


def rotation_matrix(deg: float) -> np.ndarray:
    t = math.radians(deg)
    return np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])


def hexagonal(a: float, rotation: float, origin: np.ndarray, basis: np.ndarray) -> Lattice:
    r = rotation_matrix(rotation)
    return Lattice(
        r @ np.array([a, 0.0]), r @ np.array([a / 2, a * math.sqrt(3) / 2]), basis, origin
    )


def square(a: float, rotation: float, origin: np.ndarray, basis: np.ndarray) -> Lattice:
    r = rotation_matrix(rotation)
    return Lattice(r @ np.array([a, 0.0]), r @ np.array([0.0, a]), basis, origin)


def random_origin(rng: np.random.Generator, a: float, nx: int, ny: int) -> np.ndarray:
    # A sub-pixel origin so that columns do not sit on the pixel grid.
    return np.array([nx / 2, ny / 2]) + rng.uniform(0.0, a, size=2)
