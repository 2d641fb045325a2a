"""Export a result store to the formats other tools read: a per-atom table, ASE, GraphML, JSON.

- ``csv`` / ``parquet``: one row per atom (:func:`atom_table`), through pandas (and pyarrow);
- ``ase``: one :class:`ase.Atoms` per frame, written as extended XYZ (:func:`to_ase`);
- ``graphml`` / ``json``: the motif hierarchy, through networkx (GraphML holds only scalars:
  lists are written as JSON text, see :func:`graphml_ready`).

pandas, pyarrow and ase come with the ``export`` extra and are imported on first use. Every file
is written to a hidden sibling and moved into place, and never over an existing file unless
``overwrite`` is asked for.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import DataError, ParameterError, require
from .edits import active_labels
from .store import Result, atomic_file, json_ready, open_result, refuse_existing

if TYPE_CHECKING:  # imported on first use: they are optional (the ``export`` extra)
    import ase
    import networkx as nx
    import pandas as pd

__all__ = ["FORMATS", "atom_table", "export", "frame_sources", "graphml_ready", "to_ase"]

#: Formats of :func:`export`, and the file suffixes that choose each when none is given.
FORMATS = {
    "csv": (".csv",),
    "parquet": (".parquet", ".pq"),
    "ase": (".extxyz", ".xyz"),
    "graphml": (".graphml",),
    "json": (".json",),
}
_LEVEL_LABEL = re.compile(r"^label_L\d+$")
_ANGSTROM_PER_NM = 10.0


def _as_result(result: Result | str | os.PathLike) -> Result:
    return result if isinstance(result, Result) else open_result(result)


def frame_sources(result: Result, n_frames: int) -> list[str | None] | None:
    """The input file of each frame, as the run's configuration records it; None if unknown.

    A run over one input records ``config["input"]`` as that input's identity (all frames come
    from its ``path``); a run over several records a list of identities, one per input file, each
    with the ``frames`` it holds (or one identity per frame, in order).
    """
    record = result.config.get("input")
    if isinstance(record, dict):
        path = record.get("path")
        return None if path is None else [str(path)] * n_frames
    if not isinstance(record, list) or not record:
        return None
    sources: list[str | None] = [None] * n_frames
    for i, entry in enumerate(record):
        if not isinstance(entry, dict):
            return None
        frames = entry.get("frames", [i] if len(record) == n_frames else [])
        for f in np.atleast_1d(frames).astype(int).tolist():
            if 0 <= f < n_frames:
                sources[f] = None if entry.get("path") is None else str(entry["path"])
    return sources if any(s is not None for s in sources) else None


def atom_table(result: Result | str | os.PathLike) -> pd.DataFrame:
    """The per-atom table of a result: one row per atom, in the store's atom order.

    Parameters
    ----------
    result : Result, str or os.PathLike
        An opened result or the path of its store.

    Returns
    -------
    pandas.DataFrame
        Columns ``atom`` (index in the store), ``frame``, ``source`` (the input file of the
        frame, when the run recorded it), ``y_px``, ``x_px`` (pixels, sub-pixel), ``y_nm``,
        ``x_nm`` (when the image was calibrated), ``label`` (the labelling in force: the last
        saved edit, else the learned one; -1 unassigned), ``motif`` (its name), ``label_L2``,
        ``label_L3``… (the hierarchy's levels, when the store has them), ``intensity`` and the
        column measurements the run made (``fit_*``, ``cross_section``, ``intensity_class``,
        ``disp_*``, ``strain_*``, ``rotation``; see :func:`dmotif.refine_columns`).

    Raises
    ------
    DataError
        When the store has no atom positions.
    MissingDependencyError
        When pandas is not installed.
    """
    pd = require("pandas", extra="export", feature="the atom table")
    res = _as_result(result)
    ds = res.dataset
    missing = [v for v in ("frame", "y", "x") if v not in ds]
    if missing:
        raise DataError(f"{res.path!r} lacks {missing}: it holds no atom positions to export.")
    frame = ds["frame"].values.astype(np.int64)
    columns: dict[str, Any] = {"atom": np.arange(frame.size, dtype=np.int64), "frame": frame}
    sources = frame_sources(res, int(frame.max()) + 1 if frame.size else 0)
    if sources is not None:
        columns["source"] = np.asarray(sources, dtype=object)[frame]
    columns["y_px"] = ds["y"].values
    columns["x_px"] = ds["x"].values
    for name in ("y_nm", "x_nm"):
        if name in ds:
            columns[name] = ds[name].values
    if "label" in ds:
        labels = active_labels(res)
        columns["label"] = labels.values
        names = labels.attrs["motif_names"]
        columns["motif"] = [names.get(int(v), "unassigned" if v < 0 else str(v))
                            for v in labels.values]
    for name in sorted(n for n in ds.data_vars if _LEVEL_LABEL.match(str(n))):
        columns[name] = ds[name].values
    for name in ("intensity", "continuum"):
        if name in ds:
            columns[name] = ds[name].values
    from ..measure.stage import MEASURED_VARS

    for name in MEASURED_VARS:
        if name in ds:
            columns[name] = ds[name].values
    return pd.DataFrame(columns)


def to_ase(result: Result | str | os.PathLike) -> list[ase.Atoms]:
    """The atoms of a result as one :class:`ase.Atoms` per frame, the motif as their tag.

    Parameters
    ----------
    result : Result, str or os.PathLike
        An opened result or the path of its store.

    Returns
    -------
    list of ase.Atoms
        One per frame (a frame without atoms gives an empty Atoms). Positions ``(x, y, 0)`` in
        Å when the image was calibrated, else in pixels: ``info["units"]`` says which. Every
        atom is the dummy element ``X`` (an image does not tell the element); ``tags`` hold the
        motif label (-1 unassigned); per-atom arrays ``atom`` (index in the store),
        ``intensity`` and ``label_L2``… when present; ``info`` holds ``frame`` and ``source``.

    Notes
    -----
    ASE writes extended XYZ with 8 decimals, so a file read back holds the positions to
    1e-8 Å (or pixel); the Atoms returned here hold them exactly.

    Raises
    ------
    MissingDependencyError
        When ase (or pandas) is not installed.
    """
    ase = require("ase", extra="export", feature="ASE export")
    table = atom_table(result)
    calibrated = "x_nm" in table and "y_nm" in table
    xy = (table[["x_nm", "y_nm"]].to_numpy() * _ANGSTROM_PER_NM if calibrated
          else table[["x_px", "y_px"]].to_numpy())
    n_frames = int(table["frame"].max()) + 1 if len(table) else 0
    extra = ["atom", "intensity", *[c for c in table if _LEVEL_LABEL.match(c)]]
    frames = []
    for f in range(n_frames):
        rows = np.flatnonzero(table["frame"].to_numpy() == f)
        atoms = ase.Atoms(symbols=["X"] * rows.size,
                          positions=np.column_stack([xy[rows], np.zeros(rows.size)]))
        if "label" in table:
            atoms.set_tags(table["label"].to_numpy()[rows])
        for name in extra:
            if name in table:
                atoms.set_array(name, table[name].to_numpy()[rows])
        atoms.info["frame"] = f
        atoms.info["units"] = "Å" if calibrated else "px"
        if "source" in table and rows.size:
            atoms.info["source"] = str(table["source"].iloc[rows[0]])
        frames.append(atoms)
    return frames


def graphml_ready(graph: nx.DiGraph) -> nx.DiGraph:
    """A copy of ``graph`` that GraphML can hold: scalar attributes only.

    GraphML stores booleans, numbers and text. Lists and dicts (a motif's example atoms, its
    mean patch, a cell's labels) become JSON text; ``None`` values are dropped. The graph
    attribute ``dmotif_note`` names the attributes so converted, so a reader can decode them.
    """
    out = graph.copy()
    as_json: set[str] = set()
    dropped: set[str] = set()

    def clean(attrs: dict[str, Any]) -> None:
        for key, value in list(attrs.items()):
            if isinstance(value, np.generic):
                value = attrs[key] = value.item()
            if value is None:
                del attrs[key]
                dropped.add(key)
            elif not isinstance(value, bool | int | float | str):
                attrs[key] = json.dumps(json_ready(value))
                as_json.add(key)

    clean(out.graph)
    for _, attrs in out.nodes(data=True):
        clean(attrs)
    for _, _, attrs in out.edges(data=True):
        clean(attrs)
    notes = []
    if as_json:
        notes.append(f"attributes written as JSON text: {', '.join(sorted(as_json))}")
    if dropped:
        notes.append(f"attributes dropped (no value): {', '.join(sorted(dropped))}")
    if notes:
        out.graph["dmotif_note"] = "; ".join(notes)
    return out


def _format_of(path: str, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise ParameterError(
                f"unknown export format {format!r}; choose one of {', '.join(FORMATS)}."
            )
        return format
    suffix = Path(path).suffix.lower()
    for name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return name
    raise ParameterError(
        f"cannot tell the export format from the suffix {suffix or '(none)'!r} of {path!r}; "
        f"pass format= (CLI: --format) one of {', '.join(FORMATS)}."
    )


def _hierarchy_of(res: Result) -> nx.DiGraph:
    graph = res.hierarchy
    if graph is None:
        raise DataError(
            f"{res.path!r} holds no motif hierarchy to export; run the pipeline's hierarchy "
            "stage first, or export the atoms (csv, parquet, ase)."
        )
    return graph


def export(
    result: Result | str | os.PathLike,
    path: str | os.PathLike,
    *,
    format: str | None = None,
    overwrite: bool = False,
) -> str:
    """Write a result's atoms or its motif hierarchy in a format other tools read.

    Parameters
    ----------
    result : Result, str or os.PathLike
        An opened result or the path of its store.
    path : str or os.PathLike
        The file to write (local).
    format : {"csv", "parquet", "ase", "graphml", "json"}, optional
        ``csv``/``parquet``: the per-atom table of :func:`atom_table`; ``ase``: extended XYZ,
        one frame per image frame (:func:`to_ase`); ``graphml``: the hierarchy, lists as JSON
        text (:func:`graphml_ready`); ``json``: the hierarchy as networkx node-link JSON. By
        default from the suffix of ``path`` (``.csv``, ``.parquet``, ``.extxyz``/``.xyz``,
        ``.graphml``, ``.json``).
    overwrite : bool
        Replace an existing file. Default: refuse.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    StoreExistsError
        When ``path`` exists and ``overwrite`` is false.
    ParameterError
        When the format is unknown or cannot be told from the suffix.
    DataError
        When the store lacks what the format needs (atoms, or a hierarchy).
    MissingDependencyError
        When pandas, pyarrow or ase is needed and not installed (``pip install 'dmotif[export]'``).

    Examples
    --------
    >>> import dmotif, pandas
    >>> dmotif.export("scan.dmotif.zarr", "atoms.csv")  # doctest: +SKIP
    'atoms.csv'
    >>> pandas.read_csv("atoms.csv").columns[:4].tolist()  # doctest: +SKIP
    ['atom', 'frame', 'source', 'y_px']
    """
    text = os.fspath(path)
    fmt = _format_of(text, format)
    # Refuse before reading the store: a table of millions of atoms takes a while to build.
    refuse_existing(text, overwrite=overwrite)
    res = _as_result(result)
    if fmt == "parquet":
        require("pyarrow", extra="export", feature="Parquet export")
    if fmt in ("csv", "parquet"):
        table = atom_table(res)
        with atomic_file(text, overwrite=overwrite) as tmp:
            if fmt == "csv":
                table.to_csv(tmp, index=False)
            else:
                table.to_parquet(tmp, index=False, engine="pyarrow")
    elif fmt == "ase":
        ase_io = require("ase.io", extra="export", feature="ASE export")
        frames = to_ase(res)
        with atomic_file(text, overwrite=overwrite) as tmp:
            ase_io.write(tmp, frames, format="extxyz")
    else:
        import networkx as nx

        graph = _hierarchy_of(res)
        with atomic_file(text, overwrite=overwrite) as tmp:
            if fmt == "graphml":
                nx.write_graphml(graphml_ready(graph), tmp)
            else:
                tmp.write_text(json.dumps(json_ready(nx.node_link_data(graph, edges="edges"))))
    return text
