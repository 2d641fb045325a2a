"""A reference lattice from a crystal (ASE): projections down zone axes against their
analytic lattices, and strain against a crystal's lattice end to end."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import dmotif
from dmotif.errors import DataError, ParameterError

ase = pytest.importorskip("ase")
ase_io = pytest.importorskip("ase.io")
ase_build = pytest.importorskip("ase.build")
A = 3.905  # SrTiO3, Å


def _srtio3():
    return ase.Atoms("SrTiO3", cell=[A] * 3, pbc=True, scaled_positions=[
        (0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0), (0.5, 0, 0.5), (0, 0.5, 0.5)])


def _lengths_and_angle(ref):
    uv = np.asarray(ref)
    lengths = np.sort(np.linalg.norm(uv, axis=1))
    cos = abs(uv[0] @ uv[1]) / np.prod(np.linalg.norm(uv, axis=1))
    return lengths, np.degrees(np.arccos(cos))


@pytest.mark.parametrize(("zone", "lengths", "angle"), [
    ((0, 0, 1), (A, A), 90.0),
    ((1, 1, 0), (A / np.sqrt(2), A), 90.0),
    # [111]: the projected translations form a hexagonal lattice of side a·√(2/3)
    ((1, 1, 1), (A * np.sqrt(2 / 3), A * np.sqrt(2 / 3)), 60.0),
])
def test_projections_of_a_cubic_crystal_from_a_cif(tmp_path, zone, lengths, angle):
    path = tmp_path / "srtio3.cif"
    ase_io.write(path, _srtio3())
    ref = dmotif.projected_lattice(path, zone_axis=zone, pixel_size=0.02)  # nm
    got_lengths, got_angle = _lengths_and_angle(ref.values)
    np.testing.assert_allclose(got_lengths, np.array(lengths) / 0.2, rtol=1e-6)
    assert abs(got_angle - angle) < 1e-6
    assert ref.dims == ("vector", "axis")


def test_a_centred_cell_gives_the_lattice_of_its_columns():
    # fcc copper in its conventional cubic cell: down [001] the face-centring translations
    # (a/2)(1, 0, 1) and (a/2)(0, 1, 1) put columns on a square lattice of side a/2, not a.
    cu = ase_build.bulk("Cu", "fcc", a=3.615, cubic=True)
    ref = dmotif.projected_lattice(cu, zone_axis=[0, 0, 1], pixel_size=0.1, units="Å")
    lengths, angle = _lengths_and_angle(ref.values)
    np.testing.assert_allclose(lengths, 3.615 / 2 / 0.1, rtol=1e-9)
    assert abs(angle - 90) < 1e-6


def test_strain_against_a_crystal_turned_onto_the_image():
    # An SrTiO3 [001] sublattice imaged at 0.02 nm per pixel, turned by 17 degrees and
    # expanded 2 % (say, epitaxy): against the bulk crystal, 2 % strain and no rotation.
    px = A / 0.2
    turn = np.deg2rad(17)
    rot = np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
    sites = np.mgrid[0:12, 0:12].reshape(2, -1).T * px * 1.02 @ rot + 100
    atoms = xr.Dataset({"y": ("atom", sites[:, 0]), "x": ("atom", sites[:, 1]),
                        "label": ("atom", np.zeros(len(sites), int))})
    measured = dmotif.sublattices(atoms)["lattice"].sel(motif=0, frame=0)
    ref = dmotif.projected_lattice(_srtio3(), zone_axis=(0, 0, 1), pixel_size=0.02,
                                   align_to=measured)
    s = dmotif.strain(atoms, motif=0, reference_lattice=ref)
    inner = np.isfinite(s["strain_xx"].values)
    assert inner.sum() > 100
    for name, want in (("strain_xx", 0.02), ("strain_yy", 0.02), ("strain_xy", 0.0),
                       ("rotation", 0.0)):
        np.testing.assert_allclose(s[name].values[inner], want, atol=1e-9)
    # without align_to the reference lies along x: the 17-degree turn becomes a rotation and
    # the rounding to its lattice goes astray
    loose = dmotif.projected_lattice(_srtio3(), zone_axis=(0, 0, 1), pixel_size=0.02)
    assert not np.allclose(loose.values, ref.values)


def test_a_mirror_image_is_aligned_too():
    # a rectangular lattice ([110]) whose measured basis is left-handed
    ref = dmotif.projected_lattice(_srtio3(), zone_axis=(1, 1, 0), pixel_size=0.02)
    mirrored = ref.values[::-1] * [[1, -1], [1, -1]] * 1.01
    aligned = dmotif.projected_lattice(_srtio3(), zone_axis=(1, 1, 0), pixel_size=0.02,
                                       align_to=mirrored)
    # the same lattice: every aligned vector is an integer combination of the measured ones
    frac = np.linalg.solve(mirrored.T, aligned.values.T * 1.01)
    np.testing.assert_allclose(frac, np.round(frac), atol=1e-9)


def test_bad_crystals_and_axes_are_refused(tmp_path):
    with pytest.raises(ParameterError, match="zone_axis"):
        dmotif.projected_lattice(_srtio3(), zone_axis=(0, 0, 0), pixel_size=0.02)
    with pytest.raises(ParameterError, match="zone_axis"):
        dmotif.projected_lattice(_srtio3(), zone_axis=(0.5, 0, 1), pixel_size=0.02)
    with pytest.raises(ParameterError, match="pixel_size"):
        dmotif.projected_lattice(_srtio3(), zone_axis=(0, 0, 1), pixel_size=-1)
    with pytest.raises(ParameterError, match="units"):
        dmotif.projected_lattice(_srtio3(), zone_axis=(0, 0, 1), pixel_size=1, units="inch")
    with pytest.raises(ParameterError, match=r"ase\.Atoms"):
        dmotif.projected_lattice(np.eye(3), zone_axis=(0, 0, 1), pixel_size=0.02)
    with pytest.raises(DataError, match="3-D cell"):
        dmotif.projected_lattice(ase.Atoms("H2", positions=[(0, 0, 0), (0, 0, 0.7)]),
                                 zone_axis=(0, 0, 1), pixel_size=0.02)
    bad = tmp_path / "bad.cif"
    bad.write_text("not a cif\n")
    with pytest.raises(DataError, match="cannot read"):
        dmotif.projected_lattice(bad, zone_axis=(0, 0, 1), pixel_size=0.02)
