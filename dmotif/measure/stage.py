"""The measurements a run makes after its hierarchy, when its configuration asks for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import DataError, NoLatticeError, ParameterError
from .columns import COLUMN_VARS, refine_columns
from .displacements import displacements
from .intensities import intensity_statistics
from .strain import strain

__all__ = ["MEASURED_VARS", "measure_columns"]

#: The per-atom variables the stage may add to a result, in the order of an exported table.
MEASURED_VARS = (
    *COLUMN_VARS.values(), "intensity_class", "disp_y", "disp_x", "disp", "disp_angle",
    "disp_y_nm", "disp_x_nm", "disp_nm", "strain_xx", "strain_yy", "strain_xy", "rotation",
)


def measure_columns(
    image: xr.DataArray,
    atoms: xr.Dataset,
    labels: np.ndarray,
    *,
    enabled: bool = False,
    window: float | None = None,
    neighbours: bool = True,
    displacement: Sequence[int] | None = None,
    strain_motif: int | None = None,
    max_components: int = 8,
    seed: int = 0,
) -> tuple[xr.Dataset, dict[str, Any]]:
    """The column measurements of a run: fits, cross-sections, atom counting, and on request
    displacements and strain.

    Parameters
    ----------
    image : xarray.DataArray
        The run's image stack.
    atoms : xarray.Dataset
        The detected atoms (with the detection's attrs).
    labels : ndarray of int
        The level-1 motif of each atom.
    enabled : bool
        Measure at all (config ``measure.enabled``); default False, the stage adds nothing.
    window, neighbours
        See :func:`dmotif.refine_columns`.
    displacement : [motif, reference], optional
        Measure each column of ``motif`` in its cell of ``reference`` (see
        :func:`dmotif.displacements`).
    strain_motif : int, optional
        Measure the strain of this motif's sublattice against its mean lattice (see
        :func:`dmotif.strain`).
    max_components, seed
        See :func:`dmotif.intensity_statistics` (over the cross-sections).

    Returns
    -------
    (xarray.Dataset, dict)
        The per-atom variables of :data:`MEASURED_VARS` that were measured, and a summary for
        the result's attributes: per motif the mixture's components, and what was measured
        against what (or why not).
    """
    if not enabled:
        return xr.Dataset(), {"enabled": False}
    table = atoms.assign(label=("atom", np.asarray(labels, np.int32)))
    cols = refine_columns(image, table, window=window, neighbours=neighbours)
    stats = intensity_statistics(cols, max_components=max_components, seed=seed)
    out = cols[list(COLUMN_VARS.values())].assign(intensity_class=stats["intensity_class"])
    summary: dict[str, Any] = {
        "enabled": True,
        "intensity": {
            str(int(m)): {
                "mean": stats["component_mean"].sel(motif=m).dropna("component").values.tolist(),
                "sd": stats["component_sd"].sel(motif=m).dropna("component").values.tolist(),
                "weight": stats["component_weight"].sel(motif=m).dropna(
                    "component").values.tolist(),
            }
            for m in stats["motif"].values
        },
    }
    if displacement is not None:
        motif, reference = displacement
        try:
            out = out.merge(displacements(cols, motif=motif, reference=reference).drop_attrs())
            summary["displacement"] = {"motif": motif, "reference": reference}
        except (NoLatticeError, DataError, ParameterError) as exc:
            summary["displacement"] = {"error": str(exc)}
    if strain_motif is not None:
        try:
            out = out.merge(strain(cols, motif=strain_motif).drop_attrs())
            summary["strain"] = {"motif": strain_motif}
        except (NoLatticeError, DataError, ParameterError) as exc:
            summary["strain"] = {"error": str(exc)}
    return out.drop_attrs(), summary
