"""Numbers per column: elliptical Gaussian shapes and cross-sections, sublattices,
displacements, strain and intensity statistics."""

from .columns import refine_columns

__all__ = ["refine_columns"]
