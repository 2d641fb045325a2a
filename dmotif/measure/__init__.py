"""Numbers per column: elliptical Gaussian shapes and cross-sections, sublattices,
displacements, strain and intensity statistics.

The public modules wrap the numpy/numba kernels beside them: ``_gauss2d`` (the per-column
Levenberg-Marquardt fit and Voronoi sums) and ``_geometry`` (a sublattice's mean vectors, the
reference cell about a column, the local deformation gradient); ``reference`` projects a
crystal's lattice (ASE) down a zone axis for strain.
"""

from .columns import refine_columns
from .displacements import displacements
from .intensities import intensity_statistics
from .reference import projected_lattice
from .strain import strain
from .sublattices import sublattices

__all__ = [
    "displacements",
    "intensity_statistics",
    "projected_lattice",
    "refine_columns",
    "strain",
    "sublattices",
]
