"""The measurements a run makes after its hierarchy, when its configuration asks for them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from ..errors import DataError, NoLatticeError, ParameterError
from .columns import COLUMN_VARS, refine_columns
from .displacements import displacements
from .intensities import intensity_statistics
from .strain import strain

__all__ = ["MEASURED_VARS", "MotifChoice", "choose_motif", "measure_columns"]

#: A motif named by a rule, for a first run whose labels are not known yet: the motif whose
#: columns have the largest (``"strongest"``) or smallest (``"weakest"``) median
#: cross-section, or the most numerous (``"most"``).
MotifChoice = Literal["strongest", "weakest", "most"]
# A rule picks among the motifs that hold at least this fraction of the labelled columns, so
# that a handful of defect or edge columns is never "the weakest".
MIN_SHARE = 0.1

#: The per-atom variables the stage may add to a result, in the order of an exported table.
MEASURED_VARS = (
    *COLUMN_VARS.values(), "intensity_class", "disp_y", "disp_x", "disp", "disp_angle",
    "disp_y_nm", "disp_x_nm", "disp_nm", "strain_xx", "strain_yy", "strain_xy", "rotation",
)


def choose_motif(cols: xr.Dataset, choice: int | str) -> int:
    """The label that ``choice`` names among the columns ``cols`` (with ``label`` and
    ``cross_section``): a label itself, or a :data:`MotifChoice` rule applied to the motifs
    holding at least :data:`MIN_SHARE` of the labelled columns (ties to the lower label).

    The cross-section is the columns' integrated contrast over the background, so
    ``"strongest"`` is the brightest motif of an ADF image and the darkest of an ABF one.
    """
    if not isinstance(choice, str):
        return int(choice)
    labels = cols["label"].values
    motifs, counts = np.unique(labels[labels >= 0], return_counts=True)
    keep = counts >= MIN_SHARE * counts.sum()
    if not keep.any():
        raise DataError(f"no motif to choose as {choice!r}: the columns have no labels.")
    motifs, counts = motifs[keep], counts[keep]
    if choice == "most":
        return int(motifs[np.argmax(counts)])
    section = cols["cross_section"].values
    median = np.array([np.nanmedian(section[labels == m]) if np.isfinite(
        section[labels == m]).any() else np.nan for m in motifs])
    if not np.isfinite(median).any():
        raise DataError(f"no motif to choose as {choice!r}: no column has a cross-section.")
    pick = np.nanargmax(median) if choice == "strongest" else np.nanargmin(median)
    return int(motifs[pick])


def measure_columns(
    image: xr.DataArray,
    atoms: xr.Dataset,
    labels: np.ndarray,
    *,
    enabled: bool = False,
    window: float | None = None,
    neighbours: bool = True,
    displacement: Sequence[int | MotifChoice] | None = None,
    strain_motif: int | MotifChoice | None = None,
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
        :func:`dmotif.displacements`); each a label, or a :data:`MotifChoice` rule (see
        :func:`choose_motif`) for a first run: ``["weakest", "strongest"]`` is the B column
        in its A cell of a perovskite in ADF, whose A columns are the heavier.
    strain_motif : int or MotifChoice, optional
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
        try:
            motif, reference = (choose_motif(cols, c) for c in displacement)
            if motif == reference:
                raise ParameterError(
                    f"measure.displacement = {list(displacement)!r} names motif {motif} twice; "
                    "name two motifs."
                )
            out = out.merge(displacements(cols, motif=motif, reference=reference).drop_attrs())
            summary["displacement"] = {"motif": motif, "reference": reference,
                                       "asked": list(displacement)}
        except (NoLatticeError, DataError, ParameterError) as exc:
            summary["displacement"] = {"error": str(exc)}
    if strain_motif is not None:
        try:
            motif = choose_motif(cols, strain_motif)
            out = out.merge(strain(cols, motif=motif).drop_attrs())
            summary["strain"] = {"motif": motif, "asked": strain_motif}
        except (NoLatticeError, DataError, ParameterError) as exc:
            summary["strain"] = {"error": str(exc)}
    return out.drop_attrs(), summary
