"""Edited labellings of a result store: saved beside the learned one, switched atomically.

The learned labels (variable ``label``) are never modified. Each saved edit is a new array
``label_edit_<n>(atom)`` whose attributes hold its motif names, its parent labelling, a note and
the hierarchy rebuilt from it. Only after that array is completely written does one small JSON
document change: the store's root attributes, where ``active_labels`` names the labelling in
force (absent = the learned ``label``), ``label_edits`` lists the saved edits and ``hierarchy``
is the active labelling's hierarchy (the learned one is kept as ``hierarchy_learned``). zarr
writes that document in one go (on a local disk via a temporary file and a rename; on an object
store as a single PUT), so a save killed at any point leaves the store with either the previous
or the new labelling active, each intact; arrays of a save that never switched are removed by the
next save.

The environment variable ``DMOTIF_TEST_SAVE_PAUSE`` (seconds) makes :func:`save_labels` sleep
between the array write and the switch. It exists only so that the test suite can kill a save at
that point; nothing else sets it.
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from ..errors import DataError, DmotifError, ParameterError, StoreError
from .store import Result, json_ready, open_result

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "LEARNED",
    "activate_labels",
    "active_labels",
    "label_names",
    "rebuild_hierarchy",
    "save_labels",
]

#: Name of the learned labelling (the pipeline's ``label`` variable).
LEARNED = "label"
_EDIT = re.compile(r"^label_edit_(\d+)$")
_PAUSE_ENV = "DMOTIF_TEST_SAVE_PAUSE"


def _as_result(store: Result | str | os.PathLike, storage_options: dict[str, Any] | None) -> Result:
    if isinstance(store, Result):
        return store
    return open_result(store, storage_options=storage_options)


def label_names(labels: np.ndarray, names: Any = None) -> dict[int, str]:
    """Motif names for every label in ``labels`` (``-1`` excluded): ``{id: name}``.

    ``names`` may be a list indexed by label (as synthetic truth has), a mapping with int or
    str keys (as stored), or None; a label without a name is called ``"motif <id>"``.
    """
    given: dict[int, str] = {}
    if isinstance(names, dict):
        given = {int(k): str(v) for k, v in names.items()}
    elif names is not None:
        given = {i: str(v) for i, v in enumerate(names)}
    present = np.unique(np.asarray(labels))
    return {int(k): given.get(int(k), f"motif {int(k)}") for k in present if k >= 0}


def active_labels(store: Result | str | os.PathLike, *,
                  storage_options: dict[str, Any] | None = None) -> xr.DataArray:
    """The labelling in force in a result store: the last saved edit, or the learned labels.

    Parameters
    ----------
    store : Result, str or os.PathLike
        An opened result or the path of its store.
    storage_options : dict, optional
        fsspec options for a remote store.

    Returns
    -------
    xarray.DataArray
        Over ``atom``, int32 (-1 unassigned), named after its array (``"label"`` or
        ``"label_edit_<n>"``), attrs ``motif_names`` (``{id: name}``).

    Raises
    ------
    StoreError
        When the store has no labels, or its active labelling is missing.

    Examples
    --------
    >>> labels = active_labels("scan.dmotif.zarr")  # doctest: +SKIP
    >>> labels.attrs["motif_names"]  # doctest: +SKIP
    {0: 'metal', 1: 'chalcogen pair'}
    """
    result = _as_result(store, storage_options)
    name = result.attrs.get("active_labels") or LEARNED
    if name not in result.dataset:
        if name == LEARNED:
            raise StoreError(
                f"{result.path!r} has no labels (no 'label' variable): run the pipeline's "
                "cluster stage first."
            )
        raise StoreError(
            f"{result.path!r} names {name!r} as its active labelling, but has no such array. "
            f"Switch back with dmotif.io.edits.activate_labels(path, {LEARNED!r})."
        )
    labels = result.dataset[name].astype(np.int32)
    raw = labels.attrs.get("motif_names")
    if raw is None and name == LEARNED:
        raw = result.attrs.get("motif_names")
    labels = labels.compute()
    labels.attrs = {"motif_names": label_names(labels.values, raw)}
    return labels.rename(name)


def rebuild_hierarchy(store: Result | str | os.PathLike, labels: Any) -> nx.DiGraph:
    """The motif hierarchy of ``labels`` over the store's atoms.

    Calls :func:`dmotif.build_hierarchy` ``(atoms, labels, **config["hierarchy"])`` with the
    run's hierarchy parameters.

    Parameters
    ----------
    store, labels
        As for :func:`save_labels`: the result store and one motif id per atom.

    Returns
    -------
    networkx.DiGraph
        The hierarchy graph, as the pipeline's hierarchy stage builds it.

    Raises
    ------
    DmotifError
        Whatever :func:`dmotif.build_hierarchy` raises, e.g. :class:`NoLatticeError`.
    """
    from ..hierarchy import build_hierarchy  # io is imported without the hierarchy's weight

    result = _as_result(store, None)
    names = [v for v in ("frame", "y", "x", "intensity", "width") if v in result.dataset]
    atoms = result.dataset[names].compute()
    atoms.attrs = dict(result.attrs.get("atoms_attrs", {}))
    params = dict(result.config.get("hierarchy", {}) or {})
    labels = xr.DataArray(np.asarray(labels, dtype=np.int32), dims="atom")
    return build_hierarchy(atoms, labels, **params)


def _check_labels(labels: Any, n_atoms: int) -> np.ndarray:
    values = np.asarray(labels)
    if values.shape != (n_atoms,):
        raise DataError(
            f"labels must have one entry per atom ({n_atoms}); got shape {values.shape}."
        )
    if not np.issubdtype(values.dtype, np.integer):
        raise DataError(f"labels must be integers; got dtype {values.dtype}.")
    if values.size and values.min() < -1:
        raise DataError(f"labels must be >= -1 (-1 = unassigned); got {values.min()}.")
    return values.astype(np.int32)


def save_labels(
    store: Result | str | os.PathLike,
    labels: Any,
    *,
    motif_names: Any = None,
    note: str = "",
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Save an edited labelling to a result store and make it the active one, crash-safely.

    The learned ``label`` and earlier edits are kept; the hierarchy is rebuilt from the new
    labels (:func:`rebuild_hierarchy`). When it cannot be (e.g. for want of a lattice), the
    labelling is saved without one and its record's ``hierarchy_note`` says why. See the module
    notes for the protocol.

    Parameters
    ----------
    store : Result, str or os.PathLike
        The result store (opened, or its path).
    labels : array-like of int
        One motif id per atom, -1 unassigned.
    motif_names : list or dict, optional
        Names of the motifs (see :func:`label_names`).
    note : str
        What the edit was (e.g. ``"merge 1, 2"``), kept with it.
    storage_options : dict, optional
        fsspec options for a remote store.

    Returns
    -------
    str
        The name of the new labelling's array, ``"label_edit_<n>"``.

    Raises
    ------
    DataError
        When ``labels`` do not give one integer >= -1 per atom.
    StoreError
        When the store cannot be opened or written.

    Examples
    --------
    >>> name = save_labels("scan.dmotif.zarr", labels, motif_names={0: "metal"},
    ...                    note="merge 0, 3")  # doctest: +SKIP
    >>> active_labels("scan.dmotif.zarr").name == name  # doctest: +SKIP
    True
    """
    import zarr
    from networkx import node_link_data

    result = _as_result(store, storage_options)
    n_atoms = result.dataset.sizes.get("atom", 0)
    values = _check_labels(labels, n_atoms)
    names = label_names(values, motif_names)
    graph: nx.DiGraph | None = None
    why = None
    try:
        graph = rebuild_hierarchy(result, values)
    except DmotifError as exc:  # e.g. no lattice: the edit is kept all the same
        why = str(exc)
    try:
        group = zarr.open_group(result.path, mode="r+", storage_options=storage_options)
    except (FileNotFoundError, ValueError) as exc:
        raise StoreError(f"cannot open {result.path!r} for writing: {exc}") from exc
    edits = list(group.attrs.get("label_edits", []))
    recorded = {e["name"] for e in edits}
    present = [k for k in group.array_keys() if _EDIT.match(k)]
    for orphan in set(present) - recorded:  # left by a save that was killed before its switch
        del group[orphan]
    numbers = [int(_EDIT.match(k).group(1)) for k in recorded | set(present)]
    name = f"label_edit_{max(numbers, default=0) + 1}"
    parent = group.attrs.get("active_labels") or LEARNED
    hierarchy = None if graph is None else node_link_data(graph, edges="edges")
    record = {
        "name": name,
        "parent": parent,
        "note": note,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "hierarchy_rebuilt": graph is not None,
    }
    if why is not None:
        record["hierarchy_note"] = f"hierarchy not rebuilt: {why}"
    array = group.create_array(
        name, shape=values.shape, dtype="int32", chunks=(min(max(n_atoms, 1), 1 << 20),),
        fill_value=-1, dimension_names=["atom"],
        attributes=json_ready({
            **record, "motif_names": {str(k): v for k, v in names.items()},
            "hierarchy": hierarchy,
        }),
    )
    array[...] = values
    pause = float(os.environ.get(_PAUSE_ENV, "0") or 0)
    if pause > 0:
        time.sleep(pause)
    switch: dict[str, Any] = {
        "active_labels": name,
        "label_edits": [*edits, record],
        "hierarchy": hierarchy,
    }
    if "hierarchy_learned" not in group.attrs:
        switch["hierarchy_learned"] = group.attrs.get("hierarchy")
    group.attrs.update(json_ready(switch))
    return name


def activate_labels(
    store: Result | str | os.PathLike, name: str = LEARNED, *,
    storage_options: dict[str, Any] | None = None,
) -> None:
    """Make labelling ``name`` (``"label"`` = learned, or a saved ``"label_edit_<n>"``) active.

    One root-attribute write, like the switch of :func:`save_labels`.

    Raises
    ------
    ParameterError
        When the store has no labelling of that name.
    """
    import zarr

    result = _as_result(store, storage_options)
    saved = [e["name"] for e in result.attrs.get("label_edits", [])]
    if name != LEARNED and name not in saved:
        raise ParameterError(
            f"{result.path!r} has no saved labelling {name!r}; choose one of "
            f"{[LEARNED, *saved]}."
        )
    group = zarr.open_group(result.path, mode="r+", storage_options=storage_options)
    if name == LEARNED:
        hierarchy = group.attrs.get("hierarchy_learned", group.attrs.get("hierarchy"))
    else:
        hierarchy = group[name].attrs.get("hierarchy")
    switch: dict[str, Any] = {"active_labels": name, "hierarchy": hierarchy}
    if "hierarchy_learned" not in group.attrs:
        switch["hierarchy_learned"] = group.attrs.get("hierarchy")
    group.attrs.update(json_ready(switch))
