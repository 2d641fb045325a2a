"""Seed handling shared by every random choice in dmotif.

A seed is normalised once at the public boundary. Kernels receive plain integers: one
independent stream per item (node, chunk, frame), derived from the seed and the item's index,
never from the thread or worker that happens to run it — so results do not depend on the
number of threads or workers.
"""

from __future__ import annotations

import numpy as np

from .errors import ParameterError

Seed = int | np.random.Generator | None

__all__ = ["Seed", "as_generator", "seed_int", "spawn_seeds"]


def seed_int(seed: Seed) -> int:
    """Return a non-negative 63-bit integer that stands for ``seed``.

    Parameters
    ----------
    seed : int, numpy.random.Generator or None
        An integer is used as is; a Generator gives one draw; None gives 0, so that a run
        without a seed is still reproducible.

    Returns
    -------
    int
        An integer in ``[0, 2**63)``.
    """
    if seed is None:
        return 0
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**63 - 1))
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ParameterError(
            f"seed must be an int, a numpy.random.Generator or None; got {seed!r} "
            f"of type {type(seed).__name__}. Pass e.g. seed=0."
        )
    if seed < 0:
        raise ParameterError(f"seed must be >= 0; got {seed}. Pass a non-negative integer.")
    return int(seed) % (2**63)


def as_generator(seed: Seed, *keys: int) -> np.random.Generator:
    """Return a Generator for ``seed``, optionally for one sub-stream named by ``keys``.

    ``as_generator(seed, frame)`` gives a stream that depends only on the seed and the frame,
    so work split over chunks or workers draws the same numbers.
    """
    return np.random.default_rng(np.random.SeedSequence([seed_int(seed), *map(int, keys)]))


def spawn_seeds(seed: Seed, n: int, *keys: int) -> np.ndarray:
    """Return ``n`` independent uint64 seeds for numba kernels (one per node or chunk)."""
    ss = np.random.SeedSequence([seed_int(seed), *map(int, keys)])
    return ss.generate_state(n, dtype=np.uint64)
