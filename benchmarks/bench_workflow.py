"""Benchmark the everyday workflow: the fixed cost of ``dmotif run`` and many files in one run.

Data: synthetic TMD images (``dmotif.synthetic.tmd``, default noise) saved as ``.npy`` files:
one 1024² image, and ``max(--counts)`` images of 512² (frames of one seeded stack, one file
each), plus the same 512² frames as one stack file.

Each case is one ``dmotif run`` in a subprocess, as a user types it. Per case the table prints:
files, atoms, the wall time of the command (interpreter start to exit), the sum of the stage
times the run recorded (``dmotif_timings``), their ratio (the fixed cost: imports, cluster start
and stop, opening and hashing the inputs, writing the store), and the wall time against the run
of one 512² file (many files in one run should cost far less than one run per file); a second
table gives each case's seconds per stage. Last, the run of the largest count of files is
compared atom by atom with the run of their stack: the same positions and the same labels are
expected, since the motifs are learned across files.

Usage: ``python benchmarks/bench_workflow.py [--counts 1 10 100] [--big 1024] [--size 512]
[--processes | --threads] [--keep DIR]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    """Subprocesses import this source tree, not an installed copy."""
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def make_data(root: Path, size: int, count: int, big: int) -> None:
    """The 1024² image, ``count`` files of ``size``² and their stack, under ``root``."""
    from dmotif import synthetic

    if not (root / "big.npy").exists():
        np.save(root / "big.npy", synthetic.tmd(size=big, seed=1).image.values[0])
    frames = synthetic.tmd(size=size, frames=count, seed=0).image.values
    files = root / "files"
    files.mkdir(exist_ok=True)
    for i, frame in enumerate(frames):
        np.save(files / f"scan{i:04d}.npy", frame)
    np.save(root / "stack.npy", frames)


def timed_run(inputs: list[Path], output: Path, mode: str | None) -> dict[str, float]:
    """``dmotif run`` in a subprocess: its wall time, stage times and atom count."""
    import dmotif

    cmd = [sys.executable, "-m", "dmotif.cli", "run", *map(str, inputs), "-o", str(output),
           "--overwrite", *([f"--{mode}"] if mode else [])]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=_env(), check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    res = dmotif.open_result(output)
    timings = res.attrs["dmotif_timings"]
    return {"wall": wall, "stages": sum(timings.values()), "atoms": res.atoms.sizes["atom"],
            "timings": timings}


def same_labels(a: Path, b: Path) -> str:
    """Whether two results hold the same atoms with the same labels."""
    import dmotif

    tables = []
    for path in (a, b):
        atoms = dmotif.open_result(path).atoms
        tables.append(np.column_stack([atoms[v].values for v in ("frame", "y", "x", "label")]))
    if tables[0].shape != tables[1].shape:
        return f"no: {len(tables[0])} vs {len(tables[1])} atoms"
    differ = int((tables[0] != tables[1]).any(axis=1).sum())
    return "yes" if differ == 0 else f"no: {differ} atoms differ"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--big", type=int, default=1024)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--processes", dest="mode", action="store_const", const="processes")
    mode.add_argument("--threads", dest="mode", action="store_const", const="threads")
    parser.add_argument("--keep", type=Path, help="Folder for the data and results.")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="dmotif-bench-workflow-"))
    root.mkdir(parents=True, exist_ok=True)
    make_data(root, args.size, max(args.counts), args.big)
    files = sorted((root / "files").glob("*.npy"))
    rows = [(f"1 image {args.big}²", 1,
             timed_run([root / "big.npy"], root / "big.dmotif.zarr", args.mode))]
    for n in sorted(args.counts):
        rows.append((f"{n} × {args.size}² files", n,
                     timed_run(files[:n], root / f"files{n}.dmotif.zarr", args.mode)))
    largest = max(args.counts)
    rows.append((f"{largest} × {args.size}² as a stack", 1,
                 timed_run([root / "stack.npy"], root / "stack.dmotif.zarr", args.mode)))

    one = next((r for label, n, r in rows if n == 1 and "files" in label), None)
    print(f"dmotif run, {args.mode or 'automatic'} cluster; data in {root}")
    print(f"{'case':<26}{'files':>6}{'atoms':>9}{'wall s':>9}{'stages s':>10}"
          f"{'wall/stages':>13}{'wall/one file':>15}")
    for label, n, r in rows:
        versus = f"{r['wall'] / one['wall']:.2f}" if one else "-"
        print(f"{label:<26}{n:>6}{r['atoms']:>9}{r['wall']:>9.2f}{r['stages']:>10.2f}"
              f"{r['wall'] / r['stages']:>13.2f}{versus:>15}")
    stages = list(rows[0][2]["timings"])
    print("\nseconds per stage")
    print(f"{'case':<26}" + "".join(f"{name:>10}" for name in stages))
    for label, _, r in rows:
        print(f"{label:<26}" + "".join(f"{r['timings'].get(name, 0.0):>10.2f}"
                                       for name in stages))
    print(f"{largest} files vs their stack, same atoms and labels: "
          f"{same_labels(root / f'files{largest}.dmotif.zarr', root / 'stack.dmotif.zarr')}")


if __name__ == "__main__":
    main()
