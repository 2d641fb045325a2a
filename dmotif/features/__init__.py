"""Features of each atom: its patch, the patch's Zernike moments, or its diffraction pattern.

- :mod:`dmotif.features.patches`: atom-centred patches (:func:`extract_patches`) and the
  tiling every per-atom feature shares;
- :mod:`dmotif.features.zernike`: Zernike moments of the patches (:func:`zernike_features`),
  the basis (:func:`zernike_basis`) and :func:`reconstruct`; kernels in ``_zernike``;
- :mod:`dmotif.features.virtual`: virtual detectors that reduce 4D-STEM data to images
  (:func:`virtual_image`);
- :mod:`dmotif.features.diffraction`: descriptors of each probe position's diffraction pattern
  (:func:`diffraction_features`); the 4D-STEM kernels of both in ``_fourd_kernels``;
- :mod:`dmotif.features.neighbourhood`: features averaged over each atom's neighbourhood in the
  image (:func:`neighbourhood_mean`), for variations of a region rather than of a column;
  kernel in ``_neighbourhood``.
"""

from __future__ import annotations

from .diffraction import diffraction_features
from .neighbourhood import neighbourhood_mean
from .patches import extract_patches
from .virtual import virtual_image
from .zernike import reconstruct, zernike_basis, zernike_features

__all__ = [
    "diffraction_features",
    "extract_patches",
    "neighbourhood_mean",
    "reconstruct",
    "virtual_image",
    "zernike_basis",
    "zernike_features",
]
