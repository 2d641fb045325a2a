"""4D-STEM data: the bright-field disk of the data model, and the readers and writer."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import dmotif
from dmotif.errors import DataError, DmotifError, ImageFileError
from dmotif.io.stem4d import estimate_disk
from dmotif.synthetic.stem4d import fourd

K = 32


@pytest.mark.parametrize(("cy", "cx", "radius"), [(15.5, 15.5, 5.0), (13.2, 17.7, 7.5)])
def test_estimate_disk(cy: float, cx: float, radius: float) -> None:
    yy, xx = np.indices((K, K))
    pattern = 0.02 + np.clip(radius + 0.5 - np.hypot(yy - cy, xx - cx), 0, 1)
    (ey, ex), er = estimate_disk(pattern)
    assert (ey, ex) == pytest.approx((cy, cx), abs=0.05)
    assert er == pytest.approx(radius, abs=0.3)


# --------------------------------------------------------------------------- readers


@pytest.fixture(scope="module")
def small():
    return fourd("tmd", size=(16, 18), k_size=16, chunks=8)


def test_zarr_round_trip(small, tmp_path: Path) -> None:
    path = dmotif.save_4dstem(small.data, tmp_path / "d.zarr")
    back = dmotif.open_4dstem(path)
    np.testing.assert_array_equal(back.values, small.data.values)
    for key in ("scan_pixel_size", "scan_units", "k_pixel_size", "k_units", "bf_radius"):
        assert back.attrs[key] == small.data.attrs[key]
    assert tuple(back.attrs["center"]) == tuple(small.data.attrs["center"])
    assert back.data.chunks[:2] == small.data.data.chunks[:2]
    with pytest.raises(DmotifError, match="exists"):
        dmotif.save_4dstem(small.data, tmp_path / "d.zarr")


def test_npy_and_bare_zarr(small, tmp_path: Path) -> None:
    arr = small.data.values
    np.save(tmp_path / "d.npy", arr)
    da.from_array(arr, chunks=(4, 7, 16, 16)).to_zarr(str(tmp_path / "bare.zarr"))
    for name in ("d.npy", "bare.zarr"):
        got = dmotif.open_4dstem(tmp_path / name, k_pixel_size=2.5)
        np.testing.assert_array_equal(got.values, arr)
        assert got.attrs["k_units"] == "mrad" and got.attrs["scan_units"] == "px"
        assert tuple(got.attrs["center"]) == pytest.approx((7.5, 7.5), abs=0.05)
    assert dmotif.open_4dstem(tmp_path / "bare.zarr").data.chunks[1] == (7, 7, 4)


def test_emd_hdf5_with_calibration(small, tmp_path: Path) -> None:
    import h5py

    arr = small.data.values
    path = tmp_path / "d.emd"
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = 1
        group = f.create_group("data/scan")
        group.attrs["emd_group_type"] = 1
        group.create_dataset("data", data=arr, chunks=(4, 4, 16, 16))
        for i, (n, step, off, unit) in enumerate(
            [(16, 1.5, 0.0, "Å"), (18, 1.5, 0.0, "Å"), (16, 4.0, -30.0, "mrad"),
             (16, 4.0, -30.0, "mrad")], start=1):
            dim = group.create_dataset(f"dim{i}", data=off + step * np.arange(n))
            dim.attrs["units"] = unit
    got = dmotif.open_4dstem(path)
    np.testing.assert_array_equal(got.values, arr)
    assert got.attrs["scan_pixel_size"] == pytest.approx(0.15)
    assert got.attrs["k_pixel_size"] == 4.0 and got.attrs["k_units"] == "mrad"
    assert tuple(got.attrs["center"]) == pytest.approx((7.5, 7.5))
    assert got.data.chunks[0] == (4, 4, 4, 4)
    np.testing.assert_allclose(got.kx.values, -30.0 + 4.0 * np.arange(16))


def test_hspy_and_blockfile_through_rosettasciio(small, tmp_path: Path) -> None:
    from rsciio.blockfile import file_writer as write_blo
    from rsciio.hspy import file_writer as write_hspy

    arr = small.data.values
    counts = np.round(arr / arr.max() * 250).astype(np.uint8)
    axes = [
        {"size": 16, "scale": 2.0, "offset": 0, "units": "Å", "name": "y", "navigate": True},
        {"size": 18, "scale": 2.0, "offset": 0, "units": "Å", "name": "x", "navigate": True},
        {"size": 16, "scale": 1e-3, "offset": -7.5e-3, "units": "rad", "name": "ky",
         "navigate": False},
        {"size": 16, "scale": 1e-3, "offset": -7.5e-3, "units": "rad", "name": "kx",
         "navigate": False},
    ]
    signal = {"data": arr, "axes": axes, "metadata": {"General": {"title": "t"},
              "Signal": {"signal_type": ""}}, "original_metadata": {}, "tmp_parameters": {},
              "attributes": {"_lazy": False}, "package_info": {"name": "t", "version": "0"},
              "learning_results": {}, "models": {}}
    write_hspy(str(tmp_path / "d.hspy"), signal)
    got = dmotif.open_4dstem(tmp_path / "d.hspy")
    np.testing.assert_array_equal(got.values, arr)
    assert got.attrs["scan_pixel_size"] == pytest.approx(0.2)
    assert got.attrs["k_pixel_size"] == pytest.approx(1.0) and got.attrs["k_units"] == "mrad"
    assert tuple(got.attrs["center"]) == pytest.approx((7.5, 7.5))

    blo_axes = [dict(a, units="cm", offset=0.0, scale=0.1) if not a["navigate"] else
                dict(a, units="nm", scale=0.2) for a in axes]
    write_blo(str(tmp_path / "d.blo"), {**signal, "data": counts, "axes": blo_axes},
              show_progressbar=False)
    blo = dmotif.open_4dstem(tmp_path / "d.blo")
    np.testing.assert_array_equal(blo.values, counts)
    assert blo.attrs["scan_pixel_size"] == pytest.approx(0.2)


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "bad.mib").write_bytes(b"not a merlin file" * 10)
    with pytest.raises(ImageFileError, match="rosettasciio"):
        dmotif.open_4dstem(tmp_path / "bad.mib")
    with pytest.raises(ImageFileError, match="no such file"):
        dmotif.open_4dstem(tmp_path / "missing.blo")
    with pytest.raises(ImageFileError, match="unsupported"):
        dmotif.open_4dstem(tmp_path / "d.tif")
    np.save(tmp_path / "img.npy", np.zeros((8, 8), np.float32))
    with pytest.raises(DataError, match="open_image"):
        dmotif.open_4dstem(tmp_path / "img.npy")


def test_distributed_workers_give_the_same_image(small, tmp_path: Path) -> None:
    from distributed import Client, LocalCluster

    path = dmotif.save_4dstem(small.data, tmp_path / "d.zarr")
    data = dmotif.open_4dstem(path)
    local = {d: dmotif.virtual_image(data, detector=d).values for d in ("adf", "icom")}
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster):
        for d, ref in local.items():
            np.testing.assert_array_equal(dmotif.virtual_image(data, detector=d).values, ref)
