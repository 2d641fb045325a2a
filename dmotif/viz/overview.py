"""Figures of a result over its image: the whole field of view beside a zoomed crop, and the
defect map (rare motifs and rare cells). Bounded at any size: the image is block-averaged to
at most ``max_side`` pixels and at most ``max_points`` atoms are drawn (a seeded sample)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .plots import MOTIF_COLORS

__all__ = ["motif_legend", "plot_defect_map", "plot_overview", "view_of"]

#: Columns across the zoomed crop: few enough to see each one, enough to see the lattice.
CROP_SPACINGS = 20


def view_of(image: Any, frame: int, max_side: int) -> tuple[np.ndarray, int]:
    """Frame ``frame`` block-averaged by an integer factor to at most ``max_side`` pixels."""
    ny, nx = image.sizes["y"], image.sizes["x"]
    step = max(1, -(-max(ny, nx) // max_side))
    plane = image.isel(frame=frame)
    if step > 1:
        plane = plane.coarsen(y=step, x=step, boundary="trim").mean()
    return np.asarray(plane.values, np.float32), step


def _sample(idx: np.ndarray, max_points: int, seed: int = 0) -> np.ndarray:
    if idx.size <= max_points:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))


def motif_legend(labels: np.ndarray, names: Mapping[int, str], *, max_entries: int = 12
                 ) -> list[Line2D]:
    """Legend handles of the most frequent motifs (colour = label's MOTIF_COLORS entry), the
    rest summarised in one entry."""
    ks, counts = np.unique(labels[labels >= 0], return_counts=True)
    order = ks[np.argsort(-counts, kind="stable")]
    handles = [Line2D([], [], ls="", marker="o", color=MOTIF_COLORS(int(k) % MOTIF_COLORS.N),
                      label=f"{names.get(int(k), k)} ({int(c):,})")
               for k, c in zip(order[:max_entries], np.sort(counts)[::-1][:max_entries],
                               strict=True)]
    if order.size > max_entries:
        handles.append(Line2D([], [], ls="", label=f"+ {order.size - max_entries} more motifs"))
    if (labels < 0).any():
        handles.append(Line2D([], [], ls="", marker="x", color="k",
                              label=f"unassigned ({int((labels < 0).sum()):,})"))
    return handles


def _draw_atoms(ax: Any, x: np.ndarray, y: np.ndarray, lab: np.ndarray, size: float,
                *, rings: bool = False) -> None:
    colours = np.array([MOTIF_COLORS(int(k) % MOTIF_COLORS.N) for k in range(MOTIF_COLORS.N)])
    ok = lab >= 0
    c = colours[lab[ok] % MOTIF_COLORS.N]
    if rings:  # open circles: the column stays visible inside its marker
        # a dark rim under each ring: a dark colour on a bright column still shows
        ax.scatter(x[ok], y[ok], s=size, facecolors="none", edgecolors="k", linewidths=2.6)
        ax.scatter(x[ok], y[ok], s=size, facecolors="none", edgecolors=c, linewidths=1.4)
    else:
        ax.scatter(x[ok], y[ok], s=size, c=c, linewidths=0)
    ax.scatter(x[~ok], y[~ok], s=size, marker="x", c="k", linewidths=0.6)


def plot_overview(
    image: Any, atoms: Any, labels: np.ndarray, names: Mapping[int, str], *, spacing: float,
    frame: int = 0, max_side: int = 1200, max_points: int = 40_000,
) -> Figure:
    """The whole field of view (atoms coloured by motif) beside a crop of ~20 spacings.

    Parameters
    ----------
    image : xarray.DataArray
        The image stack ``(frame, y, x)``.
    atoms : xarray.Dataset
        ``frame``, ``y``, ``x`` (pixels) per atom.
    labels : numpy.ndarray
        Motif label per atom (-1 unassigned).
    names : mapping
        Label -> name for the legend.
    spacing : float
        Nearest-neighbour column spacing, pixels: the crop is ``CROP_SPACINGS`` of them wide.
    frame : int
        Frame shown.
    max_side, max_points : int
        Bounds of the whole view: image pixels on its long side, atoms drawn.

    Returns
    -------
    matplotlib.figure.Figure
        Two image axes and the legend below them, outside the data.
    """
    ny, nx = image.sizes["y"], image.sizes["x"]
    view, step = view_of(image, frame, max_side)
    fr = np.asarray(atoms["frame"].values) == frame
    ay, ax_ = np.asarray(atoms["y"].values), np.asarray(atoms["x"].values)
    side = int(min(max(ny, nx), CROP_SPACINGS * spacing))
    y0, x0 = max(0, (ny - side) // 2), max(0, (nx - side) // 2)
    y1, x1 = min(ny, y0 + side), min(nx, x0 + side)
    fig = Figure(figsize=(13, 7.4))
    whole, zoom = fig.subplots(1, 2)
    whole.imshow(view, cmap="gray", extent=(-0.5, view.shape[1] * step - 0.5,
                                            view.shape[0] * step - 0.5, -0.5))
    idx = _sample(np.flatnonzero(fr), max_points)
    dot = float(np.clip(2e4 / max(idx.size, 1), 0.3, 6))
    _draw_atoms(whole, ax_[idx], ay[idx], labels[idx], dot)
    whole.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=1.5))
    whole.set_title(f"whole field of view, frame {frame} ({ny}×{nx} px"
                    + (f", {idx.size:,} of {int(fr.sum()):,} atoms drawn)"
                       if idx.size < fr.sum() else ")"), fontsize=10)
    crop = np.asarray(image.isel(frame=frame, y=slice(y0, y1), x=slice(x0, x1)).values)
    zoom.imshow(crop, cmap="gray", extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
    inside = np.flatnonzero(fr & (ay >= y0) & (ay < y1) & (ax_ >= x0) & (ax_ < x1))
    # rings 0.7 spacing across: around a column's bright disc, not on it
    size = (72 * 6.0 * 0.7 * spacing / max(x1 - x0, 1)) ** 2
    _draw_atoms(zoom, ax_[inside], ay[inside], labels[inside], size, rings=True)
    whole.set_xlim(-0.5, nx - 0.5)
    whole.set_ylim(ny - 0.5, -0.5)
    zoom.set_xlim(x0 - 0.5, x1 - 0.5)
    zoom.set_ylim(y1 - 0.5, y0 - 0.5)
    zoom.set_title(f"zoom (yellow box): y {y0}–{y1}, x {x0}–{x1} px, "
                   f"≈{(x1 - x0) / spacing:.0f} spacings across", fontsize=10)
    for a in (whole, zoom):
        a.set_xticks([])
        a.set_yticks([])
    handles = motif_legend(labels[fr], names)
    fig.legend(handles=handles, loc="lower center", ncols=min(len(handles), 5),
               title="motif (atoms)", fontsize=9, frameon=False)
    # room under the images for the legend's title and rows (0.3 in each)
    rows = -(-len(handles) // 5) + 1
    fig.subplots_adjust(left=0.02, right=0.98, top=0.94,
                        bottom=(0.2 + 0.3 * rows) / fig.get_figheight(), wspace=0.04)
    return fig


def plot_defect_map(
    image: Any, atoms: Any, labels: np.ndarray, names: Mapping[int, str],
    cells: Mapping[str, np.ndarray] | None, *, frame: int = 0, rare: float = 0.05,
    max_side: int = 1200, max_points: int = 40_000, max_kinds: int = 8,
) -> Figure:
    """Rare motifs and rare cell types over the whole image.

    Parameters
    ----------
    image, atoms, labels, names, frame, max_side, max_points
        As :func:`plot_overview`.
    cells : mapping, optional
        ``frame``, ``y``, ``x``, ``type`` (0 = dominant) per cell and ``titles`` per type.
    rare : float
        A motif or cell type is rare below this fraction of its atoms or cells.
    max_kinds : int
        Kinds drawn in their own colour; rarer ones share one grey marker.

    Returns
    -------
    matplotlib.figure.Figure
        The image, faint; rare motifs as dots, rare cells (not the dominant type) as open
        squares; the legend right of the axes.
    """
    view, step = view_of(image, frame, max_side)
    fig = Figure(figsize=(11, 8))
    ax = fig.add_axes((0.02, 0.03, 0.62, 0.9))
    ax.imshow(view, cmap="gray", alpha=0.6, extent=(-0.5, view.shape[1] * step - 0.5,
                                                     view.shape[0] * step - 0.5, -0.5))
    handles: list[Any] = []
    fr = np.asarray(atoms["frame"].values) == frame
    ks, counts = np.unique(labels[labels >= 0], return_counts=True)
    rare_k = ks[counts < rare * max(counts.sum(), 1)]
    rare_k = rare_k[np.argsort(counts[np.isin(ks, rare_k)], kind="stable")]
    ay, ax_ = np.asarray(atoms["y"].values), np.asarray(atoms["x"].values)
    for k in rare_k[:max_kinds]:
        idx = _sample(np.flatnonzero(fr & (labels == k)), max_points)
        colour = MOTIF_COLORS(int(k) % MOTIF_COLORS.N)
        ax.scatter(ax_[idx], ay[idx], s=14, color=colour, linewidths=0)
        handles.append(Line2D([], [], ls="", marker="o", color=colour,
                              label=f"motif {names.get(int(k), k)}: {int((labels == k).sum()):,}"))
    if rare_k.size > max_kinds:
        handles.append(Line2D([], [], ls="", label=f"+ {rare_k.size - max_kinds} rarer motifs"))
    if cells is not None and len(cells["type"]):
        ct = np.asarray(cells["type"])
        cf = np.asarray(cells["frame"]) == frame
        tk, tc = np.unique(ct, return_counts=True)
        odd = tk[(tk != 0) & (tc < rare * tc.sum())]
        odd = odd[np.argsort(-tc[np.isin(tk, odd)], kind="stable")]
        # another palette than the motifs': a cell's square never reads as a motif's dot
        cmap = mpl.colormaps["Dark2"]
        titles = list(cells.get("titles", []))
        for j, t in enumerate(odd[:max_kinds]):
            idx = _sample(np.flatnonzero(cf & (ct == t)), max_points)
            colour = cmap(j % cmap.N)
            ax.scatter(np.asarray(cells["x"])[idx], np.asarray(cells["y"])[idx], s=60,
                       marker="s", facecolors="none", edgecolors=[colour], linewidths=1.2)
            handles.append(Line2D([], [], ls="", marker="s", mfc="none", color=colour,
                                  label=f"cell {titles[t] if t < len(titles) else t}: "
                                        f"{int((ct == t).sum()):,}"))
        if odd.size > max_kinds:
            handles.append(Line2D([], [], ls="", label=f"+ {odd.size - max_kinds} rarer cells"))
    ax.set_xlim(-0.5, image.sizes["x"] - 0.5)
    ax.set_ylim(image.sizes["y"] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"defect map, frame {frame}: motifs and cell types under {rare:.0%}",
                 fontsize=10)
    if not handles:
        handles.append(Line2D([], [], ls="", label=f"nothing under {rare:.0%}"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.66, 0.5), fontsize=9,
               frameon=False, title="rare (count)")
    return fig
