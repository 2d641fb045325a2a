"""Stores on an S3 API: a real moto server on loopback, reached through s3fs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import xarray as xr

import dmotif
from dmotif import StoreExistsError, StoreIncompleteError
from dmotif.io.store import StoreWriter

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """A moto S3 server on 127.0.0.1 with an empty bucket; yields fsspec storage options."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, aws_access_key_id="test", aws_secret_access_key="test",
                 region_name="us-east-1").create_bucket(Bucket="dmotif")
    yield {"key": "test", "secret": "test",
           "client_kwargs": {"endpoint_url": url, "region_name": "us-east-1"}}
    server.stop()


def _ls(options: dict[str, Any]) -> list[str]:
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    return sorted(p.rsplit("/", 1)[-1] for p in fs.ls("dmotif", refresh=True))


def test_image_round_trip_through_s3(s3: dict[str, Any]) -> None:
    sample = dmotif.synthetic.tmd(size=128, frames=2, chunks=64)
    dmotif.save_image(sample.image, "s3://dmotif/in.zarr", storage_options=s3)
    img = dmotif.open_image("s3://dmotif/in.zarr", storage_options=s3)
    assert img.attrs["pixel_size"] == 0.015 and img.data.chunksize == (1, 64, 64)
    np.testing.assert_array_equal(img.values, sample.image.values)


def test_result_commit_and_no_overwrite_on_s3(s3: dict[str, Any]) -> None:
    ds = xr.Dataset({"label": ("atom", np.arange(7, dtype=np.int32))})
    url = "s3://dmotif/r.zarr"
    dmotif.write_result(ds, url, config={"seed": 1}, storage_options=s3)
    res = dmotif.open_result(url, storage_options=s3)
    assert res.config == {"seed": 1}
    np.testing.assert_array_equal(res.atoms["label"].values, np.arange(7))
    assert ".r.zarr.partial" not in _ls(s3)
    with pytest.raises(StoreExistsError):
        dmotif.write_result(ds, url, storage_options=s3)
    dmotif.write_result(ds.isel(atom=slice(3)), url, overwrite=True, storage_options=s3)
    assert dmotif.open_result(url, storage_options=s3).atoms.sizes["atom"] == 3


def test_interrupted_write_on_s3_is_refused_then_resumed(s3: dict[str, Any]) -> None:
    url = "s3://dmotif/p.zarr"
    writer = StoreWriter(url, storage_options=s3)
    writer.write_stage("detect", xr.Dataset({"y": ("atom", np.ones(4))}))
    with pytest.raises(StoreIncompleteError, match="interrupted"):
        dmotif.open_result(url, storage_options=s3)
    again = StoreWriter(url, resume=True, storage_options=s3)
    assert again.stages == ["detect"]
    again.commit()
    assert dmotif.open_result(url, storage_options=s3).atoms.sizes["atom"] == 4


@pytest.mark.slow
def test_dmotif_run_from_and_to_s3_with_credentials_from_the_environment(
    s3: dict[str, Any],
) -> None:
    """The CLI reads the stack from the bucket and commits the result there; the endpoint and
    credentials come from the usual AWS_* variables, as on a cluster."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    sample = dmotif.synthetic.tmd(size=384, seed=1)
    dmotif.save_image(sample.image, "s3://dmotif/scan.zarr", storage_options=s3)
    env = {**os.environ, "AWS_ENDPOINT_URL": s3["client_kwargs"]["endpoint_url"],
           "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "dmotif.cli", "run", "s3://dmotif/scan.zarr", "-o",
           "s3://dmotif/scan.dmotif.zarr", "--workers", "1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    res = dmotif.open_result("s3://dmotif/scan.dmotif.zarr", storage_options=s3)
    assert res.config["input"]["path"] == "s3://dmotif/scan.zarr"
    assert res.atoms.sizes["atom"] > 500 and "label" in res.atoms
    assert ".scan.dmotif.zarr.partial" not in _ls(s3)
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "exists" in again.stderr


def test_lock_on_s3_is_a_conditional_put_that_a_second_run_cannot_take(
    s3: dict[str, Any],
) -> None:
    import json

    from dmotif import StoreLockedError
    from dmotif.io._lock import lock_path_of, output_lock

    url = "s3://dmotif/locked.zarr"
    with output_lock(url, config_hash="a", storage_options=s3) as record:
        assert ".locked.zarr.lock" in _ls(s3)
        with pytest.raises(StoreLockedError, match=rf"pid {record['pid']} on "), output_lock(
            url, storage_options=s3
        ):
            pass
        # the refused run did not replace the holder's lock object
        import s3fs

        fs = s3fs.S3FileSystem(skip_instance_cache=True, **s3)
        assert json.loads(fs.cat_file(lock_path_of(url).removeprefix("s3://"))) == record
    assert ".locked.zarr.lock" not in _ls(s3)
