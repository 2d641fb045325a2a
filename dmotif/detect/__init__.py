"""Atom columns: peaks at the column scale, sub-pixel refinement, spacing and lattice support.

:func:`detect_atoms` and :func:`estimate_spacing` (in :mod:`dmotif.detect.atoms`) are thin
chunked wrappers; the numpy/numba kernels sit beside them in the private modules ``_peaks``
(smoothing, local maxima with lattice support), ``_refine`` (centre of mass, Gaussian fit),
``_statistics`` (spacing from the autocorrelation, background and noise) and ``_tile`` (one
tile's detection).
"""

from __future__ import annotations

from .atoms import detect_atoms, estimate_spacing

__all__ = ["detect_atoms", "estimate_spacing"]
