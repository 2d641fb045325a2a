"""Score dmotif's level-2 cells against the defects of images that dmotif did not make.

For each corpus ``.npz`` of ``make_abtem.py`` (abTEM MoSe2 and SrTiO3, ADF and ABF, several
doses), dmotif runs its library chain with a run's defaults (detect → Zernike → PCA → FR
layout → motifs, as ``evaluate.py`` does) and then :func:`dmotif.motif_cells` on the columns
and motifs it found. Two numbers per image, the targets of issue 18:

* **defects in rare cells**: the share of the true defects that sit in a cell of a type other
  than the dominant (most frequent) one;
* **far cells dominant**: the share of the cells far from every true defect that are of the
  dominant type.

Definitions:

* A *defect* is a visible truth column whose type is not a perfect-lattice type (perfect:
  ``Mo``, ``Se2`` for MoSe2; ``Sr``, ``TiO``, ``O`` for SrTiO3), i.e. single-Se columns
  (``Se1``), antisites (``Mo_Se2``), dopants (``W``) and half-empty columns (``Sr_half``), and
  every *vacancy*: the truth lists only the columns that exist, so a vacant site (a removed Mo
  column) is a slot that :func:`dmotif.motif_cells` leaves empty when run on the truth itself
  (true positions, true types), where nothing is mis-detected or mis-labelled.
* A defect *sits in* the found cell one of whose slot sites (the cell's lattice point plus the
  slot offset) lies within 0.3 × the column spacing of the defect; defects that no found cell
  covers (at the border, or missed by detection) are counted apart, in ``uncovered``, and
  left out of the share.
* A cell is *far* from the defects when no defect lies within two lattice vectors
  (2 × the longer Bravais vector) of its centre.

    python benchmarks/corpus/evaluate_hierarchy.py corpus/*.npz tests/data/abtem_mose2_*.npz

The table gives, per image: columns, motifs, cells, defects (of which vacancies), defects not
covered by a cell, the two shares, and the seconds the chain and the cells took.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

sys.path.insert(0, str(Path(__file__).parent))
from evaluate import run_dmotif

PERFECT = {"Mo", "Se2", "Sr", "TiO", "O"}
#: A defect sits in a cell whose slot site is this close, in column spacings.
MATCH = 0.3
#: A cell is far from the defects beyond this many lattice vectors.
FAR = 2.0


def _atoms(y: np.ndarray, x: np.ndarray) -> xr.Dataset:
    return xr.Dataset({"y": ("atom", np.asarray(y, float)), "x": ("atom", np.asarray(x, float))})


def slot_sites(cells: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Pixel position of every slot of every cell, ``(c, s, 2)``, and the lattice ``(2, 2)``."""
    uv = np.asarray(cells.attrs["lattice"], float)
    slots = np.asarray(cells.attrs["slots"], float)
    point = np.column_stack([cells["y"].values, cells["x"].values]) - 0.5 * (uv[0] + uv[1])
    return point[:, None, :] + (slots @ uv)[None, :, :], uv


def true_defects(truth: dict) -> tuple[np.ndarray, int]:
    """Positions ``(d, 2)`` of the defect columns and vacant sites, and the vacancy count."""
    import dmotif

    kinds = truth["column_type"]
    _, lab = np.unique(kinds, return_inverse=True)
    yx = np.column_stack([truth["column_y"], truth["column_x"]])
    odd = ~np.isin(kinds, sorted(PERFECT))
    cells = dmotif.motif_cells(_atoms(*yx.T), lab.astype(np.int32))
    sites, _ = slot_sites(cells)
    empty = cells["members"].values < 0
    vacant = sites[empty]
    return np.concatenate([yx[odd], vacant]), len(vacant)


def score_cells(cells: xr.Dataset, defects: np.ndarray, spacing: float) -> dict:
    """The two shares of the module docstring for found ``cells`` and true ``defects``."""
    sites, uv = slot_sites(cells)
    types = cells["type"].values
    n_slot = sites.shape[1]
    dist, k = cKDTree(sites.reshape(-1, 2)).query(defects) if len(defects) else ([], [])
    covered = np.asarray(dist) <= MATCH * spacing
    in_rare = types[np.asarray(k, int)[covered] // n_slot] != 0
    centre = np.column_stack([cells["y"].values, cells["x"].values])
    reach = FAR * float(np.linalg.norm(uv, axis=1).max())
    if len(defects):
        near, _ = cKDTree(defects).query(centre, distance_upper_bound=reach)
        far = ~np.isfinite(near)
    else:
        far = np.ones(len(centre), bool)
    return {
        "cells": len(types),
        "uncovered": int((~covered).sum()),
        "defects_in_rare": float(in_rare.mean()) if in_rare.size else float("nan"),
        "far_cells": int(far.sum()),
        "far_dominant": float((types[far] == 0).mean()) if far.any() else float("nan"),
    }


def evaluate(path: Path, seed: int = 0) -> dict:
    """Run the chain on one corpus image and score its cells."""
    import dmotif

    data = np.load(path, allow_pickle=False)
    visible = data["column_visible"] if "column_visible" in data else slice(None)
    truth = {k: data[k][visible] for k in ("column_y", "column_x", "column_type")}
    t0 = time.perf_counter()
    found = run_dmotif(np.asarray(data["image"], np.float32), seed)
    t1 = time.perf_counter()
    atoms = _atoms(found["y"], found["x"])
    cells = dmotif.motif_cells(atoms, found["label"])
    t2 = time.perf_counter()
    defects, n_vacant = true_defects(truth)
    out = score_cells(cells, defects, float(cells.attrs["spacing_px"]))
    return {"columns": len(found["y"]),
            "motifs": int(found["label"].max()) + 1, "defects": len(defects),
            "vacancies": n_vacant, "chain_s": t1 - t0, "cells_s": t2 - t1, **out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cols = ("columns", "motifs", "cells", "defects", "vacancies", "uncovered",
            "defects_in_rare", "far_cells", "far_dominant", "chain_s", "cells_s")
    print("| image | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for path in args.images:
        row = evaluate(path, args.seed)
        cells = [f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in cols]
        print(f"| {path.stem} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
