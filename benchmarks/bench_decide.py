"""Time the motif decision on up to 10⁶ atoms: merge-only against merge + rare-motif search.

Usage: ``python benchmarks/bench_decide.py [--sizes 10000 100000 1000000]``

The data stand in for the PCA scores of an image: 10-D unit Gaussian classes, three column
types (60 %, 30 %, 10 % of the atoms) 12 noise units apart and a rare type of 12 atoms 9 units
from the largest, which the candidates (six beads per type, cut along a noise direction, as a
layout cuts a motif) do not isolate. ``merge`` is the decision before the rare-motif search
(the candidates merged under their pooled spread); ``decide`` is the whole decision
(``dmotif.motifs.clustering._decide_motifs``): the same merge, the trimmed noise, HDBSCAN on
each motif's tail and the second merge. Reported per size: seconds, their ratio, the peak
resident memory of the process, the motifs found and the ARI against the truth.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

# Benchmark the source tree this script sits in, not an installed dmotif.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DIM = 10
RARE = 12


def scores(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features, truth and bead candidates of ``n`` atoms."""
    rng = np.random.default_rng(seed)
    sizes = np.floor(np.array([0.6, 0.3, 0.1]) * (n - RARE)).astype(int)
    sizes[0] += n - RARE - sizes.sum()
    truth = np.repeat(np.arange(4), np.r_[sizes, RARE])
    centres = np.zeros((4, DIM))
    centres[1, 0] = centres[2, 1] = 12.0
    centres[3, 2] = 9.0
    x = centres[truth] + rng.normal(size=(n, DIM))
    # Six beads per type along the 4th axis; the rare atoms fall into the beads of type 0.
    beads = np.digitize(x[:, 3], [-1.0, -0.4, 0.0, 0.4, 1.0])
    raw = np.where(truth == 3, 0, truth) * 6 + beads
    return x, truth, raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    args = parser.parse_args()
    from sklearn.metrics import adjusted_rand_score

    from dmotif.motifs import clustering

    test = {"max_overlap": 0.01, "alpha": 1e-3, "min_contrast": 0.1}
    clustering._decide_motifs(*scores(5_000)[::2], seed=0, **test)  # warm-up: imports
    print("atoms | merge s | decide s | ratio | peak MB | motifs (merge / decide) | ARI "
          "(merge / decide)")
    print("--- | --- | --- | --- | --- | --- | ---")
    for n in args.sizes:
        x, truth, raw = scores(n)
        t0 = time.perf_counter()
        merged = clustering._settle(x, raw, None, test)
        t1 = time.perf_counter()
        decided, _ = clustering._decide_motifs(x, raw, seed=0, **test)
        t2 = time.perf_counter()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n} | {t1 - t0:.2f} | {t2 - t1:.2f} | {(t2 - t1) / (t1 - t0):.2f} | {peak:.0f} | "
              f"{merged.max() + 1} / {decided.max() + 1} | "
              f"{adjusted_rand_score(truth, merged):.4f} / "
              f"{adjusted_rand_score(truth, decided):.4f}", flush=True)


if __name__ == "__main__":
    main()
