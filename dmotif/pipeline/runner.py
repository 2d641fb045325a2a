"""The whole method in one call: detect → Zernike → PCA → FR layout → labels → hierarchy, and
the column measurements when the configuration enables them.

Each stage is persisted into the result store as it finishes (see
:class:`dmotif.io.store.StoreWriter`); a rerun after an interruption resumes from the last
finished stage and gives the identical result, because every stage is a deterministic function
of its inputs and the run's seed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from .. import __version__
from .._random import seed_int
from ..errors import DataError, DmotifError, NoLatticeError, ParameterError, StoreError
from ..features import diffraction_features, extract_patches, virtual_image
from ..hierarchy._atoms import with_site_names
from ..io._lock import output_lock
from ..io.images import open_image, source_identity
from ..io.inputs import (
    drop_padding,
    expand_inputs,
    identify,
    input_folders,
    is_several,
    open_inputs,
)
from ..io.stem4d import open_4dstem
from ..io.store import Result, StoreWriter, json_ready, open_result, unreadable_chunks_named
from ..motifs import motif_summary
from ..motifs.continuum import continuum_coordinate, feature_structure
from ._progress import stage_tasks
from .config import STAGES, load_config, stage_functions, takes
from .deploy import THREADS_MAX_PIXELS, client_in_background, numba_threadsafe
from .validate import validate_run

__all__ = ["MEAN_PATCH_ATOMS", "run"]

_CONFIG_ATTR = "dmotif_run_config"


def run(
    source: Any,
    output: str | os.PathLike,
    *,
    config: str | os.PathLike | dict[str, Any] | None = None,
    client: Any = None,
    scheduler: str | None = None,
    cluster: str = "local",
    cluster_config: str | os.PathLike | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    seed: int | None = None,
    detector: str | None = None,
    processes: bool | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> Result:
    """Run the whole pipeline on ``source`` and write the result store ``output``.

    Parameters
    ----------
    source : path, URL, array, or several paths
        Anything :func:`dmotif.open_image` opens, or several image files: a list of paths, a
        glob pattern (``"scans/*.dm4"``) or a folder (see :func:`dmotif.io.inputs.open_inputs`
        for images of different sizes and pixel sizes). The motifs are learned across all the
        files' frames, so a motif has the same label in every image; each frame's file,
        checksum and calibration are recorded in ``config["input"]``, and an interrupted run
        resumes without detecting again in the files it finished.
    output : str or os.PathLike
        The result store to create (``*.zarr``; a local path or an fsspec URL).
    config : path, dict or None
        Parameters (see :func:`default_config`); missing ones take their defaults.
    client : distributed.Client, optional
        Run on this client's cluster.
    scheduler : str, optional
        Address of a running dask scheduler (``tcp://host:port``).
    cluster, cluster_config, workers
        Without ``client`` or ``scheduler``, the cluster to start for the run: an embedded
        LocalCluster of processes (default), ``"slurm"`` or ``"kubernetes"`` from the recipes
        in ``deploy/``; see :func:`dmotif.pipeline.deploy.dask_client`. The cluster starts
        while the input is opened and hashed.
    overwrite : bool
        Replace an existing ``output``. Default: refuse.
    seed : int, optional
        Overrides ``config["seed"]``.
    detector : str, optional
        For 4D-STEM input: the virtual detector (``bf``, ``abf``, ``adf``, ``haadf``, ``icom``)
        that makes the image; overrides ``config["virtual"]["detector"]``.
    processes : bool, optional
        For the embedded LocalCluster: worker processes (True) or threads of this process
        (False: starts and stops in well under a second, but Python code holding the GIL
        runs one thread at a time). Default: threads for inputs of up to
        :data:`~dmotif.pipeline.deploy.THREADS_MAX_PIXELS` pixels, processes beyond (and
        always where numba's threading layer is not thread-safe, see
        :func:`~dmotif.pipeline.deploy.numba_threadsafe`).
    progress : callable, optional
        Called as ``progress(stage, message)``: ``"start"`` when a stage starts, ``"tasks
        D/T"`` while its work on the cluster runs (D of the T tasks it submitted so far are
        done; every half second, and once at its end) and a line when it finishes.

    Returns
    -------
    Result
        The finished store, opened.
    """
    cfg = load_config(config)
    if seed is not None:
        cfg["seed"] = seed_int(seed)
    if detector is not None:
        cfg["virtual"]["detector"] = detector
    checked = source
    if is_several(source):
        folders = input_folders(source)
        source = expand_inputs(source)
        # The output may not sit inside a folder of inputs either: a rerun would read it.
        checked = [*folders, *source]
    validate_run(cfg, checked, output, overwrite=overwrite, client=client, scheduler=scheduler,
                 workers=workers)
    if processes is not None and not isinstance(processes, bool):
        raise ParameterError(f"processes must be True, False or None; got {processes!r}.")
    report = progress or (lambda stage, msg: None)
    # Opened (lazily) before the lock is taken: a bad input leaves nothing behind.
    image, fourd, files = _open_input(source, cfg)
    if processes is None:
        processes = ((image.size if fourd is None else fourd.size) > THREADS_MAX_PIXELS
                     or not numba_threadsafe())
    with client_in_background(client=client, scheduler=scheduler, cluster=cluster,
                              cluster_config=cluster_config, workers=workers,
                              processes=processes,
                              log=lambda msg: report("cluster", msg)) as started:
        # Hashed while the cluster starts.
        identity = source_identity(source) if files is None else identify(files)
        with output_lock(output, config_hash=config_hash(cfg)):
            _run_locked(output, image, fourd, identity, cfg, started, overwrite=overwrite,
                        report=report)
    return open_result(output)


def config_hash(cfg: dict[str, Any]) -> str:
    """A short digest of a configuration, recorded in the output's lock."""
    text = json.dumps(json_ready(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run_locked(
    output: str | os.PathLike, image: xr.DataArray, fourd: xr.DataArray | None,
    identity: dict[str, Any] | list[dict[str, Any]], cfg: dict[str, Any],
    started: Callable[[], Any], *, overwrite: bool, report: Callable[[str, str], None],
) -> None:
    """The stages of :func:`run`, resumed where an earlier run stopped, and the commit; the
    caller holds the output's lock. ``identity`` is the input's (a list: one per input file,
    each with its frames); ``started()`` waits for the run's dask client."""
    files = identity if isinstance(identity, list) else None
    source = [f["path"] for f in files] if files is not None else identity.get("path")
    writer = StoreWriter(output, overwrite=overwrite, resume=True)
    previous = writer.attrs().get(_CONFIG_ATTR)
    if previous is not None and previous != json_ready(cfg):
        raise StoreError(
            f"an interrupted run with another configuration left {writer.partial!r}; rerun with "
            "the same configuration to resume, or pass overwrite=True (--overwrite) to restart."
        )
    done = writer.stages if previous is not None else []
    if previous is None and writer.stages:
        writer = StoreWriter(output, overwrite=overwrite, resume=False)
    funcs = stage_functions()
    timings: dict[str, float] = dict(writer.attrs().get("dmotif_timings", {}))
    base_attrs = {_CONFIG_ATTR: json_ready(cfg)}

    active = started()
    with active.as_current():
        if done:
            report("resume", f"resuming after {', '.join(done)}")
        for stage in STAGES:
            if stage in done:
                continue
            reason = _disabled(stage, cfg)
            if reason:
                report(stage, f"skipped ({reason})")
                continue
            report(stage, "start")
            t0 = time.perf_counter()
            # Later stages read their inputs back from the store, so a resumed run sees
            # exactly what an uninterrupted one saw.
            stored = writer.dataset() if writer.stages else None
            with (stage_tasks(active, lambda done, total, stage=stage:
                              report(stage, f"tasks {done}/{total}")),
                  unreadable_chunks_named(source, f"the {stage} stage (reading the input "
                                          "or the partial result)")):
                if stage == "detect" and files is not None:
                    data, attrs = _detect_by_file(funcs[stage], image, files, cfg, writer,
                                                  report)
                else:
                    data, attrs = _run_stage(stage, funcs[stage], image, stored,
                                             writer.attrs(), cfg, fourd)
                # Lazy stages compute while they are written: time both.
                writer.write_stage(stage, data, attrs={**base_attrs, **attrs})
            timings[stage] = time.perf_counter() - t0
            writer.record({"dmotif_timings": timings})
            report(stage, f"done in {timings[stage]:.1f} s")
    final_attrs = {
        "dmotif_version": __version__,
        "config": {**cfg, "dmotif_version": __version__, "input": identity},
        "dmotif_timings": timings,
    }
    writer.commit(final_attrs)


def _disabled(stage: str, cfg: dict[str, Any]) -> str | None:
    """Why ``stage`` does not run in this configuration (None: it runs).

    A disabled stage writes nothing and has no time in ``dmotif_timings``: the measure stage
    would otherwise read the atom table back from the store only to add nothing.
    """
    if stage == "measure" and not cfg["measure"]["enabled"]:
        return "measure.enabled = false"
    return None


def _open_input(
    source: Any, cfg: dict[str, Any]
) -> tuple[xr.DataArray, xr.DataArray | None, list[dict[str, Any]] | None]:
    """The image stack of a run, its 4D-STEM data (None for an image) and its input files
    (None for one input).

    The image is the input itself, the frames of the input files, or a virtual image of the
    4D-STEM data.
    """
    virtual = cfg["virtual"]
    if isinstance(source, list):
        if virtual["detector"] is not None:
            raise ParameterError(
                f"a 4D-STEM run reads one input; got {len(source)} files. Run them one by one."
            )
        files = open_inputs(source, pixel_size=cfg["pixel_size"], chunks=cfg["chunks"])
        return files.image, None, files.files
    if virtual["features"] not in ("image", "diffraction"):
        raise ParameterError(
            f"virtual.features must be 'image' or 'diffraction'; got {virtual['features']!r}."
        )
    if virtual["detector"] is None:
        if virtual["features"] == "diffraction":
            raise ParameterError(
                "virtual.features = 'diffraction' needs 4D-STEM input and a virtual detector "
                "to find the atoms on; set virtual.detector (--detector), e.g. 'adf'."
            )
        # Detection refuses NaN/inf and constant frames from the pixels it reads anyway.
        return open_image(source, pixel_size=cfg["pixel_size"], chunks=cfg["chunks"],
                          check=False), None, None

    if virtual["detector"] == "com":
        raise ParameterError(
            "the com detector gives two images (a vector field); use icom, bf, abf, adf or "
            "haadf for a run."
        )
    data = open_4dstem(source, scan_pixel_size=cfg["pixel_size"])
    return virtual_image(data, detector=virtual["detector"], inner=virtual["inner"],
                         outer=virtual["outer"], chunks=cfg["chunks"]), data, None


#: Input files detected together: one dask computation and one part of the partial store
#: for consecutive files of up to this many pixels (64 files of 512²). A computation, a part
#: and its record per file cost more than the detection in a small image (100 files of 512²:
#: the detect stage took 2.6× the stack's); an interrupted run loses at most one batch.
DETECT_BATCH_PIXELS = 1 << 24


def _file_identity(entry: dict[str, Any]) -> dict[str, Any]:
    return {"path": entry["path"], "sha256": entry["sha256"], "frames": entry["frames"]}


def _pixels(entry: dict[str, Any]) -> int:
    return len(entry["frames"]) * int(np.prod(entry["shape"]))


def _detect_batches(
    files: list[dict[str, Any]], writer: StoreWriter
) -> list[tuple[int, int, bool]]:
    """The files as consecutive runs ``(first, stop, kept)``: the batches an interrupted run
    kept in the partial store (recognised by their files' paths and checksums), and batches
    of up to :data:`DETECT_BATCH_PIXELS` of the others."""
    out: list[tuple[int, int, bool]] = []
    parts = writer.part_identities()
    k = pixels = 0
    while k < len(files):
        kept = parts.get(f"{k:06d}")
        n_kept = len(kept) if isinstance(kept, list) else 0
        if n_kept and kept == json_ready([_file_identity(e) for e in files[k : k + n_kept]]):
            out.append((k, k + n_kept, True))
            k += n_kept
            continue
        if out and not out[-1][2] and pixels + _pixels(files[k]) <= DETECT_BATCH_PIXELS:
            out[-1] = (out[-1][0], k + 1, False)
            pixels += _pixels(files[k])
        else:
            out.append((k, k + 1, False))
            pixels = _pixels(files[k])
        k += 1
    return out


def _detect_by_file(
    func: Callable[..., Any], image: xr.DataArray, files: list[dict[str, Any]],
    cfg: dict[str, Any], writer: StoreWriter, report: Callable[[str, str], None],
) -> tuple[xr.Dataset, dict[str, Any]]:
    """The detect stage of a run over several files, one batch of files after another.

    Each batch's atoms are kept in the partial store as soon as they are found, so a resumed
    run detects only in the files it had not finished (a file is recognised by its path and
    checksum). A batch that fails is detected again file by file: the files before the bad
    one are kept, and the error names the bad one. The atoms are those of the whole stack:
    the lattice comes from its first frame.
    """
    parts, attrs = [], []
    # The configuration first: a resume keeps the parts only under the same one.
    writer.record({_CONFIG_ATTR: json_ready(cfg)})
    n = len(files)
    for first, stop, kept in _detect_batches(files, writer):
        batch = files[first:stop]
        found = writer.part(f"{first:06d}", [_file_identity(e) for e in batch]) if kept else None
        if found is None:
            try:
                found = _detect_files(func, image, batch, first, n, cfg)
            except DmotifError:
                if len(batch) == 1:
                    raise
                for k, entry in enumerate(batch, start=first):
                    one = _detect_files(func, image, [entry], k, n, cfg)
                    _keep(writer, k, [entry], one, report, n)
                    parts.append(one[0])
                    attrs.append(one[1])
                continue
            _keep(writer, first, batch, found, report, n)
        parts.append(found[0])
        attrs.append(found[1])
    atoms = xr.concat(parts, dim="atom")
    merged = dict(attrs[0])
    for name in ("threshold", "site_threshold", "support_threshold", "strong_threshold",
                 "cell_site_threshold", "anchor_threshold"):
        merged[name] = [t for a in attrs for t in a[name]]
    merged["shape"] = [int(s) for s in image.shape]
    return atoms, {"atoms_attrs": merged}


def _detect_files(
    func: Callable[..., Any], image: xr.DataArray, batch: list[dict[str, Any]], first: int,
    n_files: int, cfg: dict[str, Any],
) -> tuple[xr.Dataset, dict[str, Any]]:
    """The atoms of the files ``batch`` (``files[first:]``), found in one computation, and
    their attrs; the error of a batch of one file names it."""
    try:
        atoms = func(image, frames=[f for e in batch for f in e["frames"]], **cfg["detect"])
    except DmotifError as exc:
        if len(batch) > 1:
            raise
        raise type(exc)(f"input {first + 1}/{n_files} {batch[0]['path']!r}: {exc}") from exc
    frame = atoms["frame"].values
    # Each file's atoms without the padding of its frames (files of different sizes).
    each = [drop_padding(atoms.isel(atom=np.flatnonzero(np.isin(frame, e["frames"]))),
                         e["shape"]) for e in batch]
    return xr.concat(each, dim="atom").drop_attrs(), json_ready(atoms.attrs)


def _keep(
    writer: StoreWriter, first: int, batch: list[dict[str, Any]],
    found: tuple[xr.Dataset, dict[str, Any]], report: Callable[[str, str], None], n_files: int,
) -> None:
    """Keep a batch's atoms as a part of the partial store; report each of its files."""
    writer.write_part(f"{first:06d}", found[0], identity=[_file_identity(e) for e in batch],
                      attrs=found[1])
    frame = found[0]["frame"].values
    for k, entry in enumerate(batch, start=first):
        count = int(np.isin(frame, entry["frames"]).sum())
        report("detect", f"file {k + 1}/{n_files}: {count} atoms")


def _atoms_from(ds: xr.Dataset, attrs: dict[str, Any]) -> xr.Dataset:
    """The atom table as detection returned it, read back from the store."""
    names = [v for v in ds.data_vars if ds[v].dims == ("atom",) and v in _ATOM_VARS]
    atoms = ds[names].compute()
    atoms.attrs = dict(attrs.get("atoms_attrs", {}))
    return atoms


_ATOM_VARS = ("frame", "y", "x", "intensity", "amplitude", "width", "y_nm", "x_nm")


def _run_stage(
    stage: str, func: Callable[..., Any], image: xr.DataArray, ds: xr.Dataset | None,
    attrs: dict[str, Any], cfg: dict[str, Any], fourd: xr.DataArray | None = None,
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Run one stage on what the store holds; return the variables and root attrs to add.

    With ``virtual.features = "diffraction"`` the features stage describes each atom's
    diffraction pattern in ``fourd`` instead of its patch of ``image``; the variable keeps the
    name ``zernike`` that the later stages read.
    """
    params = dict(cfg[stage])
    if takes(func, "seed"):
        params["seed"] = cfg["seed"]
    if stage == "detect":
        atoms = func(image, **params)
        return atoms.drop_attrs(), {"atoms_attrs": json_ready(atoms.attrs)}
    assert ds is not None
    atoms = _atoms_from(ds, attrs)
    if stage == "features" and cfg["virtual"]["features"] == "diffraction":
        out = diffraction_features(fourd, atoms, **cfg["diffraction"]).rename("zernike")
    elif stage == "features":
        out = func(image, atoms, **params).rename("zernike")
    elif stage == "pca":
        out = func(ds["zernike"], **params).rename("pca")
    elif stage == "layout":
        out = func(ds["pca"].compute(), **params).rename("layout")
    elif stage == "cluster":
        # Atoms whose patch the image border cuts take their neighbours' motif.
        follow = ds["edge"].values if "edge" in ds else None
        # The layout's clusters are the candidates; the motifs are decided in the PCA scores
        # and split by the sublattice site of their atoms.
        scores = ds["pca"].compute()
        labels = func(ds["layout"].compute(), follow=follow, features=scores,
                      atoms=atoms, **params).rename("label").astype(np.int32)
        summary = _motif_summary(image, atoms, labels, ds, attrs, seed_int(cfg["seed"]))
        merged = xr.merge([labels.to_dataset(), summary.drop_attrs()], combine_attrs="drop")
        structure = feature_structure(ds["zernike"], atoms)
        if structure["structure"] == "continuum":
            # the motifs are pieces of the variation: its coordinate is what to map
            merged["continuum"] = continuum_coordinate(scores, atoms,
                                                       seed=cfg["seed"]).astype(np.float32)
        return merged, {"cluster_attrs": json_ready(labels.attrs | summary.attrs | structure)}
    elif stage == "measure":
        data, summary = func(image, atoms, ds["label"].values, **params)
        return data, {"measure_attrs": json_ready(summary)}
    else:
        # A motif split by site is named after its parent ("A on B site").
        atoms = with_site_names(atoms, ds["label"].values, attrs.get("cluster_attrs", {}))
        return _hierarchy_stage(func, image, atoms, ds["label"].values, params)
    return out.drop_attrs().to_dataset(), {f"{stage}_attrs": json_ready(out.attrs)}


def _hierarchy_stage(
    func: Callable[..., Any], image: xr.DataArray, atoms: xr.Dataset, labels: np.ndarray,
    params: dict[str, Any],
) -> tuple[xr.Dataset, dict[str, Any]]:
    """The hierarchy, per-atom level labels and the cell table as arrays; never fails a run.

    Where no cell can be built (no lattice and no ring: too few atoms, an unusual geometry)
    the earlier stages' results are still worth a store and a report: the graph keeps level
    1 only and the attribute ``hierarchy_attrs["status"]`` says why.
    """
    from ..hierarchy import motif_cells
    from ..hierarchy.graph import atom_levels, level1_hierarchy
    from ..hierarchy.serialisation import graph_dataset

    try:
        # built here rather than inside build_hierarchy: the store keeps the cell table too
        cells = motif_cells(atoms, labels, method=params.get("method", "auto"))
        graph = func(atoms, labels, image=image, cells=cells, **params)
    except (NoLatticeError, DataError) as exc:
        status = f"level 1 only: no cell could be built ({exc})"
        graph = level1_hierarchy(atoms, labels, reason=status)
        levels = xr.Dataset({name: ("atom", np.full(len(labels), -1, np.int32))
                             for name in ("label_L2", "label_L3")})
    else:
        kinds = {2: 0, 3: 0}
        for _, d in graph.nodes(data=True):
            kinds[d["level"]] = kinds.get(d["level"], 0) + 1
        status = (f"{cells.sizes['cell']} {cells.attrs['method']} cells of {kinds[2]} types, "
                  f"{kinds[3]} level-3 patterns")
        levels = atom_levels(cells, graph, len(labels))
    # "override" keeps the variables' own attrs (the level names of label_L2, label_L3)
    data = xr.merge([levels, graph_dataset(graph)], combine_attrs="override")
    return data, {"hierarchy_attrs": {"status": status, "method": graph.graph.get("method")}}


#: The mean patch of each motif is averaged over the atoms of a seeded sample of frames that
#: holds at least this many atoms of every motif (all frames if none does). Each frame read
#: costs a pass over its pixels: averaging the 1.39 M patches of a 16-frame 4096² stack took
#: 7.4 s of the cluster stage's 10.4 s; the mean of 500 noisy patches is already 22× less noisy
#: than one patch.
MEAN_PATCH_ATOMS = 500


def _patch_frames(frame: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """The atoms of the frames, in seeded order, until each motif has MEAN_PATCH_ATOMS."""
    frames = np.unique(frame)
    frames = frames[np.random.default_rng(seed).permutation(frames.size)]
    k = int(labels.max()) + 1
    counts = np.zeros(max(k, 0), dtype=np.int64)
    taken = []
    for f in frames:
        here = frame == f
        taken.append(f)
        counts += np.bincount(labels[here & (labels >= 0)], minlength=k)
        if (counts >= MEAN_PATCH_ATOMS).all():
            break
    return np.flatnonzero(np.isin(frame, taken))


def _motif_summary(
    image: xr.DataArray, atoms: xr.Dataset, labels: xr.DataArray, ds: xr.Dataset,
    attrs: dict[str, Any], seed: int,
) -> xr.Dataset:
    """Per motif: count, fraction, example atoms and the mean patch (at the features' radius,
    over the frames :func:`_patch_frames` picks)."""

    summary = motif_summary(labels, layout=ds["layout"])
    sample = _patch_frames(atoms["frame"].values, labels.values, seed)
    radius = attrs.get("features_attrs", {}).get("radius")
    patches = extract_patches(image, atoms.isel(atom=sample), radius=radius)
    means = motif_summary(labels[sample], patches=patches)["mean_patch"]
    summary["mean_patch"] = means
    summary.attrs["mean_patch_frames"] = np.unique(atoms["frame"].values[sample]).tolist()
    return summary
