"""The whole method in one call: detect → Zernike → PCA → FR layout → labels → hierarchy.

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
from ..errors import DataError, NoLatticeError, ParameterError, StoreError
from ..features import diffraction_features, extract_patches, virtual_image
from ..io._lock import output_lock
from ..io.images import open_image, source_identity
from ..io.stem4d import open_4dstem
from ..io.store import Result, StoreWriter, json_ready, open_result, unreadable_chunks_named
from ..motifs import motif_summary
from ._progress import stage_tasks
from .config import STAGES, load_config, stage_functions, takes
from .deploy import dask_client
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
    progress: Callable[[str, str], None] | None = None,
) -> Result:
    """Run the whole pipeline on ``source`` and write the result store ``output``.

    Parameters
    ----------
    source : path, URL or array
        Anything :func:`dmotif.open_image` opens.
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
        in ``deploy/``; see :func:`dmotif.pipeline.deploy.dask_client`.
    overwrite : bool
        Replace an existing ``output``. Default: refuse.
    seed : int, optional
        Overrides ``config["seed"]``.
    detector : str, optional
        For 4D-STEM input: the virtual detector (``bf``, ``abf``, ``adf``, ``haadf``, ``icom``)
        that makes the image; overrides ``config["virtual"]["detector"]``.
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
    validate_run(cfg, source, output, overwrite=overwrite, client=client, scheduler=scheduler,
                 workers=workers)
    # Opened before the lock is taken: a bad input leaves nothing behind.
    image, fourd = _open_input(source, cfg)
    with output_lock(output, config_hash=config_hash(cfg)):
        _run_locked(source, output, image, fourd, cfg, client=client, scheduler=scheduler,
                    cluster=cluster, cluster_config=cluster_config, workers=workers,
                    overwrite=overwrite, report=progress or (lambda stage, msg: None))
    return open_result(output)


def config_hash(cfg: dict[str, Any]) -> str:
    """A short digest of a configuration, recorded in the output's lock."""
    text = json.dumps(json_ready(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _run_locked(
    source: Any, output: str | os.PathLike, image: xr.DataArray, fourd: xr.DataArray | None,
    cfg: dict[str, Any], *, client: Any, scheduler: str | None, cluster: str,
    cluster_config: str | os.PathLike | None, workers: int | None, overwrite: bool,
    report: Callable[[str, str], None],
) -> None:
    """The stages of :func:`run`, resumed where an earlier run stopped, and the commit; the
    caller holds the output's lock."""
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

    with dask_client(client=client, scheduler=scheduler, cluster=cluster,
                     cluster_config=cluster_config, workers=workers,
                     log=lambda msg: report("cluster", msg)) as active:
        if done:
            report("resume", f"resuming after {', '.join(done)}")
        for stage in STAGES:
            if stage in done:
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
                data, attrs = _run_stage(stage, funcs[stage], image, stored, writer.attrs(),
                                         cfg, fourd)
                # Lazy stages compute while they are written: time both.
                writer.write_stage(stage, data, attrs={**base_attrs, **attrs})
            timings[stage] = time.perf_counter() - t0
            writer.record({"dmotif_timings": timings})
            report(stage, f"done in {timings[stage]:.1f} s")
    final_attrs = {
        "dmotif_version": __version__,
        "config": {**cfg, "dmotif_version": __version__, "input": source_identity(source)},
        "dmotif_timings": timings,
    }
    writer.commit(final_attrs)


def _open_input(source: Any, cfg: dict[str, Any]) -> tuple[xr.DataArray, xr.DataArray | None]:
    """The image stack of a run and its 4D-STEM data (None for an image).

    The image is the input itself or a virtual image of the 4D-STEM data.
    """
    virtual = cfg["virtual"]
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
                          check=False), None

    if virtual["detector"] == "com":
        raise ParameterError(
            "the com detector gives two images (a vector field); use icom, bf, abf, adf or "
            "haadf for a run."
        )
    data = open_4dstem(source, scan_pixel_size=cfg["pixel_size"])
    return virtual_image(data, detector=virtual["detector"], inner=virtual["inner"],
                         outer=virtual["outer"], chunks=cfg["chunks"]), data


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
        # The layout's clusters are the candidates; the motifs are decided in the PCA scores.
        labels = func(ds["layout"].compute(), follow=follow, features=ds["pca"].compute(),
                      **params).rename("label").astype(np.int32)
        summary = _motif_summary(image, atoms, labels, ds, attrs, seed_int(cfg["seed"]))
        merged = xr.merge([labels.to_dataset(), summary.drop_attrs()], combine_attrs="drop")
        return merged, {"cluster_attrs": json_ready(labels.attrs | summary.attrs)}
    else:
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
