"""The command line: synth and info, and one-line errors with a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

import dmotif
from dmotif.cli import app

runner = CliRunner()


def test_help_lists_the_commands() -> None:
    out = runner.invoke(app, ["--help"])
    assert out.exit_code == 0
    for cmd in ("synth", "info"):
        assert cmd in out.output


def test_synth_then_info(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    out = runner.invoke(app, ["synth", "tmd", "-o", str(path), "--size", "256", "--frames", "2",
                              "--chunk", "128"])
    assert out.exit_code == 0, out.output
    img = dmotif.open_image(path)
    assert img.shape == (2, 256, 256) and img.data.chunksize == (1, 128, 128)
    assert img.attrs["units"] == "nm"
    sample = dmotif.synthetic.load(path)
    info = runner.invoke(app, ["info", str(path)])
    assert info.exit_code == 0, info.output
    assert "'frame': 2, 'y': 256, 'x': 256" in info.output
    assert "0.015 nm" in info.output
    n_metal = int(np.sum(sample.atoms["label"].values == 0))
    assert "metal" in info.output and str(n_metal) in info.output


def test_info_on_a_result(tmp_path: Path) -> None:
    import xarray as xr

    ds = xr.Dataset({"label": ("atom", np.array([0, 0, 1, -1], np.int32)),
                     "frame": ("atom", np.zeros(4, np.int32))})
    dmotif.write_result(ds, tmp_path / "r.zarr")
    out = runner.invoke(app, ["info", str(tmp_path / "r.zarr")])
    assert out.exit_code == 0, out.output
    assert "unassigned" in out.output and "50.00%" in out.output


def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "t.zarr"
    assert runner.invoke(app, ["synth", "tmd", "-o", str(path), "--size", "64"]).exit_code == 0
    again = runner.invoke(app, ["synth", "tmd", "-o", str(path), "--size", "64"])
    assert again.exit_code == 2
    assert again.output.count("\n") == 1 and "overwrite" in again.output
    assert "Traceback" not in again.output
    missing = runner.invoke(app, ["info", str(tmp_path / "nothere.tif")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    bad = runner.invoke(app, ["synth", "graphene", "-o", str(tmp_path / "g.zarr")])
    assert bad.exit_code == 2 and "unknown synthetic kind" in bad.output


def test_detect_writes_an_atom_table(tmp_path: Path) -> None:
    sample = dmotif.synthetic.tmd(size=256, seed=2)
    dmotif.synthetic.save(sample, tmp_path / "t.zarr")
    out = runner.invoke(app, ["detect", str(tmp_path / "t.zarr"), "-o", str(tmp_path / "a.zarr")])
    assert out.exit_code == 0, out.output
    atoms = dmotif.open_result(tmp_path / "a.zarr").atoms
    # Every true column well inside the image is found.
    truth = sample.atoms
    inner = ((truth.y > 8) & (truth.y < 247) & (truth.x > 8) & (truth.x < 247)).values
    from scipy.spatial import cKDTree

    d, _ = cKDTree(np.c_[atoms.y, atoms.x]).query(np.c_[truth.y, truth.x][inner])
    assert np.mean(d < 2) > 0.99


def test_demo_synthesises_runs_and_reports(tmp_path: Path) -> None:
    out = runner.invoke(app, ["demo", "-o", str(tmp_path / "demo"), "--size", "512",
                              "--frames", "1"])
    assert out.exit_code == 0, out.output
    res = dmotif.open_result(tmp_path / "demo" / "tmd.dmotif.zarr")
    assert res.atoms.sizes["atom"] > 1000
    page = (tmp_path / "demo" / "report.html").read_text()
    assert '<figure id="layout">' in page and "report.html" in out.output


def test_an_unexpected_error_is_one_line_naming_a_log_with_the_traceback() -> None:
    """Anything but a DmotifError is a bug: one line, exit 3, the traceback in a log file."""
    import typer

    from dmotif.cli import _one_line_errors

    broken = typer.Typer()

    @broken.command()
    @_one_line_errors
    def crash() -> None:
        {}["no such key"]

    out = runner.invoke(broken, [])
    assert out.exit_code == 3
    line = out.output.strip()
    assert "\n" not in line and line.startswith("dmotif: internal error (KeyError")
    log = Path(line.rsplit(" ", 1)[-1])
    try:
        text = log.read_text()
        assert "Traceback" in text and "no such key" in text and "def crash" not in line
    finally:
        log.unlink()
