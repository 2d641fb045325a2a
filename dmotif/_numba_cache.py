"""Where numba keeps the kernels it compiled.

dmotif's kernels are compiled with ``cache=True``, so only the first run after an install pays
for compiling them. By default numba writes its cache beside the package's source (in
``__pycache__``), which a system-wide, container or read-only install cannot write: every run
would then compile again. dmotif points numba at the user's cache folder instead
(``~/.cache/dmotif/numba`` on Linux), unless ``NUMBA_CACHE_DIR`` is already set.
"""

from __future__ import annotations

import os
import sys

__all__ = ["use_user_cache"]


def use_user_cache() -> str:
    """Set numba's cache folder to the user's unless ``NUMBA_CACHE_DIR`` names one; return it.

    Worker processes started afterwards inherit the environment variable; numba, if it was
    imported already, is told directly.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    import platformdirs

    path = os.path.join(platformdirs.user_cache_dir("dmotif"), "numba")
    os.environ["NUMBA_CACHE_DIR"] = path
    config = sys.modules.get("numba.core.config")
    if config is not None:
        config.CACHE_DIR = path
    return path
