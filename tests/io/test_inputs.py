"""Several input files as one stack: expansion of paths, globs and folders; sizes mirrored to a
common shape; one pixel size; each file's identity."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import xarray as xr

from dmotif import DataError, ImageFileError
from dmotif.io.inputs import (
    drop_padding,
    expand_inputs,
    identify,
    is_several,
    open_inputs,
    pad_frames,
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, shape in (("b.npy", (40, 50)), ("a.npy", (30, 20)), ("c.npy", (2, 40, 50))):
        np.save(tmp_path / name, rng.normal(size=shape).astype(np.float32))
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_a_folder_a_glob_and_a_list_name_the_same_files(folder: Path) -> None:
    names = [str(folder / n) for n in ("a.npy", "b.npy", "c.npy")]
    assert expand_inputs(folder) == names
    assert expand_inputs(str(folder / "*.npy")) == names
    # A list keeps its order; a file named twice is read once.
    assert expand_inputs([names[2], str(folder / "*.npy")]) == [names[2], *names[:2]]
    assert is_several(folder) and is_several(str(folder / "*.npy")) and is_several(names[:1])
    assert not is_several(names[0]) and not is_several(np.zeros((4, 4)))


def test_a_glob_without_match_and_an_empty_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageFileError, match=r"no file matches .*\*\.dm4"):
        expand_inputs(str(tmp_path / "*.dm4"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageFileError, match="holds no image"):
        expand_inputs(tmp_path / "empty")


def test_frames_of_every_file_in_order_mirrored_to_the_largest_shape(folder: Path) -> None:
    paths = expand_inputs(folder)
    inputs = open_inputs(paths, chunks=16)
    arrays = [np.atleast_3d(np.load(p).T).T for p in paths]  # each as (frame, y, x)
    assert inputs.image.shape == (4, 40, 50)
    assert [f["frames"] for f in inputs.files] == [[0], [1], [2, 3]]
    assert [f["shape"] for f in inputs.files] == [[30, 20], [40, 50], [40, 50]]
    # The small image continues as its mirror image across its bottom and right edges.
    mirrored = np.pad(arrays[0][0], ((0, 10), (0, 30)), mode="symmetric")
    np.testing.assert_array_equal(inputs.image.values[0], mirrored)
    np.testing.assert_array_equal(inputs.image.values[1:], np.concatenate(arrays[1:]))


def test_padding_wider_than_the_image_repeats_the_mirror() -> None:
    data = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    out = pad_frames(da.from_array(data, chunks=(1, 2, 2)), 11, 9).compute()
    np.testing.assert_array_equal(out[0], np.pad(data[0], ((0, 8), (0, 5)), mode="symmetric"))


def test_atoms_in_the_padding_are_dropped() -> None:
    atoms = xr.Dataset({"y": ("atom", [2.0, 29.4, 29.6, 5.0]),
                        "x": ("atom", [3.0, 4.0, 4.0, 19.6])})
    kept = drop_padding(atoms, (30, 20))
    np.testing.assert_array_equal(kept["y"].values, [2.0, 29.4])


def test_each_file_is_identified_by_its_checksum(folder: Path) -> None:
    inputs = open_inputs(expand_inputs(folder))
    for f in identify(inputs.files):
        assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
        assert Path(f["path"]).is_absolute() and f["bytes"] == Path(f["path"]).stat().st_size


def _tif(path: Path, nm_per_px: float | None) -> str:
    data = np.random.default_rng(2).normal(size=(32, 32)).astype(np.float32)
    if nm_per_px is None:
        tifffile.imwrite(path, data)
    else:
        tifffile.imwrite(path, data, imagej=True, resolution=(1 / nm_per_px, 1 / nm_per_px),
                         metadata={"unit": "nm"})
    return str(path)


def test_one_pixel_size_is_kept_and_different_ones_are_refused(tmp_path: Path) -> None:
    a, b = _tif(tmp_path / "a.tif", 0.02), _tif(tmp_path / "b.tif", 0.02)
    inputs = open_inputs([a, b])
    assert inputs.image.attrs["pixel_size"] == pytest.approx(0.02, rel=1e-6)
    assert [f["pixel_size"] for f in inputs.files] == pytest.approx([0.02, 0.02], rel=1e-6)
    c = _tif(tmp_path / "c.tif", 0.025)
    with pytest.raises(DataError, match=r"different pixel sizes: .*a\.tif' 0\.02 nm, .*c\.tif' "
                                        r"0\.025 nm"):
        open_inputs([a, b, c])
    d = _tif(tmp_path / "d.tif", None)
    with pytest.raises(DataError, match=r"d\.tif' no calibration"):
        open_inputs([a, d])
    # A pixel size given for the run overrides every file's calibration.
    assert open_inputs([a, c, d], pixel_size=0.03).image.attrs["pixel_size"] == 0.03
