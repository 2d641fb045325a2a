"""NN-descent kNN graphs and landmark queries (dmotif.embed._nndescent through _knn)."""

from __future__ import annotations

import bisect

import numpy as np
import pytest

from dmotif.embed import _knn
from dmotif.embed._nndescent import _SEEN_SIZE, FRESH, _candidates, nn_descent, search
from dmotif.embed._rp_trees import tree_leaves

from ..conftest import unequal_blobs
from .test_layout import _threads


def _recall(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact neighbours found, row by row."""
    k = exact.shape[1]
    hits = (approx[:, :, None] == exact[:, None, :]).any(axis=2).sum()
    return float(hits) / exact.size if k else 1.0


def _cloud(kind: str, n: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "uniform5":
        return rng.uniform(size=(n, 5))
    return unequal_blobs((n // 2, n // 4, n // 8, n - n // 2 - n // 4 - n // 8), dim=20)[0]


@pytest.fixture(scope="module", params=["blobs20", "uniform5"])
def cloud(request) -> np.ndarray:
    return _cloud(request.param, 20_000)


@pytest.mark.parametrize("metric", ["euclidean", "correlation"])
def test_recall_and_distances_match_exact(cloud, metric):
    exact, exact_dist = _knn.exact_knn(cloud, 10, metric)
    ind, dist = _knn.approx_knn(cloud, 10, metric, seed=0)
    assert ind.shape == dist.shape == (cloud.shape[0], 10)
    # Measured 0.991 (blobs, euclidean), 0.9935 (blobs, correlation), 1.000 (uniform).
    assert _recall(ind[:, 1:], exact[:, 1:]) >= 0.985
    np.testing.assert_array_equal(ind[:, 0], np.arange(cloud.shape[0]))
    np.testing.assert_array_equal(dist[:, 0], 0.0)
    # Same neighbours, same distances: the definition per metric is exact_knn's.
    same = (ind == exact).all(axis=1)
    assert same.mean() > 0.9
    np.testing.assert_allclose(dist[same], exact_dist[same], rtol=1e-6, atol=1e-9)
    # Rows sorted by distance.
    assert (np.diff(dist, axis=1) >= 0).all()


def test_bit_identical_for_threads_and_reruns():
    x = _cloud("blobs20", 6000)
    one = _threads(1, _knn.approx_knn, x, 10, "correlation", 3)
    two = _threads(2, _knn.approx_knn, x, 10, "correlation", 3)
    again = _knn.approx_knn(x, 10, "correlation", 3)
    for a, b, c in zip(one, two, again, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_seed_changes_start_not_recall():
    x = _cloud("blobs20", 6000)
    z = _knn._prepare(x, "euclidean")
    exact, _ = _knn.exact_knn(x, 10, "euclidean")
    runs = [nn_descent(z, 9, False, seed, max_iter=it) for seed in (1, 2) for it in (1, 30)]
    (start1, _, _), (end1, _, _), (start2, _, _), (end2, _, _) = runs
    # After one iteration the two seeds' graphs are far apart, at the end both near exact.
    assert (start1 != start2).any(axis=1).mean() > 0.5
    for ind in (end1, end2):
        assert _recall(ind, exact[:, 1:]) >= 0.98


def test_candidates_join_few_new_members_and_leave_the_rest_new():
    rng = np.random.default_rng(5)
    n, k, cap = 2000, 20, 10
    ind = np.stack([(v + 1 + rng.choice(n - 1, k, replace=False)) % n for v in range(n)])
    new = rng.random((n, k)) < 0.6
    sources = [dict() for _ in range(n)]
    for u in range(n):
        for t in range(k):
            sources[ind[u, t]][u] = new[u, t]
    flags = new.copy()
    members, count, n_fresh = _candidates(ind, flags, FRESH, cap, np.uint64(3), 2)
    later = _candidates(ind, new.copy(), FRESH, cap, np.uint64(3), 3)
    flags_one = new.copy()
    one = _threads(1, _candidates, ind, flags_one, FRESH, cap, np.uint64(3), 2)
    np.testing.assert_array_equal(one[1], count)
    np.testing.assert_array_equal(one[2], n_fresh)
    # Past its count a row of members is scratch.
    used = np.arange(members.shape[1]) < count[:, None]
    np.testing.assert_array_equal(one[0][used], members[used])
    np.testing.assert_array_equal(flags_one, flags)
    changed = 0
    for v in range(n):
        row = set(ind[v].tolist())
        # A neighbour that is also a reverse one is new if either edge is.
        row_new = {u for t, u in enumerate(ind[v]) if new[v, t] or sources[v].get(u, False)}
        rev_new = {u for u, f in sources[v].items() if f and u not in row}
        mem = members[v, : count[v]].tolist()
        fresh, old = set(mem[: n_fresh[v]]), set(mem[n_fresh[v] :])
        assert len(fresh) + len(old) == count[v]
        # The most new members allowed, from the neighbours and up to cap reverse ones.
        assert n_fresh[v] == min(FRESH, len(row_new) + min(cap, len(rev_new)))
        assert fresh <= row_new | rev_new
        # Every old neighbour is listed; new ones left out are not listed as old.
        assert old & (row_new | rev_new) == set()
        assert row - row_new <= old
        assert old - row <= set(sources[v])
        # Only the flags of the neighbours joined now are cleared.
        np.testing.assert_array_equal(flags[v], new[v] & ~np.isin(ind[v], list(fresh)))
        changed += set(later[0][v, : later[2][v]].tolist()) != fresh
    # Another iteration's stream joins other new members first.
    assert changed > 0.5 * (n_fresh == FRESH).sum()


def test_ties_broken_by_index():
    # A 1-D lattice: every interior point has two neighbours at each distance.
    x = np.repeat(np.arange(300, dtype=np.float64)[:, None], 2, axis=1)
    ind, dist = _knn.approx_knn(x, 5, "euclidean", seed=0)
    exact, exact_dist = _knn.exact_knn(x, 5, "euclidean")
    np.testing.assert_array_equal(ind, exact)
    np.testing.assert_allclose(dist, exact_dist, atol=1e-12)


def test_constant_rows_are_at_distance_one_for_correlation():
    x = _cloud("uniform5", 500)
    x[:5] = 3.0
    ind, dist = _knn.approx_knn(x, 8, "correlation", seed=0)
    np.testing.assert_array_equal(dist[:5, 1:], 1.0)
    np.testing.assert_array_equal(ind[:5, 0], np.arange(5))


@pytest.mark.parametrize("metric", ["euclidean", "correlation"])
def test_query_recall_and_batch_invariance(metric):
    x = _cloud("blobs20", 16_000)
    land, rest = x[::2], x[1::2]
    index = _knn.landmark_index(land, 10, metric, seed=0)
    np.testing.assert_array_equal(index.neighbor_graph[0], _knn.approx_knn(land, 10, metric, 0)[0])
    exact, exact_dist = _knn.exact_knn(rest, 9, metric, ref=land)
    ind, dist = _knn.query_index(index, rest, 9)
    # Measured 0.988 (euclidean) and 0.991 (correlation) with a beam of 32.
    assert _recall(ind, exact) >= 0.98
    same = (ind == exact).all(axis=1)
    np.testing.assert_allclose(dist[same], exact_dist[same], rtol=1e-6, atol=1e-9)
    part = _threads(1, _knn.query_index, index, rest[100:400], 9)
    np.testing.assert_array_equal(part[0], ind[100:400])
    np.testing.assert_array_equal(part[1], dist[100:400])


def test_query_reaches_every_component():
    # Three far-apart clusters, one of 40 points: their kNN graph falls apart, and every query
    # must still land in its own cluster.
    rng = np.random.default_rng(0)
    centres = np.array([[0.0] * 6, [100.0] * 6, [-100.0] + [0.0] * 5])
    sizes = (3000, 2000, 40)
    truth = np.repeat(np.arange(3), sizes)
    x = centres[truth] + rng.normal(size=(truth.size, 6))
    index = _knn.landmark_index(x, 10, "euclidean", seed=0)
    q_truth = np.repeat(np.arange(3), 50)
    q = centres[q_truth] + rng.normal(size=(150, 6))
    ind, _ = _knn.query_index(index, q, 9)
    assert (truth[ind] == q_truth[:, None]).all()
    exact, _ = _knn.exact_knn(q, 9, "euclidean", ref=x)
    assert _recall(ind, exact) >= 0.98



def _plain_search(q, z, ind, ptr, rev, leaf_ptr, leaf, k, ef):
    """Beam search as first written: every member of an expanded node is measured again."""
    out = []
    for p in range(len(q)):
        beam: list[tuple[float, int]] = []  # sorted by (distance, index)
        todo: set[int] = set()

        def push(d: float, j: int, beam=beam, todo=todo) -> None:
            if any(b[1] == j for b in beam) or (len(beam) == ef and (d, j) >= beam[-1]):
                return
            bisect.insort(beam, (d, j))
            todo.add(j)
            if len(beam) > ef:
                todo.discard(beam.pop()[1])

        for e in range(leaf_ptr[leaf[p]], leaf_ptr[leaf[p] + 1]):
            push(float(((q[p] - z[e]) ** 2).sum()), e)
        while todo:
            u = next(j for _, j in beam if j in todo)
            todo.discard(u)
            for w in [*ind[u], *rev[ptr[u] : ptr[u + 1]]]:
                push(float(((q[p] - z[w]) ** 2).sum()), int(w))
        out.append([j for _, j in beam[:k]])
    return np.array(out)


@pytest.mark.parametrize(("beam", "n_queries"), [(16, 60), (_SEEN_SIZE // 2 + 100, 3)])
def test_search_skips_rows_met_before_without_changing_the_answer(beam, n_queries):
    # The wide beam holds more rows than the kernel's table of rows met records (past
    # _SEEN_SIZE / 2 they are measured again), so both paths of the kernel are compared.
    x = _cloud("blobs20", 4000)
    index = _knn.landmark_index(x[::2], 10, "euclidean", seed=0)
    q = _knn._prepare(x[1::2][:n_queries], "euclidean")
    leaf = tree_leaves(q, index.z, index.nodes)
    args = (q, index.z, index.nbr, index.ptr, index.rev, index.leaf_ptr, leaf)
    ind, _ = search(*args, 9, beam, False)
    np.testing.assert_array_equal(ind, _plain_search(*args, 9, beam))
