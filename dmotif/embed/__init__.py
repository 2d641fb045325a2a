"""Embeddings of the features: PCA, the kNN graph, the two-stage FR layout, manifold coordinates.

- :mod:`dmotif.embed.reduce`: :func:`pca` (dask-ml on the tall-skinny feature matrix);
- :mod:`dmotif.embed.layout`: :func:`fr_layout`, a Python driver over numba epochs
  (``_fr_kernels``) on a kNN graph (``_knn``: exact, or NN-descent in ``_nndescent`` started
  from the random-projection trees of ``_rp_trees``); above ``landmarks`` atoms it lays out a
  seeded sample and places the others among them (:mod:`dmotif.embed.landmarks`);
- :mod:`dmotif.embed.manifold`: :func:`manifold_coordinate`, a coordinate along the manifold a
  layout traces.
"""

from __future__ import annotations

from .layout import fr_layout
from .manifold import manifold_coordinate
from .reduce import pca

__all__ = ["fr_layout", "manifold_coordinate", "pca"]
