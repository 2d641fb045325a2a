"""The configuration of a run: defaults from the stage functions, TOML written and read back."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path

import pytest

from dmotif import ParameterError
from dmotif.embed import fr_layout
from dmotif.pipeline import default_config, dump_config_toml, load_config


def _without_none(config: dict) -> dict:
    """``config`` without its ``None`` (automatic) entries, as TOML, which has no null, holds it."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out[key] = _without_none(value)
        elif value is not None:
            out[key] = value
    return out


def test_default_config_toml_parses_back_to_the_same_config(tmp_path: Path) -> None:
    cfg = default_config()
    text = dump_config_toml(cfg)
    parsed = tomllib.loads(text)
    assert parsed == _without_none(cfg)
    # Each automatic value is there as a comment, and a commented key takes its default.
    assert "# pixel_size = (automatic)" in text and "# n_components = (automatic)" in text
    assert load_config(parsed) == cfg
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert load_config(path) == cfg


def test_strings_are_quoted_as_toml_strings() -> None:
    cfg = load_config({"detect": {"refine": 'a "quoted" \\ value é'}, "chunks": 512})
    assert load_config(tomllib.loads(dump_config_toml(cfg))) == cfg


def test_none_inside_a_list_is_refused_not_written_as_invalid_toml() -> None:
    cfg = load_config({"layout": {"stages": [[0, 2, 1, None], [2, 4, 5, 2]]}})
    with pytest.raises(ParameterError, match=r"layout\.stages.*cannot be written as TOML"):
        dump_config_toml(cfg)


def test_fr_layout_default_metric_is_the_one_a_run_uses() -> None:
    # The run's configuration takes fr_layout's defaults as they are: no metric of its own.
    assert inspect.signature(fr_layout).parameters["metric"].default == "euclidean"
    assert default_config()["layout"]["metric"] == "euclidean"
