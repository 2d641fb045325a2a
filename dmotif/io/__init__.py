"""Reading and writing: image stacks, 4D-STEM data, result stores and edited labellings.

- :mod:`dmotif.io.images`: :func:`open_image`, :func:`save_image` (npy, TIFF, zarr and the
  vendors' formats through rosettasciio);
- :mod:`dmotif.io.stem4d`: :func:`open_4dstem`, :func:`save_4dstem` and the 4D-STEM data model;
- :mod:`dmotif.io.store`: result stores written atomically, stage by stage
  (:func:`write_result`, :func:`open_result`, :class:`Result`);
- :mod:`dmotif.io.edits`: edited labellings saved beside the learned one (:func:`save_labels`,
  :func:`active_labels`);
- :mod:`dmotif.io.export`: :func:`export` a result as CSV, Parquet, ASE extended XYZ, GraphML or
  node-link JSON;
- :mod:`dmotif.io.hyperspy`: HyperSpy ``Signal2D`` in (through :func:`open_image`) and out
  (:func:`to_hyperspy`, the image with a marker per atom, coloured by motif).
"""

from __future__ import annotations

from .edits import active_labels, save_labels
from .export import export
from .hyperspy import to_hyperspy
from .images import open_image, save_image
from .stem4d import open_4dstem, save_4dstem
from .store import Result, open_result, write_result

__all__ = [
    "Result",
    "active_labels",
    "export",
    "open_4dstem",
    "open_image",
    "open_result",
    "save_4dstem",
    "save_image",
    "save_labels",
    "to_hyperspy",
    "write_result",
]
