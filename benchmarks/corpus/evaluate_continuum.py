"""Continuous variation on images that dmotif did not make: coordinates against the truth.

For each image (a corpus ``.npz`` of ``make_abtem.py`` with ``column_registry``, the twisted
bilayer's local stacking), dmotif's library chain with a run's defaults (detect → Zernike →
PCA) and then, against the registry of the nearest true column (Spearman |ρ|, detected columns
within 3 px of a true one and 12 px of the border):

* ``best PC``: the best single PCA component;
* ``layout``: :func:`dmotif.manifold_coordinate` of the FR layout (seeds 0, 1, 2: seed 0 and
  the range), and of the reference's layout (``REFERENCE_STAGES``, ``resolution=0``);
* ``neighbourhood``: :func:`dmotif.manifold_coordinate` of
  :func:`dmotif.neighbourhood_mean` of the scores;

and :func:`dmotif.feature_structure`'s call with its regional share. Any other image (a
``.npz`` without registry, a real micrograph) gets the call only.

    python benchmarks/corpus/evaluate_continuum.py corpus/twisted_*.npz corpus/mose2_*.npz \
        tests/data/real_*
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

MARGIN = 12
COLS = ("image", "columns", "best PC", "layout", "reference layout", "neighbourhood",
        "structure", "regional share")


def rho(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return abs(float(spearmanr(a, b)[0]))


def evaluate(path: Path) -> dict:
    import dask
    from scipy.spatial import cKDTree

    import dmotif
    from dmotif.embed.layout import REFERENCE_STAGES

    data = np.load(path) if path.suffix == ".npz" else None
    image = (np.asarray(data["image"], dtype=np.float32) if data is not None
             else dmotif.open_image(path).isel(frame=0).values)
    with dask.config.set(scheduler="threads"):
        atoms = dmotif.detect_atoms(image)
        feats = dmotif.zernike_features(image, atoms)
        scores = dmotif.pca(feats).compute()
        call = dmotif.feature_structure(feats, atoms)
    row = {"image": path.stem, "columns": atoms.sizes["atom"], "structure": call["structure"],
           "regional share": f"{call['regional_share']:.3f}"}
    if data is None or "column_registry" not in data:
        return row
    dist, idx = cKDTree(np.c_[data["column_y"], data["column_x"]]).query(
        np.c_[atoms["y"], atoms["x"]])
    y, x = atoms["y"].values, atoms["x"].values
    ok = ((dist < 3) & (y > MARGIN) & (x > MARGIN) & (y < image.shape[0] - MARGIN)
          & (x < image.shape[1] - MARGIN))
    reg = data["column_registry"][idx][ok]
    x_pc = scores.values[ok]
    layouts = [rho(dmotif.manifold_coordinate(dmotif.fr_layout(scores, seed=s)).values[ok], reg)
               for s in (0, 1, 2)]
    reference = dmotif.fr_layout(scores, seed=0, stages=REFERENCE_STAGES, resolution=0)
    route = dmotif.manifold_coordinate(dmotif.neighbourhood_mean(scores, atoms))
    row.update({
        "columns": f"{atoms.sizes['atom']} ({int(ok.sum())} scored)",
        "best PC": f"{max(rho(x_pc[:, k], reg) for k in range(x_pc.shape[1])):.2f}",
        "layout": f"{layouts[0]:.2f} ({min(layouts):.2f}–{max(layouts):.2f})",
        "reference layout": f"{rho(dmotif.manifold_coordinate(reference).values[ok], reg):.2f}",
        "neighbourhood": f"{rho(route.values[ok], reg):.2f}",
    })
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path)
    args = parser.parse_args()
    print(" | ".join(COLS))
    print(" | ".join("---" for _ in COLS))
    for path in args.images:
        row = evaluate(path)
        print(" | ".join(str(row.get(c, "")) for c in COLS), flush=True)


if __name__ == "__main__":
    main()
