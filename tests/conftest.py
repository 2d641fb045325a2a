"""Shared synthetic feature sets for the reduce / layout / cluster tests."""

from __future__ import annotations

import numpy as np
import pytest


def unequal_blobs(
    sizes: tuple[int, ...] = (1500, 900, 400, 150, 50),
    *,
    dim: int = 16,
    spread: float = 2.2,
    seed: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs of unequal sizes (the last ~2 %) and their true labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, (len(sizes), dim))
    x = np.vstack([rng.normal(c, 1.0, (s, dim)) for c, s in zip(centres, sizes, strict=True)])
    return x, np.repeat(np.arange(len(sizes)), sizes)


@pytest.fixture(scope="session")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return unequal_blobs()
