"""The cross-scale hierarchy of motifs: cells, their types, learned level 2, patterns, storage.

Level 1 is the atom motifs (the labels). Level 2 is the *cells*: where the atoms form a lattice,
each Bravais cell ``[p, p+u, p+u+v, p+v]`` anchored at a lattice point ``p`` of the anchor
sublattice, with the labels of its basis slots, which hold the atoms of every sublattice (so
every atom belongs to at most one cell and a cell's type can be compared with a per-cell ground
truth; the atoms are placed by a walk between neighbours, which a scan's distortion does not
throw off as it does a single global lattice); where they do not (amorphous
regions, ring networks), the rings of the bond graph built from Delaunay edges no longer than a
radius. The basis ``(u, v)`` is chosen among the lattice's equivalent bases by the atoms alone,
so the cells of a turned image are the turned cells. Level 2 can also be learned like level 1
(Zernike + FR layout on patches centred on the cells) and compared with the enumerated types.
Level 3 is the connected patterns of a few cells that differ from the dominant cell type
(defect clusters, Stone–Wales-like ring groups), identified up to translation and the
lattice's rotations; a pattern contains another when a connected part of it is that pattern.

- :mod:`dmotif.hierarchy.cells`: :func:`lattice_vectors`, :func:`motif_cells`;
- :mod:`dmotif.hierarchy.learned`: :func:`learn_cell_motifs`;
- :mod:`dmotif.hierarchy.graph`: :func:`build_hierarchy` (levels, patterns, the graph);
- :mod:`dmotif.hierarchy.serialisation`: :func:`save_hierarchy`, :func:`load_hierarchy`.

The kernels sit beside them: ``_lattice`` (Bravais vectors, bases, slots), ``_unwrap`` (the
atoms' lattice coordinates by a walk over the neighbour graph), ``_cells`` (cell types,
adjacency, pattern keys), ``_rings`` (ring neighbourhoods), ``_window_sums`` (mean patches).
"""

from __future__ import annotations

from .cells import lattice_vectors, motif_cells
from .graph import build_hierarchy
from .learned import learn_cell_motifs
from .serialisation import load_hierarchy, save_hierarchy

__all__ = [
    "build_hierarchy",
    "lattice_vectors",
    "learn_cell_motifs",
    "load_hierarchy",
    "motif_cells",
    "save_hierarchy",
]
