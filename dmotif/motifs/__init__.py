"""Motifs: clusters of the layout (their number found, not given) and per-motif summaries.

- :mod:`dmotif.motifs.clustering`: :func:`cluster` (HDBSCAN, the reference's raster, or a GMM
  for a given number of motifs);
- :mod:`dmotif.motifs.summary`: :func:`motif_summary` (size, representatives, mean patch);
- :mod:`dmotif.motifs.sites`: :func:`site_motifs` (motifs split by the sublattice site their
  atoms sit on);
- :mod:`dmotif.motifs.continuum`: :func:`feature_structure` (discrete motifs or a continuum),
  :func:`continuum_coordinate` (each atom's place along a continuum).
"""

from __future__ import annotations

from .clustering import cluster
from .continuum import continuum_coordinate, feature_structure
from .sites import site_motifs
from .summary import motif_summary

__all__ = ["cluster", "continuum_coordinate", "feature_structure", "motif_summary",
           "site_motifs"]
