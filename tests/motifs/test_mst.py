"""HDBSCAN's minimum spanning tree on all cores: scikit-learn's tree and labels, exactly."""

import numpy as np
import pytest
from sklearn.cluster import HDBSCAN
from sklearn.cluster._hdbscan._linkage import mst_from_data_matrix
from sklearn.metrics import DistanceMetric
from sklearn.neighbors import NearestNeighbors

from dmotif.motifs._mst import mutual_reachability_mst
from dmotif.motifs.clustering import _hdbscan_labels


def _blobs(n: int, decimals: int | None, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(6, 2)) * 8
    y = centres[rng.integers(0, 6, n)] + rng.normal(size=(n, 2))
    # rounded coordinates make many equal distances: ties must break as scikit-learn's do
    return np.round(y, decimals) if decimals is not None else y


@pytest.mark.parametrize(("n", "decimals"), [(400, None), (1500, 1), (3000, 0)])
def test_tree_is_scikit_learns(n, decimals):
    y = _blobs(n, decimals, seed=n)
    core = NearestNeighbors(n_neighbors=10).fit(y).kneighbors(y, 10)[0][:, -1].copy()
    ref = mst_from_data_matrix(y, core, DistanceMetric.get_metric("euclidean"), 1.0)
    src, dst, dist = mutual_reachability_mst(y, core)
    np.testing.assert_array_equal(src, ref["current_node"])
    np.testing.assert_array_equal(dst, ref["next_node"])
    np.testing.assert_array_equal(dist, ref["distance"])


@pytest.mark.parametrize(("n", "min_size", "decimals"), [(2000, 25, 1), (5000, 40, None)])
def test_labels_are_scikit_learns(n, min_size, decimals):
    y = _blobs(n, decimals, seed=7)
    expected = HDBSCAN(min_cluster_size=min_size, copy=True).fit_predict(y)
    np.testing.assert_array_equal(_hdbscan_labels(y, min_size), expected)


def test_too_few_points_is_scikit_learns_error():
    y = _blobs(8, None, seed=1)
    with pytest.raises(ValueError, match="min_samples"):
        _hdbscan_labels(y, 10)
