"""Time and memory of ``dmotif report`` on results of 10⁵ and 10⁶ atoms.

Issue 18 bounds the report at ≤ 60 s and ≤ 2 GB of peak memory for 10⁶ atoms, and every figure
at ≤ 25 megapixels. A result of that size is made cheaply, without the pipeline's feature and
layout stages: a synthetic TMD image (one frame, 10 px lattice constant) with its true columns
as the atoms and its true column types as the motifs, the hierarchy stage of a run on them
(cells, graph, per-atom levels: the real arrays a run stores), and a layout of one Gaussian
blob per motif. The detection on the same image is timed as the hierarchy's baseline (the
issue asks the hierarchy stage for at most twice the detection's time). The report is then
run in a fresh process under ``/usr/bin/time -v``, which gives its wall time and peak
resident memory; the largest figure is read from the PNGs it writes. The smaller result is
the baseline of the same run: the ratio of the two times says how the report scales with the
number of atoms.

    python benchmarks/bench_report.py --atoms 100000 1000000 --out /tmp/bench_report
"""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import xarray as xr

PIXEL_SIZE = 0.0316  # nm: a lattice constant of 10 px
ATOMS_PER_PX2 = 2 / (10.0**2 * math.sqrt(3) / 2)


def make_result(n_atoms: int, folder: Path, seed: int = 0) -> tuple[Path, float, float]:
    """A result store of about ``n_atoms`` atoms; returns its path, the seconds of the
    hierarchy stage on it and those of :func:`dmotif.detect_atoms` on its image."""
    import dmotif
    from dmotif.hierarchy import build_hierarchy
    from dmotif.io.store import write_dataset
    from dmotif.pipeline.runner import _hierarchy_stage

    size = math.ceil(math.sqrt(n_atoms / ATOMS_PER_PX2))
    s = dmotif.synthetic.tmd(size=size, pixel_size=PIXEL_SIZE, seed=seed)
    image_path = folder / f"tmd_{n_atoms}.npy"
    np.save(image_path, s.image.values.astype(np.float32))
    image = dmotif.open_image(image_path)
    labels = s.atoms["label"].values.astype(np.int32)
    atoms = s.atoms[["frame", "y", "x"]]
    atoms.attrs = {"spacing_px": float(s.atoms.attrs.get("spacing_px", 10.0 / math.sqrt(3)))}
    rng = np.random.default_rng(seed)
    k = int(labels.max()) + 1
    centres = rng.normal(0.0, 8.0, (k, 2))
    layout = centres[np.maximum(labels, 0)] + rng.normal(0.0, 1.0, (len(labels), 2))
    amplitude = np.array([1.0, 0.4, 0.2, 1.2])[np.clip(labels, 0, 3)]
    t0 = time.perf_counter()
    dmotif.detect_atoms(image)
    t1 = time.perf_counter()
    data, attrs = _hierarchy_stage(build_hierarchy, image, atoms, labels, {})
    t_hier = time.perf_counter() - t1
    ds = xr.merge([
        atoms,
        xr.Dataset({"label": ("atom", labels),
                    "intensity": ("atom", amplitude + rng.normal(0.0, 0.05, len(labels))),
                    "layout": (("atom", "axis"), layout.astype(np.float32))}),
        data,
    ], combine_attrs="override")
    store = folder / f"tmd_{n_atoms}.dmotif.zarr"
    write_dataset(ds, store, overwrite=True, attrs={
        "config": {"input": {"path": str(image_path)}}, **attrs,
        "atoms_attrs": atoms.attrs})
    return store, t_hier, t1 - t0


def time_report(store: Path) -> tuple[float, float, float]:
    """Wall seconds and peak MB of ``dmotif report`` in a fresh process, and its largest
    figure in megapixels."""
    import matplotlib.image as mpimg

    out = store.with_suffix(".report.html")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "dmotif.cli", "report", str(store),
           "-o", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    parts = [float(p) for p in wall.group(1).split(":")]
    seconds = sum(p * 60**k for k, p in enumerate(reversed(parts)))
    figures = out.with_name(out.stem + "_files").glob("*.png")
    largest = max(np.prod(mpimg.imread(p).shape[:2]) for p in figures) / 1e6
    return seconds, int(rss.group(1)) / 1024, largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", nargs="+", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    print("| atoms | detect s | hierarchy s | hierarchy / detect | report s | report peak MB | "
          "largest figure Mpx | report s per 10⁵ atoms |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.atoms:
        store, t_hier, t_detect = make_result(n, args.out)
        import dmotif

        n_real = dmotif.open_result(store).dataset.sizes["atom"]
        seconds, peak, mpx = time_report(store)
        print(f"| {n_real:,} | {t_detect:.1f} | {t_hier:.1f} | {t_hier / t_detect:.2f} | "
              f"{seconds:.1f} | {peak:.0f} | {mpx:.1f} | {seconds / n_real * 1e5:.2f} |",
              flush=True)


if __name__ == "__main__":
    main()
