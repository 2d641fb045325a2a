"""The FR layout of many atoms: a seeded sample of landmarks laid out in full, the other atoms
placed among them (DESIGN.md §1.5).

The landmarks get the whole two-stage layout of :func:`dmotif.fr_layout`; every other atom is
matched to its nearest landmarks in feature space (exact kNN up to ``_knn.EXACT_MAX``
landmarks, beam search over their NN-descent graph above) and starts at the weighted mean of
their positions, then relaxes for a few epochs of the last stage's forces among the fixed
landmarks. Placed atoms feel only the landmarks, so they are placed block by block, on the
workers of a cluster, with streams drawn from their atom index: the result does not depend on
the blocks, threads or workers.
"""

from __future__ import annotations

from collections.abc import Callable

import dask
import numpy as np

from .._random import as_generator
from .._shared import compute, share
from . import _knn
from ._fr_kernels import place_epochs

__all__ = ["PLACE_BEAM", "PLACE_CHUNK", "landmark_layout"]

#: Rows per dask task when atoms are placed among the landmarks.
PLACE_CHUNK = 65_536
#: Beam of the landmark queries that place atoms. On the PCA scores of a 1.39 M-atom TMD stack
#: (200 000 landmarks) a beam of 10 finds 0.955 of the 9 nearest landmarks, a beam of 16 0.983
#: at 1.44× the time (32: 0.998 at about twice the time of 16). A placed atom starts at the
#: weighted mean of its neighbours and then relaxes among them, so a missed ninth neighbour
#: barely moves it: on the 4-frame stack (347 k atoms, 3 seeds) beams of 10 and 16 give the
#: same ARI (0.986-0.987) and the same share of single chalcogens and antisites in their own
#: motifs.
PLACE_BEAM = 10


def _place_block(
    block: tuple[np.ndarray, np.ndarray],
    ref,
    y_land: np.ndarray,
    *,
    n_neighbors: int,
    metric: str,
    params: np.ndarray,
    n_epochs: int,
    learning_rate: float,
    negative_samples: int,
    seed: np.uint64,
) -> np.ndarray:
    """Place one block ``(features, atom ids)`` among the fixed landmarks (``ref``: index or
    features)."""
    x, atom_ids = block
    k = n_neighbors - 1
    if isinstance(ref, np.ndarray):
        ind, dist = _knn.exact_knn(x, k, metric, ref=ref)
    else:
        ind, dist = _knn.query_index(ref, x, k, PLACE_BEAM)
    w = _knn.membership(dist, n_neighbors)
    # Sorted neighbour rows let the kernel skip neighbours among negative samples quickly.
    order = np.argsort(ind, axis=1, kind="stable")
    ind = np.take_along_axis(ind, order, axis=1)
    w = np.take_along_axis(w, order, axis=1)
    return place_epochs(
        y_land, ind, w, atom_ids, params, n_epochs, learning_rate, negative_samples, seed
    )


def landmark_layout(
    x: np.ndarray,
    n_land: int,
    relax: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
    *,
    n_neighbors: int,
    metric: str,
    params: np.ndarray,
    placement_epochs: int,
    learning_rate: float,
    negative_samples: int,
    seed: int,
    place_seed: np.uint64,
) -> np.ndarray:
    """Positions (N, 2) of the rows of ``x``: ``n_land`` seeded landmarks laid out by ``relax``,
    the others placed among them.

    Parameters
    ----------
    x : numpy.ndarray
        Features (N, D), float64, at the layout's resolution; ``N > n_land``.
    n_land : int
        Landmarks, drawn without replacement from the stream ``(seed, 1)``.
    relax : callable
        ``relax(x_land, ind, dist)``: the full layout of the landmarks from their kNN result.
    n_neighbors, metric
        The kNN graph's size and metric (the landmarks' graph and each placed atom's).
    params : numpy.ndarray
        The ``(n, m, alpha, beta)`` of the stage whose forces place an atom (the last one).
    placement_epochs, learning_rate, negative_samples
        Epochs, start step and negative samples per edge of the placement.
    seed : int
        The layout's seed (landmark sample and kNN index).
    place_seed : numpy.uint64
        Seed of the placement's negative samples.

    Returns
    -------
    numpy.ndarray
        float64 (N, 2); a landmark's row is its position in the landmarks' layout.
    """
    n_atoms = x.shape[0]
    land = np.sort(as_generator(seed, 1).choice(n_atoms, n_land, replace=False))
    x_land = x[land]
    if n_land <= _knn.EXACT_MAX:
        ind, dist = _knn.exact_knn(x_land, n_neighbors, metric)
        ref = x_land
    else:
        ref = _knn.landmark_index(x_land, n_neighbors, metric, seed)
        ind, dist = ref.neighbor_graph
    y_land = relax(x_land, ind, dist)
    is_land = np.zeros(n_atoms, dtype=bool)
    is_land[land] = True
    rest = np.flatnonzero(~is_land)
    blocks = [(x[rest[a : a + PLACE_CHUNK]], rest[a : a + PLACE_CHUNK])
              for a in range(0, rest.size, PLACE_CHUNK)]
    # On a cluster the landmark index (hundreds of MB at 200 000 landmarks) goes to each
    # worker once, and the blocks straight to the workers.
    ref_s, y_land_s = share(ref), share(y_land)
    place = dask.delayed(_place_block, pure=True)
    placed = compute([
        place(share(block), ref_s, y_land_s, n_neighbors=n_neighbors, metric=metric,
              params=params, n_epochs=placement_epochs, learning_rate=learning_rate,
              negative_samples=negative_samples, seed=place_seed)
        for block in blocks
    ])
    y = np.empty((n_atoms, 2), dtype=np.float64)
    y[land] = y_land
    y[rest] = np.concatenate(placed)
    return y
