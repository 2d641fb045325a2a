"""Names a reader understands: motifs by their rank of brightness, cell types by composition.

A cell type is a tuple of slot labels (see :mod:`dmotif.hierarchy.cells`); its *title* says
what the cell holds ("A + 2 B") or, for a type other than the dominant one, how it differs
from the dominant cell ("one B → C", "A vacancy"). A title depends only on the label of the
cell's lattice point and the multiset of its other labels, so a turned or mirrored cell, whose
slots come in another order, has the same title. Pure Python and numpy: no dask, no xarray.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["letter_names", "type_titles"]


def _letters(k: int) -> str:
    """``0 -> "A"`` … ``25 -> "Z"``, ``26 -> "AA"`` (spreadsheet columns)."""
    out = ""
    k += 1
    while k:
        k, r = divmod(k - 1, 26)
        out = chr(ord("A") + r) + out
    return out


def letter_names(
    labels: np.ndarray, intensity: np.ndarray | None,
    on_site: Mapping[int, tuple[int, int]] | None = None,
) -> dict[int, str]:
    """A letter per motif label: "A" the brightest motif (mean intensity), then "B"…

    Without intensities the most frequent motif is "A". Ties keep label order. A motif split
    from another by the site its atoms sit on (:func:`dmotif.site_motifs`) takes no letter:
    it is named after its parent and the motif whose site it takes, "A on B site".

    Parameters
    ----------
    labels : numpy.ndarray
        Motif label per atom, -1 = unassigned (ignored).
    intensity : numpy.ndarray, optional
        Column intensity per atom.
    on_site : mapping, optional
        Split motif -> ``(parent motif, the motif whose site it sits on)``.

    Returns
    -------
    dict
        Label -> name.

    Examples
    --------
    >>> import numpy as np
    >>> letter_names(np.array([0, 0, 1, 2]), np.array([1.0, 1.0, 5.0, 3.0]))
    {1: 'A', 2: 'B', 0: 'C'}
    >>> letter_names(np.array([0, 0, 1, 2]), np.array([1.0, 1.0, 5.0, 3.0]), {2: (1, 0)})
    {1: 'A', 0: 'B', 2: 'A on B site'}
    """
    lab = np.asarray(labels)
    keep = lab >= 0
    uniq, inv, counts = np.unique(lab[keep], return_inverse=True, return_counts=True)
    if intensity is None:
        score = counts.astype(float)
    else:
        score = np.bincount(inv, weights=np.asarray(intensity, float)[keep]) / counts
    on_site = dict(on_site or {})
    order = [int(uniq[i]) for i in np.lexsort((uniq, -score)) if int(uniq[i]) not in on_site]
    names = {k: _letters(r) for r, k in enumerate(order)}
    for k, (parent, site) in on_site.items():
        if k in uniq:
            names[k] = f"{names.get(parent, parent)} on {names.get(site, site)} site"
    return names


def _counted(name: str, n: int) -> str:
    return name if n == 1 else f"{n} {name}"


def _composition(labels: Sequence[int], names: Mapping[int, str], first: int | None) -> str:
    comp = Counter(x for x in labels if x >= 0)
    # the anchor (metal, A site) first, then by decreasing count: "Mo + 2 S2"
    keys = sorted(comp, key=lambda k: (k != first, -comp[k], names.get(k, str(k))))
    return " + ".join(_counted(names.get(k, str(k)), comp[k]) for k in keys) or "empty"


def _difference(ref: Sequence[int], other: Sequence[int], names: Mapping[int, str]) -> str:
    """How ``other`` differs from ``ref`` as substitutions, vacancies and extra atoms."""
    have, want = Counter(x for x in other if x >= 0), Counter(x for x in ref if x >= 0)
    missing = sorted((want - have).elements(), key=lambda k: names.get(k, str(k)))
    extra = sorted((have - want).elements(), key=lambda k: names.get(k, str(k)))
    n_sub = min(len(missing), len(extra))
    subs = Counter(zip(missing[:n_sub], extra[:n_sub], strict=True))
    parts = [f"{'one' if n == 1 else n} {names.get(a, str(a))} → {names.get(b, str(b))}"
             for (a, b), n in subs.items()]
    for k, n in Counter(missing[n_sub:]).items():
        parts.append(f"{_counted(names.get(k, str(k)), n)} vacanc{'y' if n == 1 else 'ies'}")
    for k, n in Counter(extra[n_sub:]).items():
        parts.append(f"extra {_counted(names.get(k, str(k)), n)}")
    return ", ".join(parts)


def type_titles(
    type_labels: Sequence[Sequence[int]], kind: str, names: Mapping[int, str]
) -> list[str]:
    """A readable title per cell type; type 0 is the dominant one.

    Parameters
    ----------
    type_labels : sequence of tuples
        Per type, as :func:`dmotif.motif_cells` lists them: lattice cells ``(anchor, slot…)``,
        rings ``(size, vertex labels…)``; -1 is an empty slot.
    kind : {"lattice", "rings"}
        The kind of cells.
    names : mapping
        Motif label -> name.

    Returns
    -------
    list of str
        The dominant type by its composition ("A + 2 B"), the others by their difference from
        it ("one B → C", "A vacancy", "extra C"): for lattice cells, the difference on the
        lattice point (the anchor slot) and the difference on the other slots, so a metal on
        a chalcogen site beside an empty lattice point reads "A vacancy, one B → A"; rings
        of another size than the dominant ring are prefixed with it ("5-ring: …"). A title
        depends on the anchor and the multiset of the other slots, not on their order, so a
        turned or mirrored cell has the same title.

    Examples
    --------
    >>> type_titles([(0, 1, 1), (0, 1, 2), (-1, 1, 1)], "lattice", {0: "Mo", 1: "S2", 2: "S1"})
    ['Mo + 2 S2', 'one S2 → S1', 'Mo vacancy']
    """
    if not type_labels:
        return []
    rings = kind == "rings"
    ref = tuple(type_labels[0])
    titles = []
    for k, t in enumerate(type_labels):
        if k == 0:
            title = _composition(ref[1:] if rings else ref, names, None if rings else ref[0])
        elif rings:
            title = _difference(ref[1:], t[1:], names) or "other arrangement"
        else:
            # the lattice point (metal, A site) apart from the other slots, so that a metal
            # moved onto a chalcogen site reads as such, not as a missing chalcogen
            parts = [_difference(ref[:1], t[:1], names), _difference(ref[1:], t[1:], names)]
            title = ", ".join(p for p in parts if p) or "other arrangement"
        if rings:
            title = f"{t[0]}-ring: {title}" if k == 0 or t[0] != ref[0] else title
        titles.append(title)
    return titles
