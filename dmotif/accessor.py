"""The ``.motif`` accessor of image DataArrays: ``image.motif.detect()`` and friends.

The accessor only stores the DataArray and delegates to the public functions, so that
``image.motif.detect(**kw)`` is exactly ``dmotif.detect_atoms(image, **kw)``. It is registered
when dmotif is imported; the functions it calls are imported when first called.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

__all__ = ["MotifAccessor"]


@xr.register_dataarray_accessor("motif")
class MotifAccessor:
    """dmotif methods on an image ``DataArray`` (dims ``(y, x)`` or ``(frame, y, x)``).

    Examples
    --------
    >>> import dmotif
    >>> syn = dmotif.synthetic.perovskite(size=256, seed=0, dose=None, read_noise=0)
    >>> atoms = syn.image.motif.detect(refine="gaussian")
    >>> "width" in atoms
    True
    """

    def __init__(self, obj: xr.DataArray) -> None:
        self._obj = obj

    def detect(self, **kwargs: Any) -> xr.Dataset:
        """Detect atom columns; see :func:`dmotif.detect_atoms` for the parameters."""
        from .detect import detect_atoms

        return detect_atoms(self._obj, **kwargs)

    def spacing(self, **kwargs: Any) -> float:
        """Nearest-neighbour column spacing, px; see :func:`dmotif.estimate_spacing`."""
        from .detect import estimate_spacing

        return estimate_spacing(self._obj, **kwargs)

    def patches(self, atoms: xr.Dataset, **kwargs: Any) -> xr.DataArray:
        """Atom-centred patches; see :func:`dmotif.extract_patches`."""
        from .features import extract_patches

        return extract_patches(self._obj, atoms, **kwargs)

    def zernike(self, atoms: xr.Dataset, **kwargs: Any) -> xr.DataArray:
        """Zernike features of the atoms' patches; see :func:`dmotif.zernike_features`."""
        from .features import zernike_features

        return zernike_features(self._obj, atoms, **kwargs)

    def run(self, output: str, **kwargs: Any) -> Any:
        """The whole pipeline on this image into the store ``output``; see :func:`dmotif.run`."""
        from .pipeline import run

        return run(self._obj, output, **kwargs)
