"""Time dmotif's FR layout against motif-learn's ForceGraph8 and umap-learn on the same data.

Usage: ``python benchmarks/bench_layout.py [--sizes 5000 20000 ...] [--fg8-max N]
[--full-max N] [--knn]``

Each (method, size) runs in a fresh process after small warm-up runs on both kNN paths (so
numba compilation and library start-up are not timed), on well-separated 20-D Gaussian blobs
with six classes of unequal sizes (the smallest 2 %) standing in for reduced Zernike features.
Reported: wall time of the layout, peak resident memory of the process, and the ARI against the
truth of HDBSCAN labels of the layout (``dmotif.cluster``, the same for every method) and of the
motifs decided in the features (``dmotif.cluster(layout, features=x)``, as a run labels them).
``dmotif`` is the default layout (above 20 000 points, landmarks and placement);
``dmotif-full`` lays out every point (``landmarks=N``), up to ``--full-max`` points.
umap-learn runs with the same kNN size, metric and number of epochs, without a random_state
(its parallel mode).

With ``--knn`` only the layout's kNN graph is timed (10 neighbours, correlation): dmotif's
NN-descent against pynndescent, seeded on one thread (what dmotif used before) and unseeded in
parallel, each in a fresh process: cold (the first build, with numba compilation or cache
loading) and warm (a second build in the same process), and the recall of the 10 nearest on
2 000 sampled points against the exact kNN.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np

# Benchmark the source tree this script sits in, not an installed dmotif.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dmotif.embed.layout import LANDMARKS

SHARES = np.array([0.40, 0.25, 0.15, 0.10, 0.08, 0.02])
DIM = 20


def blobs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, (SHARES.size, DIM))
    sizes = np.floor(SHARES * n).astype(int)
    sizes[0] += n - sizes.sum()
    truth = np.repeat(np.arange(SHARES.size), sizes)
    x = centres[truth] + rng.normal(0.0, 1.0, (n, DIM))
    return x.astype(np.float32), truth


def _layout(method: str, x: np.ndarray) -> np.ndarray:
    if method.startswith("dmotif"):
        import dmotif

        full = {"landmarks": x.shape[0]} if method == "dmotif-full" else {}
        return dmotif.fr_layout(x, metric="correlation", seed=0, **full).values
    if method == "fg8":
        from mtflearn.manifold import ForceGraph8

        model = ForceGraph8(n_neighbors=10, metric="correlation", num_iterations=100)
        model.fit(x)
        return model.y
    import umap

    model = umap.UMAP(n_neighbors=10, metric="correlation", n_epochs=100, init="pca")
    return model.fit_transform(x)


def _run(method: str, n: int, queue: mp.Queue) -> None:
    import contextlib
    import io

    import dmotif

    warnings.simplefilter("ignore")
    with contextlib.redirect_stdout(io.StringIO()):
        # Compile or load numba kernels and start BLAS outside the timing, on both kNN paths
        # (exact below dmotif's 12 000 and umap's 4 096 points, approximate above); umap's
        # approximate kNN is pynndescent's, which compiles anew in every process.
        for size in (2000,) if method == "fg8" else (2000, 13000):
            _layout(method, blobs(size, seed=1)[0])
        x, truth = blobs(n)
        start = time.perf_counter()
        y = _layout(method, x)
        wall = time.perf_counter() - start
    from sklearn.metrics import adjusted_rand_score

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    labels = dmotif.cluster(y).values
    motifs = dmotif.cluster(y, features=x).values
    queue.put((wall, peak, adjusted_rand_score(truth, labels), float((labels < 0).mean()),
               adjusted_rand_score(truth, motifs)))


KNN_METHODS = ("dmotif", "pynndescent-1", "pynndescent")


def _knn_graph(method: str, x: np.ndarray) -> np.ndarray:
    from dmotif.embed import _knn

    if method == "dmotif":
        return _knn.approx_knn(x, 10, "correlation", 0)[0]
    from pynndescent import NNDescent

    seeded = dict(random_state=0, n_jobs=1) if method == "pynndescent-1" else {}
    index = NNDescent(x, n_neighbors=10, metric="correlation", low_memory=True, **seeded)
    return index.neighbor_graph[0]


def _run_knn(method: str, n: int, queue: mp.Queue) -> None:
    from dmotif.embed import _knn

    warnings.simplefilter("ignore")
    x, _ = blobs(n)
    times = []
    for _ in range(2):
        start = time.perf_counter()
        ind = _knn_graph(method, x)
        times.append(time.perf_counter() - start)
    rows = np.random.default_rng(0).choice(n, 2000, replace=False)
    exact, _ = _knn.exact_knn(x[rows], 10, "correlation", ref=x)
    hits = (ind[rows][:, :, None] == exact[:, None, :]).any(axis=2).mean()
    queue.put((times[0], times[1], float(hits)))


def measure(method: str, n: int, target=_run) -> tuple[float, ...]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(method, n, queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{method} at N={n} failed (exit code {proc.exitcode})")
    return queue.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[5000, 20000, 50000, 200000, 1_000_000]
    )
    parser.add_argument("--fg8-max", type=int, default=50_000, help="ForceGraph8 is O(N²)")
    parser.add_argument("--umap-max", type=int, default=200_000)
    parser.add_argument("--full-max", type=int, default=200_000,
                        help="largest N laid out without landmarks")
    parser.add_argument("--knn", action="store_true", help="time the kNN graph only")
    args = parser.parse_args()
    if args.knn:
        knn_table(args.sizes)
        return
    header = (
        f"{'method':<12} {'N':>8} {'wall s':>8} {'peak MiB':>9} {'ARI':>6} {'unass.':>7} "
        f"{'ARI motifs':>11} {'÷ dmotif':>9}"
    )
    print(header)
    print("-" * len(header))
    for n in args.sizes:
        ours = measure("dmotif", n)
        rows = [("dmotif", ours)]
        for method, limit in (("dmotif-full", args.full_max), ("fg8", args.fg8_max),
                              ("umap", args.umap_max)):
            if method == "dmotif-full" and n <= LANDMARKS:
                continue  # the default already lays out every point
            rows.append((method, measure(method, n) if n <= limit else None))
        for method, res in rows:
            if res is None:
                print(f"{method:<12} {n:>8} {'skipped (size > limit)':>42}")
                continue
            wall, peak, ari, unassigned, ari_motifs = res
            speedup = wall / ours[0]
            print(
                f"{method:<12} {n:>8} {wall:>8.2f} {peak:>9.0f} {ari:>6.3f} "
                f"{100 * unassigned:>6.2f}% {ari_motifs:>11.3f} {speedup:>8.1f}×",
                flush=True,
            )


def knn_table(sizes: list[int]) -> None:
    header = (
        f"{'method':<14} {'N':>8} {'cold s':>8} {'warm s':>8} {'recall':>7} "
        f"{'warm ÷ dmotif':>14}"
    )
    print(header)
    print("-" * len(header))
    for n in sizes:
        ours = None
        for method in KNN_METHODS:
            cold, warm, recall = measure(method, n, _run_knn)
            ours = ours or warm
            print(
                f"{method:<14} {n:>8} {cold:>8.2f} {warm:>8.2f} {recall:>7.4f} "
                f"{warm / ours:>13.2f}×",
                flush=True,
            )


if __name__ == "__main__":
    main()
