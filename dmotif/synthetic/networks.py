"""A ring network: a honeycomb with Stone–Wales defects (5- and 7-membered rings), with its
truth per atom and per ring."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from .._random import Seed, as_generator
from ._assembly import Columns, build, check_fractions, columns, distort, with_common_params
from ._lattice import hexagonal, random_origin
from .sample import Synthetic

__all__ = ["rings"]


@with_common_params
def rings(
    *,
    size: int | tuple[int, int] = 512,
    frames: int = 1,
    pixel_size: float = 0.015,
    lattice_constant: float = 0.36,
    column_width: float = 0.03,
    stone_wales: float = 0.01,
    dose: float | None = 100.0,
    read_noise: float = 0.17,
    background: float = 0.05,
    drift: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    rotation: float = 10.0,
    seed: Seed = 0,
    chunks: Any = "auto",
) -> Synthetic:
    """A network of columns in 5-, 6- and 7-membered rings (like the M1 Mo-V-Te-Nb oxide).

    A honeycomb of equal columns (label 0) with Stone–Wales defects: a bond turned by 90° about
    its centre turns the two hexagons that shared it into pentagons and the two at its ends into
    heptagons. Defects lie at least 2 lattice constants inside the image and 4 apart, so each
    is a separate 5-7-5-7 group. ``cells`` holds the truth per ring over dim ``cell``:
    ``frame``, ``y``, ``x`` (ring centre) and ``size``, for every ring whose vertices all lie
    inside the image.

    Parameters
    ----------
    lattice_constant : float
        Honeycomb lattice constant, nm (column spacing a/√3).
    stone_wales : float
        Number of Stone–Wales defects as a fraction of the rings, drawn exactly per frame
        (fewer if they do not fit apart).
    """
    check_fractions({"stone_wales": stone_wales})
    a = lattice_constant / pixel_size
    sigma = column_width / pixel_size
    d = a / math.sqrt(3)
    ring_truth: dict[int, Columns] = {}

    def frame(f: int, ny: int, nx: int, rng: np.random.Generator) -> tuple[Columns, Columns]:
        origin = random_origin(as_generator(seed, 1_000_003), a, nx, ny)
        lat = hexagonal(a, rotation, origin, np.array([[0.0, 0.0], [1 / 3, 1 / 3]]))
        sites = lat.sites(ny, nx, margin=a)
        hexes = hexagonal(a, rotation, origin, np.array([[2 / 3, 2 / 3]])).sites(ny, nx, a)
        hy, hx = hexes["y"], hexes["x"]
        vert = np.array([[math.cos(t), math.sin(t)] for t in
                         np.radians(rotation + 30 + 60 * np.arange(6))])  # (dx, dy)
        inside = np.ones(hy.size, bool)
        for dx, dy in vert * d:
            inside &= (hy + dy >= 0) & (hy + dy <= ny - 1) & (hx + dx >= 0) & (hx + dx <= nx - 1)
        size_ = np.full(hy.size, 6)
        x, y = sites["x"].copy(), sites["y"].copy()
        metal = np.flatnonzero(sites["b"] == 0)
        other = {(int(i), int(j)): k for k, (i, j, b) in
                 enumerate(zip(sites["i"], sites["j"], sites["b"], strict=True)) if b == 1}
        n_sw = round(stone_wales * int(inside.sum()))
        centres: list[np.ndarray] = []
        for k in rng.permutation(metal):
            if len(centres) >= n_sw:
                break
            step = rng.integers(3)
            i, j = int(sites["i"][k]), int(sites["j"][k])
            partner = other.get([(i, j), (i - 1, j), (i, j - 1)][step])
            if partner is None:
                continue
            mid = np.array([(x[k] + x[partner]) / 2, (y[k] + y[partner]) / 2])
            if (mid[0] < 2 * a or mid[0] > nx - 1 - 2 * a or mid[1] < 2 * a
                    or mid[1] > ny - 1 - 2 * a
                    or any(np.hypot(*(mid - c)) < 4 * a for c in centres)):
                continue
            centres.append(mid)
            for atom in (k, partner):
                off = np.array([x[atom], y[atom]]) - mid
                x[atom], y[atom] = mid[0] - off[1], mid[1] + off[0]
            dist = np.hypot(hx - mid[0], hy - mid[1])
            size_[dist < 0.6 * a] = 5
            size_[(dist >= 0.6 * a) & (dist < a)] = 7
        sites = sites | {"x": x, "y": y}
        ring_truth[f] = {"y": hy[inside], "x": hx[inside], "size": size_[inside]}
        n = x.size
        return columns(sites, np.ones(n, bool), np.zeros(n, np.int64), np.ones(n),
                        np.full(n, sigma), np.full(n, sigma), np.zeros(n))

    syn = build(
        "rings", frame, ["column"], 0,
        size=size, frames=frames, pixel_size=pixel_size, dose=dose, read_noise=read_noise,
        background=background, drift=drift, shear=shear, seed=seed, chunks=chunks,
        params={"lattice_constant": lattice_constant, "column_width": column_width,
                "stone_wales": stone_wales, "rotation": rotation},
    )
    for f, ring in ring_truth.items():
        distort(ring, f, drift, shear)
    order = sorted(ring_truth)
    cells = xr.Dataset({
        "frame": ("cell", np.concatenate([np.full(ring_truth[f]["y"].size, f, np.int32)
                                          for f in order])),
        "y": ("cell", np.concatenate([ring_truth[f]["y"] for f in order])),
        "x": ("cell", np.concatenate([ring_truth[f]["x"] for f in order])),
        "size": ("cell", np.concatenate([ring_truth[f]["size"] for f in order]).astype(np.int32)),
    })
    return Synthetic(syn.image, syn.atoms, syn.vacancies, cells, syn.params)
