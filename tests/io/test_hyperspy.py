"""HyperSpy in and out, with real Signal2D objects built here: the same atoms as the numpy path,
the axes' calibration carried, and one marker per atom on the way back."""

from __future__ import annotations

from pathlib import Path

import hyperspy.api as hs
import numpy as np
import pandas as pd
import pytest

import dmotif
from dmotif import DataError, ParameterError

PIXEL_NM = 0.015


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Two noisy 256² TMD frames (frame, y, x)."""
    return dmotif.synthetic.tmd(size=256, frames=2, seed=4).image.values


def signal_of(data: np.ndarray, *, scale: float = PIXEL_NM * 10, units: str | None = "Å",
              offset: tuple[float, float] = (0.0, 0.0)) -> hs.signals.Signal2D:
    """A Signal2D as HyperSpy users hold them: signal axes x, y with scale, units, offset."""
    sig = hs.signals.Signal2D(data)
    for axis, off in zip(sig.axes_manager.signal_axes, offset[::-1], strict=True):
        axis.scale, axis.offset = scale, off
        if units is not None:  # None: left <undefined>, as a signal from a bare array
            axis.units = units
    sig.metadata.General.title = "tmd"
    return sig


@pytest.mark.parametrize("lazy", [False, True])
def test_signal_detects_the_same_atoms_as_the_numpy_path(frames: np.ndarray, lazy: bool) -> None:
    sig = signal_of(frames[0])
    if lazy:
        sig = sig.as_lazy()
    from_signal = dmotif.detect_atoms(dmotif.open_image(sig)).compute()
    from_numpy = dmotif.detect_atoms(dmotif.open_image(frames[0], pixel_size=PIXEL_NM)).compute()
    assert from_signal.sizes["atom"] > 100
    for name in ("frame", "y", "x", "intensity", "y_nm", "x_nm"):
        np.testing.assert_array_equal(from_signal[name].values, from_numpy[name].values)


def test_lazy_signal_stays_lazy_and_keeps_its_calibration(frames: np.ndarray) -> None:
    # 1.5 Å pixels and an offset in Å: the coords are the signal's axis values, in nm.
    sig = signal_of(frames, offset=(20.0, -3.0)).as_lazy()
    img = dmotif.open_image(sig, check=False)
    assert img.dims == ("frame", "y", "x") and img.shape == (2, 256, 256)
    assert img.chunks is not None
    assert img.attrs["units"] == "nm"
    assert img.attrs["pixel_size"] == pytest.approx(PIXEL_NM)
    assert img.attrs["offset"] == pytest.approx([2.0, -0.3])
    axis_x = sig.axes_manager.signal_axes[0]
    np.testing.assert_allclose(img["x"].values, axis_x.axis / 10, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(img.values, frames.astype(np.float32))


def test_a_list_of_signals_is_a_stack_and_uncalibrated_axes_are_pixels(frames) -> None:
    img = dmotif.open_image([signal_of(f, scale=1.0, units=None) for f in frames])
    assert img.shape == (2, 256, 256)
    assert img.attrs["units"] == "px"
    np.testing.assert_array_equal(img["x"].values, np.arange(256))
    override = dmotif.open_image(signal_of(frames[0]), pixel_size=0.02)
    assert override.attrs["pixel_size"] == 0.02


def test_signals_that_cannot_be_one_stack_are_refused(frames: np.ndarray) -> None:
    with pytest.raises(DataError, match="open_4dstem"):
        dmotif.open_image(signal_of(np.ones((2, 2, 16, 16))))
    with pytest.raises(DataError, match="shape"):
        dmotif.open_image([signal_of(frames[0]), signal_of(frames[0][:128])])
    with pytest.raises(DataError, match="calibration"):
        dmotif.open_image([signal_of(frames[0]), signal_of(frames[1], scale=0.2)])
    odd = signal_of(frames[0])
    odd.axes_manager.signal_axes[1].scale = 0.3
    with pytest.raises(DataError, match="square"):
        dmotif.open_image(odd)


@pytest.fixture(scope="module")
def signal_run(frames, client, tmp_path_factory: pytest.TempPathFactory):
    """A whole run whose input is a Signal2D stack with an offset."""
    sig = signal_of(frames, offset=(5.0, 7.0))
    out = tmp_path_factory.mktemp("hs") / "tmd.dmotif.zarr"
    return sig, dmotif.run(sig, out, client=client)


def test_signal_in_result_out_round_trip(signal_run, tmp_path: Path) -> None:
    _, res = signal_run
    assert res.config["input"]["kind"] == "array" and res.config["input"]["path"] is None
    store = res.atoms.compute()
    table = pd.read_parquet(dmotif.export(res, tmp_path / "atoms.parquet"))
    np.testing.assert_array_equal(table["x_nm"], store["x_nm"].values)
    np.testing.assert_array_equal(table["label"], store["label"].values)
    assert "source" not in table  # an in-memory signal has no file to name


@pytest.mark.parametrize("frame", [0, 1])
def test_to_hyperspy_marks_every_atom_once_by_motif(signal_run, frame: int) -> None:
    sig, res = signal_run
    out = dmotif.to_hyperspy(res, frame=frame, image=sig)
    np.testing.assert_array_equal(out.data, sig.data[frame].astype(np.float32))
    for mine, theirs in zip(out.axes_manager.signal_axes, sig.axes_manager.signal_axes,
                            strict=True):
        assert mine.units == "nm"
        assert mine.scale == pytest.approx(theirs.scale / 10)
        assert mine.offset == pytest.approx(theirs.offset / 10)
    store = res.atoms.compute()
    mine = store["frame"].values == frame
    labels = store["label"].values[mine]
    markers = [m for _, m in out.metadata.Markers]
    assert sum(len(m.kwargs["offsets"]) for m in markers) == mine.sum()
    assert len(markers) == len(np.unique(labels))
    names = dmotif.active_labels(res).attrs["motif_names"]
    colours = set()
    for label in np.unique(labels):
        name = names.get(int(label), "unassigned")
        (marker,) = [m for m in markers if m.name == name]
        rows = labels == label
        # the markers sit where the store puts the atoms, in the axes' units (nm, offset in)
        expected = np.c_[0.7 + store["x"].values[mine][rows] * PIXEL_NM,
                         0.5 + store["y"].values[mine][rows] * PIXEL_NM]
        np.testing.assert_allclose(marker.kwargs["offsets"], expected, rtol=1e-9)
        colours.add(str(marker.kwargs["color"]))
    assert len(colours) == len(markers)  # one colour per motif


def test_to_hyperspy_needs_an_image_and_a_frame_it_has(signal_run) -> None:
    sig, res = signal_run
    with pytest.raises(dmotif.ImageFileError, match="image="):
        dmotif.to_hyperspy(res)
    with pytest.raises(ParameterError, match="frame"):
        dmotif.to_hyperspy(res, frame=2, image=sig)
