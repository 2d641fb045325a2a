"""Motifs: clusters of the layout (their number found, not given) and per-motif summaries.

- :mod:`dmotif.motifs.clustering`: :func:`cluster` (HDBSCAN, the reference's raster, or a GMM
  for a given number of motifs);
- :mod:`dmotif.motifs.summary`: :func:`motif_summary` (size, representatives, mean patch).
"""

from __future__ import annotations

from .clustering import cluster
from .summary import motif_summary

__all__ = ["cluster", "motif_summary"]
