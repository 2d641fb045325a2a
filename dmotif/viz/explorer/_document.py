"""The bokeh document of the explorer: the layout and image figures, the patches and the motif
table, bound to one session's :class:`~dmotif.viz.explorer.state.Explorer`.

Imported only when a document is built: it imports bokeh (the ``explore`` extra).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from bokeh.events import MouseMove, RangesUpdate, SelectionGeometry
from bokeh.layouts import column, row
from bokeh.models import (
    BoxSelectTool,
    Button,
    ColorBar,
    ColumnDataSource,
    DataTable,
    Div,
    HTMLTemplateFormatter,
    LassoSelectTool,
    LinearColorMapper,
    Range1d,
    Select,
    Slider,
    TableColumn,
    TextInput,
    WheelZoomTool,
)
from bokeh.palettes import Greys256
from bokeh.plotting import figure

from ...errors import DataError, ParameterError
from . import _kernels as K
from .data import ExplorerData
from .state import Explorer

__all__ = ["build_document"]

#: Side of the layout and image figures, screen pixels.
_SIZE = 520
_BUTTONS = ("Merge", "Split", "Rename", "Select motif", "Undo", "Save")


def _figure_ranges(lo: np.ndarray, hi: np.ndarray) -> tuple[tuple[float, float], ...]:
    """Square ranges (equal aspect) around a bounding box, with a 5 % margin."""
    centre = (lo + hi) / 2
    half = max(float(np.max(hi - lo)) / 2 * 1.05, 1e-9)
    return tuple((float(c - half), float(c + half)) for c in centre)


def _selectable_figure(**kwargs: Any) -> Any:
    """A figure with pan, wheel zoom and box/lasso selection (box and wheel zoom active).

    The select tools report their geometry to the server (``SelectionGeometry``); an empty
    renderer gives them something to select, the atoms themselves never go to the browser.
    """
    fig = figure(width=_SIZE, height=_SIZE, tools="pan,wheel_zoom,reset",
                 toolbar_location="above", **kwargs)
    probe = fig.scatter(x=[], y=[], size=0)
    fig.add_tools(BoxSelectTool(renderers=[probe]), LassoSelectTool(renderers=[probe]))
    fig.toolbar.active_drag = fig.select_one(BoxSelectTool)
    fig.toolbar.active_scroll = fig.select_one(WheelZoomTool)
    return fig


def _raster_source(image: np.ndarray, x_range: tuple[float, float],
                   y_range: tuple[float, float], name: str) -> Any:
    """A one-image source placed over ``x_range`` × ``y_range``."""
    (x0, x1), (y0, y1) = x_range, y_range
    return ColumnDataSource({"image": [image], "x": [x0], "y": [y0], "dw": [x1 - x0],
                             "dh": [y1 - y0]}, name=name)


def _patch_figure(name: str, title: str, radius: int) -> tuple[Any, Any]:
    """A small figure showing one ``(2r+1)²`` patch, blank at first, and its source."""
    r = radius
    blank = np.full((2 * r + 1, 2 * r + 1), np.nan, dtype=np.float32)
    fig = figure(name=name, title=title, width=250, height=250, tools="",
                 toolbar_location=None, x_range=Range1d(-r - 0.5, r + 0.5),
                 y_range=Range1d(r + 0.5, -r - 0.5))
    src = ColumnDataSource({"image": [blank]}, name=f"{name}_source")
    fig.image(image="image", x=-r - 0.5, y=-r - 0.5, dw=2 * r + 1, dh=2 * r + 1,
              source=src, color_mapper=LinearColorMapper(palette=Greys256))
    fig.axis.visible = False
    return fig, src


class _Document:
    """The widgets of one session and the handlers that keep them in step with its state.

    Parameters
    ----------
    state : Explorer
        The session's selection, labels and edits.
    max_points : int
        Most atoms drawn on the image at once (a sample beyond).
    """

    def __init__(self, state: Explorer, *, max_points: int) -> None:
        self.state = state
        self.data: ExplorerData = state.data
        self.max_points = max_points
        data = self.data
        self.frame = int(data.frame[0]) if data.n_atoms else 0
        lo = np.array([data.lx.min(initial=0.0), data.ly.min(initial=0.0)])
        hi = np.array([data.lx.max(initial=1.0), data.ly.max(initial=1.0)])
        layout_range = _figure_ranges(lo, hi)
        self.view = {"layout": layout_range,
                     "image": ((0.0, float(data.width)), (0.0, float(data.height)))}
        self._layout_figure(*layout_range)
        self._image_figure()
        self._colour_bars()
        self.hover_fig, self.hover_src = _patch_figure("hover_patch", "patch under the cursor",
                                                       data.radius)
        self.mean_fig, self.mean_src = _patch_figure("mean_patch", "mean patch of the selection",
                                                     data.radius)
        self._controls()
        self._connect()
        self.refresh_atoms()
        self.set_status()

    # ----------------------------------------------------------------- widgets
    def _layout_figure(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.lay_fig = _selectable_figure(name="layout", title="FR layout",
                                          x_range=Range1d(*x_range), y_range=Range1d(*y_range),
                                          output_backend="canvas")
        base, sel = self.state.layout_rasters(x_range, y_range)
        # Two sources: a selection resends only its overlay, not the base raster.
        self.lay_src = _raster_source(base, x_range, y_range, "layout_raster")
        self.sel_src = _raster_source(sel, x_range, y_range, "selection_raster")
        self.base_r = self.lay_fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh",
                                              source=self.lay_src)
        self.lay_fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh",
                                source=self.sel_src)

    def _image_figure(self) -> None:
        data = self.data
        small, ov_step, (low, high) = data.overview(self.frame)
        self.img_fig = _selectable_figure(
            name="image", title="image (pixels)", x_range=Range1d(-0.5, data.width - 0.5),
            y_range=Range1d(data.height - 0.5, -0.5), match_aspect=True,
        )
        self.mapper = LinearColorMapper(palette=Greys256, low=low, high=high)
        self.img_src = ColumnDataSource({
            "image": [small], "x": [-0.5], "y": [-0.5], "dw": [small.shape[1] * ov_step],
            "dh": [small.shape[0] * ov_step],
        }, name="image_view")
        self.img_fig.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.img_src,
                           color_mapper=self.mapper)
        self.atoms_src = ColumnDataSource({"x": [], "y": [], "colour": []}, name="atoms_in_view")
        self.img_fig.scatter(x="x", y="y", color="colour", size=5, alpha=0.8,
                             source=self.atoms_src)
        self.hi_src = ColumnDataSource({"x": [], "y": []}, name="highlight")
        self.img_fig.scatter(x="x", y="y", marker="circle", size=9, fill_alpha=0.0,
                             line_color="#ffd400", line_width=1.5, source=self.hi_src)

    def _colour_bars(self) -> None:
        """One value scale, shown beside both figures while atoms are coloured by a quantity."""
        self.value_mapper = LinearColorMapper(palette=K.VALUE_HEXES, low=0.0, high=1.0,
                                              nan_color=K.UNASSIGNED_COLOUR)
        self.colour_bars = []
        for fig in (self.lay_fig, self.img_fig):
            bar = ColorBar(color_mapper=self.value_mapper, name=f"{fig.name}_colour_bar",
                           width=10, visible=False)
            fig.add_layout(bar, "right")
            self.colour_bars.append(bar)

    def _controls(self) -> None:
        self.table_src = ColumnDataSource(self.state.motif_table(), name="motifs")
        swatch = HTMLTemplateFormatter(
            template='<span style="color:<%= colour %>">&#9632;</span> <%= value %>')
        self.table = DataTable(
            source=self.table_src, name="motif_table", width=330, height=220,
            index_position=None, selectable="checkbox",
            columns=[TableColumn(field="id", title="id", formatter=swatch, width=60),
                     TableColumn(field="name", title="motif", width=180),
                     TableColumn(field="count", title="atoms", width=80)],
        )
        self.name_input = TextInput(name="motif_name", title="name of the chosen motif",
                                    width=330)
        self.buttons = {label: Button(label=label, name=label.lower().replace(" ", "_"),
                                      width=105) for label in _BUTTONS}
        self.buttons["Save"].button_type = "primary"
        self.status = Div(name="status", width=330, text="")
        n_frames = self.data.n_frames
        self.frame_slider = Slider(name="frame", title="frame", start=0,
                                   end=max(1, n_frames - 1), step=1, value=self.frame,
                                   visible=n_frames > 1, width=330)
        choices = self.state.colour_choices()
        self.colour_select = Select(name="colour_by", title="colour atoms by", value="motif",
                                    options=choices, visible=len(choices) > 1, width=330)

    def _connect(self) -> None:
        actions = (self.do_merge, self.do_split, self.do_rename, self.do_select, self.do_undo,
                   self.do_save)
        for label, action in zip(_BUTTONS, actions, strict=True):
            self.buttons[label].on_click(self._guarded(action))
        self.lay_fig.on_event(SelectionGeometry, self.on_layout_select)
        self.img_fig.on_event(SelectionGeometry, self.on_image_select)
        self.lay_fig.on_event(RangesUpdate, self.on_layout_range)
        self.img_fig.on_event(RangesUpdate, self.on_image_range)
        self.lay_fig.on_event(MouseMove, self.on_hover)
        self.table_src.selected.on_change("indices", self.on_choose)
        self.frame_slider.on_change("value_throttled", self.on_frame)
        self.colour_select.on_change("value", self.on_colour_by)

    def root(self) -> Any:
        """The document's root layout: the two figures above the patches and the controls."""
        b = self.buttons
        controls = column(
            self.frame_slider, self.colour_select, self.table, self.name_input,
            row(b["Merge"], b["Split"], b["Rename"]), row(b["Select motif"], b["Undo"], b["Save"]),
            self.status,
        )
        return column(row(self.lay_fig, self.img_fig),
                      row(self.hover_fig, self.mean_fig, controls))

    # ----------------------------------------------------------------- refreshing
    def chosen(self) -> list[int]:
        """The motifs ticked in the table."""
        return [int(self.table_src.data["id"][i]) for i in self.table_src.selected.indices]

    def set_status(self, message: str = "") -> None:
        """Say how many atoms are selected (in all, in this frame), whether edits are unsaved."""
        state = self.state
        in_frame = int(np.count_nonzero(state.selected[self.data.atoms_of_frame(self.frame)]))
        edited = " — unsaved edits" if state.dirty else f" — labelling: {state.saved_as}"
        self.status.text = (
            f'<span class="selected-count">{state.n_selected}</span> atoms selected '
            f"({in_frame} in frame {self.frame}){edited}"
            + (f"<br>{message}" if message else "")
        )

    def refresh_layout(self) -> None:
        """Re-rasterise the layout over its visible range (the base only when it changed)."""
        (x0, x1), (y0, y1) = self.view["layout"]
        base, sel = self.state.layout_rasters((x0, x1), (y0, y1))
        self.base_r.glyph.global_alpha = 0.35 if self.state.n_selected else 1.0
        place = {"x": [x0], "y": [y0], "dw": [x1 - x0], "dh": [y1 - y0]}
        if self.lay_src.data["image"][0] is not base:
            self.lay_src.data = {"image": [base], **place}
        self.sel_src.data = {"image": [sel], **place}

    def refresh_atoms(self) -> None:
        """Mark the selected atoms in view on the image, and colour every atom once zoomed in."""
        state, data = self.state, self.data
        xr_, yr_ = self.view["image"]
        idx, _ = state.atoms_in_view(self.frame, xr_, yr_, selected_only=True,
                                     max_points=self.max_points)
        self.hi_src.data = {"x": data.x[idx].astype(np.float32),
                            "y": data.y[idx].astype(np.float32)}
        idx, sampled = state.atoms_in_view(self.frame, xr_, yr_, selected_only=False,
                                           max_points=self.max_points // 5)
        if sampled:  # too many to tell apart: the image shows them better
            idx = idx[:0]
        self.atoms_src.data = {"x": data.x[idx].astype(np.float32),
                               "y": data.y[idx].astype(np.float32),
                               "colour": state.atom_colours(idx)}

    def refresh_image(self) -> None:
        """Re-read the visible region of the frame at the resolution of the screen."""
        xr_, yr_ = self.view["image"]
        arr, x, y, dw, dh = self.data.view(self.frame, xr_, yr_)
        self.img_src.data = {"image": [arr], "x": [x], "y": [y], "dw": [dw], "dh": [dh]}
        _, _, (lo_, hi_) = self.data.overview(self.frame)
        self.mapper.low, self.mapper.high = lo_, hi_

    def refresh_selection(self, message: str = "") -> None:
        """Show a new selection: layout overlay, atoms on the image, mean patch, status."""
        self.refresh_layout()
        self.refresh_atoms()
        self.mean_src.data = {"image": [self.data.mean_patch(np.flatnonzero(self.state.selected))]}
        self.set_status(message)

    def refresh_labels(self, message: str) -> None:
        """Show new labels: the motif table, then everything a selection shows."""
        self.table_src.data = self.state.motif_table()
        self.table_src.selected.indices = []
        self.refresh_selection(message)

    def _guarded(self, action: Callable[[], str]) -> Callable[..., None]:
        """A button handler: run ``action``, show its message or its error in the status."""

        def run(*_: Any) -> None:
            try:
                message = action()
            except (ParameterError, DataError) as exc:
                self.set_status(f'<span style="color:#c00">{exc}</span>')
                return
            self.refresh_labels(message)

        return run

    # ----------------------------------------------------------------- events
    def on_layout_select(self, event: Any) -> None:
        """A box or lasso drawn on the layout selects its atoms."""
        if event.final:
            self.state.select_layout(event.geometry)
            self.refresh_selection()

    def on_image_select(self, event: Any) -> None:
        """A box or lasso drawn on the image selects its atoms of this frame."""
        if event.final:
            self.state.select_image(event.geometry, self.frame)
            self.refresh_selection()

    def on_layout_range(self, event: Any) -> None:
        """Pan or zoom of the layout."""
        self.view["layout"] = ((event.x0, event.x1), (event.y0, event.y1))
        self.refresh_layout()

    def on_image_range(self, event: Any) -> None:
        """Pan or zoom of the image."""
        self.view["image"] = ((event.x0, event.x1), (event.y0, event.y1))
        self.refresh_image()
        self.refresh_atoms()

    def on_hover(self, event: Any) -> None:
        """The patch of the atom under the cursor in the layout (none until the tree is built)."""
        (x0, x1), _ = self.view["layout"]
        atom = self.data.nearest_in_layout(event.x, event.y, 4 * (x1 - x0) / _SIZE, wait=False)
        if atom is None:
            return
        self.hover_src.data = {"image": [self.data.patch(atom)]}
        self.hover_fig.title.text = self.state.describe(atom)

    def on_choose(self, _attr: str, _old: Any, new: list[int]) -> None:
        """Ticking a motif puts its name in the name box."""
        if new:
            self.name_input.value = str(self.table_src.data["name"][new[0]])

    def on_colour_by(self, _attr: str, _old: Any, new: str) -> None:
        """Colour the atoms of both figures by motif or by a measured quantity."""
        span = self.state.set_colour_by(new)
        if span is not None:
            self.value_mapper.update(low=span[0], high=span[1])
        for bar in self.colour_bars:
            bar.update(visible=span is not None, title=None if span is None else new)
        self.refresh_layout()
        self.refresh_atoms()

    def on_frame(self, _attr: str, _old: Any, new: int) -> None:
        """Another frame of the stack."""
        self.frame = int(new)
        self.refresh_image()
        self.refresh_atoms()
        self.set_status()

    # ----------------------------------------------------------------- actions
    def do_merge(self) -> str:
        """Merge the ticked motifs into the first."""
        motifs = self.chosen()
        n = self.state.merge(motifs)
        return f"merged {motifs[1:]} into {motifs[0]} ({n} atoms)."

    def do_split(self) -> str:
        """Move the selected atoms (of the ticked motif, if one) to a new motif."""
        motifs = self.chosen()
        if len(motifs) > 1:
            raise ParameterError(f"choose one motif to split (or none); got {motifs}.")
        new = self.state.split(motifs[0] if motifs else None)
        return f"new motif {new}: {self.state.names[new]}."

    def do_rename(self) -> str:
        """Give the ticked motif the name in the name box."""
        motifs = self.chosen()
        if len(motifs) != 1:
            raise ParameterError(f"choose exactly one motif to rename; got {motifs}.")
        self.state.rename(motifs[0], self.name_input.value)
        return f"motif {motifs[0]} is now {self.name_input.value.strip()!r}."

    def do_select(self) -> str:
        """Select every atom of the ticked motifs."""
        motifs = self.chosen()
        if not motifs:
            raise ParameterError("choose motifs in the table first.")
        self.state.select_motifs(motifs)
        return ""

    def do_undo(self) -> str:
        """Undo the last edit."""
        note = self.state.undo()
        return f"undone: {note}." if note else "nothing to undo."

    def do_save(self) -> str:
        """Save the working labels to the store as its active labelling."""
        return f"saved as {self.state.save()}."


def build_document(doc: Any, data: ExplorerData, *, max_points: int = 50_000,
                   on_session: Callable[[Explorer], None] | None = None) -> Explorer:
    """Fill a bokeh ``Document`` with the explorer of ``data``; return the session's state.

    Parameters
    ----------
    doc : bokeh.document.Document
        The document of a new session.
    data : ExplorerData
        What every session shares.
    max_points : int
        Most atoms drawn on the image at once (a sample beyond).
    on_session : callable, optional
        Called with the session's state before the document is filled.

    Returns
    -------
    Explorer
        The session's state, which the document's widgets drive.
    """
    state = Explorer(data)
    if on_session is not None:
        on_session(state)
    doc.add_root(_Document(state, max_points=max_points).root())
    doc.title = f"dmotif explore — {os.path.basename(data.result.path)}"
    return state
