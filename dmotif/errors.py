"""The one exception hierarchy of dmotif.

Every error that a user can cause (bad input, a missing file, an existing store) is a
:class:`DmotifError` whose message says what was wrong, the value seen and how to fix it.
The command line prints such an error in one line and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "DataError",
    "DmotifError",
    "ImageFileError",
    "NoAtomsError",
    "NoLatticeError",
    "ParameterError",
    "StoreError",
    "StoreExistsError",
    "StoreIncompleteError",
    "StoreLockedError",
]


class DmotifError(Exception):
    """Base class of every error dmotif raises on purpose."""


class ParameterError(DmotifError, ValueError):
    """A parameter is out of range or inconsistent with the data."""


class DataError(DmotifError, ValueError):
    """Input data have the wrong shape, dims, dtype or values (NaN, inf, constant...)."""


class ImageFileError(DmotifError, OSError):
    """An image file is missing, unreadable or of an unsupported format."""


class NoAtomsError(DmotifError):
    """No atom columns could be found in an image."""


class NoLatticeError(DmotifError):
    """No periodic lattice could be found where one is needed."""


class StoreError(DmotifError, OSError):
    """A result or image store cannot be read or written."""


class StoreExistsError(StoreError, FileExistsError):
    """An output store exists and overwriting was not asked for."""


class StoreIncompleteError(StoreError):
    """A store was left incomplete (an interrupted write) and cannot be trusted."""


class StoreLockedError(StoreError):
    """Another run holds the lock on an output store (two runs must never write one store)."""
