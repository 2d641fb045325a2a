"""The one exception hierarchy of dmotif.

Every error that a user can cause (bad input, a missing file, an existing store) is a
:class:`DmotifError` whose message says what was wrong, the value seen and how to fix it.
The command line prints such an error in one line and exits non-zero.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DataError",
    "DmotifError",
    "ImageFileError",
    "MissingDependencyError",
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


class MissingDependencyError(DmotifError, ImportError):
    """An optional package that a feature needs is not installed (the message names the extra)."""


def require(module: str, *, extra: str, feature: str) -> Any:
    """Import ``module`` for ``feature``, or raise :class:`MissingDependencyError`.

    Optional packages (ase, pandas, hyperspy…) are imported on first use so that ``import
    dmotif`` never needs them; this turns their absence into one line that says what to install.

    Parameters
    ----------
    module : str
        The module to import, e.g. ``"ase.io"``.
    extra : str
        The dmotif extra that installs it, e.g. ``"export"``.
    feature : str
        What needs it, in the user's words (``"ASE export"``).

    Returns
    -------
    module
        The imported module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the package {module.partition('.')[0]!r}, which is not installed "
            f"({exc}). Install it with: pip install 'dmotif[{extra}]'."
        ) from exc


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
