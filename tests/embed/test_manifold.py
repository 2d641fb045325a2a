"""The manifold coordinate of a continuous variation: the moiré of a twisted bilayer, through the
real chain (Zernike features, PCA, FR layout), against the true stacking registry."""

from __future__ import annotations

from pathlib import Path

import dask
import numpy as np
import pytest
from scipy.spatial import cKDTree
from scipy.stats import spearmanr

import dmotif
from dmotif import synthetic
from dmotif.errors import DataError, ParameterError

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def twisted_layout():
    """The FR layout of a 2° twisted bilayer's atoms, as 03-hierarchy.ipynb makes it: Zernike
    radius 12 px (the patch sees the stacking), rotation-invariant, PCA to 5 components."""
    s = synthetic.twisted_bilayer(size=384, twist=2.0, seed=1)
    features = dmotif.zernike_features(s.image, s.atoms, radius=12, rotinv=True)
    reduced = dmotif.pca(features, n_components=5)
    return s, dmotif.fr_layout(reduced, seed=0)


# Isomap completes the kNN graph of the layout, which has several components (the layout pulls
# similar atoms into tight groups), and says so; that is what is wanted here.
@pytest.mark.filterwarnings("ignore:The number of connected components:UserWarning")
@pytest.mark.filterwarnings("ignore::scipy.sparse.SparseEfficiencyWarning")
def test_twisted_bilayer_manifold_coordinate_follows_the_registry(twisted_layout, tmp_path):
    s, layout = twisted_layout
    coord = dmotif.manifold_coordinate(layout)
    assert coord.dims == ("atom",) and float(coord.min()) == 0.0 and float(coord.max()) == 1.0
    rho = spearmanr(coord.values, s.atoms["registry"].values)[0]
    # Measured |rho| 0.923 (layout seed 0; 0.93, 0.89, 0.88 for seeds 1-3).
    assert abs(rho) >= 0.9
    fig = dmotif.plot_map(s.image, s.atoms, coord)
    assert len(fig.axes[0].collections[0].get_offsets()) == s.atoms.sizes["atom"]
    fig.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 0


# abTEM multislice of a 4°-twisted MoSe2 bilayer at 10⁵ e/Å² (tests/data): a column's own
# patch (the default radius) holds the local registry only in part, the neighbourhood does.
@pytest.mark.parametrize(("name", "expected", "best_single"),
                         [("adf", 0.970, 0.623), ("abf", 0.966, 0.568)])
def test_abtem_twisted_bilayer_registry_from_the_neighbourhood_mean(name, expected, best_single):
    data = np.load(DATA / f"abtem_twisted_{name}.npz")
    with dask.config.set(scheduler="threads"):
        atoms = dmotif.detect_atoms(data["image"])
        scores = dmotif.pca(dmotif.zernike_features(data["image"], atoms)).compute()
    truth = np.c_[data["column_y"], data["column_x"]]
    dist, idx = cKDTree(truth).query(np.c_[atoms["y"], atoms["x"]])
    registry = data["column_registry"][idx]
    assert np.mean(dist < 3) >= 0.95
    coord = dmotif.manifold_coordinate(dmotif.neighbourhood_mean(scores, atoms))
    rho = abs(spearmanr(coord.values, registry)[0])
    single = max(abs(spearmanr(scores.values[:, k], registry)[0])
                 for k in range(scores.sizes["component"]))
    assert rho == pytest.approx(expected, abs=0.02)
    assert single == pytest.approx(best_single, abs=0.05) and rho > single + 0.2


def test_the_landmark_sample_is_seeded():
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 3, 600))
    curve = np.column_stack([np.cos(t), np.sin(t)]) * (1 + 0.01 * rng.normal(size=(600, 1)))
    a = dmotif.manifold_coordinate(curve, max_landmarks=200, seed=3)
    b = dmotif.manifold_coordinate(curve, max_landmarks=200, seed=np.random.default_rng(7))
    np.testing.assert_array_equal(a.values, dmotif.manifold_coordinate(
        curve, max_landmarks=200, seed=3).values)
    for coord in (a, b):  # the curve is unrolled whatever the sample
        assert abs(spearmanr(coord.values, t)[0]) > 0.99


def test_points_are_placed_block_by_block_as_all_at_once(monkeypatch):
    from dmotif.embed import manifold

    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 3, 900))
    curve = np.column_stack([np.cos(t), np.sin(t), 0.01 * rng.normal(size=t.size)])
    whole = dmotif.manifold_coordinate(curve, max_landmarks=300)
    monkeypatch.setattr(manifold, "TRANSFORM_BLOCK", 128)
    np.testing.assert_allclose(dmotif.manifold_coordinate(curve, max_landmarks=300).values,
                               whole.values, rtol=0, atol=1e-12)


def test_bad_input():
    with pytest.raises(ParameterError, match="n_components"):
        dmotif.manifold_coordinate(np.zeros((50, 2)), n_components=3)
    with pytest.raises(DataError, match="n_neighbors"):
        dmotif.manifold_coordinate(np.zeros((10, 2)))
