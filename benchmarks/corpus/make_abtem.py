"""Physics-based evaluation images that dmotif did not make: abTEM multislice STEM with truth.

Each structure is built with ASE, its projected columns are recorded with their composition
(the truth), and its ADF and ABF images are simulated with abTEM's PRISM algorithm (the
scattering matrix of the whole cell by multislice, then interpolated probes in a window of at
least ``PRISM_WINDOW``; a finite probe of 30 mrad at 80 kV). The clean images are then
degraded as a microscope does: Fourier interpolation to the final pixel size, scan-line jitter
and a slow drift (shear), and Poisson noise at several doses. Everything is seeded.

Needs ``pip install abtem ase`` (not a dmotif dependency; use a separate environment if its
pins clash)::

    python benchmarks/corpus/make_abtem.py --out corpus/ --kinds mose2 srtio3
    python benchmarks/corpus/make_abtem.py --out tests/data --kinds mose2 --doses 1e5 --small

Output per image: ``<kind>_<detector>_dose<d>.npz`` with ``image`` (float32, y x),
``pixel_size`` (Å), ``column_y``/``column_x`` (pixels), ``column_type`` (str) and
``column_visible`` (False for columns the detector does not show, e.g. O in ADF), plus the
clean image as ``<kind>_<detector>_clean.npz``. hBN adds ``column_defect`` ("", "vacancy_neighbour"
or "stone_wales"). The twisted bilayer adds
``column_registry``, the local stacking at each column (0 at AA, 1/√3 at AB, in lattice
constants): a continuous truth, not column types.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ENERGY = 80e3  # eV
SEMIANGLE = 30.0  # mrad
DETECTORS = {"adf": (60.0, 200.0), "abf": (15.0, 30.0)}  # mrad
#: Column types a detector does not show beside heavier columns: ADF contrast grows as about
#: Z^1.7, so the O columns of SrTiO3 stay below its Sr and TiO columns' tails and the noise.
INVISIBLE = {"adf": {"O"}, "abf": set()}
#: Smallest side (Å) of PRISM's interpolation window, the region about each probe position
#: that its S-matrix holds. The probe is cut to this window and wraps inside it, so a window
#: that does not hold the probe's tails sends them onto columns a window away. Measured on the
#: 14 × 14-cell SrTiO3 with interpolation 8 (a 6.8 Å window): the ADF intensity 8 px from a
#: Sr column toward a half-occupied Sr column two cells (7.8 Å) away falls to 0.10 of the
#: column's peak, against 0.19 ± 0.01 elsewhere, and those Sr columns become a motif.
PRISM_WINDOW = 11.0
PIXEL = 0.12  # Å, final pixel size (to a whole number of pixels across the cell)
JITTER = 0.25  # px rms, scan-line jitter
DRIFT = 0.02  # px of x per scan line


def mose2(repeat: tuple[int, int], seed: int):
    """2H-MoSe2 monolayer with Se vacancies, antisites, W dopants and Mo vacancies."""
    import abtem
    from ase import Atoms
    from ase.build import mx2

    rng = np.random.default_rng(seed)
    layer = mx2(formula="MoSe2", kind="2H", a=3.32, thickness=3.34, vacuum=2.0)
    cell = abtem.orthogonalize_cell(layer)
    atoms = cell * (*repeat, 1)
    xy = np.round(atoms.positions[:, :2], 2)
    keys, col = np.unique(xy, axis=0, return_inverse=True)
    keep = np.ones(len(atoms), dtype=bool)
    numbers = atoms.numbers.copy()
    positions = atoms.positions.copy()
    kinds = []
    extra = []
    for c in range(len(keys)):
        members = np.flatnonzero(col == c)
        metal = numbers[members[0]] == 42
        u = rng.random()
        if metal:
            if u < 0.01:
                keep[members] = False
                kinds.append(None)
            elif u < 0.05:
                numbers[members] = 74
                kinds.append("W")
            else:
                kinds.append("Mo")
        elif u < 0.07:
            keep[members[rng.integers(2)]] = False
            kinds.append("Se1")
        elif u < 0.085:
            keep[members] = False
            mid = positions[members].mean(axis=0)
            extra.append(mid)
            kinds.append("Mo_Se2")
        else:
            kinds.append("Se2")
    out = Atoms(numbers=numbers[keep], positions=positions[keep], cell=atoms.cell, pbc=True)
    if extra:
        out += Atoms(numbers=[42] * len(extra), positions=np.array(extra))
    return out, keys, kinds, {}


def srtio3(repeat: tuple[int, int], seed: int, thickness: int = 10):
    """SrTiO3 along [001], ``thickness`` unit cells thick, with a few Sr-deficient columns."""
    from ase import Atoms

    rng = np.random.default_rng(seed)
    a = 3.905
    unit = Atoms(
        "SrTiO3",
        scaled_positions=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)],
        cell=[a, a, a],
        pbc=True,
    )
    atoms = unit * (*repeat, thickness)
    xy = np.round(atoms.positions[:, :2], 2)
    keys, col = np.unique(xy, axis=0, return_inverse=True)
    keep = np.ones(len(atoms), dtype=bool)
    kinds = []
    for c in range(len(keys)):
        members = np.flatnonzero(col == c)
        z = set(atoms.numbers[members].tolist())
        if z == {38}:
            if rng.random() < 0.04:
                # Half of the column's Sr gone: a column type of its own (a real rare motif).
                keep[members[rng.permutation(members.size)[: members.size // 2]]] = False
                kinds.append("Sr_half")
            else:
                kinds.append("Sr")
        elif z == {22, 8}:
            kinds.append("TiO")
        else:
            kinds.append("O")
    return atoms[keep], keys, kinds, {}


def hbn(repeat: tuple[int, int], seed: int):
    """A hexagonal boron nitride monolayer with B and N vacancies and Stone–Wales defects (a
    B–N bond turned by 90° about its centre, unrelaxed): single-atom columns, B and N."""
    from ase import Atoms

    rng = np.random.default_rng(seed)
    a = 2.50
    # The orthogonal cell (a, √3 a) of the honeycomb holds two B and two N.
    cell = Atoms("BNBN", scaled_positions=[(0, 0, 0.5), (0.5, 1 / 6, 0.5), (0.5, 0.5, 0.5),
                                            (0, 2 / 3, 0.5)],
                 cell=[a, a * np.sqrt(3), 4.0], pbc=True)
    atoms = cell * (*repeat, 1)
    xy = atoms.positions[:, :2]
    defect = np.full(len(atoms), "", dtype=object)
    keep = np.ones(len(atoms), dtype=bool)
    bond = a / np.sqrt(3)
    for i in rng.permutation(len(atoms)):
        if defect[i] or rng.random() > 0.01:
            continue
        near = np.flatnonzero(np.abs(np.linalg.norm(xy - xy[i], axis=1) - bond) < 0.05)
        if rng.random() < 0.5 or (defect[near] != "").any():
            keep[i] = False
            defect[i] = "vacancy"
            defect[near] = np.where(defect[near] == "", "vacancy_neighbour", defect[near])
            continue
        j = near[rng.integers(near.size)]
        mid = (xy[i] + xy[j]) / 2
        for k in (i, j):
            dx, dy = xy[k] - mid
            atoms.positions[k, :2] = mid + np.array([-dy, dx])
            defect[k] = "stone_wales"
    atoms = atoms[keep]
    kinds = [str(sym) for sym in atoms.get_chemical_symbols()]
    return atoms, np.round(atoms.positions[:, :2], 2), kinds, {"column_defect": defect[keep]}


def registry(xy: np.ndarray, centre: np.ndarray, a: float, twist: float) -> np.ndarray:
    """Local stacking of two hexagonal lattices (constant ``a``) in AA registry at ``centre``,
    the second turned by ``twist`` degrees about it: the displacement between the layers at
    ``xy``, reduced to the nearest lattice vector, in lattice constants."""
    m = np.array([[a, 0.0], [a / 2, a * np.sqrt(3) / 2]]).T  # columns: lattice vectors
    t = np.radians(twist)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    p = xy - centre
    d = p @ np.linalg.inv(m).T - p @ np.linalg.inv(rot @ m).T
    d -= np.round(d)
    best = np.full(len(xy), np.inf)
    for i in (-1, 0, 1):
        for j in (-1, 0, 1):
            best = np.minimum(best, np.linalg.norm((d + np.array([i, j])) @ m.T, axis=1) / a)
    return best


def twisted(repeat: tuple[int, int], seed: int, twist: float = 4.0):
    """Two 2H-MoSe2 layers, the upper one turned by ``twist`` degrees about a Mo column near
    the centre (AA registry there): a moiré of continuously varying local stacking.

    The lower layer is periodic in the cell; the upper one is cut from a larger sheet, so it
    has a seam at the cell's border (stay a few Å inside when scoring)."""
    import abtem
    from ase import Atoms
    from ase.build import mx2

    del seed  # no defects: the registry is the only variation
    a = 3.32
    layer = abtem.orthogonalize_cell(mx2(formula="MoSe2", kind="2H", a=a, thickness=3.34,
                                         vacuum=2.0))
    bottom = layer * (*repeat, 1)
    lx, ly = bottom.cell.lengths()[:2]
    metals = bottom.positions[bottom.numbers == 42, :2]
    centre = metals[np.argmin(np.linalg.norm(metals - [lx / 2, ly / 2], axis=1))]
    big = layer * (2 * repeat[0] + 2, 2 * repeat[1] + 2, 1)
    big_metals = big.positions[big.numbers == 42, :2]
    anchor = big_metals[np.argmin(np.linalg.norm(big_metals - big.cell.lengths()[:2] / 2, axis=1))]
    big.positions[:, :2] += centre - anchor
    t = np.radians(twist)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    xy = (big.positions[:, :2] - centre) @ rot.T + centre
    inside = (xy[:, 0] >= 0) & (xy[:, 0] < lx) & (xy[:, 1] >= 0) & (xy[:, 1] < ly)
    top = Atoms(numbers=big.numbers[inside],
                positions=np.c_[xy[inside], big.positions[inside, 2] + 6.5])
    atoms = bottom.copy()
    atoms += top
    atoms.pbc = True
    keys, kinds = [], []
    for name, part in (("lower", bottom), ("upper", top)):
        pxy = np.round(part.positions[:, :2], 2)
        k, first = np.unique(pxy, axis=0, return_index=True)
        keys.append(k)
        kinds += [f"{'Mo' if z == 42 else 'Se2'}_{name}" for z in part.numbers[first]]
    keys = np.concatenate(keys)
    return atoms, keys, kinds, {"column_registry": registry(keys, centre, a, twist)}


STRUCTURES = {"mose2": mose2, "srtio3": srtio3, "twisted": twisted, "hbn": hbn}
REPEATS = {"mose2": ((20, 12), (8, 5)), "srtio3": ((14, 14), (6, 6)),
           "twisted": ((18, 10), (9, 5)), "hbn": ((40, 23), (20, 12))}


def simulate(atoms) -> tuple[dict[str, np.ndarray], tuple[float, float]]:
    """Clean ADF and ABF images (PRISM, sampled at Nyquist, Fourier-interpolated to about
    PIXEL) and their exact sampling (x, y) in Å: a whole number of pixels spans the cell."""
    import abtem

    atoms = atoms.copy()
    atoms.center(vacuum=2.0, axis=2)
    lengths = atoms.cell.lengths()[:2]
    interpolation = max(1, int(min(lengths) // PRISM_WINDOW))
    # PRISM's interpolation factor must divide the grid, or the probe's norm drifts.
    gpts = [int(np.ceil(length / 0.05 / interpolation)) * interpolation for length in lengths]
    potential = abtem.Potential(atoms, gpts=gpts, slice_thickness=1.0,
                                parametrization="lobato", projection="infinite")
    smatrix = abtem.SMatrix(potential=potential, energy=ENERGY, semiangle_cutoff=SEMIANGLE,
                            interpolation=interpolation)
    detectors = [abtem.AnnularDetector(inner=a, outer=b) for a, b in DETECTORS.values()]
    scan = abtem.GridScan(start=(0, 0), end=(1, 1), fractional=True, potential=potential,
                          sampling=0.3)
    measured = smatrix.scan(scan=scan, detectors=detectors)
    measured = abtem.stack(measured).compute() if isinstance(measured, list) else measured
    out = {}
    for i, name in enumerate(DETECTORS):
        image = measured[i].interpolate(sampling=PIXEL)
        out[name] = np.asarray(image.array, dtype=np.float64)
    return out, tuple(float(s) for s in image.sampling)


def degrade(clean: np.ndarray, dose: float, seed: int, jitter: float = JITTER,
            drift: float = DRIFT) -> np.ndarray:
    """A recorded image: scan-line jitter (px, rms), drift (px per line) and Poisson noise.

    ``dose`` is in electrons per Å²; the counts of a pixel are Poisson with mean dose × pixel
    area × the fraction of the beam the detector collects.
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    rows = []
    for i, row in enumerate(clean):
        shift = rng.normal(0.0, jitter) + drift * i
        rows.append(ndimage.shift(row, shift, order=3, mode="wrap"))
    shaken = np.clip(np.array(rows), 0, None)
    return rng.poisson(shaken * dose * PIXEL**2).astype(np.float32)


def columns_in_pixels(keys: np.ndarray, sampling: tuple[float, float], drift: float):
    """Column centres in the final image's pixels (x along columns, drift shifts rows)."""
    # abTEM's image axis 0 is x and axis 1 is y; the images are stored transposed to (y, x).
    y = keys[:, 1] / sampling[1]
    x = keys[:, 0] / sampling[0] + drift * y
    return y, x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kinds", nargs="+", default=list(STRUCTURES))
    parser.add_argument("--doses", nargs="+", type=float, default=[1e4, 3e4, 1e5, 1e6])
    parser.add_argument("--small", action="store_true", help="small cells (test fixtures)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for kind in args.kinds:
        repeat = REPEATS[kind][1 if args.small else 0]
        atoms, keys, kinds, extra = STRUCTURES[kind](repeat, args.seed)
        real = np.array([k is not None for k in kinds])
        keys, kinds = keys[real], np.array([k for k in kinds if k is not None])
        extra = {k: v[real] for k, v in extra.items()}
        t0 = time.perf_counter()
        images, sampling = simulate(atoms)
        print(f"{kind} {repeat}: {len(atoms)} atoms, {kinds.size} columns, "
              f"simulated in {time.perf_counter() - t0:.0f} s")
        for det, clean in images.items():
            clean = clean.T
            tag = f"{kind}{'_small' if args.small else ''}_{det}"
            for dose in [None, *args.doses]:
                cy, cx = columns_in_pixels(keys, sampling, 0.0 if dose is None else DRIFT)
                inside = (cy > 0) & (cy < clean.shape[0] - 1) & (cx > 0) & (cx < clean.shape[1] - 1)
                truth = {"column_y": cy[inside], "column_x": cx[inside],
                         "column_type": kinds[inside], "pixel_size": float(np.mean(sampling)),
                         "column_visible": ~np.isin(kinds[inside], list(INVISIBLE[det])),
                         **{k: v[inside] for k, v in extra.items()}}
                if dose is None:
                    np.savez_compressed(args.out / f"{tag}_clean.npz",
                                        image=clean.astype(np.float32), **truth)
                else:
                    noisy = degrade(clean, dose, args.seed + 1)
                    np.savez_compressed(args.out / f"{tag}_dose{dose:.0e}.npz", image=noisy,
                                        dose=dose, **truth)
            types, counts = np.unique(kinds[inside], return_counts=True)
            print(f"  {tag}: {clean.shape}, " + ", ".join(f"{t} {c}" for t, c in
                                                           zip(types, counts, strict=True)))


if __name__ == "__main__":
    main()
