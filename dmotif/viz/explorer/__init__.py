"""Interactive exploration: the FR layout and the image side by side, linked, with motif editing.

A bokeh server application (the ``explore`` extra). ``dmotif explore OUT.zarr`` runs
:func:`dmotif.viz.explorer.serve`; in Jupyter, ``bokeh.io.show(dmotif.explore("OUT.zarr"))``
shows the same inline.

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
  (:func:`dmotif.io.edits.save_labels`: crash-safe, the learned labels kept, hierarchy rebuilt).

The parts: :mod:`~dmotif.viz.explorer.data` (what every session shares, read once: atoms,
layout, labels, image tiles), :mod:`~dmotif.viz.explorer.state` (one session's selection and
edits, free of any GUI), ``_document`` (the bokeh document bound to that state),
:mod:`~dmotif.viz.explorer.server` (the application and its server) and ``_kernels`` (numpy
rasters, hit tests and patches).
"""

from __future__ import annotations

from .data import ExplorerData
from .server import ExplorerServer, explore, serve
from .state import Explorer

__all__ = ["Explorer", "ExplorerData", "ExplorerServer", "explore", "serve"]
