"""The figure of the motif hierarchy: levels top to bottom, mean patches, multiplicities."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import networkx as nx
import numpy as np
from matplotlib.figure import Figure

from ..errors import DataError
from .plots import grey_range

__all__ = ["plot_hierarchy"]

# distinct colours for the level-2 types after the dominant one (grey): matplotlib's default
# cycle without its grey, then light tones of its first three
_PALETTE = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9", "#aec7e8", "#ffbb78",
            "#98df8a")


def _row(d: dict[str, Any]) -> tuple[int, int]:
    # a learned view of a level sits in its own row just above the enumerated one
    return d["level"], int("view" in d)


def _positions(graph: nx.DiGraph, max_per_level: int
               ) -> tuple[dict[Any, tuple[float, float]], dict[tuple[int, int], tuple]]:
    """Levels top to bottom (level 1 at the bottom row), the ``max_per_level`` most frequent
    nodes of each row spread evenly; the rest of a row as ``(position, nodes, count)``."""
    levels = sorted({_row(d) for _, d in graph.nodes(data=True)}, reverse=True)
    pos, rest = {}, {}
    for row, level in enumerate(levels):
        nodes = [n for n, d in graph.nodes(data=True) if _row(d) == level]
        nodes.sort(key=lambda n: -graph.nodes[n].get("count", 0))
        shown, hidden = nodes[:max_per_level], nodes[max_per_level:]
        slots = len(shown) + (1 if hidden else 0)
        y = 1.0 - (row + 0.5) / len(levels)
        for k, n in enumerate(shown):
            pos[n] = ((k + 1) / (slots + 1), y)
        if hidden:
            rest[level] = ((slots / (slots + 1), y), len(hidden),
                           sum(graph.nodes[n].get("count", 0) for n in hidden))
    return pos, rest


def _label(d: dict[str, Any], width: int = 15) -> str:
    """The node's title (or name) wrapped to a few short lines."""
    import textwrap

    text = str(d.get("title") or d.get("name", ""))
    lines = textwrap.wrap(text.replace(" + ", " +\u00a0"), width) or [""]
    if len(lines) > 3:
        lines = [*lines[:2], lines[2][: width - 1] + "…"]
    return "\n".join(lines)


def plot_hierarchy(
    graph: nx.DiGraph, *, patch_size: float = 0.1, max_per_level: int = 8
) -> Figure:
    """Draw a hierarchy graph: levels top to bottom, each node's mean patch, edge multiplicities.

    Parameters
    ----------
    graph : networkx.DiGraph
        From :func:`dmotif.build_hierarchy`.
    patch_size : float
        Side of a node's patch image, as a fraction of the figure.
    max_per_level : int
        The most frequent nodes drawn per level; the others are summarised in one text
        ("+ N more"), so the figure stays readable and small whatever the number of motifs.

    Returns
    -------
    matplotlib.figure.Figure
        One inset axes per node that has a ``mean_patch`` (its image on one grey scale with the
        other patches of its level, framed in its type's colour at level 2) or a level-3
        pattern (its cells on the lattice grid coloured by type, the defect complexes of Dan
        et al. 2022, Fig. 4), and a marker for the others; node texts give the name and
        count, edge texts the multiplicities other than 1 ("is made of" edges, arrows) or the
        overlap (a cell type and a learned motif, dashed lines).

    Raises
    ------
    DataError
        When the graph is empty or a node has no ``level``.
    """
    if graph.number_of_nodes() == 0:
        raise DataError("the hierarchy graph is empty: nothing to draw.")
    if any("level" not in d for _, d in graph.nodes(data=True)):
        raise DataError("every node needs a 'level' attribute, as build_hierarchy sets.")
    pos, rest = _positions(graph, max_per_level)
    rows = Counter(_row(d) for n, d in graph.nodes(data=True) if n in pos)
    width = max(rows.values()) + (1 if rest else 0)
    # about 1.25 inches a node: at the report's width (1100 px) the texts are read at close to
    # their size in points
    fig = Figure(figsize=(max(6.0, 1.25 * width), 2.9 * len(rows)))
    # neighbouring patches never touch: at most 80 % of the gap between two nodes of a row
    patch_size = min(patch_size, 0.8 / (width + 1))
    # the patches are squares on a figure that is not
    ph = patch_size * fig.get_figwidth() / fig.get_figheight()
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    colour = _type_colours(graph, pos)
    for a, b, d in graph.edges(data=True):
        # the regions of many cells list their cell types in their title already
        if a not in pos or b not in pos or "sizes" in graph.nodes[a]:
            continue
        (x0, y0), (x1, y1) = pos[a], pos[b]
        overlap = "overlap" in d
        ax.annotate("", xy=(x1, y1 + ph / 2), xytext=(x0, y0 - ph / 2),
                    arrowprops={"arrowstyle": "-" if overlap else "->", "color": "0.6",
                                "lw": 0.6, "ls": "--" if overlap else "-", "alpha": 0.6})
        mult = d.get("multiplicity", 1)
        if overlap or mult != 1:
            # below the parent's text, where the edges of one node have fanned out
            tx, ty = x0 + 0.4 * (x1 - x0), (y0 - ph / 2) + 0.4 * ((y1 + ph / 2) - (y0 - ph / 2))
            ax.text(tx, ty, f"{d['overlap']}" if overlap else f"×{mult}", fontsize=8,
                    ha="center", va="center", color="C0" if overlap else "C3",
                    gid="overlap" if overlap else "multiplicity",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none",
                          "alpha": 0.8})
    for (x, y), n_hidden, count in rest.values():
        ax.text(x, y, f"+ {n_hidden} more\n(n={count:,})", fontsize=9, ha="center",
                va="center", color="0.3", gid="more")
    # one grey scale a level, as the report's motif table: a brighter motif shows brighter
    shown = defaultdict(list)
    for n, d in graph.nodes(data=True):
        if n in pos and d.get("mean_patch") is not None:
            shown[d["level"]].append(d["mean_patch"])
    grey = {level: grey_range(patches) for level, patches in shown.items()}
    for n, d in graph.nodes(data=True):
        if n not in pos:
            continue
        x, y = pos[n]
        box = (x - patch_size / 2, y - ph / 2, patch_size, ph)
        patch = d.get("mean_patch")
        if patch is not None and np.size(patch):
            inset = ax.inset_axes(box, transform=ax.transAxes)
            lo, hi = grey.get(d["level"], (None, None))
            inset.imshow(np.asarray(patch), cmap="gray", vmin=lo, vmax=hi)
            inset.set_xticks([])
            inset.set_yticks([])
            if n in colour:
                for spine in inset.spines.values():
                    spine.set_edgecolor(colour[n])
                    spine.set_linewidth(2.5)
            inset.set_gid(f"node:{n}")
        elif d.get("cells") and d.get("types"):
            _draw_pattern(ax.inset_axes(box, transform=ax.transAxes), d, colour, gid=n)
        else:
            ax.plot([x], [y], "o", ms=12, color=f"C{d['level'] % 10}", gid=f"node:{n}")
        ax.text(x, y - ph / 2 - 0.01, f"{_label(d)}\nn={int(d.get('count', 0)):,}",
                fontsize=9, ha="center", va="top")
    return fig


def _type_colours(graph: nx.DiGraph, pos: dict) -> dict[Any, str]:
    """A colour per drawn level-2 type, shared by its patch frame and the pattern sketches
    that hold it; the most frequent (dominant) type is grey."""
    level2 = sorted((n for n, d in graph.nodes(data=True)
                     if n in pos and d["level"] == 2 and "view" not in d),
                    key=lambda n: -graph.nodes[n].get("count", 0))
    return {n: ("0.55" if k == 0 else _PALETTE[(k - 1) % len(_PALETTE)])
            for k, n in enumerate(level2)}


def _draw_pattern(inset: Any, d: dict[str, Any], colour: dict[Any, str], gid: Any) -> None:
    """A level-3 pattern as its cells on the lattice grid, each coloured by its type (the
    colour of that type's frame in the level-2 row; white when that type is not drawn)."""
    ij = np.asarray(d["cells"], float).reshape(-1, 2)
    # the cell indices drawn on a 60° grid: the honeycomb's cells, and a recognisable sketch
    # of a square lattice's
    xy = np.column_stack([ij[:, 0] + 0.5 * ij[:, 1], np.sqrt(3) / 2 * ij[:, 1]])
    for a, b in d.get("edges", []):
        inset.plot(xy[[a, b], 0], xy[[a, b], 1], "-", color="0.4", lw=1, zorder=1)
    face = [colour.get(f"L2:{t}", "white") for t in d["types"]]
    inset.scatter(xy[:, 0], xy[:, 1], s=120, c=face, marker="h", edgecolors="0.2",
                  linewidths=0.8, zorder=2)
    lo, hi = xy.min(axis=0) - 0.8, xy.max(axis=0) + 0.8
    half = 0.5 * max(hi - lo)
    mid = 0.5 * (lo + hi)
    inset.set_xlim(mid[0] - half, mid[0] + half)
    inset.set_ylim(mid[1] - half, mid[1] + half)
    inset.set_aspect("equal")
    inset.set_xticks([])
    inset.set_yticks([])
    inset.set_gid(f"node:{gid}")
