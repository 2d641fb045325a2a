"""The configuration of a run: every parameter of every stage, its defaults, TOML and JSON files.

The parameters of a stage are the keyword-only parameters of its function (its "knobs"), so the
defaults of a run are the defaults of the functions and a configuration names them as they do.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from ..detect import detect_atoms
from ..embed import fr_layout, pca
from ..errors import ParameterError
from ..features import diffraction_features, zernike_features
from ..hierarchy import build_hierarchy
from ..io.store import json_ready
from ..measure.stage import measure_columns
from ..motifs import cluster

__all__ = ["STAGES", "default_config", "dump_config_toml", "load_config"]

#: The stages in order; each names the config section of its parameters.
STAGES = ("detect", "features", "pca", "layout", "cluster", "hierarchy", "measure")


def stage_functions() -> dict[str, Callable[..., Any]]:
    """The public function of each stage, by stage name."""
    return {
        "detect": detect_atoms,
        "features": zernike_features,
        "pca": pca,
        "layout": fr_layout,
        "cluster": cluster,
        "hierarchy": build_hierarchy,
        "measure": measure_columns,
    }


# Keyword arguments that carry data or run-wide settings, not a stage's own knobs.
_NOT_KNOBS = frozenset({"seed", "progress", "client", "image", "cells", "lattice", "follow",
                        "features", "frames", "atoms"})


def _keyword_defaults(func: Callable[..., Any]) -> dict[str, Any]:
    """The keyword-only parameters of ``func`` with their defaults (the stage's knobs)."""
    return {
        name: p.default
        for name, p in inspect.signature(func).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in _NOT_KNOBS
    }


def takes(func: Callable[..., Any], name: str) -> bool:
    """Whether ``func`` has a parameter called ``name``."""
    return name in inspect.signature(func).parameters


def default_config() -> dict[str, Any]:
    """Every parameter of every stage with its default: the configuration of a plain run."""
    funcs = stage_functions()
    cfg: dict[str, Any] = {
        "seed": 0,
        "chunks": "auto",
        "pixel_size": None,
        # 4D-STEM input: the virtual detector that turns it into an image (None: an image),
        # and the source of the atoms' features: real-space patches of that image ("image")
        # or each atom's diffraction pattern ("diffraction", see the section below).
        "virtual": {"detector": None, "inner": None, "outer": None, "features": "image"},
    }
    for stage in STAGES:
        cfg[stage] = json_ready(_keyword_defaults(funcs[stage]))
    cfg["diffraction"] = json_ready(_keyword_defaults(diffraction_features))
    return cfg


def _merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in out:
            raise ParameterError(
                f"unknown configuration key {where + key!r}; known keys here: {sorted(out)}."
            )
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise ParameterError(f"configuration {where + key!r} must be a table of options.")
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def load_config(source: str | os.PathLike | dict[str, Any] | None) -> dict[str, Any]:
    """Return the full configuration: defaults updated by ``source``.

    Parameters
    ----------
    source : path, dict or None
        A TOML or JSON file (e.g. one written by :func:`dump_config_toml`, or the ``config``
        of an earlier result), a dict, or None for the defaults. Unknown keys are refused.
    """
    if source is None:
        return default_config()
    if isinstance(source, dict):
        user = source
    else:
        path = Path(source)
        if not path.exists():
            raise ParameterError(f"no such configuration file: {os.fspath(path)!r}.")
        try:
            text = path.read_text(encoding="utf-8")
            user = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        except UnicodeDecodeError as exc:
            raise ParameterError(
                f"configuration {os.fspath(path)!r} is not UTF-8 text (byte {exc.start}); "
                "save it as UTF-8."
            ) from None
        except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
            raise ParameterError(f"cannot parse configuration {os.fspath(path)!r}: {exc}") from exc
        except OSError as exc:  # a folder, or no permission to read
            raise ParameterError(
                f"cannot read configuration {os.fspath(path)!r}: {exc.strerror or exc}."
            ) from None
        if not isinstance(user, dict):
            raise ParameterError(
                f"configuration {os.fspath(path)!r} must hold a table of options; got a "
                f"{type(user).__name__}."
            )
    user = {k: v for k, v in user.items() if k not in ("dmotif_version", "input")}
    cfg = _merge(default_config(), user)
    return cfg


#: Keys of a stored configuration that describe the run rather than set it.
_RECORD_KEYS = ("dmotif_version", "input")


def _toml_lines(values: dict[str, Any], where: str) -> list[str]:
    """One TOML assignment per key of ``values``, a comment for each ``None`` (automatic)."""
    lines: list[str] = []
    for key, value in values.items():
        if value is None:
            lines.append(f"# {key} = (automatic)")  # keys are parameter names: bare TOML keys
            continue
        try:
            lines.append(tomli_w.dumps({key: value}).rstrip("\n"))
        except TypeError as exc:  # e.g. None inside a list: TOML has no null
            raise ParameterError(
                f"configuration {where + key!r} = {value!r} cannot be written as TOML ({exc}); "
                "write it as JSON instead, or give a value without None."
            ) from exc
    return lines


def dump_config_toml(config: dict[str, Any]) -> str:
    """Render a configuration as TOML; ``None`` (automatic) values become comments.

    The TOML is written by ``tomli_w``, so that it always parses; read back with
    :func:`load_config`, it gives the same configuration (a commented key takes its default,
    which is ``None`` for every automatic parameter).

    Parameters
    ----------
    config : dict
        A configuration as :func:`default_config` or :func:`load_config` return it, or the
        ``config`` of a result (its ``dmotif_version`` and ``input`` records are left out).

    Returns
    -------
    str
        The TOML document: top-level settings first, then one table per section.

    Raises
    ------
    ParameterError
        When a value cannot be written as TOML (``None`` inside a list).

    Examples
    --------
    >>> text = dump_config_toml(default_config())
    >>> "# pixel_size = (automatic)" in text and "[layout]" in text
    True
    """
    settings = {k: v for k, v in config.items() if k not in _RECORD_KEYS}
    tables = {k: v for k, v in settings.items() if isinstance(v, dict)}
    lines = _toml_lines({k: v for k, v in settings.items() if k not in tables}, "")
    for name, table in tables.items():
        lines.append("")
        lines.append(tomli_w.dumps({name: {}}).rstrip("\n"))
        lines.extend(_toml_lines(table, f"{name}."))
    return "\n".join(lines) + "\n"
