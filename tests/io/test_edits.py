"""Edited labellings: saved beside the learned one, switched atomically, safe against SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import xarray as xr
import zarr

import dmotif
from dmotif.errors import DataError, ParameterError, StoreError
from dmotif.io.edits import (
    activate_labels,
    active_labels,
    label_names,
    rebuild_hierarchy,
    save_labels,
)

from ..explore_helpers import make_result

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path):
    path, sample = make_result(tmp_path, size=256)
    return path, sample.atoms["label"].values.astype(np.int32)


def test_learned_labels_are_active_until_an_edit(store):
    path, truth = store
    labels = active_labels(path)
    assert labels.name == "label" and labels.dtype == np.int32
    np.testing.assert_array_equal(labels.values, truth)
    assert labels.attrs["motif_names"][0] == "metal"


def test_save_makes_a_new_active_labelling_and_keeps_the_learned_one(store):
    path, truth = store
    edited = np.where(truth == 3, 0, truth).astype(np.int32)
    name = save_labels(path, edited, motif_names={0: "metal+antisite", 1: "pair", 2: "single"},
                       note="merge 0, 3")
    assert name == "label_edit_1"
    res = dmotif.open_result(path)
    assert res.attrs["active_labels"] == name
    np.testing.assert_array_equal(res.dataset["label"].values, truth)
    labels = active_labels(res)
    np.testing.assert_array_equal(labels.values, edited)
    assert labels.attrs["motif_names"] == {0: "metal+antisite", 1: "pair", 2: "single"}
    (record,) = res.attrs["label_edits"]
    assert record["name"] == name and record["parent"] == "label" and record["note"] == "merge 0, 3"
    second = save_labels(path, truth, note="back")
    assert second == "label_edit_2"
    res = dmotif.open_result(path)
    assert [e["parent"] for e in res.attrs["label_edits"]] == ["label", "label_edit_1"]
    np.testing.assert_array_equal(active_labels(res).values, truth)


def test_activate_switches_back_and_forth(store):
    path, truth = store
    edited = np.where(truth == 2, -1, truth).astype(np.int32)
    name = save_labels(path, edited)
    activate_labels(path, "label")
    np.testing.assert_array_equal(active_labels(path).values, truth)
    activate_labels(path, name)
    np.testing.assert_array_equal(active_labels(path).values, edited)
    with pytest.raises(ParameterError, match="label_edit_9"):
        activate_labels(path, "label_edit_9")


def test_the_hierarchy_is_rebuilt_from_the_edited_labels(store):
    path, truth = store
    save_labels(path, truth)
    res = dmotif.open_result(path)
    (record,) = res.attrs["label_edits"]
    assert record["hierarchy_rebuilt"], record.get("hierarchy_note")
    assert "hierarchy_note" not in record
    graph = res.hierarchy
    assert graph is not None
    assert nx.utils.graphs_equal(graph, rebuild_hierarchy(res, truth))


def test_an_edit_is_saved_even_when_the_hierarchy_cannot_be_built(tmp_path):
    # No positions: whatever the hierarchy stage makes of it, the labelling is saved.
    ds = xr.Dataset({"frame": ("atom", np.zeros(5, np.int32)),
                     "label": ("atom", np.arange(5, dtype=np.int32))})
    path = str(tmp_path / "bare.zarr")
    dmotif.write_result(ds, path)
    name = save_labels(path, np.zeros(5, np.int32))
    res = dmotif.open_result(path)
    np.testing.assert_array_equal(active_labels(res).values, 0)
    (record,) = res.attrs["label_edits"]
    assert record["name"] == name and not record["hierarchy_rebuilt"]
    assert record["hierarchy_note"].startswith("hierarchy not rebuilt: ")
    assert res.hierarchy is None


@pytest.mark.parametrize(
    ("labels", "match"),
    [(np.zeros(3, np.int32), "one entry per atom"), (None, "integers"), ("low", ">= -1")],
)
def test_bad_labels_are_refused(store, labels, match):
    path, truth = store
    if labels is None:
        labels = truth.astype(float)
    elif isinstance(labels, str):
        labels = np.full_like(truth, -2)
    with pytest.raises(DataError, match=match):
        save_labels(path, labels)
    assert "active_labels" not in dmotif.open_result(path).attrs


def test_missing_store_and_missing_active_array(tmp_path, store):
    with pytest.raises(StoreError, match="no result store"):
        active_labels(tmp_path / "nothing.zarr")
    path, _ = store
    zarr.open_group(path, mode="r+").attrs["active_labels"] = "label_edit_7"
    with pytest.raises(StoreError, match="activate_labels"):
        active_labels(path)


def test_label_names_from_list_dict_or_nothing():
    labels = np.array([0, 2, -1, 2])
    assert label_names(labels, ["a", "b", "c"]) == {0: "a", 2: "c"}
    assert label_names(labels, {"2": "x"}) == {0: "motif 0", 2: "x"}
    assert label_names(labels) == {0: "motif 0", 2: "motif 2"}


# --------------------------------------------------------------------------- killed mid-save

_SAVER = """
import sys, numpy as np, dmotif.io.edits as e
path, value = sys.argv[1], int(sys.argv[2])
labels = np.full(e.active_labels(path).shape, value, dtype=np.int32)
print("saving", flush=True)
e.save_labels(path, labels, note=f"all {value}")
print("saved", flush=True)
"""


def _saver(path: str, value: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _SAVER, path, str(value)], cwd=ROOT, stdout=subprocess.PIPE,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, text=True,
    )


def _check_intact(path: str, allowed: dict[str, np.ndarray]) -> str:
    res = dmotif.open_result(path)  # opens: the completion mark and metadata are intact
    labels = active_labels(res)
    assert labels.name in allowed
    np.testing.assert_array_equal(labels.values, allowed[labels.name])
    return str(labels.name)


def test_a_save_killed_between_array_and_switch_leaves_the_previous_labelling(store):
    path, truth = store
    first = np.full_like(truth, 1)
    save_labels(path, first)  # an earlier edit, active
    proc = _saver(path, 7, {"DMOTIF_TEST_SAVE_PAUSE": "60"})
    try:
        assert proc.stdout.readline().strip() == "saving"
        chunk = Path(path) / "label_edit_2" / "c" / "0"
        deadline = time.monotonic() + 60
        while not chunk.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert chunk.exists(), "the save never wrote its array"
        time.sleep(0.2)  # inside the pause: the array is complete, the switch not made
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert _check_intact(path, {"label_edit_1": first}) == "label_edit_1"
    np.testing.assert_array_equal(dmotif.open_result(path).dataset["label"].values, truth)
    # The next save removes the orphan and never reuses its name.
    name = save_labels(path, truth)
    assert name == "label_edit_3"
    group = zarr.open_group(path, mode="r")
    assert "label_edit_2" not in set(group.array_keys())
    assert _check_intact(path, {name: truth}) == name


@pytest.mark.slow
def test_saves_killed_at_any_moment_never_corrupt_the_store(tmp_path):
    # A large labelling (4 M atoms, 16 MB) so that the kill lands in the array write as well as
    # before and after it.
    n = 4_000_000
    ds = xr.Dataset({"frame": ("atom", np.zeros(n, np.int32)),
                     "label": ("atom", np.zeros(n, np.int32))})
    path = str(tmp_path / "big.zarr")
    dmotif.write_result(ds, path)
    for delay in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8):
        before = {"label": np.zeros(n, np.int32)}
        res = dmotif.open_result(path)
        if "active_labels" in res.attrs:
            before = {res.attrs["active_labels"]: active_labels(res).values}
        proc = _saver(path, 5, {})
        try:
            assert proc.stdout.readline().strip() == "saving"
            time.sleep(delay)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        new = f"label_edit_{len(res.attrs.get('label_edits', [])) + 1}"
        allowed = {**before, new: np.full(n, 5, np.int32)}
        names = [e["name"] for e in dmotif.open_result(path).attrs.get("label_edits", [])]
        # Any recorded edit is complete, whatever else happened.
        for name in names:
            allowed.setdefault(name, np.full(n, 5, np.int32))
        _check_intact(path, allowed)
