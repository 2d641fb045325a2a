"""What the measurements read from a run's result or a plain atom table (no dask)."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import xarray as xr

from ..errors import DataError, ParameterError
from ..hierarchy._atoms import atom_arrays

__all__ = ["Columns", "columns_of", "motif_mask"]

# nm per unit of a calibrated image (as dmotif.detect_atoms records it)
_NM_PER_UNIT = {"nm": 1.0, "Å": 0.1, "A": 0.1, "angstrom": 0.1, "pm": 1e-3, "um": 1e3,
                "µm": 1e3}


class Columns(NamedTuple):
    """The columns of a result or an atom table, as plain arrays."""

    frame: np.ndarray  # (n,) int64
    yx: np.ndarray  # (n, 2) float64 pixels: the 2-D Gaussian fit's where there is one
    labels: np.ndarray  # (n,) int64, -1 unassigned
    nm_per_px: float | None  # the calibration, None when the image had none
    atoms: xr.Dataset  # the table itself


def columns_of(source: Any, labels: Any = None) -> Columns:
    """The columns of ``source``: a :class:`dmotif.Result` or an atom ``xarray.Dataset``.

    Positions are the elliptical Gaussian fit's (``fit_y``, ``fit_x``) where it succeeded,
    else the detected ones; labels are ``labels`` when given, else the table's ``label``.
    """
    atoms = getattr(source, "atoms", source)
    frame, yx = atom_arrays(atoms)
    n = yx.shape[0]
    if "fit_y" in atoms:
        fit = np.column_stack([atoms["fit_y"].values, atoms["fit_x"].values])
        ok = np.isfinite(fit).all(axis=1)
        yx[ok] = fit[ok]
    if labels is None:
        if "label" not in atoms:
            raise DataError(
                "the atom table has no 'label': pass labels= (one motif per atom, -1 "
                "unassigned), or a result of dmotif.run."
            )
        labels = atoms["label"]
    lab = np.asarray(getattr(labels, "values", labels))
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
        raise DataError(
            f"labels must be {n} integers, one per atom; got shape {lab.shape}, dtype "
            f"{lab.dtype}."
        )
    attrs = dict(getattr(source, "attrs", {}))
    attrs = attrs.get("atoms_attrs", attrs)
    units = attrs.get("units", "px")
    scale = attrs.get("pixel_size") if units in _NM_PER_UNIT else None
    nm = float(scale) * _NM_PER_UNIT[units] if scale is not None else None
    return Columns(frame, yx, lab.astype(np.int64), nm, atoms)


def motif_mask(cols: Columns, motif: Any, name: str) -> np.ndarray:
    """The columns of level-1 motif ``motif`` (an int label), checked to exist."""
    if isinstance(motif, bool) or not isinstance(motif, int | np.integer):
        raise ParameterError(f"{name} must be a motif label (an int); got {motif!r}.")
    mask = cols.labels == motif
    if not mask.any():
        known = sorted(int(v) for v in np.unique(cols.labels[cols.labels >= 0]))
        raise ParameterError(f"{name} = {motif} is no motif of these columns; motifs: {known}.")
    return mask
