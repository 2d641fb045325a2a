"""Benchmark the per-column elliptical 2-D Gaussian fit: dmotif against atomap.

On two images it times

- ``dmotif``: :func:`dmotif.refine_columns` with its defaults (two passes: alone, then with
  the neighbours' Gaussians subtracted, plus the Voronoi cross-sections); an in-memory image of
  at most 16 Mpx is fitted whole in the process, in numba's threads on all cores;
- ``dmotif-tiles``: the same in 512² tiles, each a task of dask's threads on all cores (what
  a dask-backed image gets);
- ``dmotif-serial``: the tiles on one core (dask's synchronous scheduler);
- ``atomap``: ``Sublattice.refine_atom_positions_using_2d_gaussian`` (atomap 0.4, one core), on
  at most ``--atomap-columns`` columns nearest the image centre (its cost per column does not
  depend on the image size);

each in its own subprocess (peak memory = that process's peak resident set, VmHWM, the image
included), all from the same starting positions. The images: ``rendered``, a numpy rendering
of elliptical Gaussian columns (σ 2.4 × 1.8 px, 14-px square lattice jittered by 1 px, Poisson
noise at a peak SNR of 21; ``--size``² pixels) with its truth, and ``real``, the real ADF
image of a perovskite in ``tests/data`` (columns from :func:`dmotif.detect_atoms`). It prints
columns/s, CPU seconds (of all threads: the work done, which other processes on a shared
machine disturb less than the wall time), peak memory, the RMSE against the truth (rendered)
and the speed-up of dmotif over atomap per column. Times are the best of ``--repeat`` runs
after a warm-up on a few columns (imports, numba's cache), reported apart as "start s".

Usage: ``python benchmarks/bench_measure.py [--size 2048] [--repeat 2] [--atomap-columns 300]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

# the script's folder is on sys.path: the benchmarks measure memory alike
from bench_detect import _peak_rss_mb

METHODS = ("dmotif", "dmotif-tiles", "dmotif-serial", "atomap")
REAL = Path(__file__).parents[1] / "tests" / "data" / "real_perovskite_adf.npy"
SPACING = 14.0


def _render(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image, truth, start) of elliptical columns on a jittered square lattice."""
    rng = np.random.default_rng(seed)
    # two spacings from the border: the rendering window (15 px) stays inside the image
    n = int((size - 3 * SPACING) // SPACING)
    truth = np.mgrid[0:n, 0:n].reshape(2, -1).T * SPACING + 2 * SPACING
    truth = truth + rng.uniform(-1, 1, truth.shape)
    sa, sb, angle = 2.4, 1.8, 0.5
    c, s = np.cos(angle), np.sin(angle)
    ia, ib = sa**-2, sb**-2
    qa, qb, qc = ia * c * c + ib * s * s, (ia - ib) * c * s, ia * s * s + ib * c * c
    img = np.full((size, size), 10.0)
    r = 15
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    for y0, x0 in truth:
        iy, ix = round(y0), round(x0)
        dy, dx = yy + iy - y0, xx + ix - x0
        img[iy - r:iy + r + 1, ix - r:ix + r + 1] += 100 * np.exp(
            -0.5 * (qa * dx * dx + 2 * qb * dx * dy + qc * dy * dy))
    img = rng.poisson(img * 5).astype(np.float64)
    start = truth + rng.uniform(-0.5, 0.5, truth.shape)
    return img, truth, start


def _run(method: str, img: np.ndarray, start: np.ndarray, spacing: float) -> np.ndarray:
    """Refined positions ``(y, x)`` of the columns started at ``start``."""
    if method.startswith("dmotif"):
        import dask
        import xarray as xr

        import dmotif

        atoms = xr.Dataset({"frame": ("atom", np.zeros(len(start), np.int32)),
                            "y": ("atom", start[:, 0]), "x": ("atom", start[:, 1])},
                           attrs={"spacing_px": spacing})
        scheduler = "synchronous" if method == "dmotif-serial" else "threads"
        chunks = None if method == "dmotif" else 512
        with dask.config.set(scheduler=scheduler):
            cols = dmotif.refine_columns(img, atoms, chunks=chunks)
        return np.column_stack([cols["fit_y"].values, cols["fit_x"].values])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import atomap.api as am

        sub = am.Sublattice(start[:, ::-1].copy(), image=img)
        sub.find_nearest_neighbors()
        sub.refine_atom_positions_using_2d_gaussian(show_progressbar=False)
    return np.column_stack([sub.y_position, sub.x_position])


def _worker(method: str, data: Path, repeat: int) -> dict:
    img = np.load(data / "image.npy")
    start = np.load(data / "start.npy")
    spacing = float(np.load(data / "spacing.npy"))
    if method == "atomap":
        start = start[np.load(data / "subset.npy")]
    t0 = time.perf_counter()
    _run(method, img, start[:20], spacing)
    startup = time.perf_counter() - t0
    elapsed = cpu = math.inf
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        found = _run(method, img, start, spacing)
        elapsed = min(elapsed, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    np.save(data / f"out-{method}.npy", found)
    return {"n": len(start), "seconds": elapsed, "cpu": cpu, "startup": startup,
            "peak_mb": _peak_rss_mb()}


def _dataset(name: str, size: int, seed: int, data: Path, n_atomap: int) -> np.ndarray | None:
    """Write the image, starts, spacing and atomap's subset; return the truth (None if real)."""
    if name == "rendered":
        img, truth, start = _render(size, seed)
        spacing = SPACING
    else:
        import dmotif

        img = np.load(REAL).astype(np.float64)
        atoms = dmotif.detect_atoms(img)
        start = np.column_stack([atoms["y"].values, atoms["x"].values])
        spacing, truth = atoms.attrs["spacing_px"], None
    centre = np.array(img.shape) / 2
    subset = np.argsort(np.hypot(*(start - centre).T), kind="stable")[:n_atomap]
    for key, value in (("image", img), ("start", start), ("spacing", spacing),
                       ("subset", np.sort(subset))):
        np.save(data / f"{key}.npy", value)
    print(f"{name}: {img.shape[0]}x{img.shape[1]} px, {len(start)} columns, spacing "
          f"{spacing:.1f} px; atomap on the {min(n_atomap, len(start))} central ones")
    return truth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=2, help="report the best of this many runs")
    ap.add_argument("--atomap-columns", type=int, default=300)
    ap.add_argument("--images", nargs="+", default=["rendered", "real"],
                    choices=["rendered", "real"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker, Path(args.data), args.repeat)))
        return
    print(f"{os.cpu_count()} cores")
    for name in args.images:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp)
            truth = _dataset(name, args.size, args.seed, data, args.atomap_columns)
            subset = np.load(data / "subset.npy")
            rows = {}
            for method in args.methods:
                res = subprocess.run(
                    [sys.executable, __file__, "--worker", method, "--data", str(data),
                     "--repeat", str(args.repeat)],
                    capture_output=True, text=True, check=True,
                )
                rows[method] = json.loads(res.stdout.strip().splitlines()[-1])
                rows[method]["pos"] = np.load(data / f"out-{method}.npy")
            head = (f"{'method':14s} {'columns':>8s} {'start s':>7s} {'s':>8s} "
                    f"{'columns/s':>10s} {'CPU s':>7s} {'peak MB':>8s} {'RMSE px':>8s} "
                    f"{'vs atomap':>10s}")
            print("\n" + head + "\n" + "-" * len(head))
            for method, r in rows.items():
                pos = r["pos"]
                on_subset = pos if method == "atomap" else pos[subset]
                rmse = "" if truth is None else \
                    f"{np.sqrt(np.mean((on_subset - truth[subset]) ** 2)):8.3f}"
                agree = ""
                if "atomap" in rows and method != "atomap":
                    d = np.hypot(*(on_subset - rows["atomap"]["pos"]).T)
                    agree = f"{np.median(d):10.3f}"
                print(f"{method:14s} {r['n']:8d} {r['startup']:7.2f} {r['seconds']:8.3f} "
                      f"{r['n'] / r['seconds']:10.0f} {r['cpu']:7.3f} {r['peak_mb']:8.0f} "
                      f"{rmse:>8s} {agree:>10s}")
            if "atomap" in rows:
                base = rows["atomap"]
                for ours in [m for m in rows if m != "atomap"]:
                    r = rows[ours]
                    wall = (r["n"] / r["seconds"]) / (base["n"] / base["seconds"])
                    cpu = (r["n"] / r["cpu"]) / (base["n"] / base["cpu"])
                    print(f"speed-up per column, {ours} over atomap: {wall:.0f}x in wall time, "
                          f"{cpu:.0f}x in CPU time")
            print("(RMSE: against the truth, on atomap's columns; vs atomap: median distance)")


if __name__ == "__main__":
    main()
