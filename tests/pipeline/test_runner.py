"""The whole pipeline: accuracy against synthetic truth, resumability, determinism, config."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree
from sklearn.metrics import adjusted_rand_score
from typer.testing import CliRunner

import dmotif
from dmotif import DataError, ParameterError, StoreError, StoreExistsError, StoreIncompleteError
from dmotif.cli import app
from dmotif.io.store import StoreWriter
from dmotif.pipeline import default_config, dump_config_toml, load_config, runner


@pytest.fixture(scope="module")
def tmd_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("in") / "tmd.zarr"
    dmotif.synthetic.save(dmotif.synthetic.tmd(size=768, frames=1, seed=3, chunks=256), path)
    return path


@pytest.fixture(scope="module")
def reference_run(tmd_store: Path, client: object, tmp_path_factory: pytest.TempPathFactory):
    """One uninterrupted run that the other tests compare with, and its progress messages."""
    out = tmp_path_factory.mktemp("out") / "ref.zarr"
    messages: list[tuple[str, str]] = []
    res = dmotif.run(tmd_store, out, client=client,
                     progress=lambda stage, msg: messages.append((stage, msg)))
    return res, messages


@pytest.fixture(scope="module")
def reference(reference_run) -> dmotif.Result:
    return reference_run[0]


def test_progress_counts_each_stages_tasks_on_the_cluster(reference_run) -> None:
    _, messages = reference_run
    tasks: dict[str, list[tuple[int, int]]] = {}
    for stage, msg in messages:
        if msg.startswith("tasks "):
            done, total = map(int, msg.removeprefix("tasks ").split("/"))
            tasks.setdefault(stage, []).append((done, total))
    # Detection and features run per tile, the hierarchy per frame, on the workers; the
    # layout's fit and the clustering run in the calling process (too few atoms here to
    # place any among landmarks).
    assert {"detect", "features", "hierarchy"} <= set(tasks)
    for stage, counts in tasks.items():
        assert all(0 <= d <= t for d, t in counts), stage
        assert [d for d, _ in counts] == sorted(d for d, _ in counts), stage
        # the last report, at the end of the stage: everything it submitted is done
        assert counts[-1][0] == counts[-1][1] > 0, stage
    # The measure stage is disabled by default: reported as skipped, never started or timed.
    order = [stage for stage, msg in messages if msg == "start"]
    assert order == [s for s in dmotif.pipeline.STAGES if s != "measure"]
    assert [msg for stage, msg in messages if stage == "measure"] == [
        "skipped (measure.enabled = false)"]
    # a stage reports its tasks between its start and its end
    for stage in tasks:
        lines = [i for i, (s, _) in enumerate(messages) if s == stage]
        assert messages[lines[0]][1] == "start" and messages[lines[-1]][1].startswith("done")


def truth_ari(sample_path: Path, res: dmotif.Result) -> tuple[float, float]:
    """ARI of the motif labels against the true labels of the matched atoms, and the
    unassigned fraction."""
    truth = dmotif.synthetic.load(sample_path).atoms
    atoms = res.atoms.compute()
    d, j = cKDTree(np.c_[truth.y, truth.x]).query(np.c_[atoms.y, atoms.x])
    ok = d < 2.0
    labels = atoms["label"].values[ok]
    return adjusted_rand_score(truth["label"].values[j[ok]], labels), float(np.mean(labels < 0))


def test_run_finds_the_tmd_motifs(reference: dmotif.Result, tmd_store: Path) -> None:
    ds = reference.dataset
    for name in ("frame", "y", "x", "intensity", "zernike", "pca", "layout", "label",
                 "mean_patch", "count"):
        assert name in ds, name
    ari, unassigned = truth_ari(tmd_store, reference)
    assert ari >= 0.94
    assert unassigned <= 0.002
    # metal and chalcogen pair have motifs of their own; the single chalcogens join the pairs:
    # their mean features are 3.2 noise sigmas from the pairs' (5.5 % of the atoms would be
    # confused, more than the 1 % a motif of its own needs, see dmotif.cluster). The 17
    # antisites, 1.2x a metal's intensity at peak SNR 5, look like metals to the features, but
    # sit on the chalcogen site: a motif of their own, split from the metals'.
    truth = dmotif.synthetic.load(tmd_store).atoms
    atoms = reference.atoms.compute()
    _, j = cKDTree(np.c_[truth.y, truth.x]).query(np.c_[atoms.y, atoms.x])
    true, found = truth["label"].values[j], atoms["label"].values
    majority = [np.bincount(found[true == c][found[true == c] >= 0]).argmax() for c in range(3)]
    assert majority[0] != majority[1] == majority[2]
    # Measured: 1.0, 1.0 and 0.983 (59 of the 60 single chalcogens; 1 unassigned).
    for c in (0, 1, 2):
        assert np.mean(found[true == c] == majority[c]) >= 0.98
    assert reference.attrs["cluster_attrs"]["n_motifs"] == 3
    antisite = np.bincount(found[true == 3][found[true == 3] >= 0]).argmax()
    assert reference.attrs["cluster_attrs"]["split_from"][antisite] == majority[0]
    assert np.mean(found[true == 3] == antisite) >= 0.8
    # In units of the motifs' trimmed (core) spread, which the decision uses: 10.9 (10.0 under
    # the classical pooled covariance, which the tails of each motif widen).
    # (the pairs' nearest motif is the metals'; the metals' is the antisites', 3.1 apart: the
    # site, not the features, tells them apart)
    assert reference.attrs["cluster_attrs"]["separation"][1] == pytest.approx(10.9, abs=0.5)
    # atoms whose patch the border cuts join their neighbours' motifs, never one of their own
    edge = atoms["edge"].values
    assert edge.any()
    assert all(np.mean(edge[found == m]) < 0.5 for m in np.unique(found[found >= 0]))
    graph = reference.hierarchy
    levels = {d["level"] for _, d in graph.nodes(data=True)}
    assert {1, 2} <= levels
    assert reference.attrs["dmotif_complete"] is True
    assert set(reference.attrs["dmotif_timings"]) == set(dmotif.pipeline.STAGES) - {"measure"}


def test_mean_patch_is_the_mean_of_each_motifs_patches(
    reference: dmotif.Result, tmd_store: Path
) -> None:
    ds = reference.dataset
    assert reference.attrs["cluster_attrs"]["mean_patch_frames"] == [0]
    radius = reference.attrs["features_attrs"]["radius"]
    patches = dmotif.extract_patches(dmotif.open_image(tmd_store), reference.atoms.compute(),
                                     radius=radius).values
    labels = ds["label"].values
    for m in ds["motif"].values:
        np.testing.assert_allclose(ds["mean_patch"].sel(motif=m), patches[labels == m].mean(0),
                                   rtol=1e-5)


def test_mean_patches_come_from_frames_with_enough_of_every_motif(monkeypatch) -> None:
    frame = np.repeat(np.arange(6), 100)
    # motif 1 has 10 atoms per frame: 25 of them take three frames
    labels = np.tile(np.r_[np.zeros(90, int), np.ones(10, int)], 6)
    labels[:5] = -1
    monkeypatch.setattr(runner, "MEAN_PATCH_ATOMS", 25)
    picks = {}
    for seed in range(4):
        take = runner._patch_frames(frame, labels, seed)
        chosen = np.unique(frame[take])
        assert chosen.size == 3
        np.testing.assert_array_equal(take, np.flatnonzero(np.isin(frame, chosen)))
        np.testing.assert_array_equal(runner._patch_frames(frame, labels, seed), take)
        picks[seed] = tuple(chosen)
    assert len(set(picks.values())) > 1
    monkeypatch.setattr(runner, "MEAN_PATCH_ATOMS", 61)
    assert runner._patch_frames(frame, labels, 0).size == frame.size


def test_a_nan_frame_stops_the_run_in_detection(client: object, tmp_path: Path) -> None:
    # The input is not read at open: detection refuses the frame from the pixels it reads.
    good = dmotif.synthetic.tmd(size=256, frames=1, seed=0).image.values[0]
    stack = np.stack([good, good])
    stack[1, 10, 10] = np.nan
    np.save(tmp_path / "bad.npy", stack)
    with pytest.raises(DataError, match=r"NaN or inf pixels \(frames \[1\]\)"):
        dmotif.run(tmp_path / "bad.npy", tmp_path / "out.zarr", client=client)
    with pytest.raises(StoreError):
        dmotif.open_result(tmp_path / "out.zarr")


def test_4dstem_run_learns_the_motifs_of_its_virtual_adf(client: object, tmp_path: Path) -> None:
    from dmotif.synthetic.stem4d import fourd

    sample = fourd("tmd", size=192, k_size=16, dose=1e4, seed=1)
    dmotif.save_4dstem(sample.data, tmp_path / "scan.zarr")
    res = dmotif.run(tmp_path / "scan.zarr", tmp_path / "out.zarr", client=client,
                     detector="adf")
    truth, atoms = sample.atoms, res.atoms.compute()
    d, j = cKDTree(np.c_[truth.y, truth.x]).query(np.c_[atoms.y, atoms.x])
    assert (d < 2.0).all()
    labels = atoms["label"].values
    # The layout keeps each motif of the nearly noise-free virtual image in one cluster.
    assert adjusted_rand_score(truth["label"].values[j], labels) >= 0.95
    assert res.attrs["cluster_attrs"]["candidates"] <= 4


def test_config_is_complete_and_reloadable(reference: dmotif.Result, tmp_path: Path) -> None:
    cfg = reference.config
    assert cfg["input"]["sha256"] and cfg["dmotif_version"] == dmotif.__version__
    defaults = default_config()
    for section, values in defaults.items():
        assert section in cfg
        if isinstance(values, dict):
            assert set(cfg[section]) == set(values)
    toml = tmp_path / "run.toml"
    toml.write_text(dump_config_toml(cfg))
    again = load_config(toml)
    assert again == {k: v for k, v in cfg.items() if k not in ("input", "dmotif_version")}
    with pytest.raises(ParameterError, match=r"unknown configuration key 'layout\.epoch'"):
        load_config({"layout": {"epoch": 3}})


def test_same_result_for_another_chunking_and_seed_effect(
    reference: dmotif.Result, tmd_store: Path, client: object, tmp_path: Path
) -> None:
    res = dmotif.run(tmd_store, tmp_path / "c.zarr", client=client, config={"chunks": 320})
    np.testing.assert_array_equal(res.dataset["layout"].values, reference.dataset["layout"].values)
    np.testing.assert_array_equal(res.dataset["label"].values, reference.dataset["label"].values)
    other = dmotif.run(tmd_store, tmp_path / "s.zarr", client=client, seed=7)
    assert not np.array_equal(other.dataset["layout"].values, reference.dataset["layout"].values)


def test_interrupted_run_resumes_to_the_same_result(
    reference: dmotif.Result, tmd_store: Path, client: object, tmp_path: Path
) -> None:
    out = tmp_path / "r.zarr"

    class Stop(Exception):
        pass

    def stop_after_layout(stage: str, message: str) -> None:
        if stage == "layout" and message.startswith("done"):
            raise Stop

    with pytest.raises(Stop):
        dmotif.run(tmd_store, out, client=client, progress=stop_after_layout)
    with pytest.raises(StoreIncompleteError):
        dmotif.open_result(out)
    assert StoreWriter(out, resume=True).stages == ["detect", "features", "pca", "layout"]
    seen: list[str] = []
    res = dmotif.run(tmd_store, out, client=client,
                     progress=lambda stage, msg: seen.append(f"{stage}:{msg}"))
    assert "detect:start" not in seen and "cluster:start" in seen
    np.testing.assert_array_equal(res.dataset["label"].values, reference.dataset["label"].values)
    with pytest.raises(StoreExistsError):
        dmotif.run(tmd_store, out, client=client)


def test_resume_with_another_config_is_refused(tmd_store: Path, client: object,
                                               tmp_path: Path) -> None:
    out = tmp_path / "r.zarr"

    def stop(stage: str, message: str) -> None:
        if stage == "detect" and message.startswith("done"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        dmotif.run(tmd_store, out, client=client, progress=stop)
    with pytest.raises(StoreError, match="another configuration"):
        dmotif.run(tmd_store, out, client=client, seed=5)


@pytest.mark.slow
def test_sigkill_mid_stage_then_rerun(reference: dmotif.Result, tmd_store: Path,
                                      tmp_path: Path) -> None:
    """A real ``dmotif run`` process killed with SIGKILL during a stage; the rerun completes
    with identical labels and the partial store is never accepted."""
    out = tmp_path / "k.zarr"
    cmd = [sys.executable, "-m", "dmotif.cli", "run", str(tmd_store), "-o", str(out),
           "--workers", "1"]
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {proc.stderr.read()}")
            if "features" in StoreWriter(out, resume=True).stages:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run never reached the features stage")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.stderr.close()
    with pytest.raises(StoreIncompleteError):
        dmotif.open_result(out)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming after detect, features" in done.stdout
    res = dmotif.open_result(out)
    np.testing.assert_array_equal(res.dataset["label"].values, reference.dataset["label"].values)


def test_cli_refuses_an_existing_output(reference: dmotif.Result, tmd_store: Path) -> None:
    out = CliRunner().invoke(app, ["run", str(tmd_store), "-o", reference.path])
    assert out.exit_code == 2
    assert "exists" in out.output and "--overwrite" in out.output


def test_report_renders_in_a_real_browser(reference: dmotif.Result, tmp_path: Path) -> None:
    import re
    import shutil

    html = dmotif.report(reference, tmp_path / "report.html")
    page = html.read_text()
    n_motifs = len(np.unique(reference.dataset["label"].values[
        reference.dataset["label"].values >= 0]))
    assert re.search(rf"<th>motifs</th><td>{n_motifs}</td>", page)
    for fig in ("atoms", "layout", "motifs", "hierarchy"):
        assert f'<figure id="{fig}">' in page
        assert (tmp_path / "report_files" / f"{fig}.png").stat().st_size > 5000
    # one frame: no bar chart of one bar per motif
    assert '<figure id="fractions">' not in page
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless check needs Debian's chromium (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         "--window-size=1200,1800", f"--screenshot={shot}", html.as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    # A blank page is one flat colour; the report has text, images and plots.
    assert pixels.std() > 20
    assert np.mean(pixels < 128) > 0.02


def test_report_counts_one_motif_per_column_type_when_they_are_resolvable(
    client: object, tmp_path: Path
) -> None:
    # At peak SNR 5 (the default) an antisite is 1.2x a metal's intensity, about 3.8 noise
    # sigmas of a matched filter apart: a run may or may not give it a motif of its own. With
    # ten times the dose and a third of the read noise the four column types are resolvable,
    # and a run must find exactly four motifs, one per type, and the report must say so.
    sample = tmp_path / "tmd.zarr"
    dmotif.synthetic.save(
        dmotif.synthetic.tmd(size=768, seed=3, dose=1000.0, read_noise=0.05, chunks=256), sample
    )
    res = dmotif.run(sample, tmp_path / "out.zarr", client=client)
    truth = dmotif.synthetic.load(sample).atoms
    atoms = res.atoms.compute()
    _, j = cKDTree(np.c_[truth.y, truth.x]).query(np.c_[atoms.y, atoms.x])
    true, found = truth["label"].values[j], atoms["label"].values
    assert found.max() + 1 == 4
    majority = [np.bincount(found[true == c][found[true == c] >= 0]).argmax() for c in range(4)]
    assert sorted(majority) == [0, 1, 2, 3]
    for c in range(4):
        assert np.mean(found[true == c] == majority[c]) >= 0.95
    page = dmotif.report(res, tmp_path / "report.html").read_text()
    assert "<th>motifs</th><td>4</td>" in page


@pytest.mark.slow
def test_run_takes_features_from_diffraction(client: object, tmp_path: Path) -> None:
    from dmotif.synthetic.stem4d import fourd

    sample = fourd("tmd", size=96, k_size=24, pixel_size=0.02, seed=3, chunks=48)
    path = dmotif.save_4dstem(sample.data, tmp_path / "in.zarr")
    cfg = {"virtual": {"detector": "adf", "features": "diffraction"},
           "diffraction": {"kind": "zernike", "n_max": 8}, "pca": {"n_components": 2}}
    res = dmotif.run(path, tmp_path / "out.zarr", config=cfg, client=client)
    assert res.config["virtual"]["features"] == "diffraction"
    assert res.config["diffraction"]["kind"] == "zernike"
    atoms = res.atoms.compute()
    truth = sample.atoms
    d, _ = cKDTree(np.c_[truth.y, truth.x]).query(np.c_[atoms.y, atoms.x])
    assert atoms.sizes["atom"] >= 0.9 * truth.sizes["atom"] and d.max() < 1.0
    # The stored features are the Zernike moments of each detected atom's pattern.
    ref = dmotif.diffraction_features(dmotif.open_4dstem(path), atoms, kind="zernike", n_max=8)
    stored = res.dataset["zernike"]
    assert stored.dims == ("atom", "feature")
    np.testing.assert_array_equal(stored.values, ref.values)
    assert res.attrs["features_attrs"]["kind"] == "zernike"


@pytest.mark.parametrize(
    ("virtual", "match"),
    [({"features": "diffraction"}, "needs 4D-STEM input"),
     ({"detector": "adf", "features": "pattern"}, "'image' or 'diffraction'")],
)
def test_diffraction_features_need_4dstem(virtual: dict, match: str, tmp_path: Path) -> None:
    image = dmotif.synthetic.tmd(size=64, seed=0).image
    with pytest.raises(ParameterError, match=match):
        dmotif.run(image, tmp_path / "out.zarr", config={"virtual": virtual})
