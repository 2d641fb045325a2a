"""dmotif: structural motifs and their hierarchy from atomic-resolution images.

Follows Dan et al., Science Advances 8, eabk1005 (2022): detect atom columns, describe each
atom-centred patch by Zernike moments, reduce with PCA, lay out with a two-stage force-relaxed
layout, label the clusters and build a cross-scale hierarchy of motif-cells. Chunked, lazy and
deterministic, on a laptop or a dask cluster.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import synthetic, synthetic_4d
from ._plot_hierarchy import plot_hierarchy, plot_map
from .accessor import MotifAccessor
from .cluster import cluster, motif_summary
from .detect import detect_atoms, estimate_spacing
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
from .fourd import diffraction_features, open_4dstem, save_4dstem, virtual_image
from .hierarchy import (
    build_hierarchy,
    lattice_vectors,
    learn_cell_motifs,
    load_hierarchy,
    manifold_coordinate,
    motif_cells,
    save_hierarchy,
)
from .io import open_image, save_image
from .layout import fr_layout
from .patches import extract_patches
from .pipeline import run
from .plot import plot_layout, plot_motifs
from .reduce import pca
from .report import report
from .store import Result, open_result, write_result
from .zernike import reconstruct, zernike_basis, zernike_features

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
    "Result",
    "StoreError",
    "StoreExistsError",
    "StoreIncompleteError",
    "__version__",
    "active_labels",
    "build_hierarchy",
    "cluster",
    "detect_atoms",
    "diffraction_features",
    "estimate_spacing",
    "explore",
    "extract_patches",
    "fr_layout",
    "lattice_vectors",
    "learn_cell_motifs",
    "load_hierarchy",
    "manifold_coordinate",
    "motif_cells",
    "motif_summary",
    "open_4dstem",
    "open_image",
    "open_result",
    "pca",
    "plot_hierarchy",
    "plot_layout",
    "plot_map",
    "plot_motifs",
    "reconstruct",
    "report",
    "run",
    "save_4dstem",
    "save_hierarchy",
    "save_image",
    "save_labels",
    "synthetic",
    "synthetic_4d",
    "virtual_image",
    "write_result",
    "zernike_basis",
    "zernike_features",
]
