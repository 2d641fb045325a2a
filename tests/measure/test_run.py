"""The measure stage of a run: stored, exported and reported; configured and validated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dmotif
from dmotif.errors import ParameterError
from dmotif.io.export import atom_table
from dmotif.measure.stage import MEASURED_VARS, measure_columns
from dmotif.pipeline import load_config
from dmotif.pipeline.validate import validate_config

REAL = Path(__file__).parents[1] / "data" / "real_perovskite_adf.npy"


@pytest.fixture(scope="module")
def measured(client, tmp_path_factory) -> dmotif.Result:
    out = tmp_path_factory.mktemp("measure") / "p.zarr"
    config = {"measure": {"enabled": True, "strain_motif": 0}}
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
    assert summary["enabled"] and summary["strain"] == {"motif": 0}
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
    with pytest.raises(ParameterError, match=r"measure\.max_components"):
        validate_config(load_config({"measure": {"max_components": 0}}))
    with pytest.raises(ParameterError, match=r"measure\.enabled"):
        validate_config(load_config({"measure": {"enabled": "yes"}}))
    validate_config(load_config({"measure": {"enabled": True, "displacement": [1, 0]}}))
