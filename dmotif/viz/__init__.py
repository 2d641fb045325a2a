"""Looking at a result: figures, a self-contained HTML report and the interactive explorer.

- :mod:`dmotif.viz.plots`: :func:`plot_layout`, :func:`plot_motifs`, :func:`plot_map`;
- :mod:`dmotif.viz.hierarchy_plot`: :func:`plot_hierarchy`;
- :mod:`dmotif.viz.html_report`: :func:`report` (HTML page and PNG figures of a result store);
- :mod:`dmotif.viz.explorer`: :func:`explore` (the linked layout ↔ image explorer, bokeh).

Every figure is a :class:`matplotlib.figure.Figure` built without pyplot, so nothing here
touches the matplotlib backend a user has chosen.
"""

from __future__ import annotations

from .explorer import explore
from .hierarchy_plot import plot_hierarchy
from .html_report import report
from .plots import plot_layout, plot_map, plot_motifs

__all__ = ["explore", "plot_hierarchy", "plot_layout", "plot_map", "plot_motifs", "report"]
