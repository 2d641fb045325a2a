"""dmotif: structural motifs and their hierarchy from atomic-resolution images.

Follows Dan et al., Science Advances 8, eabk1005 (2022): detect atom columns, describe each
atom-centred patch by Zernike moments, reduce with PCA, lay out with a two-stage force-relaxed
layout, label the clusters and build a cross-scale hierarchy of motif-cells. Chunked, lazy and
deterministic, on a laptop or a dask cluster.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import synthetic
from .edits import active_labels, save_labels
from .errors import (
    DataError,
    DmotifError,
    ImageFileError,
    NoAtomsError,
    NoLatticeError,
    ParameterError,
    StoreError,
    StoreExistsError,
    StoreIncompleteError,
)
from .explorer import explore
from .io import open_image, save_image
from .store import Result, open_result, write_result

try:
    __version__ = version("dmotif")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "DataError",
    "DmotifError",
    "ImageFileError",
    "NoAtomsError",
    "NoLatticeError",
    "ParameterError",
    "Result",
    "StoreError",
    "StoreExistsError",
    "StoreIncompleteError",
    "__version__",
    "active_labels",
    "explore",
    "open_image",
    "open_result",
    "save_image",
    "save_labels",
    "synthetic",
    "write_result",
]
