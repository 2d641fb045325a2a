"""Virtual detectors of a large 4D-STEM dataset on disk: dmotif (chunked) vs numpy (in memory).

Writes a synthetic TMD dataset (default 256 × 256 scan of 128 × 128 float32 patterns, 4 GiB,
uncompressed zarr) chunk by chunk, then in separate subprocesses (so that peak RSS is each
method's own, ``getrusage(RUSAGE_SELF).ru_maxrss`` of the child):

- ``numpy``: the baseline — read the whole array into memory, then the explicit masked sum;
- ``adf``, ``com``, ``icom``: dmotif's chunked virtual detectors of the same store;
- ``radial``, ``zernike``: dmotif's diffraction features of every pattern (ring/angular
  descriptors; Zernike moments, n_max 10, rotation-invariant, patterns binned to 64²);
- ``pipeline``: ``dmotif.run(..., detector="adf")`` end to end (embedded LocalCluster; the
  peak RSS is the client process's, the workers are separate processes).

It prints a table (time, throughput, ratio to numpy, peak RSS), checks that dmotif's ADF equals
the numpy masked sum, and measures accuracy against the truth: Pearson of the virtual ADF /
iCoM with the projected potential, the ARI of the pipeline's motifs against the true column
labels (atoms matched within 2 scan steps), and the ARI of k-means with the true k on the ADF
intensity and on each kind of diffraction features at the true atom positions.
The store is deleted at the end unless ``--keep``.

Usage: ``python benchmarks/bench_fourd.py [--scan 256] [--k 128] [--dir /tmp]``
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Time this checkout's dmotif, not an installed one.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED = 7
DOSE = 2.0e4


def sample(scan: int, k: int):
    from dmotif.synthetic.stem4d import fourd

    return fourd("tmd", size=scan, k_size=k, dose=DOSE, chunks=32, seed=SEED)


def write(path: str, scan: int, k: int) -> None:
    import dask
    import zarr

    data = sample(scan, k).data
    out = zarr.create_array(path, shape=data.shape, chunks=data.data.chunksize,
                            dtype="float32", compressors=None, overwrite=True)
    with dask.config.set(num_workers=2):
        data.data.store(out, lock=False)
    meta = {"center": list(data.attrs["center"]), "k_pixel_size": data.attrs["k_pixel_size"],
            "bf_radius": data.attrs["bf_radius"]}
    Path(path + ".json").write_text(json.dumps(meta))


def run(method: str, path: str, out: str) -> None:
    """One method in this (child) process; the result goes to ``out`` (.npy)."""
    t = time.perf_counter()
    meta = json.loads(Path(path + ".json").read_text())
    center, kps, radius = meta["center"], meta["k_pixel_size"], meta["bf_radius"]
    inner, outer = 1.1 * radius * kps, 3.0 * radius * kps
    if method == "numpy":
        import zarr

        data = zarr.open_array(path, mode="r")[...]
        ky, kx = data.shape[2:]
        r = np.hypot(np.arange(ky)[:, None] - center[0], np.arange(kx)[None, :] - center[1])
        mask = ((r >= inner / kps) & (r < outer / kps)).astype(np.float32)
        result = np.tensordot(data, mask, axes=((2, 3), (0, 1)))
    else:
        import dmotif

        data = dmotif.open_4dstem(path, scan_pixel_size=0.015, k_pixel_size=kps, center=center)
        if method == "pipeline":
            res = dmotif.run(path, out + ".zarr", detector="adf", workers=2,
                             config={"pixel_size": 0.015})
            atoms = res.atoms.compute()
            result = np.c_[atoms.y.values, atoms.x.values, atoms.label.values]
        elif method in ("radial", "zernike"):
            result = dmotif.diffraction_features(data, kind=method).values
        else:
            kw = {"inner": inner, "outer": outer} if method == "adf" else {}
            result = dmotif.virtual_image(data, detector=method, **kw).values
    np.save(out, result)
    # The child's own peak: RUSAGE_CHILDREN in the parent would keep the maximum of all children.
    Path(out + ".json").write_text(json.dumps({
        "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "seconds": time.perf_counter() - t}))


def child(method: str, path: str, out: str) -> tuple[float, float, float]:
    """Run ``method`` in a fresh process; return (work seconds, process seconds, peak GiB)."""
    t = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", method, "--path", path, "--out", out],
                   check=True)
    seconds = time.perf_counter() - t
    report = json.loads(Path(out + ".json").read_text())
    return report["seconds"], seconds, report["rss"] / 2**20


def accuracy(scan: int, k: int, adf: np.ndarray, icom: np.ndarray,
             feats: dict[str, np.ndarray], run: np.ndarray) -> dict:
    from scipy.spatial import cKDTree
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    s = sample(scan, k)
    pot = s.potential.values[0]
    atoms = s.atoms
    iy = np.clip(np.rint(atoms.y.values).astype(int), 0, scan - 1)
    ix = np.clip(np.rint(atoms.x.values).astype(int), 0, scan - 1)
    labels = atoms.label.values
    n = len(np.unique(labels))
    at = {"adf": adf[0][iy, ix][:, None]}
    for name, f in feats.items():
        x = f.reshape(scan, scan, -1)[iy, ix]
        at[name] = (x - x.mean(0)) / (x.std(0) + 1e-12)
    d, j = cKDTree(np.c_[atoms.y.values, atoms.x.values]).query(run[:, :2])
    found = d < 2.0
    out = {
        "pipeline_ari": float(adjusted_rand_score(labels[j[found]], run[found, 2])),
        "pipeline_atoms_matched": f"{int(found.sum())} of {labels.size} true",
        "pipeline_motifs": int(run[:, 2].max() + 1),
        "pearson_adf_potential": float(np.corrcoef(adf[0].ravel(), pot.ravel())[0, 1]),
        "pearson_icom_potential": float(np.corrcoef(icom[0].ravel(), pot.ravel())[0, 1]),
    }
    for name, x in at.items():
        pred = KMeans(n, n_init=10, random_state=0).fit_predict(x)
        out[f"ari_kmeans_{name}_at_truth"] = float(adjusted_rand_score(labels, pred))
    return {**out, "n_atoms": int(labels.size), "labels": np.bincount(labels).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scan", type=int, default=256)
    ap.add_argument("--k", type=int, default=128)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--child")
    ap.add_argument("--path")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        run(args.child, args.path, args.out)
        return
    work = Path(tempfile.mkdtemp(prefix="bench_fourd_", dir=args.dir))
    path = str(work / "data.zarr")
    try:
        t = time.perf_counter()
        write(path, args.scan, args.k)
        gib = args.scan**2 * args.k**2 * 4 / 2**30
        on_disk = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 2**30
        print(f"wrote {args.scan}² × {args.k}² float32 ({gib:.2f} GiB, {on_disk:.2f} GiB on "
              f"disk) in {time.perf_counter() - t:.0f} s")
        rows = {}
        for method in ("adf", "com", "icom", "radial", "zernike", "pipeline", "numpy"):
            rows[method] = child(method, path, str(work / f"{method}.npy"))
        res = {m: np.load(work / f"{m}.npy") for m in rows}
        same = np.allclose(res["adf"][0], res["numpy"], rtol=1e-4)
        base = rows["numpy"][0]
        n = args.scan**2
        # Work time excludes interpreter start and imports (numba JIT is included).
        print(f"\n{'method':<10}{'work s':>8}{'process s':>11}{'patterns/s':>12}{'GiB/s':>8}"
              f"{'speed vs numpy':>16}{'peak RSS GiB':>14}")
        for m, (sec, total, rss) in rows.items():
            print(f"{m:<10}{sec:8.1f}{total:11.1f}{n / sec:12.0f}{gib / sec:8.2f}"
                  f"{base / sec:16.2f}{rss:14.2f}")
        print(f"\ndmotif ADF == numpy masked sum (rtol 1e-4): {same}")
        acc = accuracy(args.scan, args.k, res["adf"], res["icom"],
                       {m: res[m] for m in ("radial", "zernike")}, res["pipeline"])
        print(json.dumps(acc, indent=1))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
