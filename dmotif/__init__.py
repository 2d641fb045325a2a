"""dmotif: structural motifs and their hierarchy from atomic-resolution images.

Follows Dan et al., Science Advances 8, eabk1005 (2022): detect atom columns, describe each
atom-centred patch by Zernike moments, reduce with PCA, lay out with a two-stage force-relaxed
layout, label the clusters and build a cross-scale hierarchy of motif-cells. Chunked, lazy and
deterministic, on a laptop or a dask cluster.

The subpackages follow the data path: :mod:`dmotif.io` (images, 4D-STEM, result stores),
:mod:`dmotif.detect` (atoms), :mod:`dmotif.features` (patches, Zernike, diffraction),
:mod:`dmotif.embed` (PCA, FR layout), :mod:`dmotif.motifs` (clusters), :mod:`dmotif.hierarchy`
(cells, graph), :mod:`dmotif.pipeline` (the whole run), :mod:`dmotif.viz` (figures, report,
explorer) and :mod:`dmotif.synthetic` (test data with exact truth).

The public functions are imported on first use (PEP 562), so that ``import dmotif`` stays cheap
and loads neither scikit-learn, dask-ml, matplotlib nor bokeh; ``dmotif.X`` and
``from dmotif import X`` work as for an eager import.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import accessor as _accessor  # registers the ``.motif`` accessor of DataArrays
from ._numba_cache import use_user_cache
from .errors import (
    DataError,
    DmotifError,
    ImageFileError,
    MissingDependencyError,
    NoAtomsError,
    NoLatticeError,
    ParameterError,
    StoreError,
    StoreExistsError,
    StoreIncompleteError,
    StoreLockedError,
)

MotifAccessor = _accessor.MotifAccessor
use_user_cache()  # before any kernel module is imported (they compile with cache=True)

try:
    __version__ = version("dmotif")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

#: Where each lazily imported public name lives: ``name -> module`` (the attribute of the same
#: name), or ``name -> (module, None)`` for a module itself.
_LAZY: dict[str, str | tuple[str, None]] = {
    "Result": "dmotif.io.store",
    "active_labels": "dmotif.io.edits",
    "build_hierarchy": "dmotif.hierarchy.graph",
    "cluster": "dmotif.motifs.clustering",
    "detect_atoms": "dmotif.detect.atoms",
    "displacements": "dmotif.measure.displacements",
    "diffraction_features": "dmotif.features.diffraction",
    "estimate_spacing": "dmotif.detect.atoms",
    "explore": "dmotif.viz.explorer.server",
    "export": "dmotif.io.export",
    "extract_patches": "dmotif.features.patches",
    "continuum_coordinate": "dmotif.motifs.continuum",
    "feature_structure": "dmotif.motifs.continuum",
    "fr_layout": "dmotif.embed.layout",
    "intensity_statistics": "dmotif.measure.intensities",
    "lattice_vectors": "dmotif.hierarchy.cells",
    "learn_cell_motifs": "dmotif.hierarchy.learned",
    "load_hierarchy": "dmotif.hierarchy.serialisation",
    "manifold_coordinate": "dmotif.embed.manifold",
    "motif_cells": "dmotif.hierarchy.cells",
    "motif_summary": "dmotif.motifs.summary",
    "neighbourhood_mean": "dmotif.features.neighbourhood",
    "open_4dstem": "dmotif.io.stem4d",
    "open_image": "dmotif.io.images",
    "open_result": "dmotif.io.store",
    "pca": "dmotif.embed.reduce",
    "plot_hierarchy": "dmotif.viz.hierarchy_plot",
    "plot_layout": "dmotif.viz.plots",
    "plot_map": "dmotif.viz.plots",
    "plot_motifs": "dmotif.viz.plots",
    "projected_lattice": "dmotif.measure.reference",
    "reconstruct": "dmotif.features.zernike",
    "refine_columns": "dmotif.measure.columns",
    "report": "dmotif.viz.html_report",
    "run": "dmotif.pipeline.runner",
    "save_4dstem": "dmotif.io.stem4d",
    "save_hierarchy": "dmotif.hierarchy.serialisation",
    "save_image": "dmotif.io.images",
    "save_labels": "dmotif.io.edits",
    "site_motifs": "dmotif.motifs.sites",
    "strain": "dmotif.measure.strain",
    "sublattices": "dmotif.measure.sublattices",
    "synthetic": ("dmotif.synthetic", None),
    "synthetic_4d": ("dmotif.synthetic.stem4d", None),
    "to_hyperspy": "dmotif.io.hyperspy",
    "virtual_image": "dmotif.features.virtual",
    "write_result": "dmotif.io.store",
    "zernike_basis": "dmotif.features.zernike",
    "zernike_features": "dmotif.features.zernike",
}
#: The subpackages, imported on first access as ``dmotif.<name>`` too.
_SUBPACKAGES = ("detect", "embed", "features", "hierarchy", "io", "measure", "motifs", "pipeline",
                "viz")
_LAZY.update({name: (f"dmotif.{name}", None) for name in _SUBPACKAGES})


def __getattr__(name: str) -> Any:
    """Import a public name of :data:`_LAZY` on first access and keep it (PEP 562).

    Parameters
    ----------
    name : str
        The attribute asked for.

    Returns
    -------
    Any
        The function, class or module of that name.

    Raises
    ------
    AttributeError
        For a name dmotif does not have.
    """
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'dmotif' has no attribute {name!r}")
    if isinstance(where, tuple):
        value = importlib.import_module(where[0])
    else:
        value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily imported ones included."""
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # what static tools see: the same names, imported eagerly
    from . import synthetic
    from .detect import detect_atoms, estimate_spacing
    from .embed import fr_layout, manifold_coordinate, pca
    from .features import (
        diffraction_features,
        extract_patches,
        neighbourhood_mean,
        reconstruct,
        virtual_image,
        zernike_basis,
        zernike_features,
    )
    from .hierarchy import (
        build_hierarchy,
        lattice_vectors,
        learn_cell_motifs,
        load_hierarchy,
        motif_cells,
        save_hierarchy,
    )
    from .io import (
        Result,
        active_labels,
        export,
        open_4dstem,
        open_image,
        open_result,
        save_4dstem,
        save_image,
        save_labels,
        to_hyperspy,
        write_result,
    )
    from .measure import (
        displacements,
        intensity_statistics,
        projected_lattice,
        refine_columns,
        strain,
        sublattices,
    )
    from .motifs import (
        cluster,
        continuum_coordinate,
        feature_structure,
        motif_summary,
        site_motifs,
    )
    from .pipeline import run
    from .synthetic import stem4d as synthetic_4d
    from .viz import explore, plot_hierarchy, plot_layout, plot_map, plot_motifs, report

__all__ = [
    "DataError",
    "DmotifError",
    "ImageFileError",
    "MissingDependencyError",
    "MotifAccessor",
    "NoAtomsError",
    "NoLatticeError",
    "ParameterError",
    "Result",
    "StoreError",
    "StoreExistsError",
    "StoreIncompleteError",
    "StoreLockedError",
    "__version__",
    "active_labels",
    "build_hierarchy",
    "cluster",
    "continuum_coordinate",
    "detect_atoms",
    "diffraction_features",
    "displacements",
    "estimate_spacing",
    "explore",
    "export",
    "extract_patches",
    "feature_structure",
    "fr_layout",
    "intensity_statistics",
    "lattice_vectors",
    "learn_cell_motifs",
    "load_hierarchy",
    "manifold_coordinate",
    "motif_cells",
    "motif_summary",
    "neighbourhood_mean",
    "open_4dstem",
    "open_image",
    "open_result",
    "pca",
    "plot_hierarchy",
    "plot_layout",
    "plot_map",
    "plot_motifs",
    "projected_lattice",
    "reconstruct",
    "refine_columns",
    "report",
    "run",
    "save_4dstem",
    "save_hierarchy",
    "save_image",
    "save_labels",
    "site_motifs",
    "strain",
    "sublattices",
    "synthetic",
    "synthetic_4d",
    "to_hyperspy",
    "virtual_image",
    "write_result",
    "zernike_basis",
    "zernike_features",
]
