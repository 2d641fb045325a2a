"""dmotif: structural motifs and their hierarchy from atomic-resolution images.

Follows Dan et al., Science Advances 8, eabk1005 (2022): detect atom columns, describe each
atom-centred patch by Zernike moments, reduce with PCA, lay out with a two-stage force-relaxed
layout, label the clusters and build a cross-scale hierarchy of motif-cells. Chunked, lazy and
deterministic, on a laptop or a dask cluster.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import synthetic
from .accessor import MotifAccessor
from .detect import detect_atoms, estimate_spacing
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

try:
    __version__ = version("dmotif")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

__all__ = [
    "DataError",
    "DmotifError",
    "ImageFileError",
    "MotifAccessor",
    "NoAtomsError",
    "NoLatticeError",
    "ParameterError",
    "StoreError",
    "StoreExistsError",
    "StoreIncompleteError",
    "__version__",
    "detect_atoms",
    "estimate_spacing",
    "synthetic",
]
