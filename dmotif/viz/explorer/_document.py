"""The bokeh document of the explorer: the layout and image figures, the patches and the motif
table, bound to one session's :class:`~dmotif.viz.explorer.state.Explorer`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ...errors import DataError, ParameterError
from . import _kernels as K
from .data import ExplorerData
from .state import Explorer

__all__ = ["build_document"]


def _figure_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Square ranges (equal aspect) around a bounding box, with a 5 % margin."""
    centre = (lo + hi) / 2
    half = max(float(np.max(hi - lo)) / 2 * 1.05, 1e-9)
    return tuple((float(c - half), float(c + half)) for c in centre)


def build_document(doc: Any, data: ExplorerData, *, max_points: int = 50_000,
                   on_session: Callable[[Explorer], None] | None = None) -> Explorer:
    """Fill a bokeh ``Document`` with the explorer of ``data``; return the session's state."""
    from bokeh.events import MouseMove, RangesUpdate, SelectionGeometry
    from bokeh.layouts import column, row
    from bokeh.models import (
        BoxSelectTool,
        Button,
        ColumnDataSource,
        DataTable,
        Div,
        HTMLTemplateFormatter,
        LassoSelectTool,
        LinearColorMapper,
        Range1d,
        Slider,
        TableColumn,
        TextInput,
        WheelZoomTool,
    )
    from bokeh.palettes import Greys256
    from bokeh.plotting import figure

    state = Explorer(data)
    if on_session is not None:
        on_session(state)
    frame = {"value": int(data.frame[0]) if data.n_atoms else 0}
    size = 520

    # ---- layout plot
    lo = np.array([data.lx.min(initial=0.0), data.ly.min(initial=0.0)])
    hi = np.array([data.lx.max(initial=1.0), data.ly.max(initial=1.0)])
    (lx0, lx1), (ly0, ly1) = _figure_ranges(lo, hi)
    lay_fig = figure(
        name="layout", title="FR layout", width=size, height=size,
        x_range=Range1d(lx0, lx1), y_range=Range1d(ly0, ly1),
        tools="pan,wheel_zoom,reset", toolbar_location="above", output_backend="canvas",
    )
    # The select tools report their geometry to the server (SelectionGeometry); an empty
    # renderer gives them something to select, the atoms themselves never go to the browser.
    probe = lay_fig.scatter(x=[], y=[], size=0)
    lay_fig.add_tools(BoxSelectTool(renderers=[probe]), LassoSelectTool(renderers=[probe]))
    lay_fig.toolbar.active_drag = lay_fig.select_one(BoxSelectTool)
    lay_fig.toolbar.active_scroll = lay_fig.select_one(WheelZoomTool)
    base0, sel0 = state.layout_rasters((lx0, lx1), (ly0, ly1))
    # Two sources: a selection resends only its overlay, not the base raster.
    lay_src = ColumnDataSource({
        "image": [base0], "x": [lx0], "y": [ly0], "dw": [lx1 - lx0], "dh": [ly1 - ly0],
    }, name="layout_raster")
    sel_src = ColumnDataSource({
        "image": [sel0], "x": [lx0], "y": [ly0], "dw": [lx1 - lx0], "dh": [ly1 - ly0],
    }, name="selection_raster")
    base_r = lay_fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=lay_src)
    lay_fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=sel_src)

    # ---- image plot
    small, ov_step, (low, high) = data.overview(frame["value"])
    img_fig = figure(
        name="image", title="image (pixels)", width=size, height=size,
        x_range=Range1d(-0.5, data.width - 0.5), y_range=Range1d(data.height - 0.5, -0.5),
        tools="pan,wheel_zoom,reset", toolbar_location="above", match_aspect=True,
    )
    img_probe = img_fig.scatter(x=[], y=[], size=0)
    img_fig.add_tools(BoxSelectTool(renderers=[img_probe]), LassoSelectTool(renderers=[img_probe]))
    img_fig.toolbar.active_drag = img_fig.select_one(BoxSelectTool)
    img_fig.toolbar.active_scroll = img_fig.select_one(WheelZoomTool)
    mapper = LinearColorMapper(palette=Greys256, low=low, high=high)
    img_src = ColumnDataSource({
        "image": [small], "x": [-0.5], "y": [-0.5], "dw": [small.shape[1] * ov_step],
        "dh": [small.shape[0] * ov_step],
    }, name="image_view")
    img_fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=img_src,
                  color_mapper=mapper)
    atoms_src = ColumnDataSource({"x": [], "y": [], "colour": []}, name="atoms_in_view")
    img_fig.scatter(x="x", y="y", color="colour", size=5, alpha=0.8, source=atoms_src)
    hi_src = ColumnDataSource({"x": [], "y": []}, name="highlight")
    img_fig.scatter(x="x", y="y", marker="circle", size=9, fill_alpha=0.0,
                    line_color="#ffd400", line_width=1.5, source=hi_src)

    # ---- patches
    r = data.radius
    blank = np.full((2 * r + 1, 2 * r + 1), np.nan, dtype=np.float32)

    def patch_figure(name: str, title: str) -> tuple[Any, Any]:
        fig = figure(name=name, title=title, width=250, height=250, tools="",
                     toolbar_location=None, x_range=Range1d(-r - 0.5, r + 0.5),
                     y_range=Range1d(r + 0.5, -r - 0.5))
        src = ColumnDataSource({"image": [blank]}, name=f"{name}_source")
        fig.image(image="image", x=-r - 0.5, y=-r - 0.5, dw=2 * r + 1, dh=2 * r + 1,
                  source=src, color_mapper=LinearColorMapper(palette=Greys256))
        fig.axis.visible = False
        return fig, src

    hover_fig, hover_src = patch_figure("hover_patch", "patch under the cursor")
    mean_fig, mean_src = patch_figure("mean_patch", "mean patch of the selection")

    # ---- motif table and controls
    table_src = ColumnDataSource(state.motif_table(), name="motifs")
    swatch = HTMLTemplateFormatter(
        template='<span style="color:<%= colour %>">&#9632;</span> <%= value %>')
    table = DataTable(
        source=table_src, name="motif_table", width=330, height=220, index_position=None,
        selectable="checkbox",
        columns=[TableColumn(field="id", title="id", formatter=swatch, width=60),
                 TableColumn(field="name", title="motif", width=180),
                 TableColumn(field="count", title="atoms", width=80)],
    )
    name_input = TextInput(name="motif_name", title="name of the chosen motif", width=330)
    buttons = {label: Button(label=label, name=label.lower().replace(" ", "_"), width=105)
               for label in ("Merge", "Split", "Rename", "Select motif", "Undo", "Save")}
    buttons["Save"].button_type = "primary"
    status = Div(name="status", width=330, text="")
    frame_slider = Slider(name="frame", title="frame", start=0, end=max(1, data.n_frames - 1),
                          step=1, value=frame["value"], visible=data.n_frames > 1, width=330)

    def chosen() -> list[int]:
        return [int(table_src.data["id"][i]) for i in table_src.selected.indices]

    def set_status(message: str = "") -> None:
        in_frame = int(np.count_nonzero(state.selected[data.atoms_of_frame(frame["value"])]))
        edited = " — unsaved edits" if state.dirty else f" — labelling: {state.saved_as}"
        status.text = (
            f'<span class="selected-count">{state.n_selected}</span> atoms selected '
            f"({in_frame} in frame {frame['value']}){edited}"
            + (f"<br>{message}" if message else "")
        )

    view = {"layout": ((lx0, lx1), (ly0, ly1)),
            "image": ((0.0, float(data.width)), (0.0, float(data.height)))}

    def refresh_layout() -> None:
        (x0, x1), (y0, y1) = view["layout"]
        base, sel = state.layout_rasters((x0, x1), (y0, y1))
        base_r.glyph.global_alpha = 0.35 if state.n_selected else 1.0
        place = {"x": [x0], "y": [y0], "dw": [x1 - x0], "dh": [y1 - y0]}
        if lay_src.data["image"][0] is not base:
            lay_src.data = {"image": [base], **place}
        sel_src.data = {"image": [sel], **place}

    def refresh_atoms() -> None:
        xr_, yr_ = view["image"]
        f = frame["value"]
        idx, _ = state.atoms_in_view(f, xr_, yr_, selected_only=True, max_points=max_points)
        hi_src.data = {"x": data.x[idx].astype(np.float32), "y": data.y[idx].astype(np.float32)}
        idx, sampled = state.atoms_in_view(f, xr_, yr_, selected_only=False,
                                           max_points=max_points // 5)
        if sampled:  # too many to tell apart: the image shows them better
            idx = idx[:0]
        hexes = np.array(K.palette_rgb(np.arange(-1, int(state.labels.max(initial=-1)) + 1))[0])
        atoms_src.data = {"x": data.x[idx].astype(np.float32),
                          "y": data.y[idx].astype(np.float32),
                          "colour": hexes[state.labels[idx] + 1].tolist()}

    def refresh_image() -> None:
        xr_, yr_ = view["image"]
        arr, x, y, dw, dh = data.view(frame["value"], xr_, yr_)
        img_src.data = {"image": [arr], "x": [x], "y": [y], "dw": [dw], "dh": [dh]}
        _, _, (lo_, hi_) = data.overview(frame["value"])
        mapper.low, mapper.high = lo_, hi_

    def refresh_selection(message: str = "") -> None:
        refresh_layout()
        refresh_atoms()
        mean_src.data = {"image": [data.mean_patch(np.flatnonzero(state.selected))]}
        set_status(message)

    def refresh_labels(message: str) -> None:
        table_src.data = state.motif_table()
        table_src.selected.indices = []
        refresh_selection(message)

    def guarded(action: Callable[[], str]) -> Callable[..., None]:
        def run(*_: Any) -> None:
            try:
                message = action()
            except (ParameterError, DataError) as exc:
                set_status(f'<span style="color:#c00">{exc}</span>')
                return
            refresh_labels(message)
        return run

    def on_layout_select(event: Any) -> None:
        if event.final:
            state.select_layout(event.geometry)
            refresh_selection()

    def on_image_select(event: Any) -> None:
        if event.final:
            state.select_image(event.geometry, frame["value"])
            refresh_selection()

    def on_layout_range(event: Any) -> None:
        view["layout"] = ((event.x0, event.x1), (event.y0, event.y1))
        refresh_layout()

    def on_image_range(event: Any) -> None:
        view["image"] = ((event.x0, event.x1), (event.y0, event.y1))
        refresh_image()
        refresh_atoms()

    def on_hover(event: Any) -> None:
        (x0, x1), _ = view["layout"]
        atom = data.nearest_in_layout(event.x, event.y, 4 * (x1 - x0) / size, wait=False)
        if atom is None:
            return
        hover_src.data = {"image": [data.patch(atom)]}
        label = int(state.labels[atom])
        hover_fig.title.text = f"atom {atom}: {state.names.get(label, 'unassigned')}"

    def on_choose(_attr: str, _old: Any, new: list[int]) -> None:
        if new:
            name_input.value = str(table_src.data["name"][new[0]])

    def on_frame(_attr: str, _old: Any, new: int) -> None:
        frame["value"] = int(new)
        refresh_image()
        refresh_atoms()
        set_status()

    def do_merge() -> str:
        motifs = chosen()
        n = state.merge(motifs)
        return f"merged {motifs[1:]} into {motifs[0]} ({n} atoms)."

    def do_split() -> str:
        motifs = chosen()
        if len(motifs) > 1:
            raise ParameterError(f"choose one motif to split (or none); got {motifs}.")
        new = state.split(motifs[0] if motifs else None)
        return f"new motif {new}: {state.names[new]}."

    def do_rename() -> str:
        motifs = chosen()
        if len(motifs) != 1:
            raise ParameterError(f"choose exactly one motif to rename; got {motifs}.")
        state.rename(motifs[0], name_input.value)
        return f"motif {motifs[0]} is now {name_input.value.strip()!r}."

    def do_select() -> str:
        motifs = chosen()
        if not motifs:
            raise ParameterError("choose motifs in the table first.")
        state.select_motifs(motifs)
        return ""

    def do_undo() -> str:
        note = state.undo()
        return f"undone: {note}." if note else "nothing to undo."

    def do_save() -> str:
        return f"saved as {state.save()}."

    for label, action in (("Merge", do_merge), ("Split", do_split), ("Rename", do_rename),
                          ("Select motif", do_select), ("Undo", do_undo), ("Save", do_save)):
        buttons[label].on_click(guarded(action))
    lay_fig.on_event(SelectionGeometry, on_layout_select)
    img_fig.on_event(SelectionGeometry, on_image_select)
    lay_fig.on_event(RangesUpdate, on_layout_range)
    img_fig.on_event(RangesUpdate, on_image_range)
    lay_fig.on_event(MouseMove, on_hover)
    table_src.selected.on_change("indices", on_choose)
    frame_slider.on_change("value_throttled", on_frame)

    refresh_atoms()
    set_status()
    b = buttons
    controls = column(
        frame_slider, table, name_input,
        row(b["Merge"], b["Split"], b["Rename"]), row(b["Select motif"], b["Undo"], b["Save"]),
        status,
    )
    doc.add_root(column(row(lay_fig, img_fig), row(hover_fig, mean_fig, controls)))
    doc.title = f"dmotif explore — {os.path.basename(data.result.path)}"
    return state
