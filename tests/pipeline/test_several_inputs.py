"""A run over several files: the motifs of the stack they make, resumable file by file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from typer.testing import CliRunner

import dmotif
from dmotif import DataError, ParameterError, StoreError
from dmotif.cli import app
from dmotif.io.store import StoreWriter
from dmotif.pipeline import runner


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Three 384² TMD frames with defects and noise, different in each frame."""
    return dmotif.synthetic.tmd(size=384, frames=3, seed=7).image.values


@pytest.fixture(scope="module")
def folder(frames: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scans")
    for i, frame in enumerate(frames):
        np.save(path / f"scan{i}.npy", frame)
    return path


@pytest.fixture(scope="module")
def stack_run(frames: np.ndarray, threads: object,
              tmp_path_factory: pytest.TempPathFactory) -> dmotif.Result:
    """The same frames run as one stack (one file)."""
    root = tmp_path_factory.mktemp("stack")
    np.save(root / "stack.npy", frames)
    return dmotif.run(root / "stack.npy", root / "stack.dmotif.zarr", client=threads)


@pytest.fixture(scope="module")
def files_run(folder: Path, threads: object,
              tmp_path_factory: pytest.TempPathFactory) -> dmotif.Result:
    out = tmp_path_factory.mktemp("out") / "files.dmotif.zarr"
    return dmotif.run(folder, out, client=threads)


def _table(res: dmotif.Result) -> np.ndarray:
    a = res.atoms
    return np.column_stack([a["frame"].values, a["y"].values, a["x"].values,
                            a["label"].values])


def test_files_give_the_atoms_and_motifs_of_their_stack(files_run, stack_run) -> None:
    # Same atoms, same labels: the motifs are learned across the files, so a motif has one
    # label in every image.
    np.testing.assert_array_equal(_table(files_run), _table(stack_run))
    labels = files_run.atoms["label"].values
    frame = files_run.atoms["frame"].values
    motifs = set(np.unique(labels[labels >= 0]))
    assert len(motifs) >= 2
    assert all(set(np.unique(labels[(frame == f) & (labels >= 0)])) == motifs for f in range(3))


def test_each_frame_records_its_file_checksum_and_calibration(files_run, folder: Path) -> None:
    import hashlib

    record = files_run.config["input"]
    assert [Path(f["path"]).name for f in record] == ["scan0.npy", "scan1.npy", "scan2.npy"]
    assert [f["frames"] for f in record] == [[0], [1], [2]]
    for f in record:
        assert f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest()
        assert f["shape"] == [384, 384] and f["pixel_size"] is None and f["units"] == "px"
    # Nothing of the file-by-file bookkeeping is left in the finished store.
    assert not any(k.startswith("part ") for k in files_run.attrs)
    assert "dmotif_parts" not in os.listdir(files_run.path)


def test_a_bad_file_stops_the_run_and_the_rerun_detects_only_what_is_left(
    frames: np.ndarray, stack_run: dmotif.Result, threads: object, tmp_path: Path
) -> None:
    for i, frame in enumerate(frames):
        np.save(tmp_path / f"scan{i}.npy", frame)
    bad = frames[2].copy()
    bad[5, 5] = np.nan
    np.save(tmp_path / "scan2.npy", bad)
    out = tmp_path / "out.zarr"
    messages: list[tuple[str, str]] = []
    with pytest.raises(DataError, match=r"input 3/3 .*scan2\.npy'.*NaN or inf pixels"):
        dmotif.run(tmp_path / "scan*.npy", out, client=threads,
                   progress=lambda s, m: messages.append((s, m)))
    assert [m.split(":")[0] for _, m in messages if m.startswith("file ")] == ["file 1/3",
                                                                             "file 2/3"]
    with pytest.raises(StoreError):
        dmotif.open_result(out)
    kept = StoreWriter(out, resume=True).attrs()
    assert sorted(k for k in kept if k.startswith("part ")) == ["part 000000", "part 000001"]

    np.save(tmp_path / "scan2.npy", frames[2])  # the file fixed
    messages.clear()
    res = dmotif.run(tmp_path / "scan*.npy", out, client=threads,
                     progress=lambda s, m: messages.append((s, m)))
    assert [m.split(":")[0] for s, m in messages if m.startswith("file ")] == ["file 3/3"]
    np.testing.assert_array_equal(_table(res), _table(stack_run))


def test_files_detected_in_batches_give_the_atoms_of_their_stack(
    folder: Path, stack_run: dmotif.Result, threads: object, tmp_path: Path, monkeypatch
) -> None:
    # Batches of two files, then one: each a computation and a part of its own.
    monkeypatch.setattr(runner, "DETECT_BATCH_PIXELS", 2 * 384 * 384)
    out = tmp_path / "out.zarr"
    messages: list[str] = []
    res = dmotif.run(folder, out, client=threads, progress=lambda s, m: messages.append(m))
    assert [m.split(":")[0] for m in messages if m.startswith("file ")] == [
        "file 1/3", "file 2/3", "file 3/3"]
    np.testing.assert_array_equal(_table(res), _table(stack_run))


def test_a_changed_file_is_detected_again_on_resume(
    frames: np.ndarray, threads: object, tmp_path: Path
) -> None:
    np.save(tmp_path / "a.npy", frames[0])
    np.save(tmp_path / "b.npy", np.full((384, 384), np.nan, np.float32))
    out = tmp_path / "out.zarr"
    with pytest.raises(DataError):
        dmotif.run([tmp_path / "a.npy", tmp_path / "b.npy"], out, client=threads)
    np.save(tmp_path / "a.npy", frames[1])  # a finished file changed since
    np.save(tmp_path / "b.npy", frames[2])
    messages: list[str] = []
    dmotif.run([tmp_path / "a.npy", tmp_path / "b.npy"], out, client=threads,
               progress=lambda s, m: messages.append(m))
    assert [m.split(":")[0] for m in messages if m.startswith("file ")] == ["file 1/2",
                                                                            "file 2/2"]


def test_cli_runs_images_of_different_sizes(frames: np.ndarray, tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", frames[0])
    np.save(tmp_path / "small.npy", frames[1][:300, :256])
    out = tmp_path / "out.zarr"
    result = CliRunner().invoke(app, ["run", str(tmp_path / "a.npy"), str(tmp_path / "small.npy"),
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    # A small input runs on threads unless --processes is given.
    assert "threads of this process" in result.output
    atoms = dmotif.open_result(out).atoms
    small = atoms["frame"].values == 1
    # The padding's mirrored columns are not atoms of the small image.
    assert atoms["y"].values[small].max() < 299.5 and atoms["x"].values[small].max() < 255.5
    # Away from the mirrored edges, the columns detected in the image alone.
    alone = dmotif.detect_atoms(frames[1][:300, :256])
    margin = 2 * alone.attrs["spacing_px"]
    ours = np.column_stack([atoms["y"].values[small], atoms["x"].values[small]])
    theirs = np.column_stack([alone["y"].values, alone["x"].values])
    inner = theirs[(theirs[:, 0] < 300 - margin) & (theirs[:, 1] < 256 - margin)]
    distance, _ = cKDTree(ours).query(inner)
    assert distance.max() < 0.02  # measured 0.007 px

    export = CliRunner().invoke(app, ["export", str(out), "-o", str(tmp_path / "atoms.csv")])
    assert export.exit_code == 0, export.output
    table = pd.read_csv(tmp_path / "atoms.csv")
    by_frame = table.groupby("frame")["source"].unique()
    assert [Path(s[0]).name for s in by_frame] == ["a.npy", "small.npy"]


def test_cli_refuses_files_of_different_pixel_sizes_before_work(frames: np.ndarray,
                                                                tmp_path: Path) -> None:
    import tifffile

    for name, size in (("a.tif", 0.02), ("b.tif", 0.03)):
        tifffile.imwrite(tmp_path / name, frames[0], imagej=True,
                         resolution=(1 / size, 1 / size), metadata={"unit": "nm"})
    out = tmp_path / "out.zarr"
    result = CliRunner().invoke(app, ["run", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"),
                                      "-o", str(out)])
    assert result.exit_code == 2
    assert "different pixel sizes" in result.output and len(result.output.splitlines()) == 1
    assert not out.exists() and not (tmp_path / ".out.zarr.partial").exists()


def test_an_output_inside_a_folder_of_inputs_is_refused(folder: Path) -> None:
    with pytest.raises(ParameterError, match="sits inside the input"):
        dmotif.run(folder, folder / "out.zarr")
    assert not (folder / "out.zarr").exists()
