"""The state of one exploring session, free of any GUI: selection, working labels, edits."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import ParameterError
from ...io.edits import label_names, save_labels
from . import _kernels as K
from .data import ExplorerData

__all__ = ["Explorer"]

_RASTER_PX = 400  # layout raster size


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
    colour_by: str = field(init=False, default="motif")
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
    def colour_choices(self) -> list[str]:
        """What atoms may be coloured by: ``"motif"``, then each measured quantity stored."""
        return ["motif", *self.data.measured]

    def set_colour_by(self, name: str) -> tuple[float, float] | None:
        """Colour atoms by ``name`` (see :meth:`colour_choices`); return the range of its colour
        scale (None for motifs)."""
        if name not in self.colour_choices():
            raise ParameterError(
                f"cannot colour by {name!r}: choose one of {self.colour_choices()} (measured "
                "quantities exist only when the run had [measure] enabled = true)."
            )
        self.colour_by = name
        return self.colour_codes()[2]

    def colour_codes(self) -> tuple[np.ndarray, np.ndarray, tuple[float, float] | None]:
        """Per atom a row of an RGB table, the table, and the value range (None for motifs)."""
        if self.colour_by == "motif":
            _, rgb = K.palette_rgb(np.arange(-1, int(self.labels.max(initial=-1)) + 1))
            return self.labels + 1, rgb, None
        codes, span = K.quantity_codes(self.data.measured[self.colour_by])
        return codes, K.VALUE_RGB, span

    def describe(self, atom: int) -> str:
        """One line on ``atom``: its motif, and its value when coloured by a quantity."""
        label = int(self.labels[atom])
        text = f"atom {atom}: {self.names.get(label, 'unassigned')}"
        if self.colour_by != "motif":
            text += f" — {self.colour_by} = {self.data.measured[self.colour_by][atom]:.4g}"
        return text

    def atom_colours(self, atoms: np.ndarray) -> list[str]:
        """Hex colour of each of ``atoms`` in the current colouring."""
        codes, rgb, _ = self.colour_codes()
        hexes = np.array([f"#{r:02x}{g:02x}{b:02x}" for r, g, b in rgb.tolist()])
        return hexes[codes[atoms]].tolist()

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
        codes, rgb, _ = self.colour_codes()
        d = self.data
        # A selection changes only the overlay: the base raster is kept until the view, the
        # labels or the colouring change.
        key = (tuple(x_range), tuple(y_range), tuple(shape), self.edits, self.colour_by)
        if self._base_raster is None or self._base_raster[0] != key:
            counts = K.raster_counts(d.lx, d.ly, codes, len(rgb), x_range, y_range, shape)
            self._base_raster = (key, K.shade(counts, rgb))
        base = self._base_raster[1]
        sel = self.selected
        if sel.any():
            counts = K.raster_counts(d.lx[sel], d.ly[sel], codes[sel], len(rgb), x_range,
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
