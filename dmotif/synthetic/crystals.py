"""Crystals with point defects: a TMD monolayer, an ABO3 perovskite, a lattice of shaped columns."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._random import Seed, as_generator
from ..errors import ParameterError
from ._assembly import Columns, build, check_fractions, choose_exact, columns, with_common_params
from ._lattice import hexagonal, random_origin, square
from .sample import Synthetic

__all__ = ["perovskite", "shapes", "tmd"]


@with_common_params
def tmd(
    *,
    size: int | tuple[int, int] = 512,
    frames: int = 1,
    pixel_size: float = 0.015,
    lattice_constant: float = 0.316,
    column_width: float = 0.03,
    chalcogen_vacancy: float = 0.04,
    double_vacancy: float = 0.005,
    metal_vacancy: float = 0.005,
    antisite: float = 0.01,
    dose: float | None = 100.0,
    read_noise: float = 0.17,
    background: float = 0.05,
    drift: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    rotation: float = 10.0,
    seed: Seed = 0,
    chunks: Any = "auto",
) -> Synthetic:
    """A 2H-MoS2-like monolayer with point defects.

    Labels: 0 metal (weight 1), 1 chalcogen pair (0.4), 2 single chalcogen — one of the pair
    missing (0.2), 3 antisite — a metal atom replacing one chalcogen of a pair (1.2). Metal
    vacancies and double chalcogen vacancies leave their site empty (see ``vacancies``).
    Defect arguments are fractions of the eligible sites, drawn in exact numbers per frame.
    The defaults give a peak signal-to-noise of about 5 on a metal column.

    Parameters
    ----------
    lattice_constant : float
        In-plane lattice constant a, nm (metal–chalcogen distance a/√3).
    chalcogen_vacancy, double_vacancy, antisite : float
        Fractions of chalcogen sites with one chalcogen missing, both missing, a metal antisite.
    metal_vacancy : float
        Fraction of metal sites left empty.
    """
    check_fractions({"chalcogen_vacancy": chalcogen_vacancy, "double_vacancy": double_vacancy,
                      "antisite": antisite})
    check_fractions({"metal_vacancy": metal_vacancy})
    a = lattice_constant / pixel_size
    sigma = column_width / pixel_size
    amps = np.array([1.0, 0.4, 0.2, 1.2])

    def frame(f: int, ny: int, nx: int, rng: np.random.Generator) -> tuple[Columns, Columns]:
        lat = hexagonal(a, rotation, random_origin(as_generator(seed, 1_000_003), a, nx, ny),
                         np.array([[0.0, 0.0], [1 / 3, 1 / 3]]))
        sites = lat.sites(ny, nx, margin=a)
        metal = sites["b"] == 0
        label = np.where(metal, 0, 1)
        chal = choose_exact(rng, ~metal, {2: chalcogen_vacancy, -5: double_vacancy,
                                           3: antisite})
        label = np.where(chal >= 0, chal, label)
        keep = chal != -5
        met = choose_exact(rng, metal, {-5: metal_vacancy})
        keep &= met != -5
        n = label.size
        return columns(sites, keep, label, amps[label], np.full(n, sigma), np.full(n, sigma),
                        np.zeros(n))

    return build(
        "tmd", frame, ["metal", "chalcogen_pair", "single_chalcogen", "antisite"], 2,
        size=size, frames=frames, pixel_size=pixel_size, dose=dose, read_noise=read_noise,
        background=background, drift=drift, shear=shear, seed=seed, chunks=chunks,
        params={"lattice_constant": lattice_constant, "column_width": column_width,
                "chalcogen_vacancy": chalcogen_vacancy, "double_vacancy": double_vacancy,
                "metal_vacancy": metal_vacancy, "antisite": antisite, "rotation": rotation},
    )


@with_common_params
def perovskite(
    *,
    size: int | tuple[int, int] = 512,
    frames: int = 1,
    pixel_size: float = 0.015,
    lattice_constant: float = 0.39,
    column_width: float = 0.03,
    weights: tuple[float, float, float] = (1.0, 0.6, 0.3),
    a_vacancy: float = 0.0,
    dose: float | None = 100.0,
    read_noise: float = 0.17,
    background: float = 0.05,
    drift: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    rotation: float = 10.0,
    seed: Seed = 0,
    chunks: Any = "auto",
) -> Synthetic:
    """An ABO3 perovskite along [001] (SrTiO3-like).

    Labels: 0 A column, 1 B(-O) column, 2 O column, with peak ``weights``; the cell has one
    A at the corner, B at the centre and O at the two edge centres.

    Parameters
    ----------
    weights : (float, float, float)
        Peak intensities of the A, B and O columns.
    a_vacancy : float
        Fraction of A sites left empty.
    """
    check_fractions({"a_vacancy": a_vacancy})
    a = lattice_constant / pixel_size
    sigma = column_width / pixel_size
    amps = np.asarray(weights, dtype=float)
    basis = np.array([[0.0, 0.0], [0.5, 0.5], [0.5, 0.0], [0.0, 0.5]])

    def frame(f: int, ny: int, nx: int, rng: np.random.Generator) -> tuple[Columns, Columns]:
        lat = square(a, rotation, random_origin(as_generator(seed, 1_000_003), a, nx, ny), basis)
        sites = lat.sites(ny, nx, margin=a)
        label = np.array([0, 1, 2, 2])[sites["b"]]
        keep = choose_exact(rng, label == 0, {-5: a_vacancy}) != -5
        n = label.size
        return columns(sites, keep, label, amps[label], np.full(n, sigma), np.full(n, sigma),
                        np.zeros(n))

    return build(
        "perovskite", frame, ["A", "B", "O"], 4,
        size=size, frames=frames, pixel_size=pixel_size, dose=dose, read_noise=read_noise,
        background=background, drift=drift, shear=shear, seed=seed, chunks=chunks,
        params={"lattice_constant": lattice_constant, "column_width": column_width,
                "weights": [float(w) for w in weights], "a_vacancy": a_vacancy,
                "rotation": rotation},
    )


@with_common_params
def shapes(
    *,
    size: int | tuple[int, int] = 512,
    frames: int = 1,
    pixel_size: float = 0.015,
    lattice_constant: float = 0.24,
    column_width: float = 0.025,
    elongation: float = 2.2,
    orientations: tuple[float, ...] = (0.0, 90.0),
    round_fraction: float = 1 / 3,
    dose: float | None = 100.0,
    read_noise: float = 0.17,
    background: float = 0.05,
    drift: tuple[float, float] = (0.0, 0.0),
    shear: float = 0.0,
    rotation: float = 10.0,
    seed: Seed = 0,
    chunks: Any = "auto",
) -> Synthetic:
    """A square lattice of equal-peak columns that differ only by shape and orientation.

    Label 0 is a round column; label ``k ≥ 1`` is a column elongated by ``elongation`` along
    ``orientations[k-1]`` degrees (plus the lattice ``rotation``), with the same peak height.
    A rotation-invariant description tells round from elongated but merges the orientations;
    an oriented one separates them all.

    Parameters
    ----------
    elongation : float
        Ratio of the long to the short Gaussian width of an elongated column.
    orientations : tuple of float
        Directions of the elongated motifs, degrees.
    round_fraction : float
        Fraction of round columns; the rest is shared equally among the orientations.
    """
    if elongation < 1:
        raise ParameterError(f"elongation must be >= 1; got {elongation!r}.")
    check_fractions({"round_fraction": round_fraction})
    a = lattice_constant / pixel_size
    sigma = column_width / pixel_size
    n_or = len(orientations)
    rod = (1.0 - round_fraction) / max(n_or, 1)
    angles = np.radians(np.array([0.0, *orientations]) + rotation)
    major = np.array([sigma] + [sigma * math.sqrt(elongation)] * n_or)
    minor = np.array([sigma] + [sigma / math.sqrt(elongation)] * n_or)

    def frame(f: int, ny: int, nx: int, rng: np.random.Generator) -> tuple[Columns, Columns]:
        lat = square(a, rotation, random_origin(as_generator(seed, 1_000_003), a, nx, ny),
                      np.zeros((1, 2)))
        sites = lat.sites(ny, nx, margin=a)
        label = choose_exact(rng, np.ones(sites["b"].size, bool),
                              {k + 1: rod for k in range(n_or)})
        label = np.where(label < 0, 0, label)
        keep = np.ones(label.size, bool)
        return columns(sites, keep, label, np.ones(label.size), major[label], minor[label],
                        angles[label])

    return build(
        "shapes", frame, ["round", *(f"rod_{o:g}" for o in orientations)], 1,
        size=size, frames=frames, pixel_size=pixel_size, dose=dose, read_noise=read_noise,
        background=background, drift=drift, shear=shear, seed=seed, chunks=chunks,
        params={"lattice_constant": lattice_constant, "column_width": column_width,
                "elongation": elongation, "orientations": [float(o) for o in orientations],
                "round_fraction": round_fraction, "rotation": rotation},
    )
