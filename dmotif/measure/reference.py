"""A reference lattice for :func:`dmotif.strain` from a crystal structure (a CIF through ASE).

The projected lattice of a crystal seen down a zone axis is the 2-D lattice of its
translations (the cell's and any centring's) projected onto the plane normal to the axis;
scaled by the pixel size and turned to the measured lattice, it is what a column sublattice
of an unstrained crystal would show.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError, ParameterError, require
from ._source import _NM_PER_UNIT

__all__ = ["projected_lattice"]

# Translations n + c (n integer, |n_i| <= _SEARCH; c a centring) hold the projected lattice's
# shortest vectors for zone axes up to indices of about _SEARCH.
_SEARCH = 6
# Two positions (fractional) coincide within this.
_SAME = 1e-3


def _crystal(crystal: Any) -> Any:
    if isinstance(crystal, str | Path):
        ase_io = require("ase.io", extra="export", feature="a reference lattice from a file")
        try:
            return ase_io.read(str(crystal))
        # ASE's readers fail with whatever their parsers meet (assertions, KeyError, …)
        except Exception as exc:
            raise DataError(f"ASE cannot read the crystal file {str(crystal)!r}: {exc}") from exc
    if not (hasattr(crystal, "cell") and hasattr(crystal, "get_scaled_positions")):
        raise ParameterError(
            "crystal must be an ase.Atoms or the path of a file ASE reads (a CIF); got "
            f"{type(crystal).__name__}."
        )
    return crystal


def _centrings(frac: np.ndarray, numbers: np.ndarray) -> np.ndarray:
    """The fractional translations (besides the cell's) that map the crystal onto itself."""
    rare = np.argmin(np.bincount(numbers)[numbers])
    out = [np.zeros(3)]
    for j in np.flatnonzero(numbers == numbers[rare]):
        t = (frac[j] - frac[rare]) % 1.0
        if np.all(np.minimum(t, 1 - t) < _SAME):
            continue
        moved = (frac + t) % 1.0
        gap = np.abs(moved[:, None, :] - frac[None, :, :])
        gap = np.minimum(gap, 1 - gap).max(axis=2)
        same = (gap < _SAME) & (numbers[:, None] == numbers[None, :])
        if same.any(axis=1).all():
            out.append(t)
    return np.array(out)


def _reduced(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A reduced basis of the 2-D lattice spanned by ``vectors`` (rows, 3-D, coplanar)."""
    length = np.linalg.norm(vectors, axis=1)
    keep = length > 1e-6 * length.max()
    vectors, length = vectors[keep], length[keep]
    order = np.argsort(length, kind="stable")
    u = vectors[order[0]]
    for k in order[1:]:
        v = vectors[k]
        if np.linalg.norm(np.cross(u, v)) > 1e-3 * length[order[0]] * length[k]:
            break
    else:
        raise DataError("the crystal's translations project onto a line; check the zone axis.")
    while True:  # Lagrange's reduction
        if np.dot(v, v) < np.dot(u, u):
            u, v = v, u
        m = round(float(np.dot(u, v) / np.dot(u, u)))
        if m == 0:
            return u, v
        v = v - m * u


def _aligned(ref: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """``ref`` (rows ``(y, x)``) turned, and mirrored if that fits better, onto the lattice of
    ``measured``: two of its vectors that best match the measured ``u``, ``v`` after one
    least-squares rotation."""
    z_ref = ref[:, 1] + 1j * ref[:, 0]
    z_m = measured[:, 1] + 1j * measured[:, 0]
    best = (math.inf, z_ref)
    for mirror in (False, True):
        basis = np.conj(z_ref) if mirror else z_ref
        combos = np.array([i * basis[0] + j * basis[1]
                           for i, j in itertools.product(range(-3, 4), repeat=2) if i or j])
        for p in combos[np.abs(np.abs(combos) - abs(z_m[0])) <= 0.15 * abs(z_m[0])]:
            turn = z_m[0] / p / abs(z_m[0] / p)
            q = combos[np.argmin(np.abs(combos * turn - z_m[1]))]
            # the rotation that best maps (p, q) onto the measured (u, v)
            turn = np.sum(np.conj(np.array([p, q])) * z_m)
            turn /= abs(turn)
            cost = np.sum(np.abs(np.array([p, q]) * turn - z_m) ** 2)
            if cost < best[0]:
                best = (cost, basis * turn)
    z = best[1]
    return np.column_stack([z.imag, z.real])


def projected_lattice(
    crystal: Any,
    *,
    zone_axis: Any,
    pixel_size: float,
    units: str = "nm",
    align_to: Any = None,
) -> xr.DataArray:
    """The lattice a crystal projects down a zone axis, in pixels: a reference for strain.

    The crystal's translations (its cell's, and the centrings that map it onto itself, so a
    conventional fcc cell gives the lattice of its columns) are projected onto the plane
    normal to the zone axis ``[uvw]`` (in the cell's basis); the two shortest independent
    projections, Lagrange-reduced, are the vectors. They lie along an arbitrary direction
    of the image unless ``align_to`` gives the measured lattice to turn them onto.

    Parameters
    ----------
    crystal : ase.Atoms or path
        The crystal, or a file ASE reads (a CIF; ASE comes with ``dmotif[export]``).
    zone_axis : sequence of 3 ints
        The viewing direction ``[u, v, w]`` in the basis of the crystal's cell.
    pixel_size : float
        Size of a pixel, in ``units``.
    units : str
        Unit of ``pixel_size``: ``"nm"`` (default), ``"Å"``, ``"pm"`` or ``"µm"``.
    align_to : array_like (2, 2), optional
        The measured lattice ``[[u_y, u_x], [v_y, v_x]]`` (pixels), e.g.
        ``dmotif.sublattices(result)["lattice"].sel(motif=0, frame=0)``: the reference is
        turned (and mirrored, if that fits better, since a zone axis and its negative see
        mirror images) so that two of its vectors best match it.

    Returns
    -------
    xarray.DataArray
        ``(vector, axis)``: rows ``u``, ``v``, columns ``(y, x)``, pixels; attrs
        ``zone_axis``, ``pixel_size``, ``units`` and ``length_nm`` (the two lengths).

    Raises
    ------
    ParameterError
        When the zone axis is not three integers, not all zero, or the pixel size or its
        unit is not understood.
    DataError
        When the file cannot be read or the crystal has no 3-D cell.
    MissingDependencyError
        When a path is given and ASE is not installed.

    Examples
    --------
    >>> import numpy as np, dmotif
    >>> from ase import Atoms
    >>> sto = Atoms("SrTiO3", cell=[3.905] * 3, pbc=True, scaled_positions=[
    ...     (0, 0, 0), (.5, .5, .5), (.5, .5, 0), (.5, 0, .5), (0, .5, .5)])
    >>> ref = dmotif.projected_lattice(sto, zone_axis=(1, 1, 0), pixel_size=0.02)
    >>> np.round(np.linalg.norm(ref.values, axis=1), 2).tolist()  # a / √2 and a, in pixels
    [13.81, 19.53]

    ``strain(result, motif=0, reference_lattice=ref)`` then measures against it; pass
    ``align_to`` so that the reference has the image's orientation.
    """
    zone = np.asarray(zone_axis)
    if (zone.shape != (3,) or not np.issubdtype(zone.dtype, np.integer)
            or not zone.any()):
        raise ParameterError(
            f"zone_axis must be three integers [u, v, w], not all zero; got {zone_axis!r}."
        )
    if units not in _NM_PER_UNIT:
        raise ParameterError(f"units must be one of {sorted(_NM_PER_UNIT)}; got {units!r}.")
    if isinstance(pixel_size, bool) or not (isinstance(pixel_size, int | float | np.number)
                                            and math.isfinite(pixel_size) and pixel_size > 0):
        raise ParameterError(f"pixel_size must be a positive number; got {pixel_size!r}.")
    atoms = _crystal(crystal)
    cell = np.asarray(atoms.cell, dtype=np.float64)
    if cell.shape != (3, 3) or abs(np.linalg.det(cell)) < 1e-6:
        raise DataError(
            "the crystal has no 3-D cell (a molecule, or a slab without its third vector); "
            "give a periodic crystal, as a CIF describes one."
        )
    frac = np.asarray(atoms.get_scaled_positions(wrap=True), dtype=np.float64)
    shifts = _centrings(frac, np.asarray(atoms.numbers)) if len(frac) else np.zeros((1, 3))
    grid = np.array(list(itertools.product(range(-_SEARCH, _SEARCH + 1), repeat=3)), float)
    translations = (grid[:, None, :] + shifts[None, :, :]).reshape(-1, 3) @ cell
    axis = zone @ cell
    axis = axis / np.linalg.norm(axis)
    projected = translations - np.outer(translations @ axis, axis)
    u, v = _reduced(projected)
    e_x = u / np.linalg.norm(u)
    e_y = np.cross(axis, e_x)
    angstrom_per_px = float(pixel_size) * _NM_PER_UNIT[units] * 10.0
    ref = np.array([[w @ e_y, w @ e_x] for w in (u, v)]) / angstrom_per_px
    if align_to is not None:
        measured = np.asarray(getattr(align_to, "values", align_to), dtype=np.float64)
        if measured.shape != (2, 2) or not np.isfinite(measured).all():
            raise ParameterError(
                "align_to must be the measured lattice [[u_y, u_x], [v_y, v_x]] in pixels; "
                f"got {measured.tolist()!r}."
            )
        ref = _aligned(ref, measured)
    return xr.DataArray(
        ref, dims=("vector", "axis"), coords={"vector": ["u", "v"], "axis": ["y", "x"]},
        attrs={"units": "px", "zone_axis": zone.tolist(), "pixel_size": float(pixel_size),
               "pixel_units": units,
               "length_nm": (np.linalg.norm(ref, axis=1) * angstrom_per_px / 10).tolist()},
        name="reference_lattice",
    )
