"""The image-stack data model at the boundary."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from dmotif import DataError, ParameterError
from dmotif._image import (
    as_image_stack,
    check_finite_nonconstant,
    normalize_chunks,
    whole_chunk_window,
)


def test_2d_becomes_one_frame_float32_tiles() -> None:
    img = as_image_stack(np.arange(300 * 200, dtype=np.uint16).reshape(300, 200), chunks=128)
    assert img.dims == ("frame", "y", "x")
    assert img.shape == (1, 300, 200)
    assert img.dtype == np.float32
    assert isinstance(img.data, da.Array)
    assert img.data.chunks == ((1,), (128, 128, 44), (128, 72))
    assert img.attrs["units"] == "px"
    np.testing.assert_array_equal(img.values[0], np.arange(60000).reshape(300, 200))


def test_calibration_gives_physical_coords() -> None:
    img = as_image_stack(np.zeros((2, 10, 12)), pixel_size=0.02)
    assert img.attrs == {"units": "nm", "pixel_size": 0.02}
    np.testing.assert_allclose(img["x"].values, np.arange(12) * 0.02)
    assert img["y"].attrs["units"] == "nm"


def test_dataarray_keeps_its_calibration() -> None:
    src = as_image_stack(np.ones((8, 8)), pixel_size=0.05)
    again = as_image_stack(src.isel(frame=0, drop=True))
    assert again.attrs["pixel_size"] == 0.05


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4), (1, 1, 2, 3, 4)])
def test_wrong_ndim_is_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(DataError, match=f"got {len(shape)}-D"):
        as_image_stack(np.zeros(shape))


def test_wrong_dims_name_the_fix() -> None:
    with pytest.raises(DataError, match="rename"):
        as_image_stack(xr.DataArray(np.zeros((4, 4)), dims=("a", "b")))


def test_empty_and_complex_are_refused() -> None:
    with pytest.raises(DataError, match="empty"):
        as_image_stack(np.zeros((0, 5)))
    with pytest.raises(DataError, match="real numbers"):
        as_image_stack(np.zeros((4, 4), complex))


@pytest.mark.parametrize("bad", [-0.1, 0.0, float("nan"), "abc"])
def test_bad_pixel_size(bad: object) -> None:
    with pytest.raises(ParameterError, match="pixel_size"):
        as_image_stack(np.ones((4, 4)), pixel_size=bad)  # type: ignore[arg-type]


def test_nan_inf_and_constant_frames_are_found() -> None:
    good = np.random.default_rng(0).random((3, 16, 16))
    check_finite_nonconstant(as_image_stack(good, chunks=8))
    nan = good.copy()
    nan[1, 3, 4] = np.nan
    with pytest.raises(DataError, match=r"NaN or inf pixels \(frames \[1\]\)"):
        check_finite_nonconstant(as_image_stack(nan, chunks=8))
    inf = good.copy()
    inf[2, 0, 0] = np.inf
    with pytest.raises(DataError, match=r"frames \[2\]"):
        check_finite_nonconstant(as_image_stack(inf))
    flat = good.copy()
    flat[0] = 7.0
    with pytest.raises(DataError, match=r"frames \[0\] are constant \(every pixel = 7.0\)"):
        check_finite_nonconstant(as_image_stack(flat))


def test_normalize_chunks() -> None:
    assert normalize_chunks("auto", (3, 5000, 600)) == (1, 1024, 600)
    assert normalize_chunks((2, 64, 32), (3, 100, 100)) == (2, 64, 32)
    assert normalize_chunks((64, 32), (3, 100, 100)) == (1, 64, 32)
    with pytest.raises(ParameterError):
        normalize_chunks(0, (1, 10, 10))
    with pytest.raises(ParameterError):
        normalize_chunks("big", (1, 10, 10))


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.tuples(st.integers(1, 3), st.integers(3, 40), st.integers(3, 40)),
    window=st.tuples(st.integers(0, 3), st.integers(0, 59), st.integers(1, 60),
                     st.integers(0, 49), st.integers(1, 50)),
)
def test_whole_chunk_window_is_the_slice(chunks, window) -> None:
    # A window cut from the whole chunks it touches holds the same pixels as the plain slice,
    # whatever the chunking, across chunk edges and at the image border.
    f, y0, h, x0, w = window
    y1, x1 = min(y0 + h, 60), min(x0 + w, 50)
    y0, x0 = min(y0, y1 - 1), min(x0, x1 - 1)
    values = np.arange(4 * 60 * 50, dtype=np.float32).reshape(4, 60, 50)
    arr = da.from_array(values, chunks=chunks)
    cut = whole_chunk_window(arr, arr.to_delayed(), f, y0, y1, x0, x1).compute()
    np.testing.assert_array_equal(cut, values[f, y0:y1, x0:x1])
