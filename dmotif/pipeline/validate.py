"""Everything a run is given, checked before any work: configuration, output, cluster.

A run that fails on its configuration after detection and PCA ran costs minutes and leaves a
partial store that the corrected rerun refuses to resume; so every key is checked here first.
The types come from the stage functions' annotations (the configuration names their keyword
parameters), the ranges from :data:`RANGES`; each problem is one :class:`ParameterError` line
naming the key, the value seen and what is allowed.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import inspect
import os
import re
import socket
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from ..features import diffraction_features
from ..features.virtual import DETECTORS
from ..motifs.clustering import METHODS
from .config import STAGES, stage_functions

__all__ = [
    "MIN_TILE",
    "RANGES",
    "check_output",
    "check_scheduler",
    "validate_config",
    "validate_run",
]

#: The smallest tile (px) a run accepts: tiles of a few pixels make millions of tasks (a 64²
#: image in 1-px tiles ran for minutes) and cannot hold an atom's patch with its margin.
MIN_TILE = 64


@dataclass(frozen=True)
class Range:
    """Bounds of a number (each bound inclusive unless ``open_lo``)."""

    lo: float | None = None
    hi: float | None = None
    open_lo: bool = False

    def holds(self, x: float) -> bool:
        if self.lo is not None and (x <= self.lo if self.open_lo else x < self.lo):
            return False
        return self.hi is None or x <= self.hi

    def __str__(self) -> str:
        parts = []
        if self.lo is not None:
            parts.append(f"{'>' if self.open_lo else '>='} {self.lo:g}")
        if self.hi is not None:
            parts.append(f"<= {self.hi:g}")
        return " and ".join(parts)


POSITIVE = Range(0, open_lo=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)

#: The range of every numeric key (applied to each number of a list); None is always allowed
#: where the type allows it (it means "automatic").
RANGES: dict[str, Range] = {
    "seed": NON_NEGATIVE,
    "pixel_size": POSITIVE,
    "virtual.inner": NON_NEGATIVE, "virtual.outer": POSITIVE,
    "detect.spacing": POSITIVE, "detect.min_distance": POSITIVE, "detect.sigma": POSITIVE,
    "detect.min_snr": NON_NEGATIVE, "detect.window": POSITIVE,
    "features.radius": POSITIVE, "features.n_max": NON_NEGATIVE,
    "pca.n_components": AT_LEAST_1,
    "layout.n_neighbors": Range(2), "layout.stages": NON_NEGATIVE, "layout.epochs": AT_LEAST_1,
    "layout.negative_samples": AT_LEAST_1, "layout.learning_rate": POSITIVE,
    "layout.landmarks": AT_LEAST_1, "layout.placement_epochs": NON_NEGATIVE,
    "cluster.n_motifs": AT_LEAST_1, "cluster.min_size": Range(2),
    "cluster.max_overlap": Range(0, 0.5, open_lo=True), "cluster.alpha": Range(0, 1, open_lo=True),
    "cluster.min_contrast": Range(0, 1),
    "hierarchy.patch_radius": AT_LEAST_1, "hierarchy.max_pattern_cells": AT_LEAST_1,
    "measure.window": POSITIVE, "measure.max_components": AT_LEAST_1,
    "diffraction.n_rings": AT_LEAST_1, "diffraction.m_max": NON_NEGATIVE,
    "diffraction.n_max": NON_NEGATIVE, "diffraction.binning": AT_LEAST_1,
    "diffraction.inner": NON_NEGATIVE, "diffraction.outer": POSITIVE,
}



def _literal(values: tuple[str, ...]) -> str:
    return f"Literal[{', '.join(map(repr, values))}]"


#: Types of the keys that are no stage function's parameter (or whose annotation is a plain
#: ``str``), written as annotations are.
_RUN_TYPES: dict[str, str] = {
    "seed": "int",
    "pixel_size": "float | None",
    # com gives a vector field, not an image: the runner refuses it with its own message.
    "virtual.detector": _literal(DETECTORS) + " | None",
    "virtual.inner": "float | None",
    "virtual.outer": "float | None",
    "virtual.features": _literal(("image", "diffraction")),
    "cluster.method": _literal(METHODS),
}
#: Keys checked by a function of their own (tile sizes).
_CHUNK_KEYS = ("chunks", "detect.chunks")


def _split_union(text: str) -> list[str]:
    """``"int | Sequence[int]"`` → ``["int", "Sequence[int]"]`` (bars inside brackets kept)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == "|" and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _matches(value: Any, annotation: str, names: dict[str, Any]) -> bool | None:
    """Whether ``value`` fits ``annotation`` (None: the annotation says nothing checkable)."""
    verdicts = []
    for part in _split_union(annotation):
        if part == "None":
            verdicts.append(value is None)
        elif part == "bool":
            verdicts.append(isinstance(value, bool))
        elif part == "int":
            verdicts.append(isinstance(value, int) and not isinstance(value, bool))
        elif part == "float":
            verdicts.append(isinstance(value, int | float) and not isinstance(value, bool))
        elif part == "str":
            verdicts.append(isinstance(value, str))
        elif part.startswith("Literal["):
            verdicts.append(value in ast.literal_eval(f"[{part[len('Literal['):-1]}]"))
        elif part.startswith("Sequence[") and part.endswith("]"):
            # A string is a Sequence to Python but never what a list parameter means:
            # epochs = "12" used to become [1, 2].
            inner = part[len("Sequence["):-1]
            verdicts.append(isinstance(value, list | tuple) and len(value) > 0 and all(
                _matches(v, inner, names) is not False for v in value))
        elif typing.get_origin(names.get(part)) in (typing.Literal, typing.Union):
            alias = names[part]  # e.g. Refine = Literal["com", "gaussian"] | None
            verdicts.append(_matches(value, _alias_text(alias), names) is not False)
        else:
            return None  # Any, a class, or something this checker does not read
    return any(verdicts)


def _alias_text(alias: Any) -> str:
    """An annotation text for a typing alias made of Literals and None."""
    args = typing.get_args(alias)
    if typing.get_origin(alias) is typing.Literal:
        return f"Literal[{', '.join(map(repr, args))}]"
    return " | ".join("None" if a is type(None) else _alias_text(a) for a in args)


def _describe(annotation: str, names: dict[str, Any]) -> str:
    words = {"None": "None (automatic)", "float": "a number", "int": "an integer",
             "bool": "true or false", "str": "a string"}
    out = []
    for part in _split_union(annotation):
        if part.startswith("Literal["):
            values = [repr(v) for v in ast.literal_eval(f"[{part[len('Literal['):-1]}]")]
            listed = f"{', '.join(values[:-1])} or {values[-1]}" if values[1:] else values[0]
            out.append(f"one of {listed}")
        elif part.startswith("Sequence["):
            out.append(f"a list of ({_describe(part[len('Sequence['):-1], names)})")
        elif typing.get_origin(names.get(part)) in (typing.Literal, typing.Union):
            out.append(_describe(_alias_text(names[part]), names))
        else:
            out.append(words.get(part, part))
    return " or ".join(out)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, list | tuple):
        return [x for v in value for x in _numbers(v)]
    return [value] if isinstance(value, int | float) and not isinstance(value, bool) else []


def _refuse(key: str, value: Any, allowed: str) -> ParameterError:
    return ParameterError(f"configuration {key} = {value!r} is not allowed: {allowed}.")


def _check_chunks(key: str, value: Any, *, none_ok: bool) -> None:
    allowed = (f"'auto', a tile size in px (>= {MIN_TILE}), or a list [tile_y, tile_x] or "
               f"[frames, tile_y, tile_x]{' or None' if none_ok else ''}")
    if value == "auto" or (value is None and none_ok):
        return
    if isinstance(value, int) and not isinstance(value, bool):
        sizes = [value]
    elif (isinstance(value, list | tuple) and len(value) in (2, 3)
          and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
        sizes = list(value[-2:])
        if len(value) == 3 and value[0] < 1:
            raise _refuse(key, value, allowed)
    else:
        raise _refuse(key, value, allowed)
    if min(sizes) < MIN_TILE:
        raise _refuse(key, value, allowed)


def _check(key: str, value: Any, annotation: str | None, names: dict[str, Any]) -> None:
    if annotation is not None and _matches(value, annotation, names) is False:
        rng = RANGES.get(key)
        raise _refuse(key, value, _describe(annotation, names) + (f", {rng}" if rng else ""))
    rng = RANGES.get(key)
    if rng is not None and not all(rng.holds(x) for x in _numbers(value)):
        raise _refuse(key, value, f"{rng}")


def _annotations(func: Callable[..., Any]) -> dict[str, str]:
    return {name: p.annotation if isinstance(p.annotation, str) else str(p.annotation)
            for name, p in inspect.signature(func).parameters.items()
            if p.annotation is not inspect.Parameter.empty}


def validate_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check the type and range of every key of a full configuration.

    Parameters
    ----------
    cfg : dict
        A configuration as :func:`dmotif.pipeline.load_config` returns it.

    Returns
    -------
    dict
        ``cfg`` itself, for chaining.

    Raises
    ------
    ParameterError
        For the first key whose value is of the wrong type or out of range, naming the key,
        the value and what is allowed.

    Examples
    --------
    >>> from dmotif.pipeline import load_config
    >>> validate_config(load_config({"layout": {"epochs": "lots"}}))
    Traceback (most recent call last):
    ...
    dmotif.errors.ParameterError: configuration layout.epochs = 'lots' is not allowed: an \
integer or a list of (an integer), >= 1.
    """
    funcs = {**stage_functions(), "diffraction": diffraction_features}
    for key in ("seed", "pixel_size"):
        _check(key, cfg[key], _RUN_TYPES[key], {})
    _check_chunks("chunks", cfg["chunks"], none_ok=False)
    for section in ("virtual", *STAGES, "diffraction"):
        func = funcs.get(section)
        hints = _annotations(func) if func is not None else {}
        names = func.__globals__ if func is not None else {}
        for name, value in cfg[section].items():
            key = f"{section}.{name}"
            if key in _CHUNK_KEYS:
                _check_chunks(key, value, none_ok=True)
                continue
            _check(key, value, _RUN_TYPES.get(key, hints.get(name)), names)
    pair = cfg["measure"]["displacement"]
    if pair is not None and (len(pair) != 2 or pair[0] == pair[1]):
        raise _refuse("measure.displacement", pair,
                      "two different motifs [motif, reference], each a label or one of "
                      "'strongest', 'weakest', 'most'")
    layout = cfg["layout"]
    if layout["landmarks"] <= layout["n_neighbors"]:
        raise _refuse("layout.landmarks", layout["landmarks"],
                      f"an integer > layout.n_neighbors ({layout['n_neighbors']})")
    return cfg


_ADDRESS = re.compile(r"^(?:(tcp|tls|ucx|ws|wss|inproc)://)?([^:/\s]+|\[[0-9a-fA-F:]+\]):(\d+)/?$")


def check_scheduler(address: str, *, timeout: float = 5.0) -> str:
    """Check a scheduler address's form and that something listens there; return it.

    Connecting a dask ``Client`` to a wrong address waits 30 s and ends in a traceback; a
    socket connection answers in milliseconds (refused) or ``timeout`` seconds (nobody).
    """
    match = _ADDRESS.match(address.strip()) if isinstance(address, str) else None
    if match is None:
        raise ParameterError(
            f"scheduler address {address!r} is not of the form tcp://host:port (e.g. "
            "tcp://10.0.0.5:8786)."
        )
    scheme, host, port = match.groups()
    if scheme in (None, "tcp", "tls"):
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                pass
        except OSError as exc:
            raise ParameterError(
                f"no dask scheduler answers at {address!r} ({exc.strerror or exc}); start one "
                "(dask scheduler) or check the address."
            ) from None
    if scheme != "tls":  # a TLS scheduler needs the client's certificates to answer
        kind = _identity(address, timeout)
        if kind != "Scheduler":
            raise ParameterError(
                f"{address!r} answers but is not a dask scheduler ({kind}); check the address "
                "(the scheduler's port, 8786 by default, not its dashboard's)."
            )
    return address


def _identity(address: str, timeout: float) -> str:
    """What the server at ``address`` says it is ("Scheduler" for a dask scheduler).

    A dask Client connecting to a server that accepts the connection but never speaks dask
    waits forever, whatever its ``timeout``; this asks for the identity with a deadline, on
    its own event loop in a thread (the caller may be inside a running loop, e.g. Jupyter).
    """

    async def ask() -> Any:
        from distributed.comm import connect

        comm = await connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            await comm.close()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            reply = pool.submit(asyncio.run, asyncio.wait_for(ask(), timeout)).result()
        except OSError as exc:  # refused, reset, or a silent server: TimeoutError
            return f"no answer within {timeout:g} s: {type(exc).__name__}"
        except Exception as exc:  # the server spoke something else than dask's protocol
            return f"{type(exc).__name__}: {exc}"
    return reply.get("type", "unknown") if isinstance(reply, dict) else repr(reply)[:80]


def _local(path: Any) -> Path | None:
    if not isinstance(path, str | os.PathLike):
        return None
    text = os.fspath(path)
    if "://" in text and not text.startswith("file://"):
        return None
    return Path(text.removeprefix("file://")).expanduser().resolve()


def check_output(source: Any, output: str | os.PathLike, *, overwrite: bool) -> None:
    """Refuse an output that is, contains or sits inside the input, a regular file, or in a
    folder that cannot be written.

    Raises
    ------
    ParameterError
        With the output path and what to do.
    """
    out, src = _local(output), _local(source)
    text = os.fspath(output)
    if src is None and isinstance(source, str | os.PathLike):
        # Both remote: compare the URLs as paths.
        a, b = text.rstrip("/") + "/", os.fspath(source).rstrip("/") + "/"
        if a.startswith(b) or b.startswith(a):
            raise ParameterError(
                f"output {text!r} is, contains or sits inside the input {os.fspath(source)!r}; "
                "choose an output elsewhere: the run would destroy its input."
            )
    if out is None:
        return
    if src is not None and (out == src or src in out.parents or out in src.parents):
        raise ParameterError(
            f"output {text!r} is, contains or sits inside the input {os.fspath(source)!r}; "
            "choose an output elsewhere: the run would destroy its input."
        )
    if out.exists() and not out.is_dir():
        raise ParameterError(
            f"output {text!r} is a regular file, not a result store; choose a *.zarr path "
            "that is free, or remove the file."
        )
    folder = next(p for p in (out.parent, *out.parent.parents) if p.exists())
    if not folder.is_dir():
        raise ParameterError(f"output {text!r} cannot be made: {str(folder)!r} is a file.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ParameterError(
            f"output {text!r} cannot be written: the folder {str(folder)!r} is read-only; "
            "choose an output in a writable folder."
        )


def validate_run(
    cfg: dict[str, Any],
    source: Any,
    output: str | os.PathLike,
    *,
    overwrite: bool,
    client: Any,
    scheduler: str | None,
    workers: int | None,
) -> None:
    """Check everything a run was given, before it starts anything (see module docstring)."""
    validate_config(cfg)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ParameterError(f"workers = {workers!r} is not allowed: an integer >= 1.")
    if client is not None and scheduler is not None:
        raise ParameterError("give either client= or scheduler=, not both.")
    for one in source if isinstance(source, list) else [source]:
        check_output(one, output, overwrite=overwrite)
    if client is None and scheduler is not None:
        check_scheduler(scheduler)
