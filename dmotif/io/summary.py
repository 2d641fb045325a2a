"""A result in a few rows: atoms, motifs, hierarchy levels and the time of each stage.

Kept apart from the report's figures, so that ``dmotif run`` prints it without importing
matplotlib (0.5 s).
"""

from __future__ import annotations

import numpy as np

from .store import Result

__all__ = ["summary_rows"]


def summary_rows(res: Result) -> list[tuple[str, str]]:
    """(name, value) rows that summarise a result: atoms, motifs, levels, time per stage."""
    ds = res.dataset
    rows = [("atoms", f"{ds.sizes.get('atom', 0):,}")]
    if "label" in ds:
        lab = ds["label"].values
        n_motifs = len(np.unique(lab[lab >= 0]))
        rows.append(("motifs", str(n_motifs)))
        rows.append(("unassigned", f"{np.mean(lab < 0):.2%}"))
    cluster_attrs = res.attrs.get("cluster_attrs", {})
    structure = cluster_attrs.get("structure")
    share = f" (regional share {cluster_attrs['regional_share']:.2f})" if (
        "regional_share" in cluster_attrs) else ""
    if structure == "continuum":
        rows.append(("features", f"a continuum{share}: they vary region by region across the "
                     "image (motifs are pieces of it, not column types; each atom's place "
                     "along it is the variable 'continuum')"))
    elif structure == "discrete":
        rows.append(("features", f"discrete motifs{share}: every region holds the same column "
                     "types"))
    graph = res.hierarchy
    if graph is not None:
        levels = sorted({int(d.get("level", 0)) for _, d in graph.nodes(data=True)})
        rows.append(("hierarchy levels", ", ".join(map(str, levels))))
    status = res.attrs.get("hierarchy_attrs", {}).get("status")
    if status:
        rows.append(("hierarchy", status))
    for stage, seconds in res.attrs.get("dmotif_timings", {}).items():
        rows.append((f"time: {stage}", f"{seconds:.1f} s"))
    rows.append(("dmotif version", str(res.attrs.get("dmotif_version", "?"))))
    return rows
