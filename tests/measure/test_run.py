"""The measure stage of a run: stored, exported and reported; configured and validated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dmotif
from dmotif.errors import DataError, ParameterError
from dmotif.io.export import atom_table
from dmotif.measure.stage import MEASURED_VARS, choose_motif, measure_columns
from dmotif.pipeline import load_config
from dmotif.pipeline.validate import validate_config

from .render import atom_table as table_of
from .render import render, square

REAL = Path(__file__).parents[1] / "data" / "real_perovskite_adf.npy"


@pytest.fixture(scope="module")
def measured(client, tmp_path_factory) -> dmotif.Result:
    out = tmp_path_factory.mktemp("measure") / "p.zarr"
    # a first run: the motif is named by a rule, its label is not known yet
    config = {"measure": {"enabled": True, "strain_motif": "most"}}
    return dmotif.run(REAL, out, client=client, config=config)


@pytest.mark.slow
def test_a_run_stores_what_refine_columns_gives(measured: dmotif.Result) -> None:
    ds = measured.dataset
    atoms = ds[["frame", "y", "x", "intensity"]].compute()
    atoms.attrs = measured.attrs["atoms_attrs"]
    direct = dmotif.refine_columns(np.load(REAL), atoms)
    for name in direct.data_vars:
        if name.startswith("fit_") or name == "cross_section":
            np.testing.assert_array_equal(ds[name].values, direct[name].values)
    assert np.isfinite(ds["fit_y"].values).all()
    classes = ds["intensity_class"].values
    assert classes.dtype == np.int32 and (classes >= 0).all()
    summary = measured.attrs["measure_attrs"]
    labels, counts = np.unique(ds["label"].values[ds["label"].values >= 0], return_counts=True)
    assert summary["enabled"]
    assert summary["strain"] == {"motif": int(labels[np.argmax(counts)]), "asked": "most"}
    for motif, mix in summary["intensity"].items():
        assert int(motif) in set(ds["label"].values.tolist())
        assert np.isclose(sum(mix["weight"]), 1.0)
    # the image's own mean lattice: strains about zero on average
    assert abs(np.nanmean(ds["strain_xx"].values)) < 0.01


@pytest.mark.slow
def test_a_run_exports_and_reports_its_measurements(measured: dmotif.Result,
                                                    tmp_path: Path) -> None:
    table = atom_table(measured)
    for name in ("fit_y", "fit_sigma_a", "cross_section", "intensity_class", "strain_xx"):
        np.testing.assert_array_equal(table[name].to_numpy(), measured.dataset[name].values)
    page = dmotif.report(measured, tmp_path / "r.html").read_text()
    assert 'id="intensities"' in page and 'id="strain"' in page
    assert 'id="displacements"' not in page  # not configured


def test_the_stage_adds_nothing_unless_enabled() -> None:
    atoms = xr.Dataset({"frame": ("atom", [0]), "y": ("atom", [5.0]), "x": ("atom", [5.0])})
    data, summary = measure_columns(xr.DataArray(np.zeros((1, 16, 16))), atoms, np.zeros(1, int))
    assert not data.data_vars and summary == {"enabled": False}
    assert set(MEASURED_VARS) >= {"fit_y", "cross_section", "disp_x", "strain_xy", "rotation"}


def test_the_configuration_is_checked_before_work() -> None:
    with pytest.raises(ParameterError, match=r"measure\.displacement"):
        validate_config(load_config({"measure": {"displacement": [1, 0, 2]}}))
    for pair in (["heaviest", 0], ["most", "most"], [1, 1]):
        with pytest.raises(ParameterError, match=r"measure\.displacement"):
            validate_config(load_config({"measure": {"displacement": pair}}))
    with pytest.raises(ParameterError, match=r"measure\.strain_motif"):
        validate_config(load_config({"measure": {"strain_motif": "brightest"}}))
    validate_config(load_config({"measure": {"displacement": ["weakest", "strongest"],
                                             "strain_motif": "most"}}))
    with pytest.raises(ParameterError, match=r"measure\.max_components"):
        validate_config(load_config({"measure": {"max_components": 0}}))
    with pytest.raises(ParameterError, match=r"measure\.enabled"):
        validate_config(load_config({"measure": {"enabled": "yes"}}))
    validate_config(load_config({"measure": {"enabled": True, "displacement": [1, 0]}}))


def test_motifs_named_by_rule_are_chosen_from_the_columns() -> None:
    # 60 strong columns (label 3), 40 weak ones (label 1), 5 weaker defect columns (label 2,
    # under a tenth of the columns: never chosen) and unassigned ones.
    labels = np.repeat([3, 1, 2, -1], [60, 40, 5, 4])
    section = np.where(labels == 3, 900.0, np.where(labels == 1, 400.0, 50.0))
    cols = xr.Dataset({"label": ("atom", labels), "cross_section": ("atom", section)})
    assert choose_motif(cols, "strongest") == 3
    assert choose_motif(cols, "weakest") == 1
    assert choose_motif(cols, "most") == 3
    assert choose_motif(cols, 2) == 2
    with pytest.raises(DataError, match="no motif"):
        choose_motif(cols.assign(label=("atom", np.full(len(labels), -1))), "most")


def test_a_first_run_names_the_perovskite_columns_by_contrast() -> None:
    # A columns (amplitude 100) on a square lattice and B columns (50) at the cell centres,
    # moved by 0.3 px along x: ["weakest", "strongest"] is [1, 0].
    a = square(10, 16.0, 12.0)
    b = a[:-12] + 8.0 + np.array([0.0, 0.3])
    yx = np.concatenate([a, b])
    labels = np.repeat([0, 1], [len(a), len(b)])
    img = render((180, 180), yx, np.where(labels == 0, 100.0, 50.0), 1.8, 1.8, 0.0, 10.0)
    atoms = table_of(yx, spacing_px=16 / np.sqrt(2))
    image = xr.DataArray(img[None], dims=("frame", "y", "x"))
    by_rule, summary = measure_columns(image, atoms, labels, enabled=True,
                                       displacement=["weakest", "strongest"])
    by_label, _ = measure_columns(image, atoms, labels, enabled=True, displacement=[1, 0])
    assert summary["displacement"] == {"motif": 1, "reference": 0,
                                       "asked": ["weakest", "strongest"]}
    np.testing.assert_array_equal(by_rule["disp_x"].values, by_label["disp_x"].values)
    found = np.isfinite(by_rule["disp_x"].values)
    assert found.sum() > 50
    np.testing.assert_allclose(by_rule["disp_x"].values[found], 0.3, atol=1e-3)
