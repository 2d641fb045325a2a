"""Interactive exploration: the FR layout and the image side by side, linked, with motif editing.

A bokeh server application (the ``explore`` extra). ``dmotif explore OUT.zarr`` runs
:func:`serve`; in Jupyter, ``bokeh.io.show(dmotif.explore("OUT.zarr"))`` shows the same inline.

What it shows and does, for a million atoms:

- the layout as a raster (per-pixel counts coloured by motif, re-rasterised on zoom), with box
  and lasso selection; selected atoms are drawn on top in their colours, the rest dimmed;
- the image frame as a downsampled overview, re-read from the chunked stack at higher resolution
  for the visible region on zoom (only the needed tiles), with the selected atoms marked (a
  sample of at most ``max_points``) and, once zoomed in, every atom in view in its motif colour;
  box or lasso on the image selects its atoms, which light up in the layout;
- the mean patch of the selection, and the patch of the atom under the cursor in the layout;
- a motif table: merge the chosen motifs, split the selected atoms of a motif into a new one,
  rename, undo; **Save** writes the labelling to the store as a new, active labelling
  (:func:`dmotif.edits.save_labels`: crash-safe, the learned labels kept, hierarchy rebuilt).
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from . import _explore as K
from ._image import STACK_DIMS
from .edits import active_labels, label_names, save_labels
from .errors import DataError, DmotifError, ImageFileError, ParameterError
from .io import open_image
from .store import Result, open_result

__all__ = ["Explorer", "ExplorerData", "ExplorerServer", "explore", "serve"]

_OVERVIEW_PX = 1024  # longest side of a frame's cached overview
_VIEW_PX = 800  # longest side of an image re-read for the visible region
_RASTER_PX = 400  # layout raster size
_TILE_CACHE = 32  # full-resolution tiles kept in memory (1024² float32 = 4 MiB each)
_MEAN_PATCH_ATOMS = 1000  # atoms averaged for the selection's mean patch


class ExplorerData:
    """What every session of a server shares, read once: atoms, layout, labels, image access.

    Parameters
    ----------
    result : Result, str or os.PathLike
        A result store with ``frame``, ``y``, ``x``, ``layout(atom, axis)`` and a labelling.
    image : str, os.PathLike or xarray.DataArray, optional
        The image stack; by default the one named by the store's ``config["input"]["path"]``
        (a relative path is tried against the working directory, then beside the store).
    radius : int, optional
        Patch radius in pixels; by default the run's Zernike radius, else the nearest-neighbour
        distance of the atoms.

    Raises
    ------
    DataError
        When the store lacks positions, a 2-D layout or labels.
    ImageFileError
        When the image cannot be found; pass ``image=``.
    """

    def __init__(self, result: Result | str | os.PathLike, *, image: Any = None,
                 radius: int | None = None) -> None:
        self.result = result if isinstance(result, Result) else open_result(result)
        ds = self.result.dataset
        missing = [v for v in ("frame", "y", "x", "layout") if v not in ds]
        if missing:
            raise DataError(
                f"{self.result.path!r} lacks {missing}: the explorer needs atom positions and "
                "the 2-D layout. Run the pipeline through its layout stage first."
            )
        if ds["layout"].ndim != 2 or ds["layout"].shape[1] != 2:
            raise DataError(
                f"'layout' must be (atom, 2); got shape {ds['layout'].shape}."
            )
        self.frame = ds["frame"].values.astype(np.int32)
        self.y = ds["y"].values.astype(np.float64)
        self.x = ds["x"].values.astype(np.float64)
        layout = ds["layout"].values.astype(np.float64)
        self.lx, self.ly = layout[:, 0].copy(), layout[:, 1].copy()
        labels = active_labels(self.result)
        self.labels_name = str(labels.name)
        self.labels = labels.values.astype(np.int32)
        self.names: dict[int, str] = dict(labels.attrs["motif_names"])
        self.image = self._open_image(image)
        self.n_frames, self.height, self.width = (int(s) for s in self.image.shape)
        self._bounds = [np.cumsum((0, *c)) for c in self.image.data.chunks[1:]]
        self._tiles: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self._overviews: dict[int, tuple[np.ndarray, int, tuple[float, float]]] = {}
        self._frame_index: dict[int, np.ndarray] = {}
        self._tree: Any = None
        self.radius = int(radius) if radius is not None else self._default_radius()
        # Hover needs a k-d tree of the layout (about 0.5 s per million atoms): build it aside
        # so that it delays neither the first paint nor the first selection.
        self._tree_thread = threading.Thread(target=self._build_tree, daemon=True,
                                             name="dmotif-explore-tree")
        self._tree_thread.start()

    def _build_tree(self) -> None:
        from scipy.spatial import cKDTree

        self._tree = cKDTree(np.column_stack([self.lx, self.ly]))

    @property
    def n_atoms(self) -> int:
        return len(self.x)

    def _open_image(self, image: Any) -> Any:
        if isinstance(image, xr.DataArray) and image.dims == STACK_DIMS and image.chunks:
            return image  # already a stack: keep its tiling
        if image is not None and not isinstance(image, str | os.PathLike):
            return open_image(image, check=False)
        path = image if image is not None else self.result.config.get("input", {}).get("path")
        if path is None:
            raise ImageFileError(
                f"{self.result.path!r} does not record its image (config['input']['path']); "
                "pass the image explicitly (image=... / --image)."
            )
        text = os.fspath(path)
        beside = os.path.join(os.path.dirname(os.path.abspath(self.result.path)), text)
        if not os.path.isabs(text) and not os.path.exists(text) and os.path.exists(beside):
            text = beside
        try:
            return open_image(text, check=False)
        except ImageFileError as exc:
            raise ImageFileError(
                f"cannot open the image of {self.result.path!r}: {exc} If it moved, pass its "
                "new path (image=... / --image)."
            ) from exc

    def _default_radius(self) -> int:
        configured = self.result.config.get("features", {}).get("radius")
        if isinstance(configured, int | float) and configured > 0:
            return int(configured)
        spacing = self.result.attrs.get("atoms_attrs", {}).get("spacing_px")
        if not spacing:
            from scipy.spatial import cKDTree

            idx = self.atoms_of_frame(int(self.frame[0]))[:20_000] if self.n_atoms else []
            if len(idx) < 2:
                return 8
            pts = np.column_stack([self.y[idx], self.x[idx]])
            dist, _ = cKDTree(pts).query(pts, k=2)
            spacing = float(np.median(dist[:, 1]))
        return max(2, math.ceil(spacing))

    def atoms_of_frame(self, frame: int) -> np.ndarray:
        """Indices of the atoms of ``frame`` (cached)."""
        if frame not in self._frame_index:
            self._frame_index[frame] = np.flatnonzero(self.frame == frame)
        return self._frame_index[frame]

    # ----------------------------------------------------------------- image access
    def _tile(self, frame: int, ty: int, tx: int) -> np.ndarray:
        key = (frame, ty, tx)
        if key in self._tiles:
            self._tiles.move_to_end(key)
            return self._tiles[key]
        block = self.image.data.blocks[frame, ty, tx].compute(scheduler="threads")[0]
        self._tiles[key] = np.asarray(block, dtype=np.float32)
        if len(self._tiles) > _TILE_CACHE:
            self._tiles.popitem(last=False)
        return self._tiles[key]

    def window(self, frame: int, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, int, int]:
        """Pixels ``[y0:y1, x0:x1]`` of ``frame`` clipped to the image, from cached tiles;
        returns the array and its clipped origin ``(y0, x0)``."""
        y0, y1 = max(0, y0), min(self.height, y1)
        x0, x1 = max(0, x0), min(self.width, x1)
        out = np.empty((max(0, y1 - y0), max(0, x1 - x0)), dtype=np.float32)
        by, bx = self._bounds
        for ty in range(np.searchsorted(by, y0, "right") - 1, np.searchsorted(by, y1, "left")):
            for tx in range(np.searchsorted(bx, x0, "right") - 1, np.searchsorted(bx, x1, "left")):
                tile = self._tile(frame, ty, tx)
                sy0, sy1 = max(y0, by[ty]), min(y1, by[ty + 1])
                sx0, sx1 = max(x0, bx[tx]), min(x1, bx[tx + 1])
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[
                    sy0 - by[ty] : sy1 - by[ty], sx0 - bx[tx] : sx1 - bx[tx]
                ]
        return out, y0, x0

    def overview(self, frame: int) -> tuple[np.ndarray, int, tuple[float, float]]:
        """A frame downsampled (block mean) to at most 1024 px a side, its step, and a display
        range (0.5–99.5 percentiles); cached per frame."""
        if frame not in self._overviews:
            step = max(1, math.ceil(max(self.height, self.width) / _OVERVIEW_PX))
            plane = self.image.data[frame]
            if step > 1:
                plane = da.coarsen(np.mean, plane, {0: step, 1: step}, trim_excess=True)
            small = np.asarray(plane.compute(scheduler="threads"), dtype=np.float32)
            low, high = (float(v) for v in np.percentile(small, [0.5, 99.5]))
            self._overviews[frame] = (small, step, (low, high if high > low else low + 1.0))
        return self._overviews[frame]

    def view(self, frame: int, x_range: tuple[float, float], y_range: tuple[float, float],
             max_px: int = _VIEW_PX) -> tuple[np.ndarray, float, float, float, float]:
        """The visible region at a resolution fit for ``max_px`` screen pixels.

        Returns the array and its placement ``(x, y, dw, dh)`` in pixel coordinates, where
        pixel ``(i, j)`` is centred on ``(x, y) = (j, i)`` as atom positions are. Coarse
        views come from the cached overview; finer ones read only the tiles they cover.
        """
        small, ov_step, _ = self.overview(frame)
        x0, x1 = (int(v) for v in (max(0, math.floor(min(x_range))),
                                   min(self.width, math.ceil(max(x_range)))))
        y0, y1 = (int(v) for v in (max(0, math.floor(min(y_range))),
                                   min(self.height, math.ceil(max(y_range)))))
        if x1 <= x0 or y1 <= y0:
            return small, -0.5, -0.5, small.shape[1] * ov_step, small.shape[0] * ov_step
        step = max(1, math.ceil(max(x1 - x0, y1 - y0) / max_px))
        if step >= ov_step:  # coarse enough: from the overview in memory
            factor = step // ov_step
            step = factor * ov_step
            x0, y0 = x0 // ov_step * ov_step, y0 // ov_step * ov_step
            region = small[y0 // ov_step : -(-y1 // ov_step), x0 // ov_step : -(-x1 // ov_step)]
            arr = K.block_mean(region, factor)
        else:
            region = self.image.data[frame, y0:y1, x0:x1].compute(scheduler="threads")
            arr = K.block_mean(np.asarray(region), step)
        return arr, x0 - 0.5, y0 - 0.5, arr.shape[1] * step, arr.shape[0] * step

    def patch(self, atom: int) -> np.ndarray:
        """The ``(2r+1)²`` patch centred (sub-pixel) on ``atom``."""
        r = self.radius
        cy, cx = self.y[atom], self.x[atom]
        win, oy, ox = self.window(int(self.frame[atom]), int(cy) - r - 1, int(cy) + r + 3,
                                  int(cx) - r - 1, int(cx) + r + 3)
        return K.mean_patch(win, np.array([cy - oy]), np.array([cx - ox]), r)

    def mean_patch(self, atoms: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """Mean patch of (a sample of) ``atoms``.

        At most 1000 atoms, taken from the fewest image tiles that hold them (so that a
        selection spread over a huge image costs a few tile reads, not the whole image).
        """
        r = self.radius
        if len(atoms) == 0:
            return np.full((2 * r + 1, 2 * r + 1), np.nan, dtype=np.float32)
        rng = np.random.default_rng(seed)
        if len(atoms) > 20 * _MEAN_PATCH_ATOMS:
            atoms = rng.choice(atoms, 20 * _MEAN_PATCH_ATOMS, replace=False)
        by, bx = self._bounds
        ty = np.searchsorted(by, self.y[atoms], "right") - 1
        tx = np.searchsorted(bx, self.x[atoms], "right") - 1
        key = (self.frame[atoms].astype(np.int64) * len(by) + ty) * len(bx) + tx
        keys, counts = np.unique(key, return_counts=True)
        total = np.zeros((2 * r + 1, 2 * r + 1), dtype=np.float64)
        used = 0
        for k in keys[np.argsort(-counts, kind="stable")]:
            members = atoms[key == k]
            f, rest = divmod(int(k), len(by) * len(bx))
            t_y, t_x = divmod(rest, len(bx))
            y0, y1, x0, x1 = int(by[t_y]), int(by[t_y + 1]), int(bx[t_x]), int(bx[t_x + 1])
            # Atoms whose patch lies inside their tile need that tile alone (one read, not up
            # to nine); the others only when there are no such atoms.
            inner = ((self.y[members] >= y0 + r + 1) & (self.y[members] <= y1 - r - 2)
                     & (self.x[members] >= x0 + r + 1) & (self.x[members] <= x1 - r - 2))
            margin = 0 if inner.any() else r + 2
            members = (members[inner] if inner.any() else members)[: _MEAN_PATCH_ATOMS - used]
            win, oy, ox = self.window(f, y0 - margin, y1 + margin, x0 - margin, x1 + margin)
            patch = K.mean_patch(win, self.y[members] - oy, self.x[members] - ox, r)
            total += patch.astype(np.float64) * len(members)
            used += len(members)
            if used >= _MEAN_PATCH_ATOMS:
                break
        return (total / used).astype(np.float32)

    def nearest_in_layout(self, lx: float, ly: float, tolerance: float, *,
                          wait: bool = True) -> int | None:
        """The atom nearest to ``(lx, ly)`` in the layout, if within ``tolerance``.

        Until the layout's k-d tree is built, None at once unless ``wait``.
        """
        if self._tree is None:
            if not wait:
                return None
            self._tree_thread.join()
        dist, idx = self._tree.query([lx, ly], distance_upper_bound=tolerance)
        return int(idx) if np.isfinite(dist) else None


@dataclass
class Explorer:
    """The state of one exploring session, free of any GUI: selection, working labels, edits.

    The bokeh document binds its widgets to these methods; tests and scripts may drive them
    directly.
    """

    data: ExplorerData
    labels: np.ndarray = field(init=False)
    names: dict[int, str] = field(init=False)
    selected: np.ndarray = field(init=False)
    saved_as: str = field(init=False)
    history: list[tuple[np.ndarray, dict[int, str], str]] = field(init=False, default_factory=list)
    notes: list[str] = field(init=False, default_factory=list)
    edits: int = field(init=False, default=0)  # changes so far, undo included
    _base_raster: Any = field(init=False, default=None, repr=False)
    _saved: tuple[np.ndarray, dict[int, str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.labels = self.data.labels.copy()
        self.names = dict(self.data.names)
        self.selected = np.zeros(self.data.n_atoms, dtype=bool)
        self.saved_as = self.data.labels_name
        self._saved = (self.data.labels, dict(self.data.names))

    # ----------------------------------------------------------------- selection
    @property
    def n_selected(self) -> int:
        return int(np.count_nonzero(self.selected))

    def select(self, mask: np.ndarray) -> int:
        """Make ``mask`` the selection; return its size."""
        self.selected = np.asarray(mask, dtype=bool)
        return self.n_selected

    def select_layout(self, geometry: dict[str, Any]) -> int:
        """Select the atoms inside a box or lasso of the layout (bokeh selection geometry)."""
        return self.select(self._hit(geometry, self.data.lx, self.data.ly))

    def select_image(self, geometry: dict[str, Any], frame: int) -> int:
        """Select the atoms of ``frame`` inside a box or lasso drawn on the image."""
        idx = self.data.atoms_of_frame(frame)
        mask = np.zeros(self.data.n_atoms, dtype=bool)
        mask[idx] = self._hit(geometry, self.data.x[idx], self.data.y[idx])
        return self.select(mask)

    def select_motifs(self, motifs: list[int]) -> int:
        """Select every atom of the given motifs."""
        return self.select(np.isin(self.labels, np.asarray(motifs, dtype=np.int32)))

    @staticmethod
    def _hit(geometry: dict[str, Any], x: np.ndarray, y: np.ndarray) -> np.ndarray:
        kind = geometry.get("type")
        if kind == "rect":
            g = geometry
            return K.in_box(x, y, (g["x0"], g["x1"]), (g["y0"], g["y1"]))
        if kind == "poly":
            return K.in_polygon(x, y, np.asarray(geometry["x"]), np.asarray(geometry["y"]))
        raise ParameterError(f"unsupported selection geometry {kind!r}; use a box or a lasso.")

    # ----------------------------------------------------------------- edits
    def motifs(self) -> list[int]:
        """The motif ids present (ascending, -1 first when some atoms are unassigned)."""
        return [int(v) for v in np.unique(self.labels)]

    def _check_motifs(self, motifs: list[int]) -> list[int]:
        present = set(self.motifs())
        unknown = [m for m in motifs if m not in present or m < 0]
        if unknown:
            raise ParameterError(f"no motif {unknown} to edit; motifs are {sorted(present)}.")
        return [int(m) for m in motifs]

    def _remember(self, note: str) -> None:
        self.history.append((self.labels.copy(), dict(self.names), note))
        del self.history[:-20]  # undo depth: 20 copies of the labels
        self.notes.append(note)
        self.edits += 1

    def merge(self, motifs: list[int]) -> int:
        """Merge ``motifs`` into the first of them; return the number of atoms relabelled."""
        motifs = self._check_motifs(motifs)
        if len(set(motifs)) < 2:
            raise ParameterError(f"choose at least two motifs to merge; got {motifs}.")
        target, others = motifs[0], sorted(set(motifs[1:]) - {motifs[0]})
        self._remember(f"merge {', '.join(map(str, [target, *others]))} into {target}")
        moved = np.isin(self.labels, others)
        self.labels[moved] = target
        for m in others:
            self.names.pop(m, None)
        return int(moved.sum())

    def split(self, motif: int | None = None) -> int:
        """Move the selected atoms (of ``motif`` only, if given) to a new motif; return its id."""
        mask = self.selected.copy()
        if motif is not None:
            self._check_motifs([motif])
            mask &= self.labels == motif
        if not mask.any():
            raise ParameterError(
                "nothing to split: select atoms (box or lasso in the layout) "
                + (f"of motif {motif} " if motif is not None else "") + "first."
            )
        new = max([*self.motifs(), -1]) + 1
        source = "selection" if motif is None else self.names.get(motif, f"motif {motif}")
        self._remember(f"split {int(mask.sum())} atoms of {source} into {new}")
        self.labels[mask] = new
        self.names[new] = f"{source} (split)"
        self.names = label_names(self.labels, self.names)
        return new

    def rename(self, motif: int, name: str) -> None:
        """Rename ``motif``."""
        self._check_motifs([motif])
        name = name.strip()
        if not name:
            raise ParameterError("a motif name cannot be empty.")
        self._remember(f"rename {motif} to {name!r}")
        self.names[motif] = name

    def undo(self) -> str | None:
        """Undo the last edit; return its description (None when there is nothing to undo)."""
        if not self.history:
            return None
        self.labels, self.names, note = self.history.pop()
        if self.notes:
            self.notes.pop()
        else:  # the edit was saved already: undoing it is a change of its own
            self.notes.append(f"undo {note}")
        self.edits += 1
        return note

    @property
    def dirty(self) -> bool:
        """Whether the working labels differ from the last saved (or loaded) ones."""
        saved_labels, saved_names = self._saved
        return self.names != saved_names or not np.array_equal(self.labels, saved_labels)

    def save(self) -> str:
        """Write the working labels to the store as a new active labelling; return its name."""
        note = "; ".join(self.notes) or "saved unchanged"
        self.saved_as = save_labels(self.data.result, self.labels, motif_names=self.names,
                                    note=note)
        self.notes.clear()
        self._saved = (self.labels.copy(), dict(self.names))
        return self.saved_as

    # ----------------------------------------------------------------- views
    def motif_table(self) -> dict[str, list[Any]]:
        """Columns of the motif table: id, name, count, colour."""
        ids, counts = np.unique(self.labels, return_counts=True)
        hexes, _ = K.palette_rgb(ids)
        return {
            "id": [int(i) for i in ids],
            "name": [self.names.get(int(i), "unassigned" if i < 0 else f"motif {i}")
                     for i in ids],
            "count": [int(c) for c in counts],
            "colour": hexes,
        }

    def layout_rasters(self, x_range: tuple[float, float], y_range: tuple[float, float],
                       shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """RGBA rasters of the layout over the given ranges: all atoms, and the selected ones.

        The default raster has 400² pixels for large sets and coarser pixels for small ones
        (about 4 √N a side), so that a few thousand atoms do not vanish into single pixels.
        """
        if shape is None:
            side = int(np.clip(4 * math.sqrt(self.data.n_atoms), 64, _RASTER_PX))
            shape = (side, side)
        top = int(self.labels.max(initial=-1))
        ids = np.arange(-1, top + 1)
        _, rgb = K.palette_rgb(ids)
        codes = self.labels + 1
        d = self.data
        # A selection changes only the overlay: the base raster is kept until the view or the
        # labels change.
        key = (tuple(x_range), tuple(y_range), tuple(shape), self.edits)
        if self._base_raster is None or self._base_raster[0] != key:
            counts = K.raster_counts(d.lx, d.ly, codes, len(ids), x_range, y_range, shape)
            self._base_raster = (key, K.shade(counts, rgb))
        base = self._base_raster[1]
        sel = self.selected
        if sel.any():
            counts = K.raster_counts(d.lx[sel], d.ly[sel], codes[sel], len(ids), x_range,
                                     y_range, shape)
            return base, K.shade(counts, rgb, min_alpha=160)
        return base, np.zeros(shape, dtype=np.uint32)

    def atoms_in_view(self, frame: int, x_range: tuple[float, float],
                      y_range: tuple[float, float], *, selected_only: bool,
                      max_points: int, seed: int = 0) -> tuple[np.ndarray, bool]:
        """Indices of the atoms of ``frame`` in view (selected ones only, if asked), sampled
        down to ``max_points``; and whether a sample was taken."""
        idx = self.data.atoms_of_frame(frame)
        if selected_only:
            idx = idx[self.selected[idx]]
        idx = idx[K.in_box(self.data.x[idx], self.data.y[idx], x_range, y_range)]
        if len(idx) <= max_points:
            return idx, False
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(idx, max_points, replace=False)), True


# --------------------------------------------------------------------------- bokeh document


def _require_bokeh() -> None:
    try:
        import bokeh  # noqa: F401
    except ModuleNotFoundError as exc:
        raise DmotifError(
            "the explorer needs bokeh, which is not installed: pip install 'dmotif[explore]'."
        ) from exc


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


def explore(result: Result | str | os.PathLike, *, image: Any = None,
            radius: int | None = None, max_points: int = 50_000) -> Any:
    """The explorer as a bokeh application, to show inline in Jupyter.

    Parameters
    ----------
    result : Result, str or os.PathLike
        A result store (see :class:`ExplorerData` for what it must hold).
    image : str, os.PathLike or array, optional
        The image stack, if not at the path recorded in the store.
    radius : int, optional
        Patch radius in pixels (default: the run's, else the atom spacing).
    max_points : int
        Most atoms drawn on the image at once (a sample beyond).

    Returns
    -------
    bokeh.application.Application
        Show it with ``bokeh.io.show(app)`` after ``bokeh.io.output_notebook()`` (JupyterLab or
        Notebook; pass ``notebook_url=`` when the notebook server is not at localhost:8888).

    Raises
    ------
    DataError, ImageFileError, StoreError
        When the store or its image cannot be used.

    Examples
    --------
    >>> from bokeh.io import output_notebook, show  # doctest: +SKIP
    >>> output_notebook()  # doctest: +SKIP
    >>> show(dmotif.explore("scan.dmotif.zarr"))  # doctest: +SKIP
    """
    _require_bokeh()
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler

    data = ExplorerData(result, image=image, radius=radius)
    return Application(FunctionHandler(
        lambda doc: build_document(doc, data, max_points=max_points)))


class ExplorerServer:
    """A running explorer server (see :func:`serve`).

    Attributes
    ----------
    url : str
        Where to point a browser.
    sessions : list of Explorer
        The state of each open browser session (for scripts and tests).
    """

    def __init__(self, data: ExplorerData, address: str, port: int, max_points: int,
                 allow_websocket_origin: list[str] | None) -> None:
        self.data = data
        self.address = address
        self.port = port or _free_port(address)
        self.sessions: list[Explorer] = []
        self._max_points = max_points
        host = f"[{address}]" if ":" in address else address
        self.url = f"http://{host}:{self.port}/"
        self._origins = [f"{host}:{self.port}", f"localhost:{self.port}",
                         *(allow_websocket_origin or [])]
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _make_server(self) -> Any:
        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.server.server import Server

        def make(doc: Any) -> None:
            state = build_document(doc, self.data, max_points=self._max_points,
                                   on_session=self.sessions.append)
            doc.on_session_destroyed(lambda _ctx: self.sessions.remove(state))

        return Server({"/": Application(FunctionHandler(make))}, address=self.address,
                      port=self.port, allow_websocket_origin=self._origins)

    def run(self, *, open_browser: bool = False) -> None:
        """Serve in this thread until interrupted (Ctrl-C)."""
        self._server = self._make_server()
        self._server.start()
        if open_browser:
            self._server.io_loop.add_callback(self._server.show, "/")
        try:
            self._server.io_loop.start()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.stop()

    def start(self) -> ExplorerServer:
        """Serve from a background thread; return once the server listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(asyncio.new_event_loop())
            try:
                self._server = self._make_server()
                self._server.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._server.io_loop.start()

        self._thread = threading.Thread(target=main, name="dmotif-explore", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start`."""
        if self._server is None or self._thread is None:
            return
        loop = self._server.io_loop

        def shutdown() -> None:
            self._server.stop()
            loop.stop()

        loop.add_callback(shutdown)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> ExplorerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(address: str) -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def serve(
    result_path: str | os.PathLike,
    *,
    address: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = False,
    image: Any = None,
    radius: int | None = None,
    max_points: int = 50_000,
    allow_websocket_origin: list[str] | None = None,
    block: bool = True,
) -> ExplorerServer:
    """Serve the explorer of a result store as a local web app.

    Parameters
    ----------
    result_path : str or os.PathLike
        The result store.
    address : str
        Interface to listen on; loopback by default. Another address (e.g. ``"0.0.0.0"``)
        exposes the explorer, and the power to edit the store, to the network.
    port : int
        TCP port; 0 picks a free one.
    open_browser : bool
        Open the page in the default browser once serving.
    image, radius, max_points
        As for :func:`explore`.
    allow_websocket_origin : list of str, optional
        Further ``host:port`` origins the page may be loaded from (e.g. behind a proxy).
    block : bool
        Serve until interrupted (the command line). False: serve from a background thread and
        return at once; call ``.stop()`` when done.

    Returns
    -------
    ExplorerServer
        Its ``url``; with ``block=False``, the running server.

    Raises
    ------
    DataError, ImageFileError, StoreError
        When the store or its image cannot be used.
    ParameterError
        When the port is out of range.

    Examples
    --------
    >>> srv = dmotif.explorer.serve("scan.dmotif.zarr", block=False)  # doctest: +SKIP
    >>> print(srv.url)  # doctest: +SKIP
    http://127.0.0.1:40123/
    >>> srv.stop()  # doctest: +SKIP
    """
    if not 0 <= int(port) <= 65535:
        raise ParameterError(f"port must be in 0..65535 (0 = any free port); got {port}.")
    _require_bokeh()
    data = ExplorerData(result_path, image=image, radius=radius)
    server = ExplorerServer(data, address, int(port), max_points, allow_websocket_origin)
    if not block:
        return server.start()
    print(f"dmotif explore: serving {data.result.path} at {server.url} (Ctrl-C to stop)")
    server.run(open_browser=open_browser)
    return server
