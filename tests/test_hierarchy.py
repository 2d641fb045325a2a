"""motif_cells and build_hierarchy against synthetic truth; storage, parallelism, plots."""

from __future__ import annotations

from collections import Counter

import networkx as nx
import numpy as np
import pytest
import xarray as xr
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

import dmotif
from dmotif import synthetic
from dmotif.errors import DataError, NoLatticeError


@pytest.fixture(scope="module")
def tmd():
    return synthetic.tmd(size=512, metal_vacancy=0.01)


def _interior_counts_truth(s, margin):
    """Per-Bravais-cell truth label pairs of cells whose anchor (metal site) is inside by margin."""
    c = s.cells
    ny, nx = s.params["size"]
    inside = ((c["y"] >= margin) & (c["y"] <= ny - 1 - margin) & (c["x"] >= margin)
              & (c["x"] <= nx - 1 - margin)).values
    return Counter(map(tuple, c["labels"].values[inside].tolist()))


def _interior_counts(s, cells, margin):
    ny, nx = s.params["size"]
    uv = np.asarray(cells.attrs["lattice"])
    anchor = np.column_stack([cells["y"], cells["x"]]) - 0.5 * (uv[0] + uv[1])
    inside = ((anchor[:, 0] >= margin) & (anchor[:, 0] <= ny - 1 - margin)
              & (anchor[:, 1] >= margin) & (anchor[:, 1] <= nx - 1 - margin))
    labels = [tuple(t) for t in __import__("json").loads(cells.attrs["type_labels"])]
    return Counter(labels[t] for t in cells["type"].values[inside])


def test_tmd_cell_types_equal_the_truth_per_bravais_cell(tmd):
    cells = dmotif.motif_cells(tmd.atoms, tmd.atoms["label"])
    assert cells.attrs["method"] == "lattice" and cells.attrs["anchor_label"] == 0
    margin = 2 * 0.316 / 0.015
    truth = _interior_counts_truth(tmd, margin)
    assert _interior_counts(tmd, cells, margin) == truth
    # pristine plus one type per defect environment
    assert set(truth) >= {(0, 1), (0, 2), (0, 3), (-1, 1), (0, -1)}


def test_tmd_hierarchy_levels_and_edges(tmd):
    g = dmotif.build_hierarchy(tmd.atoms, tmd.atoms["label"], image=tmd.image)
    lv1 = {d["name"]: d["count"] for _, d in g.nodes(data=True) if d["level"] == 1}
    assert lv1 == {n: int((tmd.atoms["label"] == k).sum())
                   for k, n in enumerate(tmd.motif_names)}
    lv2 = {n: d for n, d in g.nodes(data=True) if d["level"] == 2}
    top = max(lv2, key=lambda n: lv2[n]["count"])
    assert lv2[top]["labels"] == [0, 1]
    assert g.edges[top, "L1:0"]["multiplicity"] == 1
    assert lv2[top]["mean_patch"].shape[0] == lv2[top]["mean_patch"].shape[1]
    # the metal motif's mean patch is brighter in the centre than the chalcogen's
    c = g.nodes["L1:0"]["mean_patch"].shape[0] // 2
    assert g.nodes["L1:0"]["mean_patch"][c, c] > g.nodes["L1:1"]["mean_patch"][c, c]


def _turned(atoms, n, degrees):
    """The atoms of an ``n × n`` image turned by ``degrees`` about its centre (a rotation)."""
    t = np.radians(degrees)
    c = (n - 1) / 2
    y, x = atoms["y"].values - c, atoms["x"].values - c
    out = atoms.copy()
    out["x"] = ("atom", c + np.cos(t) * x - np.sin(t) * y)
    out["y"] = ("atom", c + np.sin(t) * x + np.cos(t) * y)
    return out


def _same_graph(g0, g1):
    return nx.is_isomorphic(
        g0, g1, node_match=lambda a, b: (a["level"], a["count"], a["name"])
        == (b["level"], b["count"], b["name"]),
        edge_match=lambda a, b: a.get("multiplicity") == b.get("multiplicity"))


@pytest.mark.parametrize("degrees", [90, 37])
@pytest.mark.parametrize("kind", ["tmd", "perovskite"])
def test_hierarchy_of_the_turned_image_is_isomorphic(tmd, kind, degrees):
    # A 90° turn is not a symmetry of the honeycomb and 37° is a symmetry of neither lattice:
    # only a cell convention fixed by the atoms (not by the pixel axes) gives the same cells.
    s = tmd if kind == "tmd" else synthetic.perovskite(size=384, a_vacancy=0.03)
    n = s.params["size"][0]
    g0 = dmotif.build_hierarchy(s.atoms, s.atoms["label"])
    g1 = dmotif.build_hierarchy(_turned(s.atoms, n, degrees), s.atoms["label"])
    assert _same_graph(g0, g1)
    # the compared graphs hold vacancy cells and, for the TMD, multi-cell defect patterns
    assert any(d["level"] == 2 and -1 in d["labels"] for _, d in g0.nodes(data=True))
    if kind == "tmd":
        assert any(d["level"] == 3 for _, d in g0.nodes(data=True))


def test_noisy_labels_keep_the_pristine_cell(tmd):
    rng = np.random.default_rng(0)
    lab = tmd.atoms["label"].values.copy()
    flip = rng.random(lab.size) < 0.03
    lab[flip] = -1
    g = dmotif.build_hierarchy(tmd.atoms, lab)
    lv2 = {n: d for n, d in g.nodes(data=True) if d["level"] == 2}
    top = max(lv2, key=lambda n: lv2[n]["count"])
    assert lv2[top]["labels"] == [0, 1]
    truth = int((np.all(tmd.cells["labels"].values == [0, 1], axis=1)).sum())
    assert lv2[top]["count"] >= 0.85 * truth


def test_perovskite_abo3_cell_is_the_dominant_level_2_motif():
    s = synthetic.perovskite(size=384)
    g = dmotif.build_hierarchy(s.atoms, s.atoms["label"])
    lv2 = [d for _, d in g.nodes(data=True) if d["level"] == 2]
    top = max(lv2, key=lambda d: d["count"])
    assert sorted(top["labels"]) == [0, 1, 2, 2]
    assert top["count"] >= 0.9 * s.cells.sizes["cell"]


def test_ring_tiling_gives_ring_types_with_true_counts():
    s = synthetic.rings(size=512, stone_wales=0.02)
    g = dmotif.build_hierarchy(s.atoms, s.atoms["label"])
    assert g.graph["method"] == "rings"
    found = {d["labels"].__len__(): d["count"] for _, d in g.nodes(data=True) if d["level"] == 2}
    truth = Counter(s.cells["size"].values.tolist())
    assert found == dict(truth)
    assert truth[5] > 0 and truth[7] > 0
    # each Stone–Wales defect is one 5-7-5-7 pattern of four rings
    sw = [d for _, d in g.nodes(data=True) if d["level"] == 3]
    assert len(sw) == 1 and sw[0]["n_cells"] == 4 and sw[0]["count"] == truth[5] // 2


def test_per_frame_result_is_the_same_on_a_cluster():
    from distributed import Client, LocalCluster

    s = synthetic.tmd(size=256, frames=3, metal_vacancy=0.02)
    local = dmotif.build_hierarchy(s.atoms, s.atoms["label"], image=s.image)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster):
        remote = dmotif.build_hierarchy(s.atoms, s.atoms["label"], image=s.image)
    a = nx.node_link_data(local, edges="edges")
    b = nx.node_link_data(remote, edges="edges")
    for na, nb in zip(a["nodes"], b["nodes"], strict=True):
        pa, pb = na.pop("mean_patch", None), nb.pop("mean_patch", None)
        assert (pa is None) == (pb is None)
        if pa is not None:
            np.testing.assert_array_equal(pa, pb)
    assert a == b
    # the counts are the sum over frames of single-frame hierarchies
    one = [dmotif.build_hierarchy(s.atoms.isel(atom=(s.atoms["frame"] == f).values),
                                  s.atoms["label"].values[(s.atoms["frame"] == f).values])
           for f in range(3)]
    assert local.nodes["L1:0"]["count"] == sum(g.nodes["L1:0"]["count"] for g in one)


@pytest.mark.parametrize("suffix", [".json", ".graphml", ".zarr"])
def test_save_load_round_trip(tmp_path, suffix):
    s = synthetic.tmd(size=256, metal_vacancy=0.02)
    g = dmotif.build_hierarchy(s.atoms, s.atoms["label"], image=s.image)
    path = tmp_path / f"h{suffix}"
    if suffix == ".zarr":
        import zarr

        zarr.open_group(path, mode="w")
    dmotif.save_hierarchy(g, path)
    back = dmotif.load_hierarchy(path)
    assert set(back.nodes) == set(g.nodes) and set(back.edges) == set(g.edges)
    for n, d in g.nodes(data=True):
        for k, v in d.items():
            if k == "mean_patch":
                np.testing.assert_allclose(back.nodes[n][k], v, rtol=1e-6)
            else:
                assert back.nodes[n][k] == (list(v) if isinstance(v, tuple) else v), (n, k)
    for a, b, d in g.edges(data=True):
        assert back.edges[a, b] == d
    assert back.graph == g.graph


def test_all_unassigned_and_no_lattice_raise():
    s = synthetic.tmd(size=128)
    with pytest.raises(DataError, match="unassigned"):
        dmotif.build_hierarchy(s.atoms, np.full(s.atoms.sizes["atom"], -1, np.int32))
    rng = np.random.default_rng(1)
    amorphous = xr.Dataset({"frame": ("atom", np.zeros(500, np.int32)),
                            "y": ("atom", rng.uniform(0, 300, 500)),
                            "x": ("atom", rng.uniform(0, 300, 500))})
    with pytest.raises(NoLatticeError, match="lattice"):
        dmotif.motif_cells(amorphous, np.zeros(500, np.int32), method="lattice")
    with pytest.raises(dmotif.DmotifError):
        dmotif.lattice_vectors(amorphous)


def _twisted_stand_in_layout(s, r=33):
    """A stand-in for the FR layout (not merged yet): PCA of rotation-invariant patch energies.

    Per atom, the mean squared band-passed intensity over disks of growing radius (the local
    contrast of overlapping columns, highest at AA stacking), standardised, PCA to 2-D.
    """
    from scipy import ndimage as ndi

    img = s.image.values[0].astype(float)
    band = ndi.gaussian_filter(img, 1.0) - ndi.gaussian_filter(img, 6.0)
    y = np.rint(s.atoms["y"].values).astype(int)
    x = np.rint(s.atoms["x"].values).astype(int)
    ok = (y >= r) & (y < img.shape[0] - r) & (x >= r) & (x < img.shape[1] - r)
    w = np.arange(-r, r + 1)
    rr = np.hypot(*np.meshgrid(w, w, indexing="ij"))
    p = band[y[ok][:, None, None] + w[None, :, None], x[ok][:, None, None] + w[None, None, :]]
    feats = np.stack([(p**2)[:, rr <= rad].mean(1) for rad in (8, 16, 24, 33)], 1)
    feats = (feats - feats.mean(0)) / feats.std(0)
    return PCA(2).fit_transform(feats), ok


def test_twisted_bilayer_manifold_coordinate_follows_the_registry(tmp_path):
    s = synthetic.twisted_bilayer(size=384, twist=2.0, seed=1)
    layout, ok = _twisted_stand_in_layout(s)
    coord = dmotif.manifold_coordinate(layout)
    rho = spearmanr(coord.values, s.atoms["registry"].values[ok])[0]
    assert abs(rho) >= 0.8
    values = np.full(s.atoms.sizes["atom"], np.nan)
    values[ok] = coord.values
    fig = dmotif.plot_map(s.image, s.atoms, values)
    assert len(fig.axes[0].collections[0].get_offsets()) == s.atoms.sizes["atom"]
    fig.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 0


def test_plot_hierarchy_draws_every_node(tmp_path):
    s = synthetic.tmd(size=256, metal_vacancy=0.02)
    g = dmotif.build_hierarchy(s.atoms, s.atoms["label"], image=s.image)
    fig = dmotif.plot_hierarchy(g)
    ax = fig.axes[0]
    drawn = [a.get_gid() for a in ax.child_axes] + [ln.get_gid() for ln in ax.lines]
    assert sorted(d for d in drawn if d) == sorted(f"node:{n}" for n in g.nodes)
    mults = [t for t in ax.texts if t.get_gid() == "multiplicity"]
    assert len(mults) == g.number_of_edges()
    fig.savefig(tmp_path / "h.png")
    assert (tmp_path / "h.png").stat().st_size > 0
