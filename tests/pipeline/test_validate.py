"""Everything a run is given is checked before any work (API): the configuration key by key,
the output, the scheduler; reader errors are DmotifErrors; client= is honoured exactly."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import dmotif
from dmotif import DataError, ImageFileError, ParameterError, StoreError
from dmotif.pipeline import default_config, load_config
from dmotif.pipeline.validate import MIN_TILE, validate_config


def test_the_defaults_pass() -> None:
    assert validate_config(default_config()) == default_config()


@pytest.mark.parametrize(
    ("update", "named"),
    [
        ({"layout": {"epochs": "lots"}}, "layout.epochs = 'lots'"),
        ({"layout": {"epochs": "12"}}, "layout.epochs = '12'"),  # not [1, 2]
        ({"layout": {"epochs": [10, 0]}}, r"layout.epochs = \[10, 0\].*>= 1"),
        ({"layout": {"stages": "x"}}, "layout.stages = 'x'"),
        ({"layout": {"learning_rate": 0}}, "layout.learning_rate = 0.*> 0"),
        ({"layout": {"landmarks": 10}}, r"layout.landmarks = 10 .*> layout.n_neighbors \(10\)"),
        ({"layout": {"placement_epochs": -1}}, "layout.placement_epochs = -1 .*>= 0"),
        ({"features": {"radius": "big"}}, "features.radius = 'big'.*a number or None"),
        ({"features": {"radius": -3}}, "features.radius = -3 .*> 0"),
        ({"features": {"rotinv": "yes"}}, "features.rotinv = 'yes'.*true or false"),
        ({"seed": "abc"}, "seed = 'abc'"),
        ({"seed": -1}, "seed = -1"),
        ({"chunks": 8}, f"chunks = 8 .*>= {MIN_TILE}"),
        ({"chunks": [1, 1]}, r"chunks = \[1, 1\]"),
        ({"chunks": "big"}, "chunks = 'big'"),
        ({"detect": {"chunks": 4}}, "detect.chunks = 4"),
        ({"detect": {"refine": "best"}}, "detect.refine = 'best'.*'com' or 'gaussian'"),
        ({"detect": {"min_distance": True}}, "detect.min_distance = True"),
        ({"cluster": {"min_size": -1}}, "cluster.min_size = -1 .*>= 2"),
        ({"cluster": {"method": "kmeans"}}, "cluster.method = 'kmeans'.*'hdbscan'"),
        ({"cluster": {"max_overlap": 2}}, "cluster.max_overlap = 2 .*<= 0.5"),
        ({"pixel_size": 0}, "pixel_size = 0 "),
        ({"virtual": {"detector": "dark"}}, "virtual.detector = 'dark'"),
        ({"diffraction": {"n_rings": 0}}, "diffraction.n_rings = 0"),
    ],
)
def test_each_bad_value_is_named_with_what_is_allowed(update: dict, named: str) -> None:
    with pytest.raises(ParameterError, match=named):
        validate_config(load_config(update))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"config": {"layout": {"epochs": "lots"}}}, "layout.epochs"),
        ({"config": {"seed": "abc"}}, "seed = 'abc'"),
        ({"workers": -2}, "workers = -2"),
        ({"workers": 0}, "workers = 0"),
        ({"scheduler": "notanaddress"}, "not of the form tcp://host:port"),
        ({"scheduler": "tcp://127.0.0.1:1"}, "no dask scheduler answers"),
    ],
)
def test_run_refuses_at_once_and_writes_nothing(
    kwargs: dict, match: str, bad: Path, tmp_path: Path
) -> None:
    t0 = time.perf_counter()
    with pytest.raises(ParameterError, match=match):
        dmotif.run(bad / "t.zarr", tmp_path / "out.zarr", **kwargs)
    assert time.perf_counter() - t0 < 10  # no cluster was started, no 30 s connect wait
    assert list(tmp_path.iterdir()) == []


def test_output_never_is_inside_or_contains_the_input(bad: Path, tmp_path: Path) -> None:
    from dmotif.io.images import source_identity

    before = source_identity(bad / "t.zarr")
    for out in (bad / "t.zarr", bad / "t.zarr" / "r.zarr", bad):
        with pytest.raises(ParameterError, match="would destroy its input"):
            dmotif.run(bad / "t.zarr", out, overwrite=True)
    assert source_identity(bad / "t.zarr") == before
    with pytest.raises(ParameterError, match="regular file"):
        dmotif.run(bad / "t.zarr", bad / "plain.txt", overwrite=True)
    assert (bad / "plain.txt").read_text() == "a user's notes\n"


@pytest.mark.parametrize(
    ("name", "error", "match"),
    [
        ("empty.npy", ImageFileError, "is empty"),
        ("trunc.npy", ImageFileError, "truncated"),
        ("obj.npy", ImageFileError, "Python objects"),
        ("dir.npy", ImageFileError, "is a folder"),
        ("bad.zarr", StoreError, "could not read a chunk"),
    ],
)
def test_unreadable_files_are_dmotif_errors(name: str, error: type, match: str, bad: Path) -> None:
    with pytest.raises(error, match=match):
        dmotif.open_image(bad / name)


def test_s3_without_credentials_is_a_store_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(StoreError, match="cannot open zarr store 's3://"):
        dmotif.open_image("s3://dmotif-no-such-bucket/x.zarr")


def test_cluster_refuses_a_negative_min_size() -> None:
    x = np.random.default_rng(0).normal(size=(200, 2))
    with pytest.raises(ParameterError, match=r"min_size must be an integer >= 2.*-1"):
        dmotif.cluster(x, min_size=-1)


def test_open_result_refuses_an_image_stack(bad: Path) -> None:
    with pytest.raises(StoreError, match="image stack, not a dmotif result"):
        dmotif.open_result(bad / "t.zarr")


def test_non_utf8_and_non_table_config_files(tmp_path: Path) -> None:
    latin = tmp_path / "c.toml"
    latin.write_bytes('seed = 1  # réglé\n'.encode("latin-1"))
    with pytest.raises(ParameterError, match="not UTF-8"):
        load_config(latin)
    listed = tmp_path / "c.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ParameterError, match="table of options"):
        load_config(listed)


def test_a_missing_chunk_is_still_reported_as_nan_pixels(bad: Path, tmp_path: Path) -> None:
    """A deleted chunk reads as the fill value (NaN): a data error, not a crash."""
    import shutil

    shutil.copytree(bad / "t.zarr", tmp_path / "m.zarr")
    (tmp_path / "m.zarr" / "image" / "c" / "0" / "0" / "1").unlink()
    with pytest.raises(DataError, match="NaN"):
        dmotif.open_image(tmp_path / "m.zarr")


@pytest.mark.slow
def test_failed_scheduler_then_client_uses_that_client(
    bad: Path, tmp_path: Path, client: object
) -> None:
    """A default client left behind (the old run(scheduler=...) left a failed one) must not
    take a later run's work: with client= the run uses the client given. The default here
    has no workers, so work sent to it would wait forever."""
    import distributed

    with pytest.raises(ParameterError):
        dmotif.run(bad / "t.zarr", tmp_path / "a.zarr", scheduler="notanaddress")
    with (distributed.LocalCluster(n_workers=0, dashboard_address="127.0.0.1:0") as idle,
          distributed.Client(idle) as stale):
        assert distributed.default_client() is stale and stale is not client
        seen: list[str] = []
        res = dmotif.run(bad / "t.zarr", tmp_path / "b.zarr", client=client,
                         progress=lambda stage, msg: seen.append(msg))
        assert stale.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)) == 0
    assert res.atoms.sizes["atom"] > 20
    # the detection tiles ran on the client given
    assert any(m.startswith("tasks ") and not m.startswith("tasks 0/") for m in seen)


def test_a_port_that_is_no_dask_scheduler_fails_in_seconds(bad: Path, tmp_path: Path) -> None:
    """Something listens but never speaks dask: one ParameterError after the connect timeout,
    not a 30 s wait and a traceback."""
    import socket

    with socket.socket() as mute:
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        address = f"tcp://127.0.0.1:{mute.getsockname()[1]}"
        t0 = time.perf_counter()
        with pytest.raises(ParameterError, match="answers but is not a dask scheduler"):
            dmotif.run(bad / "t.zarr", tmp_path / "out.zarr", scheduler=address)
    assert time.perf_counter() - t0 < 15
    assert list(tmp_path.iterdir()) == []
