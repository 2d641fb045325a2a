"""The bad-input campaign (issue 19) kept as a table: every kind of bad input a new user tried,
run through the real ``dmotif`` command in a subprocess on real files (made by the ``bad``
fixture of conftest.py).

Each case must end with a non-zero exit, exactly one line of output naming the problem, no
traceback, and no output store, partial store or lock left behind. Add a row for every new
kind of bad input.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from dmotif.io.images import source_identity

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """``argv`` of ``dmotif`` ({d}: the folder of bad files), the text the one line must hold,
    and the output that must not appear."""

    id: str
    argv: str
    expect: str
    output: str = "{d}/out.zarr"
    read_only: bool = False  # run with {d}/ro mounted read-only


RUN = "run {d}/t.zarr -o {d}/out.zarr"
CASES = [
    # configuration: types and ranges, all before any work
    Case("epochs-lots", RUN + " --config {d}/epochs_lots.toml", "layout.epochs = 'lots'"),
    Case("epochs-string-12", RUN + " --config {d}/epochs_12.toml", "layout.epochs = '12'"),
    Case("radius-big", RUN + " --config {d}/radius_big.toml", "features.radius = 'big'"),
    Case("radius-negative", RUN + " --config {d}/radius_neg.toml", "features.radius = -3"),
    Case("stages-x", RUN + " --config {d}/stages_x.toml", "layout.stages = 'x'"),
    Case("seed-abc", RUN + " --config {d}/seed_abc.toml", "seed = 'abc'"),
    Case("chunks-8px", RUN + " --config {d}/chunks_8.toml", "chunks = 8"),
    Case("chunks-1px-pair", RUN + " --config {d}/chunks_1.toml", "chunks = [1, 1]"),
    Case("min-size-negative", RUN + " --config {d}/min_size.toml", "cluster.min_size = -1"),
    Case("unknown-key", RUN + " --config {d}/unknown.toml", "unknown configuration key"),
    Case("config-not-utf8", RUN + " --config {d}/latin1.toml", "not UTF-8"),
    Case("config-missing", RUN + " --config {d}/nothere.toml", "no such configuration"),
    Case("workers-negative", RUN + " --workers -2", "workers = -2"),
    Case("workers-zero", RUN + " --workers 0", "workers = 0"),
    # the scheduler: its form and whether anyone answers, in seconds
    Case("scheduler-not-an-address", RUN + " --scheduler notanaddress", "'notanaddress'"),
    Case("scheduler-nobody-listens", RUN + " --scheduler tcp://127.0.0.1:1",
         "no dask scheduler answers"),
    # the output location
    Case("output-is-input", "run {d}/t.zarr -o {d}/t.zarr --overwrite", "would destroy its input",
         output="{d}/never.zarr"),
    Case("output-inside-input", "run {d}/t.zarr -o {d}/t.zarr/r.zarr --overwrite",
         "would destroy its input", output="{d}/t.zarr/r.zarr"),
    Case("output-is-a-file", "run {d}/t.zarr -o {d}/plain.txt --overwrite", "regular file",
         output="{d}/.plain.txt.partial"),
    Case("output-read-only-folder", "run {d}/t.zarr -o {d}/ro/out.zarr", "read-only",
         output="{d}/ro/out.zarr", read_only=True),
    # readers
    Case("npy-empty", "run {d}/empty.npy -o {d}/out.zarr", "is empty"),
    Case("npy-truncated", "run {d}/trunc.npy -o {d}/out.zarr", "truncated"),
    Case("npy-object-dtype", "run {d}/obj.npy -o {d}/out.zarr", "cannot read"),
    Case("npy-is-a-folder", "run {d}/dir.npy -o {d}/out.zarr", "is a folder"),
    Case("zarr-corrupt-chunk", "run {d}/bad.zarr -o {d}/out.zarr --workers 1",
         "could not read a chunk"),
    Case("s3-without-credentials", "run s3://dmotif-no-such-bucket/x.zarr -o {d}/out.zarr",
         "cannot open zarr store"),
    Case("info-npy-empty", "info {d}/empty.npy", "is empty", output="{d}/never.zarr"),
    # a result expected, an image stack given
    Case("report-on-image-stack", "report {d}/t.zarr -o {d}/t.html", "not a dmotif result",
         output="{d}/t.html"),
]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # No credentials anywhere, and no wait for the cloud metadata service.
    env.update(PYTHONPATH=str(ROOT), COLUMNS="200", NUMBA_NUM_THREADS="1",
               AWS_SHARED_CREDENTIALS_FILE="/nonexistent", AWS_CONFIG_FILE="/nonexistent",
               AWS_EC2_METADATA_DISABLED="true")
    return env


def _read_only_prefix(folder: Path) -> list[str]:
    """A private mount namespace in which ``folder`` is read-only (root has no other way to
    meet a folder it cannot write)."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1)")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("cannot make a mount namespace here")
    mount = (f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && "
             'exec "$@"')
    return ["unshare", "-m", "sh", "-c", mount, "sh"]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_one_line_and_leaves_nothing(case: Case, bad: Path) -> None:
    before = source_identity(bad / "t.zarr")
    argv = case.argv.format(d=bad).split()
    cmd = [sys.executable, "-m", "dmotif.cli", *argv]
    if case.read_only:
        cmd = _read_only_prefix(bad / "ro") + cmd
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    said = done.stderr.strip()
    assert done.returncode == 2, done.stdout + said
    # stdout holds only the progress of stages that finished before the problem showed
    assert said.count("\n") == 0 and said.startswith("dmotif: error: "), said
    assert case.expect in said, said
    assert "Traceback" not in done.stdout
    out = Path(case.output.format(d=bad))
    leftovers = [p for p in (out, out.with_name(f".{out.name}.partial"),
                             out.with_name(f".{out.name}.lock")) if p.exists()]
    assert not leftovers
    assert source_identity(bad / "t.zarr") == before  # the input is never touched
    assert (bad / "plain.txt").read_text() == "a user's notes\n"
