"""The report on an abTEM image: bounded figures, one table row per motif, legends outside."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
from PIL import Image

import dmotif
from dmotif.viz.html_report import MAX_PIXELS, _png
from dmotif.viz.overview import plot_defect_map, plot_overview

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def mose2(client, tmp_path_factory) -> dmotif.Result:
    folder = tmp_path_factory.mktemp("mose2")
    np.save(folder / "mose2.npy", np.load(DATA / "abtem_mose2_adf.npz")["image"])
    return dmotif.run(folder / "mose2.npy", folder / "m.zarr", client=client)


def test_report_figures_are_bounded_and_the_table_has_each_motif(
    mose2: dmotif.Result, tmp_path: Path
) -> None:
    page = dmotif.report(mose2, tmp_path / "r.html").read_text()
    for png in (tmp_path / "r_files").glob("*.png"):
        with Image.open(png) as im:
            assert im.size[0] * im.size[1] <= MAX_PIXELS, png.name
    assert {p.stem for p in (tmp_path / "r_files").glob("*.png")} >= {
        "atoms", "defects", "layout", "hierarchy"}
    lab = mose2.dataset["label"].values
    n_motifs = len(np.unique(lab[lab >= 0]))
    rows = re.findall(r'<tr class="motif"><th>([^<]+)</th><td>(\d+)</td><td>([\d,]+)</td>', page)
    assert len(rows) == n_motifs
    for _, label, count in rows:
        assert int(count.replace(",", "")) == int((lab == int(label)).sum())
    # the evidence of the decision is in each row (two or more motifs: finite separations)
    assert page.count('<img class="patch"') == n_motifs
    assert mose2.attrs["hierarchy_attrs"]["status"] in page
    # what the split by site did is told under the table
    assert f'<p id="sites">Sites: {mose2.attrs["cluster_attrs"]["sites"]}.</p>' in page
    # every row of the cell table names a different type or pattern
    cells = re.findall(r'<tr class="cell"><td>\d</td><td>(.+?)</td>', page)
    assert cells and len(set(cells)) == len(cells)
    # an abTEM image of distinct column types reads as discrete motifs
    assert mose2.attrs["cluster_attrs"]["structure"] == "discrete"
    share = mose2.attrs["cluster_attrs"]["regional_share"]
    assert share < 0.12
    assert f"discrete motifs (regional share {share:.2f}): every region holds" in page


def test_mean_patches_share_one_grey_scale(mose2: dmotif.Result) -> None:
    # The brightest column type shows the brightest patch centre; a patch scaled on its own
    # would put every centre at full white.
    from dmotif.viz.html_report import motif_rows

    rows = [r for r in motif_rows(mose2) if "patch" in r]
    assert len(rows) >= 2
    centres = []
    for r in rows:
        png = base64.b64decode(r["patch"].split(",", 1)[1])
        with Image.open(io.BytesIO(png)) as im:
            grey = np.asarray(im.convert("L"), float)
        h, w = grey.shape
        centres.append(grey[h // 2 - 2:h // 2 + 3, w // 2 - 2:w // 2 + 3].mean())
    order = np.argsort([r["intensity"] for r in rows])
    assert centres[order[-1]] == max(centres)
    assert centres[order[0]] < 0.8 * max(centres)


def _outside(fig, legend) -> bool:
    fig.canvas.draw()
    box = legend.get_window_extent()
    return not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes
               if ax.images)


def test_legends_never_cover_the_image(mose2: dmotif.Result) -> None:
    ds = mose2.dataset
    image = dmotif.open_image(mose2.config["input"]["path"])
    lab = ds["label"].values
    names = {k: str(k) for k in np.unique(lab).tolist()}
    spacing = mose2.attrs["atoms_attrs"]["spacing_px"]
    fig = plot_overview(image, ds, lab, names, spacing=spacing)
    assert _outside(fig, fig.legends[0])
    # the zoom holds about 20 spacings (or the whole image if smaller): columns resolved
    zoom = fig.axes[1]
    width = min(20 * spacing, image.sizes["x"])
    assert zoom.get_xlim()[1] - zoom.get_xlim()[0] == pytest.approx(width, abs=1.0)
    fig = plot_defect_map(image, ds, lab, names, None)
    assert _outside(fig, fig.legends[0])


def test_hierarchy_figure_shows_eight_nodes_a_level() -> None:
    g = nx.DiGraph()
    for k in range(300):
        g.add_node(f"L2:{k}", level=2, count=1000 - k, name=f"cell {k}",
                   mean_patch=np.ones((31, 31), np.float32))
    for k in range(40):
        g.add_node(f"L1:{k}", level=1, count=5000 - k, name=f"m{k}",
                   mean_patch=np.ones((9, 9), np.float32))
        g.add_edge(f"L2:{k}", f"L1:{k}", multiplicity=1)
    fig = dmotif.plot_hierarchy(g)
    patches = [a for a in fig.axes[0].child_axes if (a.get_gid() or "").startswith("node:")]
    assert len(patches) == 16
    more = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == "more"]
    assert sorted(more) == sorted([f"+ 292 more\n(n={sum(1000 - k for k in range(8, 300)):,})",
                                   f"+ 32 more\n(n={sum(5000 - k for k in range(8, 40)):,})"])
    with Image.open(io.BytesIO(_png(fig))) as im:
        assert im.size[0] * im.size[1] <= MAX_PIXELS


@pytest.mark.parametrize("frames", [1, 2])
def test_motif_fractions_per_frame_are_drawn_only_for_several_frames(frames, tmp_path):
    from tests.explore_helpers import make_result

    store, _ = make_result(tmp_path, size=256, frames=frames)
    page = dmotif.report(store, tmp_path / "r.html").read_text()
    assert ('<figure id="fractions">' in page) == (frames > 1)
    assert (tmp_path / "r_files" / "fractions.png").exists() == (frames > 1)


def test_a_p_value_below_the_smallest_double_is_not_written_zero() -> None:
    from dmotif.viz.html_report import _motif_table

    row = {"motif": "A", "label": 0, "count": 9, "fraction": 1.0, "intensity": None,
           "separation": 7.0, "nearest_motif": "B"}
    assert "<td>&lt; 1e-300</td>" in _motif_table([row | {"p_value": 0.0}])
    assert "<td>3.4e-86</td>" in _motif_table([row | {"p_value": 3.4e-86}])
