"""Level-3 motifs: connected patterns of a few cells, identified up to translation and the
lattice's rotations (lattice cells) or up to graph isomorphism (rings), and their containment."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import Any

import networkx as nx
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from . import _cells

__all__ = ["add_pattern", "components", "listed_edges", "pattern_key", "pattern_nodes"]


def _pattern_graph(types: list[str], edges: list[tuple[int, int]]) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from((k, {"t": t}) for k, t in enumerate(types))
    g.add_edges_from(edges)
    return g


def pattern_key(types: list[str], edges: list, ij: np.ndarray, rotations: np.ndarray | None):
    """Lattice patterns: the exact key up to the lattice's rotations; rings: a graph hash."""
    if rotations is not None:
        return _cells.pattern_key(ij, types, rotations)
    return nx.weisfeiler_lehman_graph_hash(_pattern_graph(types, edges), node_attr="t")


def _find_pattern(table: dict, key: Any, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The entry of ``table`` that is the same motif as ``entry`` (None if there is none).

    A lattice key is exact; a ring pattern's hash can collide, so its bucket is checked by
    graph isomorphism with equal cell types.
    """
    for other in table.get(key, []):
        if other["ij"] is not None or nx.is_isomorphic(
            _pattern_graph(other["types"], other["edges"]),
            _pattern_graph(entry["types"], entry["edges"]),
            node_match=lambda a, b: a["t"] == b["t"],
        ):
            return other
    return None


def add_pattern(table: dict, key: Any, entry: dict[str, Any]) -> None:
    same = _find_pattern(table, key, entry)
    if same is None:
        table.setdefault(key, []).append(dict(entry))
    else:
        same["count"] += entry["count"]
        # a new list: the first entry's list may be shared with the frame's own table
        same["occurrences"] = same.get("occurrences", []) + entry.get("occurrences", [])


def components(n: int, edges: np.ndarray) -> np.ndarray:
    """Connected-component label of each of the ``n`` vertices of an undirected graph."""
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def listed_edges(group: list[int], edges: list[list[int]], n: int) -> list[tuple[int, int]]:
    """The ``edges`` of a group of cells as sorted pairs of positions in ``group`` (sorted).

    Each edge is oriented from the end networkx visits first when it lists the edges of the
    group's subgraph of an ``n``-cell graph, as the stored patterns have always had them: a
    small subgraph's nodes in the order of a Python set of them, a large one's in graph order.
    """
    visit = group if 2 * len(group) >= n else set(group)
    first = {c: k for k, c in enumerate(visit)}
    pos = {c: k for k, c in enumerate(group)}
    return sorted((pos[a], pos[b]) if first[a] <= first[b] else (pos[b], pos[a])
                  for a, b in edges)


def pattern_nodes(g: nx.DiGraph, parts: list[dict[str, Any]], rotations: np.ndarray | None,
                   max_cells: int) -> None:
    """Add the level-3 nodes: defect patterns, their containment, and the large regions."""
    patterns: dict[Any, list[dict[str, Any]]] = {}
    large: list[dict[str, Any]] = []
    for p in parts:  # frame order, so node ids do not depend on the scheduler
        for key, bucket in p["patterns"].items():
            for entry in bucket:
                add_pattern(patterns, key, entry)
        large.extend(p["large"])
    node_of: dict[int, str] = {}
    for key, bucket in patterns.items():
        digest = hashlib.sha1(repr(key).encode()).hexdigest()[:10]
        for k, entry in enumerate(bucket):
            node = f"L3:{digest}" + (f".{k}" if k else "")
            node_of[id(entry)] = node
            comp = Counter(entry["types"])
            g.add_node(node, level=3, count=int(entry["count"]), n_cells=len(entry["types"]),
                       name=" + ".join(f"{n}×{t}" for t, n in sorted(comp.items())),
                       types=list(entry["types"]), edges=[list(e) for e in entry["edges"]],
                       cells=entry["ij"] or [], example=list(entry["example"]),
                       occurrences=[list(o) for o in entry.get("occurrences", [])])
            for t, mult in sorted(comp.items()):
                g.add_edge(node, f"L2:{t}", multiplicity=int(mult))
    # Pattern B contains pattern A where a connected part of B's cells is A (same types, same
    # arrangement up to rotation); the multiplicity counts distinct cell sets.
    for bucket in patterns.values():
        for entry in bucket:
            inside: Counter = Counter()
            for sub in _cells.connected_subsets(len(entry["types"]), entry["edges"]):
                pos = {v: k for k, v in enumerate(sub)}
                part = {"types": [entry["types"][v] for v in sub],
                        "edges": [(pos[a], pos[b]) for a, b in entry["edges"]
                                  if a in pos and b in pos],
                        "ij": None if entry["ij"] is None
                        else np.asarray(entry["ij"])[list(sub)]}
                key = pattern_key(part["types"], part["edges"], part["ij"], rotations)
                match = _find_pattern(patterns, key, part)
                if match is not None:
                    inside[node_of[id(match)]] += 1
            for small, mult in sorted(inside.items()):
                g.add_edge(node_of[id(entry)], small, multiplicity=int(mult))
    if large:
        node = "L3:large"
        comp = sum((r["types"] for r in large), Counter())
        g.add_node(node, level=3, count=len(large), n_cells=sum(r["n_cells"] for r in large),
                   name=f"regions of more than {max_cells} cells",
                   sizes=sorted(r["n_cells"] for r in large), example=[],
                   occurrences=[list(r["cells"]) for r in large])
        for t, mult in sorted(comp.items()):
            g.add_edge(node, f"L2:{t}", multiplicity=int(mult))
