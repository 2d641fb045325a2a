"""Readers round-trip pixels and calibration from files written here; bad input is refused."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr

import dmotif
from dmotif import DataError, ImageFileError, ParameterError, StoreExistsError
from dmotif.io.images import source_identity


@pytest.fixture
def stack() -> np.ndarray:
    return np.random.default_rng(1).normal(size=(2, 40, 56)).astype(np.float32)


def test_numpy_array(stack: np.ndarray) -> None:
    img = dmotif.open_image(stack, pixel_size=0.03, chunks=16)
    assert img.dims == ("frame", "y", "x") and img.data.chunksize == (1, 16, 16)
    np.testing.assert_array_equal(img.values, stack)
    assert img.attrs["pixel_size"] == 0.03


def test_npy(tmp_path: Path, stack: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", stack[0])
    img = dmotif.open_image(tmp_path / "a.npy")
    assert img.shape == (1, 40, 56) and img.attrs["units"] == "px"
    np.testing.assert_array_equal(img.values[0], stack[0])


def test_imagej_tiff_with_calibration(tmp_path: Path, stack: np.ndarray) -> None:
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, stack, imagej=True, resolution=(1 / 0.025, 1 / 0.025),
                     metadata={"unit": "nm", "axes": "ZYX"})
    img = dmotif.open_image(path)
    np.testing.assert_array_equal(img.values, stack)
    assert img.attrs["units"] == "nm"
    assert img.attrs["pixel_size"] == pytest.approx(0.025, rel=1e-6)


def test_plain_tiff_with_centimetre_resolution(tmp_path: Path, stack: np.ndarray) -> None:
    path = tmp_path / "b.tiff"
    # 0.05 nm per pixel = 2e8 pixels per cm.
    tifffile.imwrite(path, stack[1], resolution=(2e8, 2e8), resolutionunit="CENTIMETER")
    img = dmotif.open_image(path)
    np.testing.assert_array_equal(img.values[0], stack[1])
    assert img.attrs["pixel_size"] == pytest.approx(0.05, rel=1e-6)


def test_uncalibrated_tiff_is_in_pixels(tmp_path: Path, stack: np.ndarray) -> None:
    tifffile.imwrite(tmp_path / "c.tif", stack[0])
    assert dmotif.open_image(tmp_path / "c.tif").attrs["units"] == "px"


def test_save_image_round_trips_zarr_npy_tif(tmp_path: Path, stack: np.ndarray) -> None:
    img = dmotif.open_image(stack, pixel_size=0.02)
    for name in ("s.zarr", "s.npy", "s.tif"):
        back = dmotif.open_image(dmotif.save_image(img, tmp_path / name))
        np.testing.assert_array_equal(back.values, stack)
        if name != "s.npy":
            assert back.attrs["pixel_size"] == pytest.approx(0.02, rel=1e-6)
    with pytest.raises(StoreExistsError, match="overwrite"):
        dmotif.save_image(img, tmp_path / "s.zarr")
    with pytest.raises(StoreExistsError, match="overwrite"):
        dmotif.save_image(img, tmp_path / "s.tif")
    dmotif.save_image(img * 2, tmp_path / "s.zarr", overwrite=True)
    np.testing.assert_array_equal(dmotif.open_image(tmp_path / "s.zarr").values, 2 * stack)


def test_bare_zarr_array(tmp_path: Path, stack: np.ndarray) -> None:
    arr = zarr.create_array(tmp_path / "bare.zarr", shape=stack.shape, chunks=(1, 20, 20),
                            dtype="f4")
    arr[:] = stack
    img = dmotif.open_image(tmp_path / "bare.zarr")
    np.testing.assert_array_equal(img.values, stack)


def test_zarr_without_image_is_refused(tmp_path: Path) -> None:
    import xarray as xr

    xr.Dataset({"label": ("atom", np.arange(3))}).to_zarr(tmp_path / "r.zarr", zarr_format=3,
                                                          consolidated=False)
    with pytest.raises(ImageFileError, match="no 'image' variable"):
        dmotif.open_image(tmp_path / "r.zarr")


def _write_mrc(path: Path, data: np.ndarray, angstrom_per_px: float) -> None:
    """An MRC2014 file: 1024-byte header, then float32 (mode 2) data, z slowest."""
    nz, ny, nx = data.shape
    header = bytearray(1024)
    struct.pack_into("<3i", header, 0, nx, ny, nz)
    struct.pack_into("<i", header, 12, 2)
    struct.pack_into("<3i", header, 28, nx, ny, nz)
    struct.pack_into("<3f", header, 40, nx * angstrom_per_px, ny * angstrom_per_px, nz)
    struct.pack_into("<3f", header, 52, 90.0, 90.0, 90.0)
    struct.pack_into("<3i", header, 64, 1, 2, 3)
    header[208:212] = b"MAP "
    header[212:216] = bytes([0x44, 0x44, 0, 0])
    path.write_bytes(bytes(header) + data.astype("<f4").tobytes())


# rosettasciio's MRC reader leaves its header file handle open (a ResourceWarning at GC).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_mrc_through_rosettasciio(tmp_path: Path, stack: np.ndarray) -> None:
    _write_mrc(tmp_path / "a.mrc", stack, angstrom_per_px=0.4)
    img = dmotif.open_image(tmp_path / "a.mrc")
    np.testing.assert_array_equal(img.values, stack)
    assert img.attrs["pixel_size"] == pytest.approx(0.04, rel=1e-5)


def test_hspy_through_rosettasciio(tmp_path: Path, stack: np.ndarray) -> None:
    from rsciio.hspy import file_writer

    axes = [
        {"size": 2, "scale": 1, "offset": 0, "units": "", "name": "frame", "navigate": True},
        {"size": 40, "scale": 0.5, "offset": 0, "units": "Å", "name": "y", "navigate": False},
        {"size": 56, "scale": 0.5, "offset": 0, "units": "Å", "name": "x", "navigate": False},
    ]
    signal = {"data": stack, "axes": axes, "metadata": {"General": {"title": "t"},
              "Signal": {"signal_type": ""}}, "original_metadata": {}, "tmp_parameters": {},
              "attributes": {"_lazy": False}, "package_info": {"name": "t", "version": "0"},
              "learning_results": {}, "models": {}}
    file_writer(str(tmp_path / "a.hspy"), signal)
    img = dmotif.open_image(tmp_path / "a.hspy")
    np.testing.assert_array_equal(img.values, stack)
    assert img.attrs["pixel_size"] == pytest.approx(0.05)
    assert img.attrs["units"] == "nm"


def test_missing_file_and_unsupported_suffix(tmp_path: Path) -> None:
    with pytest.raises(ImageFileError, match="no such file"):
        dmotif.open_image(tmp_path / "nothere.tif")
    (tmp_path / "a.jpg").write_bytes(b"xx")
    with pytest.raises(ImageFileError, match=r"unsupported image format '\.jpg'"):
        dmotif.open_image(tmp_path / "a.jpg")
    with pytest.raises(ImageFileError, match="cannot open image data from a dict"):
        dmotif.open_image({})


def test_corrupt_files_are_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(ImageFileError, match="cannot read TIFF"):
        dmotif.open_image(tmp_path / "bad.tif")
    (tmp_path / "bad.dm4").write_bytes(b"\x00" * 64)
    with pytest.raises(ImageFileError, match="cannot read"):
        dmotif.open_image(tmp_path / "bad.dm4")


@pytest.mark.parametrize("shape", [(7,), (2, 2, 3, 4, 5)])
def test_wrong_ndim_files(tmp_path: Path, shape: tuple[int, ...]) -> None:
    np.save(tmp_path / "x.npy", np.ones(shape))
    with pytest.raises(DataError, match=f"got {len(shape)}-D"):
        dmotif.open_image(tmp_path / "x.npy")


def test_nan_constant_and_negative_pixel_size(tmp_path: Path, stack: np.ndarray) -> None:
    bad = stack.copy()
    bad[0, 5, 5] = np.nan
    np.save(tmp_path / "n.npy", bad)
    with pytest.raises(DataError, match="NaN or inf"):
        dmotif.open_image(tmp_path / "n.npy")
    assert dmotif.open_image(tmp_path / "n.npy", check=False).shape == stack.shape
    with pytest.raises(DataError, match="constant"):
        dmotif.open_image(np.full((30, 30), 3.0))
    with pytest.raises(ParameterError, match="positive"):
        dmotif.open_image(stack, pixel_size=-0.1)


def test_source_identity(tmp_path: Path, stack: np.ndarray) -> None:
    np.save(tmp_path / "a.npy", stack)
    a = source_identity(tmp_path / "a.npy")
    assert a["bytes"] == (tmp_path / "a.npy").stat().st_size and len(a["sha256"]) == 64
    np.save(tmp_path / "a.npy", stack + 1)
    assert source_identity(tmp_path / "a.npy")["sha256"] != a["sha256"]
    assert source_identity(stack)["sha256"] == source_identity(stack.copy())["sha256"]
