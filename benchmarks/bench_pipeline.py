"""Benchmark the whole pipeline (``dmotif run``) as the stack grows, and worker scaling.

Pipeline mode (default): for synthetic TMD stacks of 1, 4 and 16 frames (``--size``² pixels
each, default 4096), run ``dmotif run`` in a subprocess on an embedded LocalCluster of
``--run-workers`` processes and print, per stack: atoms, seconds per stage (from the store's
``dmotif_timings``), atoms/s per stage and end to end, µs per atom, and two peak memories:

- ``run RSS``: peak resident set of the ``dmotif run`` process itself, read as
  ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` by a small wrapper process that only waits for it;
- ``tree RSS``: the largest sum of resident sets over the whole process tree (the run, its
  nanny and worker processes, which are grandchildren), sampled with psutil every 0.2 s.

The baseline of this table is linearity: time per atom and peak memory of 16 frames against 4
frames (a linear pipeline keeps µs/atom flat; a tiled one keeps the tree RSS far below 4×).

Worker mode (``--workers 1 2``): on one stack of the largest ``--frames``, time detection and
Zernike features on a LocalCluster of 1 and of 2 worker processes (one thread each, a warm-up on
a small crop first so that numba compilation is not timed) and print the throughput ratio.

Usage: ``python benchmarks/bench_pipeline.py [--size 4096] [--frames 1 4 16]
[--run-workers 2] [--workers 1 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
STAGES = ("detect", "features", "pca", "layout", "cluster", "hierarchy")


def _env() -> dict[str, str]:
    """Subprocesses import this source tree, not an installed copy."""
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


_SYNTH = """
import sys
from dmotif import synthetic
size, frames, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
synthetic.save(synthetic.tmd(size=size, frames=frames, seed=0), path)
"""

# Waits for the run and reports the run process's own peak RSS (KiB on Linux).
_WRAP = """
import json, resource, subprocess, sys
rc = subprocess.call(sys.argv[1:])
print(json.dumps({"rc": rc, "maxrss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""

_CLI = "from dmotif.cli import main; main()"


def make_stack(size: int, frames: int, path: Path) -> None:
    subprocess.run(_python(_SYNTH, str(size), str(frames), str(path)), env=_env(), check=True)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def run_pipeline(stack: Path, out: Path, workers: int) -> dict:
    """``dmotif run`` in a subprocess; wall time, peak RSS of the run and of its tree."""
    cmd = _python(_WRAP, *_python(_CLI, "run", str(stack), "-o", str(out),
                                  "--workers", str(workers), "--seed", "0"))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, _tree_rss(watched))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    report = json.loads(stdout.strip().splitlines()[-1])
    if report["rc"] != 0:
        raise RuntimeError(f"dmotif run failed on {stack}:\n{stderr[-3000:]}")
    import zarr

    attrs = zarr.open_group(str(out), mode="r").attrs.asdict()
    n_atoms = zarr.open_group(str(out), mode="r")["frame"].shape[0]
    return {"atoms": int(n_atoms), "timings": attrs["dmotif_timings"], "wall": wall,
            "run_rss": report["maxrss_kib"] * 1024, "tree_rss": peak}


_SCALING = """
import json, sys, time
import dmotif
from distributed import Client, LocalCluster
workers, path = int(sys.argv[1]), sys.argv[2]
with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                  dashboard_address=None) as cluster, Client(cluster):
    stack = dmotif.open_image(path)
    crop = stack.isel(frame=slice(0, 1), y=slice(0, 512), x=slice(0, 512))
    # every worker compiles (or loads from cache) the numba kernels before the clock starts
    for _ in range(workers):
        dmotif.zernike_features(crop, dmotif.detect_atoms(crop)).compute()
    t0 = time.perf_counter()
    atoms = dmotif.detect_atoms(stack)
    dmotif.zernike_features(stack, atoms).compute()
    print(json.dumps({"atoms": atoms.sizes["atom"], "seconds": time.perf_counter() - t0}))
"""


def worker_scaling(stack: Path, workers: list[int]) -> None:
    rows = []
    for w in workers:
        out = subprocess.run(_python(_SCALING, str(w), str(stack)), env=_env(), check=True,
                             capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append((w, r["atoms"], r["seconds"], r["atoms"] / r["seconds"]))
    print("\ndetection + Zernike features on a LocalCluster (processes, 1 thread each)")
    print(f"{'workers':>7} {'atoms':>9} {'seconds':>8} {'atoms/s':>9} {'vs 1st':>7}")
    for w, n, s, rate in rows:
        print(f"{w:>7} {n:>9} {s:>8.1f} {rate:>9.0f} {rate / rows[0][3]:>6.2f}×")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096, help="frame edge in pixels")
    ap.add_argument("--frames", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--run-workers", type=int, default=2, help="workers of each dmotif run")
    ap.add_argument("--workers", type=int, nargs="+", default=None,
                    help="worker counts to compare for detection + features (e.g. 1 2)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        tmp = Path(tmp)
        if args.workers:
            stack = tmp / "stack.zarr"
            make_stack(args.size, max(args.frames), stack)
            worker_scaling(stack, args.workers)
            return
        results = {}
        for f in args.frames:
            stack = tmp / f"stack{f}.zarr"
            make_stack(args.size, f, stack)
            results[f] = run_pipeline(stack, tmp / f"out{f}.zarr", args.run_workers)
            print(f"{f} frames done: {results[f]['atoms']} atoms in {results[f]['wall']:.1f} s",
                  flush=True)

    print(f"\ndmotif run, synthetic TMD {args.size}² px per frame, "
          f"{args.run_workers} worker processes, {os.cpu_count()} cores")
    head = f"{'frames':>6} {'atoms':>9} " + " ".join(f"{s[:6]:>7}" for s in STAGES)
    print(head + f" {'stages':>7} {'wall':>7} {'atoms/s':>8} {'µs/atom':>8} "
          f"{'run RSS':>8} {'tree RSS':>9}")
    for f, r in results.items():
        t = r["timings"]
        total = sum(t[s] for s in STAGES)
        print(f"{f:>6} {r['atoms']:>9} " + " ".join(f"{t[s]:>7.1f}" for s in STAGES)
              + f" {total:>7.1f} {r['wall']:>7.1f} {r['atoms'] / r['wall']:>8.0f}"
              f" {1e6 * r['wall'] / r['atoms']:>8.1f} {r['run_rss'] / 2**20:>6.0f}MB"
              f" {r['tree_rss'] / 2**20:>7.0f}MB")
    print("\natoms/s per stage")
    print(f"{'frames':>6} " + " ".join(f"{s[:9]:>10}" for s in STAGES))
    for f, r in results.items():
        print(f"{f:>6} " + " ".join(f"{r['atoms'] / r['timings'][s]:>10.0f}" for s in STAGES))
    if 4 in results and 16 in results:
        a, b = results[4], results[16]
        print(f"\n16 vs 4 frames: atoms ×{b['atoms'] / a['atoms']:.2f}, "
              f"tree RSS ×{b['tree_rss'] / a['tree_rss']:.2f}, "
              f"run RSS ×{b['run_rss'] / a['run_rss']:.2f}, "
              f"µs/atom ×{(b['wall'] / b['atoms']) / (a['wall'] / a['atoms']):.2f}")


if __name__ == "__main__":
    main()
