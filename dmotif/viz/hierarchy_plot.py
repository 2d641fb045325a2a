"""The figure of the motif hierarchy: levels top to bottom, mean patches, multiplicities."""

from __future__ import annotations

from collections import Counter
from typing import Any

import networkx as nx
import numpy as np
from matplotlib.figure import Figure

from ..errors import DataError

__all__ = ["plot_hierarchy"]


def _row(d: dict[str, Any]) -> tuple[int, int]:
    # a learned view of a level sits in its own row just above the enumerated one
    return d["level"], int("view" in d)


def _positions(graph: nx.DiGraph) -> dict[Any, tuple[float, float]]:
    """Levels top to bottom (level 1 at the bottom row), nodes spread evenly in each row."""
    levels = sorted({_row(d) for _, d in graph.nodes(data=True)}, reverse=True)
    pos = {}
    for row, level in enumerate(levels):
        nodes = [n for n, d in graph.nodes(data=True) if _row(d) == level]
        nodes.sort(key=lambda n: -graph.nodes[n].get("count", 0))
        for k, n in enumerate(nodes):
            pos[n] = ((k + 1) / (len(nodes) + 1), 1.0 - (row + 0.5) / len(levels))
    return pos


def plot_hierarchy(graph: nx.DiGraph, *, patch_size: float = 0.08) -> Figure:
    """Draw a hierarchy graph: levels top to bottom, each node's mean patch, edge multiplicities.

    Parameters
    ----------
    graph : networkx.DiGraph
        From :func:`dmotif.build_hierarchy`.
    patch_size : float
        Side of a node's patch image, as a fraction of the figure.

    Returns
    -------
    matplotlib.figure.Figure
        One inset axes per node that has a ``mean_patch`` (its image) and a marker for the
        others; node texts give the name and count, edge texts the multiplicity ("is made
        of" edges, arrows) or the overlap (a cell type and a learned motif, dashed lines).

    Raises
    ------
    DataError
        When the graph is empty or a node has no ``level``.
    """
    if graph.number_of_nodes() == 0:
        raise DataError("the hierarchy graph is empty: nothing to draw.")
    if any("level" not in d for _, d in graph.nodes(data=True)):
        raise DataError("every node needs a 'level' attribute, as build_hierarchy sets.")
    pos = _positions(graph)
    rows = Counter(_row(d) for _, d in graph.nodes(data=True))
    fig = Figure(figsize=(max(6.0, 1.6 * max(rows.values())), 2.4 * len(rows)))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    for a, b, d in graph.edges(data=True):
        (x0, y0), (x1, y1) = pos[a], pos[b]
        overlap = "overlap" in d
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops={"arrowstyle": "-" if overlap else "->", "color": "0.5",
                                "lw": 0.8, "ls": "--" if overlap else "-"})
        text = f"{d['overlap']}" if overlap else f"×{d.get('multiplicity', 1)}"
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, text, fontsize=7, ha="center", va="center",
                color="C0" if overlap else "C3", gid="overlap" if overlap else "multiplicity")
    for n, d in graph.nodes(data=True):
        x, y = pos[n]
        patch = d.get("mean_patch")
        if patch is not None and np.size(patch):
            inset = ax.inset_axes((x - patch_size / 2, y - patch_size / 2, patch_size,
                                   patch_size), transform=ax.transAxes)
            inset.imshow(np.asarray(patch), cmap="gray")
            inset.set_xticks([])
            inset.set_yticks([])
            inset.set_gid(f"node:{n}")
        else:
            ax.plot([x], [y], "o", ms=12, color=f"C{d['level'] % 10}", gid=f"node:{n}")
        # a pattern's name lists its cell types; one per line keeps crowded rows readable
        name = str(d.get("name", n)).replace(" + ", "\n+ ")
        ax.text(x, y - patch_size / 2 - 0.01, f"{name}\nn={d.get('count', '?')}",
                fontsize=7, ha="center", va="top")
    return fig
