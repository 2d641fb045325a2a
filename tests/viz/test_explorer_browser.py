"""The explorer in a real headless browser (Debian chromium driven by playwright)."""

from __future__ import annotations

import io
import shutil
import time
from contextlib import contextmanager

import numpy as np
import pytest

from dmotif.io.edits import active_labels
from dmotif.viz.explorer import serve

from ..explore_helpers import CENTRES, make_measured_result, make_result

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install "
                       "chromium); playwright drives it, no browser is downloaded"),
]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]


def _wait(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _data_to_page(page, name, x, y):
    """Page coordinates of data point (x, y) in the bokeh plot called ``name``."""
    return page.evaluate(
        """([name, x, y]) => {
            const plot = Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name(name))
            const rect = plot.canvas_view.el.getBoundingClientRect()
            return [rect.left + plot.frame.x_scale.compute(x),
                    rect.top + plot.frame.y_scale.compute(y)]
        }""", [name, x, y])


@contextmanager
def _explorer_page(path):
    """Serve the store ``path``, open it in chromium; yield the server, the page once the
    document is built, and the list of the page's script errors."""
    from playwright.sync_api import sync_playwright

    server = serve(path, block=False)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1200, "height": 950})
            errors = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url)
            page.wait_for_function(
                "() => window.Bokeh && Bokeh.documents.length > 0"
                " && Bokeh.documents[0].get_model_by_name('status') !== null", timeout=20_000)
            yield server, page, errors
            browser.close()
    finally:
        server.stop()


def test_load_select_merge_save_in_chromium(tmp_path):
    from PIL import Image
    path, sample = make_result(tmp_path, size=384)
    truth = sample.atoms["label"].values
    with _explorer_page(path) as (server, page, errors):
        assert server.url.startswith("http://127.0.0.1:")
        assert page.title() == "dmotif explore — result.zarr"
        for name in ("layout", "image", "motif_table"):
            assert page.evaluate(
                f"Bokeh.documents[0].get_model_by_name('{name}') !== null"), name
        assert page.locator(".bk-Figure").count() >= 2
        state = _wait(lambda: server.sessions and server.sessions[0])

        # Neither plot is blank: a screenshot of each has real contrast.
        time.sleep(0.5)
        for k in (0, 1):
            shot = page.locator(".bk-Figure").nth(k).screenshot()
            pixels = np.asarray(Image.open(io.BytesIO(shot)).convert("L"), dtype=float)
            assert pixels.std() > 10, f"plot {k} looks blank"

        # A box drag from the top-left corner of the layout to the middle between the blobs
        # holds the blob of motif 2 alone: it selects exactly its atoms, the image marks them.
        x_start, y_end = page.evaluate(
            "(() => { const m = Bokeh.documents[0].get_model_by_name('layout');"
            " return [m.x_range.start, m.y_range.end] })()")
        layout = state.data
        assert x_start + 0.05 < layout.lx.min() and y_end - 0.05 > layout.ly.max()
        (x0, y0) = _data_to_page(page, "layout", x_start + 0.05, y_end - 0.05)
        (x1, y1) = _data_to_page(page, "layout", *CENTRES[[1, 2], [0, 1]] / 2)
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=8)
        page.mouse.up()
        n2 = int(np.count_nonzero(truth == 2))
        _wait(lambda: state.n_selected == n2)
        np.testing.assert_array_equal(state.selected, truth == 2)
        page.wait_for_function(
            "n => Bokeh.documents[0].get_model_by_name('highlight').data.x.length === n",
            arg=n2, timeout=10_000)
        page.wait_for_function(
            "n => Bokeh.documents[0].get_model_by_name('status').text"
            ".includes(`>${n}</span> atoms selected`)", arg=n2, timeout=10_000)

        # A box on the image selects that region's atoms instead.
        (x0, y0) = _data_to_page(page, "image", 40.0, 40.0)
        (x1, y1) = _data_to_page(page, "image", 200.0, 150.0)
        page.mouse.move(x0, y0)
        page.mouse.down()
        page.mouse.move(x1, y1, steps=8)
        page.mouse.up()
        atoms = sample.atoms
        region = ((atoms["x"] >= 40) & (atoms["x"] <= 200) & (atoms["y"] >= 40)
                  & (atoms["y"] <= 150)).values
        _wait(lambda: state.n_selected == region.sum())
        np.testing.assert_array_equal(state.selected, region)

        # Choose motifs 1 and 2 in the table, merge, save.
        page.evaluate("Bokeh.documents[0].get_model_by_name('motifs').selected.indices"
                      " = [1, 2]")
        # The server answers the choice by filling in the name of the first chosen motif.
        page.wait_for_function(
            "() => Bokeh.documents[0].get_model_by_name('motif_name').value"
            " === 'chalcogen_pair'", timeout=10_000)
        page.get_by_role("button", name="Merge").click()
        _wait(lambda: state.dirty)
        page.get_by_role("button", name="Save").click()
        page.wait_for_function(
            "() => Bokeh.documents[0].get_model_by_name('status').text"
            ".includes('saved as label_edit_1')", timeout=60_000)
        assert not errors, errors
    saved = active_labels(path)
    assert saved.name == "label_edit_1"
    np.testing.assert_array_equal(saved.values, np.where(truth == 2, 1, truth))
    assert 2 not in saved.attrs["motif_names"]


def test_colour_by_a_measured_quantity_in_chromium(tmp_path):
    with _explorer_page(make_measured_result(tmp_path)) as (server, page, errors):
        state = _wait(lambda: server.sessions and server.sessions[0])
        get = "Bokeh.documents[0].get_model_by_name"
        assert page.evaluate(f"{get}('colour_by').options") == state.colour_choices()
        assert not page.evaluate(f"{get}('layout_colour_bar').visible")
        motif_colours = page.evaluate(f"{get}('atoms_in_view').data.colour")

        page.evaluate(f"{get}('colour_by').value = 'cross_section'")
        for bar in ("layout_colour_bar", "image_colour_bar"):
            page.wait_for_function(
                f"() => {get}('{bar}').visible && {get}('{bar}').title === 'cross_section'",
                timeout=10_000)
        low, high = page.evaluate(
            f"[{get}('layout_colour_bar').color_mapper.low,"
            f" {get}('layout_colour_bar').color_mapper.high]")
        values = state.data.measured["cross_section"]
        np.testing.assert_allclose((low, high), np.percentile(values, [1, 99]))
        # Every atom is drawn on the image in the colour of its cross-section.
        page.wait_for_function(
            f"c => {get}('atoms_in_view').data.colour.join() !== c.join()",
            arg=motif_colours, timeout=10_000)
        assert page.evaluate(f"{get}('atoms_in_view').data.colour") == (
            state.atom_colours(np.arange(state.data.n_atoms)))
        assert not errors, errors
