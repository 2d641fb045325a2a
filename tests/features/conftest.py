"""Fixtures of the 4D-STEM feature tests: a small synthetic scan, made once per module."""

from __future__ import annotations

import numpy as np
import pytest

from dmotif.synthetic.stem4d import fourd

#: Detector size of the sample scan, pixels; its pattern centre.
K = 32
C = (K - 1) / 2


@pytest.fixture(scope="module")
def sample():
    """A noisy 40 × 48 scan of 32² patterns (TMD), chunked 16 × 16."""
    return fourd("tmd", size=(40, 48), k_size=K, dose=2000.0, chunks=16, seed=3)


@pytest.fixture(scope="module")
def values(sample) -> np.ndarray:
    return sample.data.values
