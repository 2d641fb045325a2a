"""The API reference documents every public name."""

from __future__ import annotations

import re
from pathlib import Path

import dmotif

API = Path(__file__).parent.parent / "docs" / "api.rst"
# Modules and the accessor class, documented through their own pages and the README.
NOT_LISTED = {"__version__", "synthetic", "synthetic_4d", "MotifAccessor"}


def test_api_reference_lists_every_public_name():
    listed = set(re.findall(r"^\.\. auto(?:function|class):: dmotif\.(\w+)$", API.read_text(),
                            flags=re.M))
    assert listed == set(dmotif.__all__) - NOT_LISTED
