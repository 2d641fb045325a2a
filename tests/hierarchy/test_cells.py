"""Kernels of motif-cells, alone: lattice vectors, slots, lattice cells, planar rings."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dmotif import synthetic
from dmotif.detect._sublattice import reduce_basis
from dmotif.errors import NoLatticeError
from dmotif.hierarchy import _cells, _lattice, _rings, _unwrap


def _truth(kind, **kw):
    s = synthetic.generate(kind, size=384, **kw)
    a = s.atoms
    return s, np.column_stack([a["y"].values, a["x"].values]), a["label"].values.astype(int)


def _basis(yx, lab):
    sp = _lattice.neighbour_spacing(yx, np.zeros(len(yx), int))
    vec = _lattice.same_label_vectors(yx, lab, max_length=3 * sp)
    return (*_lattice.lattice_basis(vec, spacing=sp, n_atoms=int((lab >= 0).sum())), sp)


def _generator_vectors(a_px, rotation, angle):
    """The generator's Bravais vectors as (dy, dx)."""
    t1, t2 = math.radians(rotation), math.radians(rotation + angle)
    return np.array([a_px * math.sin(t1), a_px * math.cos(t1)]), np.array(
        [a_px * math.sin(t2), a_px * math.cos(t2)])


def test_tmd_lattice_vectors_are_the_bravais_vectors_not_the_bonds():
    _, yx, lab = _truth("tmd")
    u, v, support, _ = _basis(yx, lab)
    a1, a2 = _generator_vectors(0.316 / 0.015, 10.0, 60.0)
    np.testing.assert_allclose(u, a1, atol=0.05)
    np.testing.assert_allclose(v, a2, atol=0.05)
    assert support > 0.8


def test_perovskite_lattice_with_and_without_labels():
    _, yx, lab = _truth("perovskite", rotation=-25.0)
    u, v, _, _ = _basis(yx, lab)
    a1, a2 = _generator_vectors(0.39 / 0.015, -25.0, 90.0)
    np.testing.assert_allclose(u, a1, atol=0.05)
    np.testing.assert_allclose(v, a2, atol=0.05)
    # Without labels A, B and O together form a square lattice of half the cell.
    u0, v0, _, _ = _basis(yx, np.zeros_like(lab))
    np.testing.assert_allclose(np.linalg.norm(u0), 0.39 / 0.015 / 2, atol=0.05)
    assert abs(u0 @ v0) < 1e-6 * (u0 @ u0) + 0.05


def test_amorphous_points_have_no_lattice():
    rng = np.random.default_rng(0)
    # Poisson-disk-like amorphous set: jittered points with no long-range order.
    yx = rng.uniform(0, 400, size=(600, 2))
    with pytest.raises(NoLatticeError, match=r"lattice|periodic|direction"):
        _basis(yx, np.zeros(600, int))


def _slots(yx, lab, u, v, sp, anchor=0):
    """The slots learned on a patch of 3 lattice vectors about the central anchor."""
    m = np.column_stack([u, v])
    root = _lattice.root_atom(yx, lab, anchor)
    reach = 3 * np.linalg.norm(m, axis=0).max()
    near = (np.linalg.norm(yx - yx[root], axis=1) <= reach) & (lab == anchor)
    return _lattice.slot_positions(_lattice.patch_offsets(yx, lab, m, root, reach), m=m,
                                   tol=0.2 * sp, n_cells=int(near.sum()))


def _frac(yx, lab, u, v, slots, sp, anchor=0):
    """Ideal coordinates and sites of the labelled atoms, unwrapped from the central anchor."""
    sel = np.flatnonzero(lab >= 0)
    frac = np.full((len(yx), 2), np.nan)
    site = np.full(len(yx), -1, np.int64)
    root = int(np.searchsorted(sel, _lattice.root_atom(yx, lab, anchor)))
    frac[sel], site[sel] = _unwrap.unwrap_sites(yx[sel], np.column_stack([u, v]), slots,
                                                0.2 * sp, root)
    return frac, site


def test_tmd_slots_and_cells_with_a_metal_vacancy():
    # a few single chalcogens keep the metals the most frequent single-sublattice label
    _, yx, lab = _truth("tmd", dose=None, read_noise=0.0, chalcogen_vacancy=0.02,
                        double_vacancy=0.0, antisite=0.0, metal_vacancy=0.0)
    u, v, _, sp = _basis(yx, lab)
    centre = np.argmin(np.linalg.norm(yx - yx.mean(0), axis=1) + 1e3 * (lab != 0))
    keep = np.arange(len(yx)) != centre
    yx, lab = yx[keep], lab[keep]
    m = np.column_stack([u, v])
    anchor = _lattice.anchor_label(yx, lab, u)
    assert anchor == 0
    slots = _slots(yx, lab, u, v, sp)
    np.testing.assert_allclose(slots, [[0, 0], [1 / 3, 1 / 3]], atol=1e-3)
    # the chalcogen re-expressed on the 6 equivalent bases: a third of the way along u + v on
    # the 3 bases it lies between, two thirds on the 3 others
    bases = _lattice.equivalent_bases(u, v)
    re = [_lattice.rebase_slots(slots, m, np.column_stack(b))[1] for b in bases]
    np.testing.assert_allclose(sorted(r.sum() for r in re), [2 / 3] * 3 + [4 / 3] * 3,
                               atol=1e-3)
    assert all(abs(r[0] - r[1]) < 1e-3 for r in re)
    frac, site = _frac(yx, lab, u, v, slots, sp)
    # every atom of the frame is placed, on the site its truth label says
    assert np.isfinite(frac).all()
    on_metal = np.abs(frac - np.round(frac)).max(axis=1) < 1e-6
    assert (on_metal == (lab == 0)).all() and (on_metal == (site == 0)).all()
    out = _cells.lattice_cells(yx, lab, frac, site, u, v, slots)
    types, counts = np.unique(out["slot_labels"], axis=0, return_counts=True)
    assert dict(zip(map(tuple, types.tolist()), counts.tolist(), strict=True))[(-1, 1)] == 1
    assert set(map(tuple, types.tolist())) == {(0, 1), (0, 2), (-1, 1)}
    # every atom sits in at most one cell
    mem = out["members"][out["members"] >= 0]
    assert len(np.unique(mem)) == len(mem)


def test_unwrap_keeps_every_atom_on_its_site_under_a_scan_distortion():
    # A shear growing across the image (slow drift) moves the last rows by a third of a cell
    # off the global lattice: the walk between neighbours still puts every atom on its site.
    _, yx, lab = _truth("tmd", dose=None, read_noise=0.0, chalcogen_vacancy=0.0,
                        double_vacancy=0.0, antisite=0.0, metal_vacancy=0.0)
    u, v, _, sp = _basis(yx, lab)
    m = np.column_stack([u, v])
    slots = _slots(yx, lab, u, v, sp)
    sheared = yx.copy()
    sheared[:, 1] += 0.04 * yx[:, 0]
    frac, _ = _frac(sheared, lab, u, v, slots, sp)
    assert np.isfinite(frac).all()
    assert ((np.abs(frac - np.round(frac)).max(axis=1) < 1e-6) == (lab == 0)).all()
    # the global lattice, by contrast, puts some atoms off every site by more than 0.2 spacing
    root = _lattice.root_atom(sheared, lab, 0)
    g = (sheared - sheared[root]) @ np.linalg.inv(m).T
    off = np.min([np.linalg.norm((g - s - np.round(g - s)) @ m.T, axis=1) for s in slots],
                 axis=0)
    assert (off > 0.2 * sp).mean() > 0.1


@given(st.lists(st.integers(-1, 4), min_size=1, max_size=8), st.integers(0, 7))
def test_canonical_cycle_is_rotation_and_mirror_invariant(seq, k):
    k %= len(seq)
    assert _cells.canonical_cycle(seq[k:] + seq[:k]) == _cells.canonical_cycle(seq)
    assert _cells.canonical_cycle(seq[::-1]) == _cells.canonical_cycle(seq)


def test_canonical_cycle_keeps_other_orders_apart():
    assert _cells.canonical_cycle([0, 0, 1, 1]) != _cells.canonical_cycle([0, 1, 0, 1])


def test_planar_rings_of_a_square_grid():
    g = np.stack(np.meshgrid(np.arange(5.0), np.arange(5.0), indexing="ij"), -1).reshape(-1, 2)
    out = _rings.planar_rings(g * 10, np.zeros(25, int), radius=11.0)
    assert len(out["rings"]) == 16
    assert set(out["types"]) == {(4, 0, 0, 0, 0)}
    # interior edges of a 4×4 board of squares: 2 × 4 × 3
    assert len(out["adjacent"]) == 24


def test_planar_rings_of_a_honeycomb_count_hexagons():
    _, yx, _ = _truth("rings", stone_wales=0.0, dose=None, read_noise=0.0)
    s = synthetic.rings(size=384, stone_wales=0.0)
    out = _rings.planar_rings(yx, np.zeros(len(yx), int), radius=1.3 * 0.36 / 0.015 / math.sqrt(3))
    assert len(out["rings"]) == s.cells.sizes["cell"]
    assert {t[0] for t in out["types"]} == {6}


@pytest.mark.parametrize(("angle", "ratio", "n_bases", "n_neighbours"),
                         [(60.0, 1.0, 6, 6), (90.0, 1.0, 4, 4), (90.0, 1.4, 2, 4),
                          (75.0, 1.2, 2, 4)])
def test_equivalent_bases_rotations_and_neighbours(angle, ratio, n_bases, n_neighbours):
    u, v = _generator_vectors(10.0, 23.0, angle)
    v = v * ratio
    bases = _lattice.equivalent_bases(u, v)
    assert len(bases) == n_bases
    gram = np.array([[u @ u, u @ v], [u @ v, v @ v]])
    cu, cv = reduce_basis(u, v)
    for a, b in bases:  # same cell shape, same handedness
        assert np.linalg.det(np.column_stack([a, b])) * np.linalg.det(np.column_stack([u, v])) > 0
        np.testing.assert_allclose(sorted([a @ a, b @ b]), sorted(np.diag(gram)), rtol=1e-9)
        np.testing.assert_allclose(abs(a @ b), abs(cu @ cv), rtol=1e-9, atol=1e-9)
    rots = _lattice.lattice_rotations(*bases[0])
    assert len(rots) == n_bases
    m = np.column_stack(bases[0])
    for r in rots:  # a rotation: lengths kept, det 1, and the set closed under products
        assert round(np.linalg.det(r)) == 1
        w = m @ r @ np.array([2, -1])
        np.testing.assert_allclose(np.linalg.norm(w), np.linalg.norm(m @ [2, -1]), rtol=1e-9)
        assert all(any((r @ q == p).all() for p in rots) for q in rots)
    nb = _lattice.lattice_neighbours(*bases[0])
    assert len(nb) == n_neighbours
    assert len({tuple(d) for d in nb.tolist()}) == n_neighbours


def _per_cell_lattice_cells(yx, labels, frac, u, v, slots):
    """lattice_cells as it was first written, cell by cell with sets and a dict (reference);
    each atom's slot by its offset in the cell, nearest slot."""
    m = np.column_stack([u, v])
    placed = np.isfinite(frac).all(axis=1)
    ij = np.zeros((len(frac), 2), np.int64)
    slot = np.full(len(frac), -1, np.int64)
    for a in np.flatnonzero(placed):
        cell = np.floor(frac[a] + 0.25 + 1e-9)
        ij[a] = cell
        slot[a] = np.argmin(np.linalg.norm((frac[a] - cell - slots) @ m.T, axis=1))
    slot[labels < 0] = -1
    real = {tuple(p) for p in ij[slot == 0].tolist()}
    nb = ((1, 0), (-1, 0), (0, 1), (0, -1))
    lo, hi = np.array(sorted(real)).min(axis=0), np.array(sorted(real)).max(axis=0)
    cand = {(i, j) for i in range(lo[0], hi[0] + 1) for j in range(lo[1], hi[1] + 1)
            if (i, j) not in real and sum((i + a, j + b) in real for a, b in nb) >= 3}
    known = real | cand
    corners = ((0, 0), (1, 0), (1, 1), (0, 1))
    cells = sorted((i, j) for (i, j) in known
                   if all((i + a, j + b) in known for a, b in corners)
                   and sum((i + a, j + b) in real for a, b in corners) >= 3)
    members = np.full((len(cells), len(slots)), -1, np.int64)
    index = {cell: k for k, cell in enumerate(cells)}
    points = {}
    for atom in np.flatnonzero(slot >= 0):
        key = (int(ij[atom, 0]), int(ij[atom, 1]))
        points.setdefault(key, []).append(yx[atom] - slots[slot[atom]] @ m.T)
        k = index.get(key)
        if k is not None:
            members[k, slot[atom]] = atom
    centre = []
    for i, j in cells:
        if (i, j) in points:
            p = np.mean(points[(i, j)], axis=0)
        else:
            p = np.mean([np.mean(points[(i + a, j + b)], axis=0) - m @ (a, b)
                         for a, b in nb if (i + a, j + b) in points], axis=0)
        centre.append(p + 0.5 * (u + v))
    return {"ij": np.array(cells, np.int64).reshape(-1, 2), "members": members,
            "centre": np.reshape(centre, (-1, 2))}


def _per_cell_adjacent(ij, steps):
    keys = {tuple(p): k for k, p in enumerate(ij.tolist())}
    return sorted((k, keys[(i + a, j + b)]) for (i, j), k in keys.items()
                  for a, b in steps.tolist() if (i + a, j + b) in keys)


def _per_cell_convention_key(parts):
    """convention_key as first written, on per-cell type tuples (reference)."""
    placed = sum(int((p["members"] >= 0).sum()) for p in parts)
    counts, hoods = Counter(), Counter()
    for p in parts:
        types = [p["types"][k] for k in p["type"].tolist()]
        nbr = [[] for _ in types]
        for a, b in p["adjacent"].tolist():
            nbr[a].append(types[b])
            nbr[b].append(types[a])
        for t, ns in zip(types, nbr, strict=True):
            counts[t] += 1
            hoods[(t, tuple(sorted(ns)))] += 1
    return (-placed, sorted((-c, t) for t, c in counts.items()),
            sorted((-c, h) for h, c in hoods.items()))


@pytest.fixture(scope="module")
def doubled_tmd():
    """A TMD with metal vacancies and 60 atoms doubled nearby: two claims on a (cell, slot)."""
    _, yx, lab = _truth("tmd", dose=None, read_noise=0.0, metal_vacancy=0.03)
    u, v, _, sp = _basis(yx, lab)
    rng = np.random.default_rng(3)
    twin = rng.choice(len(yx), 60, replace=False)
    yx = np.concatenate([yx, yx[twin] + rng.normal(0.0, 0.5, (60, 2))])
    lab = np.concatenate([lab, lab[twin]])
    m = np.column_stack([u, v])
    slots = _slots(yx, lab, u, v, sp)
    frac, site = _frac(yx, lab, u, v, slots, sp)
    bases = []
    for a, b in _lattice.equivalent_bases(u, v):
        mb = np.column_stack([a, b])
        bases.append((a, b, _lattice.rebase_slots(slots, m, mb),
                      frac @ np.rint(np.linalg.solve(mb, m)).T))
    return yx, lab, site, bases


def test_lattice_cells_equal_the_per_cell_formulation(doubled_tmd):
    yx, lab, site, bases = doubled_tmd
    for u, v, slots, frac in bases:
        out = _cells.lattice_cells(yx, lab, frac, site, u, v, slots)
        ref = _per_cell_lattice_cells(yx, lab, frac, u, v, slots)
        for key in ("ij", "members"):
            np.testing.assert_array_equal(out[key], ref[key])
        np.testing.assert_allclose(out["centre"], ref["centre"], atol=1e-9)
        assert (out["members"] >= len(yx) - 60).any()  # some doubled atom won its slot
        assert len(out["ij"]) > 100


def test_adjacent_cells_equal_the_per_cell_formulation():
    rng = np.random.default_rng(5)
    grid = np.argwhere(rng.random((30, 25)) < 0.8) - [4, 9]
    for steps in (np.array([(1, 0), (0, 1), (1, 1)]), np.array([(1, 0), (0, 1), (1, -1)]),
                  np.array([(2, -1), (0, 1)])):
        out = _cells.adjacent_cells(grid, steps)
        assert out.dtype == np.int64
        assert out.tolist() == [list(p) for p in _per_cell_adjacent(grid, steps)]
    assert _cells.adjacent_cells(np.empty((0, 2), int), steps).shape == (0, 2)


def test_slot_types_roll_each_row():
    rng = np.random.default_rng(2)
    rows = rng.integers(-1, 3, (500, 4))
    table, code = _cells.slot_types(rows)
    assert table == sorted(set(table))
    assert [table[k] for k in code.tolist()] == [
        (r[0], *_cells.canonical_cycle(r[1:])) for r in rows.tolist()]


def test_convention_key_equals_the_per_cell_formulation(doubled_tmd):
    yx, lab, site, bases = doubled_tmd
    keys = []
    for u, v, slots, frac in bases:
        out = _cells.lattice_cells(yx, lab, frac, site, u, v, slots)
        steps = _lattice.lattice_neighbours(u, v)
        types, code = _cells.slot_types(out["slot_labels"])
        part = {"members": out["members"], "types": types, "type": code,
                "adjacent": _cells.adjacent_cells(out["ij"], steps[: len(steps) // 2])}
        keys.append(_cells.convention_key([part, part]))
        assert keys[-1] == _per_cell_convention_key([part, part])
    assert len(set(map(repr, keys))) > 1  # the bases are told apart
    # types of several lengths (rings), one a prefix of another, and uneven degrees
    rng = np.random.default_rng(8)
    kinds = [(4, 0, 0, 0, 0), (4, 0, 0, 0), (5, 1, 0, 0, 0, 0), (6,), (4, 0, 0, 1, 0)]
    parts = []
    for n in (40, 0, 25):
        pairs = np.unique(np.sort(rng.integers(0, max(n, 1), (3 * n, 2)), axis=1), axis=0)
        used = sorted(set(rng.choice(len(kinds), 3).tolist()))
        parts.append({"members": rng.integers(-1, 5, (n, 3)),
                      "types": [kinds[k] for k in used], "type": rng.integers(0, len(used), n),
                      "adjacent": pairs[pairs[:, 0] != pairs[:, 1]].reshape(-1, 2)})
    assert _cells.convention_key(parts) == _per_cell_convention_key(parts)


def test_a_slot_on_the_edge_of_the_wrapped_cell_is_one_slot():
    # 40 cells of a square lattice (20 px) with a second site at (0.75, 0.3): its columns
    # scatter by 1 px, so the wrap to [-0.25, 0.75) puts about half of them a cell away. The
    # two halves are one slot, at the site's position, not two.
    rng = np.random.default_rng(0)
    m = np.diag([20.0, 20.0])
    site = np.array([0.75, 0.3])
    scatter = rng.normal(0, 1.0, (40, 2)) @ np.linalg.inv(m).T
    frac = np.vstack([np.zeros((40, 2)), site + scatter])
    offsets = frac - np.floor(frac + 0.25)
    assert 10 < (offsets[40:, 0] < 0).sum() < 30
    slots = _lattice.slot_positions(offsets, m=m, tol=0.2 * 20, n_cells=40)
    assert len(slots) == 2
    found = slots[1] - np.rint(slots[1] - site)
    np.testing.assert_allclose(found, site, atol=0.02)
