"""The explorer's state and data access (no browser): selection, edits, image reads, document."""

from __future__ import annotations

import numpy as np
import pytest

import dmotif
from dmotif.errors import DataError, ImageFileError, ParameterError
from dmotif.io.edits import active_labels
from dmotif.measure.stage import MEASURED_VARS
from dmotif.viz.explorer import Explorer, ExplorerData, serve
from dmotif.viz.explorer import _kernels as K

from ..explore_helpers import CENTRES, SIGMA, make_measured_result, make_result


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    return make_result(tmp_path_factory.mktemp("explore"), size=384, frames=2)


@pytest.fixture(scope="module")
def data(result):
    return ExplorerData(result[0])


def _box_around(centre, half=5 * SIGMA):
    return {"type": "rect", "x0": centre[0] - half, "x1": centre[0] + half,
            "y0": centre[1] - half, "y1": centre[1] + half}


@pytest.mark.parametrize("label", [0, 1, 2, 3])
def test_a_box_around_a_layout_blob_selects_exactly_that_motif(data, result, label):
    truth = result[1].atoms["label"].values
    state = Explorer(data)
    assert state.select_layout(_box_around(CENTRES[label])) == np.count_nonzero(truth == label)
    np.testing.assert_array_equal(state.selected, truth == label)


def test_a_lasso_selects_like_its_polygon(data):
    state = Explorer(data)
    px, py = np.array([-1.0, 7.0, -1.0]), np.array([-1.0, -1.0, 7.0])  # metal, pair, single
    state.select_layout({"type": "poly", "x": px.tolist(), "y": py.tolist()})
    np.testing.assert_array_equal(state.selected, K.in_polygon(data.lx, data.ly, px, py))
    assert {0, 1, 2} == set(np.unique(data.labels[state.selected]).tolist())


def test_an_image_region_selects_the_atoms_of_that_frame_inside_it(data, result):
    atoms = result[1].atoms
    state = Explorer(data)
    geometry = {"type": "rect", "x0": 50.0, "x1": 200.0, "y0": 300.0, "y1": 120.0}
    n = state.select_image(geometry, frame=1)
    expected = ((atoms["frame"] == 1) & (atoms["x"] >= 50) & (atoms["x"] <= 200)
                & (atoms["y"] >= 120) & (atoms["y"] <= 300)).values
    assert n == expected.sum() > 50
    np.testing.assert_array_equal(state.selected, expected)
    with pytest.raises(ParameterError, match="box or a lasso"):
        state.select_image({"type": "point", "x": 1, "y": 1}, frame=0)


def test_merge_split_rename_undo(data):
    state = Explorer(data)
    before = state.labels.copy()
    assert state.merge([0, 3]) == np.count_nonzero(before == 3)
    assert 3 not in state.motifs() and state.names[0] == "metal"
    state.select_layout(_box_around(CENTRES[1] + [SIGMA, 0], half=SIGMA))  # part of blob 1
    part = state.selected & (state.labels == 1)
    new = state.split(1)
    assert new == 3 and state.names[3] == "chalcogen_pair (split)"  # the next free id
    np.testing.assert_array_equal(state.labels == 3, part)
    assert 0 < part.sum() < np.count_nonzero(before == 1)
    state.rename(3, "  pair, strained ")
    assert state.names[3] == "pair, strained" and state.dirty
    table = state.motif_table()
    assert table["id"] == [0, 1, 2, 3] and sum(table["count"]) == data.n_atoms
    assert state.undo() == "rename 3 to 'pair, strained'"
    state.undo()
    state.undo()
    np.testing.assert_array_equal(state.labels, before)
    assert state.names == data.names and not state.dirty and state.undo() is None


@pytest.mark.parametrize(("edit", "match"), [
    (lambda s: s.merge([0]), "at least two"),
    (lambda s: s.merge([0, 9]), r"no motif \[9\]"),
    (lambda s: s.split(0), "nothing to split"),
    (lambda s: s.rename(0, "  "), "cannot be empty"),
])
def test_bad_edits_are_refused_and_change_nothing(data, edit, match):
    state = Explorer(data)
    with pytest.raises(ParameterError, match=match):
        edit(state)
    np.testing.assert_array_equal(state.labels, data.labels)


def test_save_writes_the_working_labels_to_the_store(tmp_path):
    path, _ = make_result(tmp_path, size=256)
    state = Explorer(ExplorerData(path))
    state.merge([1, 2])
    state.rename(1, "chalcogen")
    name = state.save()
    labels = active_labels(path)
    assert labels.name == name == state.saved_as and not state.dirty
    np.testing.assert_array_equal(labels.values, state.labels)
    assert labels.attrs["motif_names"][1] == "chalcogen"
    record = dmotif.open_result(path).attrs["label_edits"][-1]
    assert record["note"] == "merge 1, 2 into 1; rename 1 to 'chalcogen'"
    # Undoing a saved edit is itself an unsaved change.
    assert state.undo() == "rename 1 to 'chalcogen'" and state.dirty
    assert state.notes == ["undo rename 1 to 'chalcogen'"]
    # A new session starts from the saved labelling.
    again = ExplorerData(path)
    assert again.labels_name == name and again.names[1] == "chalcogen"


def test_window_from_tiles_equals_a_slice_of_the_whole_frame(data, result):
    # The image is tiled 128²: windows cross tile edges and the image border.
    whole = result[1].image.values
    assert len(data.image.chunks[1]) == 3
    for f, (y0, y1, x0, x1) in [(0, (100, 300, 120, 140)), (1, (-5, 20, 370, 400)),
                                (0, (0, 384, 0, 384))]:
        win, oy, ox = data.window(f, y0, y1, x0, x1)
        np.testing.assert_array_equal(win, whole[f, max(0, y0):min(384, y1),
                                                 max(0, x0):min(384, x1)])
        assert (oy, ox) == (max(0, y0), max(0, x0))


def test_view_is_the_block_mean_of_the_visible_region(data, result):
    whole = result[1].image.values
    arr, x, y, dw, dh = data.view(1, (10.2, 250.0), (300.0, 40.0), max_px=60)
    step = 5  # ceil(260 / 60)
    np.testing.assert_allclose(arr, K.block_mean(whole[1, 40:300, 10:250], step), rtol=1e-5)
    assert (x, y) == (9.5, 39.5) and (dw, dh) == (arr.shape[1] * step, arr.shape[0] * step)
    small, ov_step, (low, high) = data.overview(0)
    assert ov_step == 1 and low < high
    full = data.view(0, (-0.5, 383.5), (-0.5, 383.5))
    np.testing.assert_array_equal(full[0], small)
    assert full[1:] == (-0.5, -0.5, 384, 384)
    # Zoomed in: full resolution, read from the stack.
    arr, x, y, dw, dh = data.view(0, (100.0, 150.0), (200.0, 260.0))
    np.testing.assert_array_equal(arr, whole[0, 200:260, 100:150])
    assert (x, y, dw, dh) == (99.5, 199.5, 50, 60)


def test_patches_match_a_direct_cut(data, result):
    whole = result[1].image.values
    r = data.radius
    assert 10 <= r <= 14  # about the TMD column spacing (12.2 px)
    atom = int(np.flatnonzero((data.y > 50) & (data.y < 330) & (data.x > 50) & (data.x < 330))[0])
    f = int(data.frame[atom])
    ref = K.mean_patch(whole[f], data.y[atom:atom + 1], data.x[atom:atom + 1], r)
    np.testing.assert_allclose(data.patch(atom), ref, rtol=1e-5, atol=1e-6)
    metals = np.flatnonzero(data.labels == 0)
    mean = data.mean_patch(metals)
    assert mean.shape == (2 * r + 1, 2 * r + 1)
    # A metal column is the brightest thing in its patch, at the centre.
    assert np.unravel_index(np.argmax(mean), mean.shape) == (r, r)
    singles = data.mean_patch(np.flatnonzero(data.labels == 2))
    assert mean[r, r] > 2 * singles[r, r]


def test_hover_finds_the_nearest_atom_in_the_layout(data):
    target = 17
    assert data.nearest_in_layout(data.lx[target], data.ly[target], 1e-6) == target
    assert data.nearest_in_layout(100.0, 100.0, 1.0) is None


def test_layout_rasters_count_every_atom_and_the_selection(data):
    state = Explorer(data)
    ranges = ((-2.0, 8.0), (-2.0, 8.0))
    base, sel = state.layout_rasters(*ranges, shape=(50, 50))
    assert base.shape == (50, 50) and not sel.any()
    state.select_motifs([3])
    base2, sel = state.layout_rasters(*ranges, shape=(50, 50))
    np.testing.assert_array_equal(base, base2)
    alpha = sel.view(np.uint8).reshape(50, 50, 4)[..., 3]
    counts = K.raster_counts(data.lx[data.labels == 3], data.ly[data.labels == 3],
                             np.zeros(int((data.labels == 3).sum()), int), 1, *ranges, (50, 50))
    np.testing.assert_array_equal(alpha > 0, counts[0] > 0)


def test_atoms_in_view_are_sampled_down_to_the_limit(data):
    state = Explorer(data)
    idx, sampled = state.atoms_in_view(0, (0, 384), (0, 384), selected_only=False,
                                       max_points=10**6)
    assert not sampled and len(idx) == np.count_nonzero(data.frame == 0)
    few, sampled = state.atoms_in_view(0, (0, 384), (0, 384), selected_only=False,
                                       max_points=100)
    assert sampled and len(few) == 100 and np.isin(few, idx).all()
    none, _ = state.atoms_in_view(0, (0, 384), (0, 384), selected_only=True, max_points=10)
    assert len(none) == 0


def test_explore_builds_a_bokeh_document(result):
    from bokeh.document import Document

    app = dmotif.explore(result[0])
    doc = Document()
    app.initialize_document(doc)
    for name in ("layout", "image", "motif_table", "status", "merge", "save", "frame"):
        assert doc.get_model_by_name(name) is not None, name
    assert doc.get_model_by_name("frame").visible  # two frames
    assert "0</span> atoms selected" in doc.get_model_by_name("status").text
    raster = doc.get_model_by_name("layout_raster").data["image"][0]
    assert raster.dtype == np.uint32 and raster.any()


def test_bad_stores_and_images_are_refused_clearly(tmp_path, result):
    import xarray as xr

    bare = tmp_path / "bare.zarr"
    dmotif.write_result(xr.Dataset({"frame": ("atom", np.zeros(3, np.int32))}), bare)
    with pytest.raises(DataError, match="layout"):
        ExplorerData(bare)
    path = result[0]
    with pytest.raises(ImageFileError, match="image="):
        ExplorerData(path, image=tmp_path / "moved.zarr")
    with pytest.raises(ParameterError, match="port"):
        serve(path, port=70000, block=False)


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    return ExplorerData(make_measured_result(tmp_path_factory.mktemp("measured")))


def test_colour_by_offers_motif_alone_without_measurements(data):
    state = Explorer(data)
    assert state.colour_choices() == ["motif"]
    with pytest.raises(ParameterError, match="cannot colour by 'cross_section'"):
        state.set_colour_by("cross_section")


def test_colour_by_a_measured_quantity_colours_atoms_and_layout_by_its_value(measured):
    ds = measured.result.dataset
    state = Explorer(measured)
    # Exactly the stored per-atom measurements; no displacement or strain was asked for.
    assert state.colour_choices() == ["motif", *(v for v in MEASURED_VARS if v in ds)]
    assert {"fit_sigma_a", "cross_section"} <= set(state.colour_choices())
    assert "disp" not in state.colour_choices()
    values = ds["cross_section"].values
    low, high = state.set_colour_by("cross_section")
    np.testing.assert_allclose((low, high), np.percentile(values[np.isfinite(values)], [1, 99]))
    atoms = np.arange(measured.n_atoms)
    shade_of = {h: i for i, h in enumerate(K.VALUE_HEXES)}
    shades = np.array([shade_of[h] for h in state.atom_colours(atoms)])
    # The colour scale is monotone in the value, from its first colour to its last.
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(shades[order]) >= 0)
    assert shades[order[0]] == 0 and shades[order[-1]] == len(K.VALUE_HEXES) - 1
    # A layout pixel holding one atom has that atom's colour.
    x_range = (measured.lx.min() - 1, measured.lx.max() + 1)
    y_range = (measured.ly.min() - 1, measured.ly.max() + 1)
    base, _ = state.layout_rasters(x_range, y_range, shape=(300, 300))
    rgba = base.view(np.uint8).reshape(300, 300, 4)
    j = np.floor((measured.lx - x_range[0]) * 300 / (x_range[1] - x_range[0])).astype(int)
    i = np.floor((measured.ly - y_range[0]) * 300 / (y_range[1] - y_range[0])).astype(int)
    pixel = i * 300 + j
    alone = np.isin(pixel, np.flatnonzero(np.bincount(pixel, minlength=300 * 300) == 1))
    assert alone.sum() > measured.n_atoms // 2
    np.testing.assert_array_equal(rgba[i[alone], j[alone], :3], K.VALUE_RGB[shades[alone]])
    name = state.names[int(state.labels[0])]
    assert state.describe(0) == f"atom 0: {name} — cross_section = {values[0]:.4g}"
    assert state.set_colour_by("motif") is None
    assert state.describe(0) == f"atom 0: {name}"
