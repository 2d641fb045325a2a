"""Storing a hierarchy graph: node-link JSON, GraphML or the attributes of a result store."""

from __future__ import annotations

import json
import os
from typing import Any

import networkx as nx
import numpy as np
import xarray as xr

from ..errors import ParameterError, StoreError

__all__ = ["graph_dataset", "graph_from_dataset", "load_hierarchy", "save_hierarchy"]


_JSON_PREFIX = "json:"


def _plain(value: Any) -> Any:
    """A JSON-serialisable copy of ``value`` (numpy arrays and scalars to lists and numbers)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _node_link(graph: nx.DiGraph) -> dict[str, Any]:
    return _plain(nx.node_link_data(graph, edges="edges"))


def _from_node_link(data: dict[str, Any]) -> nx.DiGraph:
    g = nx.node_link_graph(data, directed=True, edges="edges")
    for _, d in g.nodes(data=True):
        if "mean_patch" in d:
            d["mean_patch"] = np.asarray(d["mean_patch"], dtype=np.float32)
    return g


#: Names of the variables that hold a graph in a result store.
GRAPH_VAR, PATCH_VAR, SHAPE_VAR = "hierarchy_graph", "hierarchy_patch", "hierarchy_patch_shape"


def graph_dataset(graph: nx.DiGraph) -> xr.Dataset:
    """A hierarchy graph as arrays: its node-link JSON as bytes and its mean patches stacked.

    A graph's mean patches (and, with many motifs, its thousands of nodes) would make a
    store's root ``zarr.json`` hundreds of megabytes that every open parses; as arrays they
    are compressed chunks read only when the graph is asked for.

    Parameters
    ----------
    graph : networkx.DiGraph
        From :func:`build_hierarchy`.

    Returns
    -------
    xarray.Dataset
        ``hierarchy_graph(hierarchy_byte)``: UTF-8 node-link JSON without the mean patches;
        ``hierarchy_patch(patch_node, patch_y, patch_x)`` float32 (NaN-padded to the largest
        patch) with ``hierarchy_patch_shape(patch_node, patch_axis)`` and the attribute
        ``nodes`` of the first (which node each patch belongs to).
    """
    g = graph.copy()
    nodes, patches = [], []
    for n, d in g.nodes(data=True):
        patch = d.pop("mean_patch", None)
        if patch is not None:
            nodes.append(n)
            patches.append(np.asarray(patch, np.float32))
    text = json.dumps(_node_link(g)).encode()
    side = max((max(p.shape) for p in patches), default=0)
    stack = np.full((len(patches), side, side), np.nan, np.float32)
    for k, p in enumerate(patches):
        stack[k, : p.shape[0], : p.shape[1]] = p
    shapes = np.array([p.shape for p in patches], np.int32).reshape(-1, 2)
    return xr.Dataset({
        GRAPH_VAR: ("hierarchy_byte", np.frombuffer(text, np.uint8)),
        PATCH_VAR: (("patch_node", "patch_y", "patch_x"), stack, {"nodes": _plain(nodes)}),
        SHAPE_VAR: (("patch_node", "patch_axis"), shapes),
    })


def graph_from_dataset(ds: xr.Dataset) -> nx.DiGraph | None:
    """The graph :func:`graph_dataset` wrote (None when ``ds`` holds none).

    Mean patches come back as nested lists of floats, as from node-link JSON, so the graph
    equals one written as JSON (``networkx.utils.graphs_equal`` compares them).
    """
    if GRAPH_VAR not in ds:
        return None
    g = nx.node_link_graph(json.loads(ds[GRAPH_VAR].values.tobytes()), directed=True,
                           multigraph=False, edges="edges")
    if PATCH_VAR in ds:
        stack, shapes = ds[PATCH_VAR].values, ds[SHAPE_VAR].values
        for k, n in enumerate(ds[PATCH_VAR].attrs.get("nodes", [])):
            g.nodes[n]["mean_patch"] = stack[k, : shapes[k, 0], : shapes[k, 1]].tolist()
    return g


def _is_store(path: str) -> bool:
    return path.rstrip("/").endswith(".zarr") or os.path.isfile(os.path.join(path, "zarr.json"))


def save_hierarchy(graph: nx.DiGraph, path: str | os.PathLike) -> None:
    """Write a hierarchy graph as node-link JSON, GraphML or into a result store.

    Parameters
    ----------
    graph : networkx.DiGraph
        From :func:`build_hierarchy`.
    path : str or path-like
        ``*.json``: node-link JSON (lossless). ``*.graphml``: GraphML, whose attributes must be
        scalars, so lists and arrays are written as ``"json:"``-prefixed JSON strings.
        ``*.zarr`` or an existing zarr store: the node-link data go into the store's attribute
        ``hierarchy``.

    Raises
    ------
    ParameterError
        For another suffix.
    StoreError
        When the file or store cannot be written.

    Examples
    --------
    >>> import dmotif, networkx as nx, tempfile, os
    >>> g = nx.DiGraph(); g.add_node("L1:0", level=1, count=3)
    >>> p = os.path.join(tempfile.mkdtemp(), "h.json")
    >>> dmotif.save_hierarchy(g, p); dmotif.load_hierarchy(p).nodes["L1:0"]["count"]
    3
    """
    path = os.fspath(path)
    try:
        if _is_store(path):
            import zarr

            zarr.open_group(path, mode="a").attrs["hierarchy"] = _node_link(graph)
        elif path.endswith(".json"):
            with open(path, "w") as fh:
                json.dump(_node_link(graph), fh)
        elif path.endswith(".graphml"):
            flat = nx.DiGraph()
            flat.graph.update({k: _scalar(v) for k, v in graph.graph.items()})
            flat.add_nodes_from((n, {k: _scalar(v) for k, v in d.items()})
                                for n, d in graph.nodes(data=True))
            flat.add_edges_from((a, b, {k: _scalar(v) for k, v in d.items()})
                                for a, b, d in graph.edges(data=True))
            nx.write_graphml(flat, path)
        else:
            raise ParameterError(
                f"cannot tell the format of {path!r}: use a .json, .graphml or .zarr path."
            )
    except OSError as exc:
        raise StoreError(f"cannot write the hierarchy to {path!r}: {exc}") from exc


def _scalar(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, list | dict):
        return _JSON_PREFIX + json.dumps(value)
    return value


def _unscalar(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_JSON_PREFIX):
        return json.loads(value[len(_JSON_PREFIX):])
    return value


def load_hierarchy(path: str | os.PathLike) -> nx.DiGraph:
    """Read a hierarchy written by :func:`save_hierarchy` (JSON, GraphML or a store).

    Returns
    -------
    networkx.DiGraph
        With ``mean_patch`` attributes as float32 arrays again.

    Raises
    ------
    StoreError
        When the file is missing or holds no hierarchy.
    ParameterError
        For an unknown suffix.
    """
    path = os.fspath(path)
    try:
        if _is_store(path):
            import zarr

            attrs = zarr.open_group(path, mode="r").attrs
            if "hierarchy" not in attrs:
                raise StoreError(f"the store {path!r} holds no hierarchy; run build first.")
            return _from_node_link(dict(attrs["hierarchy"]))
        if path.endswith(".json"):
            with open(path) as fh:
                return _from_node_link(json.load(fh))
        if path.endswith(".graphml"):
            flat = nx.read_graphml(path)
            g = nx.DiGraph()
            g.graph.update({k: _unscalar(v) for k, v in flat.graph.items()
                            if k not in ("node_default", "edge_default")})
            g.add_nodes_from((n, {k: _unscalar(v) for k, v in d.items()})
                             for n, d in flat.nodes(data=True))
            g.add_edges_from((a, b, {k: _unscalar(v) for k, v in d.items()})
                             for a, b, d in flat.edges(data=True))
            return _from_node_link(_node_link(g))
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"cannot read a hierarchy from {path!r}: {exc}") from exc
    raise ParameterError(f"cannot tell the format of {path!r}: use .json, .graphml or .zarr.")
