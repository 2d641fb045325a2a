"""Zernike features of ~100k atoms: dmotif vs motif-learn's ``ZPs`` vs mahotas, same data.

dmotif computes patches and features fused per tile from the image; motif-learn gets the very
same patches (cut by dmotif, not timed) and multiplies them by its polynomials; mahotas runs
its per-patch ``zernike_moments`` on a subset (it is ~1000× slower) and its rate is
extrapolated. Every method runs in its own subprocess, so its peak memory (RSS) is its own.
Deviations are measured after fitting one scale per (n, m), as the normalisations differ.

Run: ``python benchmarks/bench_zernike.py [--frames 3] [--size 2560] [--mahotas 1500]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RADIUS, N_MAX = 10, 10


def _rss_mb() -> float:
    """Peak RSS of this process image (VmHWM; ``ru_maxrss`` would include the forking parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _timed(fn):
    """``fn()``, its wall time and the CPU time of this process (all threads) it took."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def _load(work: Path):
    import xarray as xr

    image = np.load(work / "image.npy", mmap_mode="r")
    table = np.load(work / "atoms.npz")
    return image, xr.Dataset({k: ("atom", table[k]) for k in ("frame", "y", "x")})


def run_dmotif(work: Path, rotinv: bool) -> dict:
    import dmotif
    from dmotif._image import as_image_stack

    image, atoms = _load(work)
    stack = as_image_stack(np.asarray(image), chunks=1024).persist()
    # compile (or load) the numba kernels and the cached basis outside the timing
    dmotif.zernike_features(stack, atoms.isel(atom=slice(0, 10)), radius=RADIUS, n_max=N_MAX,
                            rotinv=rotinv).compute()
    base = _rss_mb()
    feats, dt, cpu = _timed(lambda: dmotif.zernike_features(stack, atoms, radius=RADIUS,
                                                            n_max=N_MAX, rotinv=rotinv).values)
    np.save(work / f"dmotif_{int(rotinv)}.npy", feats)
    return {"seconds": dt, "cpu": cpu, "n": len(feats), "peak_mb": _rss_mb(), "input_mb": base}


def run_mtflearn(work: Path) -> dict:
    from mtflearn.features import ZPs

    patches = np.load(work / "patches.npy")
    base = _rss_mb()
    zm, dt, cpu = _timed(lambda: ZPs(n_max=N_MAX, size=2 * RADIUS + 1).transform(patches))
    np.save(work / "mtflearn.npy", zm.data)
    np.save(work / "mtflearn_nm.npy", np.stack([zm.n, zm.m]))
    return {"seconds": dt, "cpu": cpu, "n": len(patches), "peak_mb": _rss_mb(),
            "input_mb": base}


def run_mahotas(work: Path, count: int) -> dict:
    import mahotas

    patches = np.load(work / "patches.npy", mmap_mode="r")[:count].astype(np.float64)
    base = _rss_mb()
    out, dt, cpu = _timed(lambda: np.array([
        mahotas.features.zernike_moments(p, RADIUS, degree=N_MAX, cm=(RADIUS, RADIUS))
        for p in patches
    ]))
    np.save(work / "mahotas.npy", out)
    return {"seconds": dt, "cpu": cpu, "n": len(out), "peak_mb": _rss_mb(), "input_mb": base}


def _child(method: str, work: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, __file__, "--child", method, "--work", str(work), *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _scaled_deviation(ours: np.ndarray, ref: np.ndarray) -> float:
    """Max |s·ours − ref| / max |ref| after the least-squares scale s of every column."""
    scale = (ours * ref).sum(0) / np.maximum((ours * ours).sum(0), 1e-300)
    return float(np.abs(ours * scale - ref).max() / np.abs(ref).max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--size", type=int, default=2560)
    ap.add_argument("--mahotas", type=int, default=1500, help="patches given to mahotas")
    ap.add_argument("--child")
    ap.add_argument("--work")
    args = ap.parse_args()
    if args.child:
        work = Path(args.work)
        runners = {"dmotif": lambda: run_dmotif(work, True),
                   "dmotif-oriented": lambda: run_dmotif(work, False),
                   "mtflearn": lambda: run_mtflearn(work),
                   "mahotas": lambda: run_mahotas(work, args.mahotas)}
        print(json.dumps(runners[args.child]()))
        return

    import dmotif

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        s = dmotif.synthetic.tmd(size=args.size, frames=args.frames, seed=0)
        image = s.image.values
        image = image - image.min() + 0.1  # mahotas ignores pixels <= 0: keep all positive
        np.save(work / "image.npy", image)
        np.savez(work / "atoms.npz", **{k: s.atoms[k].values for k in ("frame", "y", "x")})
        patches = dmotif.extract_patches(image, s.atoms, radius=RADIUS).values
        np.save(work / "patches.npy", patches.astype(np.float64))
        n = len(patches)
        print(f"{n} atoms, {args.frames} frame(s) of {args.size}², radius {RADIUS}, "
              f"n_max {N_MAX}; {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f} before the runs: on a shared machine the wall-clock "
              "rates are noisy, atoms per CPU-second much less so")
        rows = {m: _child(m, work, ["--mahotas", str(args.mahotas)])
                for m in ("dmotif", "dmotif-oriented", "mtflearn", "mahotas")}

        ours = np.load(work / "dmotif_1.npy").astype(np.float64)
        oriented = np.load(work / "dmotif_0.npy").astype(np.float64)
        ref = np.load(work / "mtflearn.npy")
        n_ref, m_ref = np.load(work / "mtflearn_nm.npy")
        basis = dmotif.zernike_basis(RADIUS, n_max=N_MAX)
        cols = [int(np.flatnonzero((n_ref == a) & (m_ref == (-b if p == "sin" else b)))[0])
                for a, b, p in zip(basis.n.values, basis.m.values, basis.part.values,
                                   strict=True)]
        dev_mtf = _scaled_deviation(oriented, ref[:, cols])
        maho = np.load(work / "mahotas.npy")
        k = len(maho)
        dev_maho = _scaled_deviation(np.abs(ours[:k]) / ours[:k, :1], maho)

    rate = {m: r["n"] / r["seconds"] for m, r in rows.items()}
    cpu_rate = {m: r["n"] / r["cpu"] for m, r in rows.items()}
    dev = {"dmotif": "-", "dmotif-oriented": f"{dev_mtf:.1e} vs mtflearn",
           "mtflearn": "(reference)", "mahotas": f"{dev_maho:.1e} vs dmotif"}
    what = {"dmotif": "image → patches + 36 rotinv features",
            "dmotif-oriented": "image → patches + 66 real coefficients",
            "mtflearn": "given patches → 66 coefficients",
            "mahotas": f"given patches → 36 magnitudes ({k} patches)"}
    print(f"{'method':<16} {'atoms/s':>11} {'vs dmotif':>10} {'atoms/CPU-s':>12} {'vs dmotif':>10} "
          f"{'peak MB':>8} {'+input MB':>9}  {'max deviation':<20} what")
    for m, r in rows.items():
        print(f"{m:<16} {rate[m]:>11,.0f} {rate[m] / rate['dmotif']:>10.4f} "
              f"{cpu_rate[m]:>12,.0f} {cpu_rate[m] / cpu_rate['dmotif']:>10.4f} "
              f"{r['peak_mb']:>8.0f} {r['peak_mb'] - r['input_mb']:>9.0f}  {dev[m]:<20} {what[m]}")
    print(f"load average after the runs: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
