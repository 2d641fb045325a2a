"""Shared fixtures: small synthetic samples (made once per session, they are pure functions)."""

from __future__ import annotations

import pytest

from dmotif import synthetic


@pytest.fixture(scope="session")
def tmd_small() -> synthetic.Synthetic:
    """A 384² TMD frame with defects and default noise."""
    return synthetic.tmd(size=384, seed=11)


@pytest.fixture(scope="session")
def tmd_clean() -> synthetic.Synthetic:
    """A noise-free 256² TMD frame."""
    return synthetic.tmd(size=256, seed=11, dose=None, read_noise=0.0)
