"""A result store for the explorer tests: synthetic TMD truth as atoms and labels, and a
stand-in layout with one tight blob per motif at a known place (the explorer is under test,
not the layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

import dmotif
from dmotif import synthetic

#: Layout centre of each truth label (TMD: 0 metal, 1 pair, 2 single, 3 antisite).
CENTRES = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [6.0, 6.0]])
SIGMA = 0.3


def make_result(directory: Path, *, size: int = 384, frames: int = 1, seed: int = 5,
                chunks: int = 128) -> tuple[str, synthetic.Synthetic]:
    """Write a synthetic image and a result store over its truth atoms; return the store."""
    sample = synthetic.tmd(size=size, frames=frames, seed=seed, chunks=chunks)
    image_path = directory / "image.zarr"
    synthetic.save(sample, image_path)
    atoms = sample.atoms
    labels = atoms["label"].values.astype(np.int32)
    rng = np.random.default_rng(seed)
    layout = CENTRES[labels] + rng.normal(0.0, SIGMA, (len(labels), 2))
    ds = xr.Dataset({
        "frame": atoms["frame"], "y": atoms["y"], "x": atoms["x"],
        "layout": (("atom", "axis"), layout.astype(np.float32)),
        "label": ("atom", labels),
    })
    ds["label"].attrs["motif_names"] = {
        str(i): name for i, name in enumerate(atoms.attrs["motif_names"])}
    out = directory / "result.zarr"
    dmotif.write_result(ds, out, config={"input": {"path": str(image_path)}})
    return str(out), sample


def make_measured_result(directory: Path) -> str:
    """Run the pipeline with column measurements on the small real perovskite image."""
    image = Path(__file__).parent / "data" / "real_perovskite_adf.npy"
    out = directory / "measured.zarr"
    dmotif.run(str(image), out, config={"measure": {"enabled": True}})
    return str(out)
