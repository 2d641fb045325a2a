"""The ``.motif`` accessor of image DataArrays: ``image.motif.detect()`` and friends.

The accessor only stores the DataArray and delegates to the public functions, so that
``image.motif.detect(**kw)`` is exactly ``dmotif.detect_atoms(image, **kw)``.
"""

from __future__ import annotations

from typing import Any

import xarray as xr

from .detect import detect_atoms

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
        return detect_atoms(self._obj, **kwargs)
