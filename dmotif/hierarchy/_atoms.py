"""The inputs of the hierarchy's functions: the atom table as plain arrays, checked, and shared
with the per-frame dask tasks that slice their frame out of it."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .._shared import share
from ..errors import DataError, NoLatticeError
from . import _lattice
from ._names import letter_names

__all__ = [
    "atom_arrays",
    "atom_spacing",
    "atom_table",
    "frame_atoms",
    "frame_groups",
    "label_array",
    "motif_names",
    "with_site_names",
]


def atom_arrays(atoms: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(atoms, xr.Dataset) or "atom" not in atoms.dims:
        raise DataError(
            f"atoms must be an xarray.Dataset over dim 'atom' (as detect_atoms returns); got "
            f"{type(atoms).__name__}."
        )
    missing = [v for v in ("y", "x") if v not in atoms]
    if missing:
        raise DataError(f"atoms lacks the variables {missing}; it needs frame, y and x (pixels).")
    n = atoms.sizes["atom"]
    if n == 0:
        raise DataError("atoms is empty: no atoms to build cells from; detect atoms first.")
    frame = atoms["frame"].values.astype(np.int64) if "frame" in atoms else np.zeros(n, np.int64)
    yx = np.column_stack([atoms["y"].values, atoms["x"].values]).astype(np.float64)
    if not np.isfinite(yx).all():
        raise DataError("atoms has non-finite y/x positions; drop or fix those atoms first.")
    return frame, yx


def label_array(labels: Any, n: int) -> np.ndarray:
    lab = np.asarray(labels.values if isinstance(labels, xr.DataArray) else labels)
    if lab.shape != (n,):
        raise DataError(
            f"labels must have one entry per atom ({n}); got shape {lab.shape}. Pass the "
            "labels returned by cluster() for these atoms."
        )
    if not np.issubdtype(lab.dtype, np.integer):
        raise DataError(f"labels must be integers (-1 = unassigned); got dtype {lab.dtype}.")
    lab = lab.astype(np.int64)
    if (lab < 0).all():
        raise DataError(
            f"all {n} atoms are unassigned (label -1): there are no motifs to build cells "
            "or a hierarchy from; check the clustering (e.g. its minimum cluster size)."
        )
    return lab


def atom_spacing(atoms: xr.Dataset, frame: np.ndarray, yx: np.ndarray) -> float:
    sp = atoms.attrs.get("spacing_px")
    if sp is None or not np.isfinite(sp) or sp <= 0:
        sp = _lattice.neighbour_spacing(yx, frame)
    if not np.isfinite(sp) or sp <= 0:
        raise NoLatticeError(
            "cannot estimate the nearest-neighbour spacing: every frame has fewer than two "
            "atoms; give more atoms."
        )
    return float(sp)


def _frame_order(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The atoms in frame order (a stable sort: in their order within a frame), the frames
    in ascending order and the first position of each in that order."""
    order = np.argsort(frame, kind="stable")
    frames, starts = np.unique(frame[order], return_index=True)
    return order, frames, starts


def frame_groups(frame: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Each frame and its atoms' indices (ascending), frames in ascending order."""
    order, frames, starts = _frame_order(frame)
    return list(zip(frames.tolist(), np.split(order, starts)[1:], strict=True))


def atom_table(frame: np.ndarray, yx: np.ndarray, lab: np.ndarray) -> Any:
    """The atoms as one argument of the per-frame tasks, which slice their frame out of it:
    on a cluster it goes to the workers once instead of into the task graph.

    The atoms are held in frame order (a stable sort, so in their order within a frame), with
    each frame's first row: a task slices its frame instead of scanning every atom's frame.
    """
    order, frames, starts = _frame_order(frame)
    return share({"frames": frames, "bounds": np.r_[starts, len(frame)], "yx": yx[order],
                  "label": lab[order]})


def frame_atoms(table: dict[str, np.ndarray], f: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions and labels of the atoms of frame ``f`` from :func:`atom_table`, in the
    order of the atom table."""
    k = int(np.searchsorted(table["frames"], f))
    if k == len(table["frames"]) or table["frames"][k] != f:
        return table["yx"][:0], table["label"][:0]
    rows = slice(table["bounds"][k], table["bounds"][k + 1])
    return table["yx"][rows], table["label"][rows]


def motif_names(atoms: xr.Dataset, lab: np.ndarray) -> dict[int, str]:
    """Label -> name: the atoms' ``motif_names`` attribute where given (synthetic truth, edits),
    else letters by decreasing mean column intensity ("A" the brightest)."""
    given = list(atoms.attrs.get("motif_names", []))
    intensity = atoms["intensity"].values if "intensity" in atoms else None
    names = letter_names(lab, intensity)
    return {k: given[k] if 0 <= k < len(given) else v for k, v in names.items()}


def with_site_names(atoms: xr.Dataset, lab: np.ndarray, evidence: dict) -> xr.Dataset:
    """``atoms`` with a ``motif_names`` attribute that names each motif split by site
    ("A on B site", from the ``split_from`` and ``site_motif`` lists of
    :func:`dmotif.site_motifs` in ``evidence``), when a motif was split and no names are given.
    """
    on_site = {k: (int(p), int(h)) for k, (p, h) in enumerate(zip(
        evidence.get("split_from", []), evidence.get("site_motif", []), strict=False)) if p >= 0}
    if not on_site or "motif_names" in atoms.attrs or (lab < 0).all():
        return atoms
    intensity = atoms["intensity"].values if "intensity" in atoms else None
    names = letter_names(lab, intensity, on_site)
    return atoms.assign_attrs(motif_names=[names.get(k, f"motif {k}")
                                           for k in range(int(lab.max()) + 1)])
