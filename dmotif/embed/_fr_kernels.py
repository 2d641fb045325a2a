"""numba kernels of the force-relaxed layout: fuzzy kNN weights and the per-epoch forces.

Pure numpy/numba (no dask, no xarray). Every epoch is computed Jacobi-style: each node sums the
forces on itself from its own graph row at the positions of the previous epoch, then all nodes
move at once. A node's random stream depends only on (seed, epoch, node) and its sums run in a
fixed order, so the layout is bit-identical for any number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["fr_epochs", "fuzzy_weights", "place_epochs"]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
# Knuth's MMIX LCG constants.
_LCG_MUL = np.uint64(6364136223846793005)
_LCG_INC = np.uint64(1442695040888963407)
_CLIP = 4.0
# float32 constants keep the force arithmetic on float32 positions in float32 (6 % faster).
_F1 = np.float32(1.0)
_ONE = np.uint64(1)
_B63 = np.uint64(63)
_S6 = np.uint64(6)
_S52 = np.uint64(52)


@njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    # splitmix64 finaliser: a bijective avalanche of 64 bits.
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _stream(seed: np.uint64, epoch: np.int64, node: np.int64) -> np.uint64:
    """Start of the counter-based stream of one node in one epoch."""
    return _mix(_mix(seed ^ _mix(np.uint64(epoch) * _GOLDEN)) + np.uint64(node) * _GOLDEN)


@njit(cache=True, inline="always")
def _below(state: np.uint64, n: np.int64) -> np.int64:
    # Multiply-shift maps the top 32 random bits onto [0, n) without a division.
    return np.int64(((_mix(state) >> _S32) * np.uint64(n)) >> _S32)


@njit(cache=True, inline="always")
def _unit(state: np.uint64) -> float:
    """A uniform float in [0, 1) from the top 53 bits of the mixed state."""
    return np.float64(_mix(state) >> np.uint64(11)) * 1.1102230246251565e-16


@njit(cache=True, inline="always")
def _clip(v: float) -> float:
    if v > _CLIP:
        return _CLIP
    if v < -_CLIP:
        return -_CLIP
    return v


@njit(cache=True, inline="always")
def _pow_d2(d2: float, p: float) -> float:
    """``d ** p`` from the squared distance; multiplications for the usual even exponents."""
    if p == 0.0:
        return _F1
    if p == 2.0:
        return d2
    if p == 4.0:
        return d2 * d2
    return d2 ** (0.5 * p)


@njit(cache=True, inline="always")
def _bloom_hash(k: np.int64) -> np.uint64:
    """12 well-mixed bits of an index: 6 for each of two 64-bit masks."""
    return (np.uint64(k) * _GOLDEN) >> _S52


@njit(cache=True, inline="always")
def _in_sorted(indices: np.ndarray, lo: np.int64, hi: np.int64, k: np.int64) -> bool:
    while lo < hi:
        mid = (lo + hi) >> 1
        v = indices[mid]
        if v == k:
            return True
        if v < k:
            lo = mid + 1
        else:
            hi = mid
    return False


@njit(cache=True, parallel=True, nogil=True)
def fuzzy_weights(dists: np.ndarray, target: float, n_iter: int = 64) -> np.ndarray:
    """UMAP-style membership strengths of each point's neighbours (self excluded).

    ``dists`` holds, per row, the distances to the k nearest *other* points in increasing
    order. ρ is the first of them; σ is found by bisection so that
    ``Σ_j exp(-max(d_j - ρ, 0) / σ) = target``. Returns ``exp(-max(d - ρ, 0) / σ)``.
    """
    n, k = dists.shape
    out = np.empty((n, k), dtype=np.float64)
    for i in prange(n):
        rho = dists[i, 0]
        lo = 0.0
        hi = np.inf
        sigma = 1.0
        for _ in range(n_iter):
            total = 0.0
            for j in range(k):
                d = dists[i, j] - rho
                total += np.exp(-d / sigma) if d > 0.0 else 1.0
            if np.abs(total - target) < 1e-6:
                break
            if total > target:
                hi = sigma
                sigma = 0.5 * (lo + hi)
            else:
                lo = sigma
                sigma = 2.0 * sigma if hi == np.inf else 0.5 * (lo + hi)
        for j in range(k):
            d = dists[i, j] - rho
            out[i, j] = np.exp(-d / sigma) if d > 0.0 else 1.0
    return out


@njit(cache=True, inline="always")
def _node_force(
    i, yi0, yi1, y, row_idx, row_w, lo, hi, neg_pool, n_neg, pn, pm, alpha, beta, state
):
    """Attraction along the edges ``lo:hi`` of node i, repulsion from negative samples.

    Negative samples are drawn from ``neg_pool`` rows of ``y`` (all nodes, or the landmarks),
    skipping i itself and its graph neighbours; the node draws ``n_neg * Σw`` of them on
    average (stochastic rounding), as if each edge drew in proportion to its weight, and each
    counts ``deg / Σw`` times, so that the expected repulsion is the reference's ``n_neg``
    samples per edge.
    """
    f0 = 0.0
    f1 = 0.0
    w_sum = 0.0
    # Two 64-bit Bloom masks of the row: a sample passes both for ~4 % of non-neighbours, so
    # the mispredicted branches of the exact search (half the epoch time) are mostly skipped.
    m0 = np.uint64(0)
    m1 = np.uint64(0)
    for e in range(lo, hi):
        j = row_idx[e]
        dx = yi0 - y[j, 0]
        dy = yi1 - y[j, 1]
        f = alpha / (_F1 + _pow_d2(dx * dx + dy * dy, pn))
        f0 -= _clip(dx * f) * row_w[e]
        f1 -= _clip(dy * f) * row_w[e]
        w_sum += row_w[e]
        h = _bloom_hash(j)
        m0 |= _ONE << (h & _B63)
        m1 |= _ONE << (h >> _S6)
    r0 = 0.0
    r1 = 0.0
    count = np.int64(n_neg * w_sum + _unit(state))
    # The samples come from an LCG seeded by the node's stream: its top 32 bits are uniform
    # enough to pick an index, at one multiply-add instead of a splitmix64 per sample.
    lcg = _mix(state + _GOLDEN)
    pool = np.uint64(neg_pool)
    for _ in range(count):
        lcg = lcg * _LCG_MUL + _LCG_INC
        k = np.int64(((lcg >> _S32) * pool) >> _S32)
        if k == i:
            continue
        h = _bloom_hash(k)
        if (m0 >> (h & _B63)) & (m1 >> (h >> _S6)) & _ONE and _in_sorted(row_idx, lo, hi, k):
            continue
        dx = yi0 - y[k, 0]
        dy = yi1 - y[k, 1]
        f = beta / (_F1 + _pow_d2(dx * dx + dy * dy, pm))
        r0 += _clip(dx * f)
        r1 += _clip(dy * f)
    scale = (hi - lo) / w_sum if w_sum > 0.0 else 0.0
    return f0 + scale * r0, f1 + scale * r1


@njit(cache=True, parallel=True, nogil=True)
def fr_epochs(
    y: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    params: np.ndarray,
    n_epochs: int,
    learning_rate: float,
    n_neg: int,
    seed: np.uint64,
    epoch0: int,
    spare: np.ndarray,
) -> None:
    """Run one stage of ``n_epochs`` epochs on the layout ``y`` (N, 2), float32, in place.

    ``indptr, indices, weights`` is the symmetric graph in CSR form with sorted rows;
    ``params = (n, m, alpha, beta)``; the learning rate decays linearly to 0 over the stage.
    ``epoch0`` numbers the epochs of this stage globally so that each stage draws fresh
    streams. ``spare`` (N, 2), like ``y``, is the second buffer of the epochs' positions, so
    no memory is allocated per epoch.
    """
    n = y.shape[0]
    pn, pm, alpha, beta = params[0], params[1], np.float32(params[2]), np.float32(params[3])
    # Each epoch reads one buffer and writes the other: one parallel pass, one barrier.
    src, dst = y, spare
    for epoch in range(n_epochs):
        lr = learning_rate * (1.0 - epoch / n_epochs)
        for i in prange(n):
            state = _stream(seed, epoch0 + epoch, i)
            f0, f1 = _node_force(
                i, src[i, 0], src[i, 1], src, indices, weights, indptr[i], indptr[i + 1],
                n, n_neg, pn, pm, alpha, beta, state,
            )
            dst[i, 0] = src[i, 0] + lr * f0
            dst[i, 1] = src[i, 1] + lr * f1
        src, dst = dst, src
    if n_epochs % 2:
        y[:] = src


@njit(cache=True, parallel=True, nogil=True)
def place_epochs(
    y_land: np.ndarray,
    nbr: np.ndarray,
    nbr_w: np.ndarray,
    atom_ids: np.ndarray,
    params: np.ndarray,
    n_epochs: int,
    learning_rate: float,
    n_neg: int,
    seed: np.uint64,
) -> np.ndarray:
    """Place new points among fixed landmarks; returns their positions (M, 2).

    Row p of ``nbr`` (sorted landmark indices) and ``nbr_w`` (weights) are the landmark
    neighbours of point p. A point starts at the weighted mean of its neighbours and then
    feels only the landmarks, so points are independent: the streams come from the global
    ``atom_ids``, which makes the result independent of how the points are batched.
    """
    m, k = nbr.shape
    n_land = y_land.shape[0]
    pn, pm, alpha, beta = params[0], params[1], np.float32(params[2]), np.float32(params[3])
    out = np.empty((m, 2), dtype=np.float64)
    for p in prange(m):
        w_sum = 0.0
        y0 = 0.0
        y1 = 0.0
        for e in range(k):
            w_sum += nbr_w[p, e]
            y0 += nbr_w[p, e] * y_land[nbr[p, e], 0]
            y1 += nbr_w[p, e] * y_land[nbr[p, e], 1]
        y0 /= w_sum
        y1 /= w_sum
        for epoch in range(n_epochs):
            lr = learning_rate * (1.0 - epoch / n_epochs)
            state = _stream(seed, epoch, atom_ids[p])
            # -1 as own index: a new point is never one of the landmarks it is repelled by.
            f0, f1 = _node_force(
                -1, y0, y1, y_land, nbr[p], nbr_w[p], 0, k,
                n_land, n_neg, pn, pm, alpha, beta, state,
            )
            y0 += lr * f0
            y1 += lr * f1
        out[p, 0] = y0
        out[p, 1] = y1
    return out
