"""Result stores: zarr (v3) groups written atomically, stage by stage, never over a user's data.

A store is written at a hidden sibling ``.NAME.partial`` and moved into place only when complete
(on object stores, which cannot rename, it is copied and its completion mark written last).
The mark is the root attribute ``dmotif_complete``; :func:`open_result` refuses a store without
it. Each finished stage is recorded in the root attribute ``dmotif_stages`` of the partial
store, so an interrupted run resumes from the last finished stage.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xarray as xr

from ..errors import DmotifError, StoreError, StoreExistsError, StoreIncompleteError

if TYPE_CHECKING:  # networkx costs ~0.2 s to import: only where a graph is read or written
    import networkx as nx

__all__ = [
    "COMPLETE_ATTR",
    "Result",
    "StoreWriter",
    "atomic_file",
    "is_remote",
    "json_ready",
    "open_result",
    "open_zarr_group",
    "refuse_existing",
    "write_dataset",
    "write_result",
]

COMPLETE_ATTR = "dmotif_complete"
STAGES_ATTR = "dmotif_stages"
# The partial store's bookkeeping lives in a subgroup: xarray rewrites the root group's
# attributes on every append, and a kill at that moment must not lose the record of stages.
_STATE_GROUP = "dmotif_state"
# Results of a stage's parts (one per input file) kept until the stage is written whole.
_PARTS_GROUP = "dmotif_parts"


def is_remote(path: str) -> bool:
    """True for an fsspec URL other than a local ``file://`` one."""
    return "://" in path and not path.startswith("file://")


def json_ready(value: Any) -> Any:
    """Return ``value`` with numpy scalars/arrays and other objects turned into JSON types."""

    def default(obj: Any) -> Any:
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        return str(obj)

    return json.loads(json.dumps(value, default=default))


def _fs(path: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    import fsspec

    return fsspec.core.url_to_fs(path, **(storage_options or {}))


def _partial_of(path: str) -> str:
    head, _, name = path.rstrip("/").rpartition("/")
    return f"{head}/.{name}.partial" if head else f".{name}.partial"


def open_zarr_group(path: str, storage_options: dict[str, Any] | None = None) -> Any | None:
    """Open a zarr group read-only; None when ``path`` holds a bare array."""
    import zarr

    try:
        node = zarr.open(path, mode="r", storage_options=storage_options)
    except Exception as exc:  # zarr, fsspec and botocore raise many types (no credentials...)
        raise StoreError(f"cannot open zarr store {path!r}: {_one_line(exc)}") from exc
    return node if isinstance(node, zarr.Group) else None


def _one_line(exc: BaseException) -> str:
    """An exception as one line: its type when it has no text, its first line otherwise."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


#: Packages whose code decodes stored chunks: an error raised inside them while a stage reads
#: its input is a damaged store, not a bug of dmotif.
_CHUNK_READERS = ("zarr", "numcodecs", "fsspec", "s3fs", "botocore", "aiobotocore")


def _raised_in_reader(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module.split(".")[0] in _CHUNK_READERS:
            return True
        tb = tb.tb_next
    return False


@contextlib.contextmanager
def unreadable_chunks_named(source: Any, during: str) -> Iterator[None]:
    """Turn an error that the chunk readers raise within the block into a :class:`StoreError`.

    A corrupt chunk shows up only when a task reads it, often deep inside a stage on the
    cluster, as e.g. ``RuntimeError: Zstd decompression error``; this names the store and
    what was being done (``during``, e.g. "the detect stage").
    """
    try:
        yield
    except DmotifError:
        raise
    except Exception as exc:
        if not _raised_in_reader(exc):
            raise
        where = os.fspath(source) if isinstance(source, str | os.PathLike) else "the input"
        raise StoreError(
            f"{during} could not read a chunk of {where!r} ({_one_line(exc)}); the store is "
            "damaged: copy or write it again."
        ) from exc


def _set_attrs(
    path: str, attrs: dict[str, Any], storage_options: dict[str, Any] | None, mode: str = "r+"
) -> None:
    import zarr

    group = zarr.open_group(path, mode=mode, storage_options=storage_options)
    group.attrs.update(json_ready(attrs))


def _portable_strings(ds: xr.Dataset) -> xr.Dataset:
    """Store text as variable-length strings: zarr v3 has no stable fixed-width unicode type."""
    text = [name for name, v in ds.variables.items() if v.dtype.kind == "U"]
    return ds.assign_coords({n: ds[n].astype(object) for n in text if n in ds.coords}).assign(
        {n: ds[n].astype(object) for n in text if n in ds.data_vars}
    )


def refuse_existing(path: str | os.PathLike, *, overwrite: bool) -> None:
    """Raise :class:`StoreExistsError` when the local file ``path`` exists and ``overwrite``
    is false."""
    if Path(path).exists() and not overwrite:
        raise StoreExistsError(
            f"{os.fspath(path)!r} exists; pass overwrite=True (CLI: --overwrite) to replace it, "
            "or choose another output path."
        )


@contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a hidden sibling of ``path`` to write, then move it into place in one rename.

    A reader never sees a half-written file, and a failed write leaves neither the temporary
    file nor a damaged ``path`` behind.

    Parameters
    ----------
    path : str or os.PathLike
        The local file to create.
    overwrite : bool
        Replace an existing ``path``. Default: refuse.

    Raises
    ------
    StoreExistsError
        When ``path`` exists and ``overwrite`` is false.
    """
    refuse_existing(path, overwrite=overwrite)
    final = Path(path)
    tmp = final.with_name(f".{final.name}.partial")
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


class StoreWriter:
    """Write a result store stage by stage and commit it atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The final store (local path or fsspec URL).
    overwrite : bool
        Replace an existing store at ``path`` when committing. Default: refuse.
    resume : bool
        Keep the stages of an earlier, interrupted write (the partial sibling). Default:
        start afresh.
    storage_options : dict, optional
        fsspec options (endpoint, credentials) for a remote store.

    Raises
    ------
    StoreExistsError
        When ``path`` exists and ``overwrite`` is false.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        overwrite: bool = False,
        resume: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.path = os.fspath(path).rstrip("/")
        self.partial = _partial_of(self.path)
        self.overwrite = overwrite
        self.storage_options = storage_options
        self.fs, self._root = _fs(self.path, storage_options)
        _, self._partial_root = _fs(self.partial, storage_options)
        if self.fs.exists(self._root) and not overwrite:
            raise StoreExistsError(
                f"{self.path!r} exists; pass overwrite=True (CLI: --overwrite) to replace it, "
                "or choose another output path."
            )
        if not resume and self.fs.exists(self._partial_root):
            self.fs.rm(self._partial_root, recursive=True)

    @property
    def stages(self) -> list[str]:
        """Names of the stages already written to the partial store, in order."""
        return list(self.attrs().get(STAGES_ATTR, []))

    def attrs(self) -> dict[str, Any]:
        """Attributes recorded with the finished stages (empty before the first stage)."""
        # The group's document, not its folder: a reader polling a run that is starting may
        # see the folder before the document is written.
        if not self.fs.exists(f"{self._partial_root}/{_STATE_GROUP}/zarr.json"):
            return {}
        group = open_zarr_group(f"{self.partial}/{_STATE_GROUP}", self.storage_options)
        return dict(group.attrs) if group is not None else {}

    def write_stage(
        self, name: str, ds: xr.Dataset, *, attrs: dict[str, Any] | None = None
    ) -> None:
        """Add the variables of ``ds`` to the partial store and record stage ``name`` as done.

        The stage is recorded only after its data are written, so an interruption leaves it
        unrecorded and a resumed run writes it again (variables of the same name are replaced).
        """
        ds = _portable_strings(ds.drop_attrs(deep=False))
        exists = self.fs.exists(self._partial_root)
        previous = self.attrs()
        ds.to_zarr(
            self.partial, mode="a" if exists else "w-", consolidated=False, zarr_format=3,
            storage_options=self.storage_options, compute=True,
        )
        done = [s for s in previous.get(STAGES_ATTR, []) if s != name] + [name]
        self.record({**(attrs or {}), STAGES_ATTR: done})

    def record(self, attrs: dict[str, Any]) -> None:
        """Add ``attrs`` to what the finished stages recorded (kept through a resume)."""
        _set_attrs(f"{self.partial}/{_STATE_GROUP}", attrs, self.storage_options, mode="a")

    def write_part(
        self, key: str, ds: xr.Dataset, *, identity: Any, attrs: dict[str, Any]
    ) -> None:
        """Keep ``ds`` (e.g. one input file's atoms) and its ``attrs`` in the partial store
        under ``key``; ``identity`` (e.g. the file's path and checksum) recognises it on a
        resume. Recorded only once written, so a part interrupted while written is written
        again."""
        ds = _portable_strings(ds.drop_attrs(deep=False))
        ds.to_zarr(self.partial, group=f"{_PARTS_GROUP}/{key}", mode="w", consolidated=False,
                   zarr_format=3, storage_options=self.storage_options, compute=True)
        self.record({f"part {key}": {"identity": identity, "attrs": attrs}})

    def part_identities(self) -> dict[str, Any]:
        """The key of each kept part and the identity it was kept with."""
        return {k.removeprefix("part "): v["identity"] for k, v in self.attrs().items()
                if k.startswith("part ")}

    def part(self, key: str, identity: Any) -> tuple[xr.Dataset, dict[str, Any]] | None:
        """The part kept under ``key`` and its attrs, if it was written with this
        ``identity``; else None."""
        record = self.attrs().get(f"part {key}")
        if record is None or record["identity"] != json_ready(identity):
            return None
        ds = xr.open_zarr(self.partial, group=f"{_PARTS_GROUP}/{key}", consolidated=False,
                          zarr_format=3, storage_options=self.storage_options).compute()
        return ds, record["attrs"]

    def dataset(self) -> xr.Dataset:
        """The partial store's data, opened lazily."""
        return xr.open_zarr(self.partial, consolidated=False, zarr_format=3,
                            storage_options=self.storage_options)

    def commit(self, attrs: dict[str, Any] | None = None) -> str:
        """Mark the store complete and move it into place; return the final path."""
        if not self.fs.exists(self._partial_root):
            raise StoreError(f"nothing was written to {self.path!r}; write a stage first.")
        if self.fs.exists(self._root) and not self.overwrite:
            raise StoreExistsError(
                f"{self.path!r} appeared while writing; pass overwrite=True to replace it."
            )
        attrs = {k: v for k, v in {**self.attrs(), **(attrs or {})}.items()
                 if not k.startswith("part ")}
        for group in (_STATE_GROUP, _PARTS_GROUP):
            if self.fs.exists(f"{self._partial_root}/{group}"):
                self.fs.rm(f"{self._partial_root}/{group}", recursive=True)
        if is_remote(self.path):
            # Object stores cannot rename: copy, then write the completion mark last.
            _set_attrs(self.partial, {**attrs, COMPLETE_ATTR: False}, self.storage_options)
            if self.fs.exists(self._root):
                self.fs.rm(self._root, recursive=True)
            self.fs.copy(self._partial_root, self._root, recursive=True)
            _set_attrs(self.path, {COMPLETE_ATTR: True}, self.storage_options)
            self.fs.rm(self._partial_root, recursive=True)
            return self.path
        _set_attrs(self.partial, {**attrs, COMPLETE_ATTR: True}, self.storage_options)
        final = Path(self._root)
        old = final.with_name(f".{final.name}.old")
        if final.exists():
            os.replace(final, old)
        os.replace(self._partial_root, final)
        if old.exists():
            shutil.rmtree(old)
        return self.path


def write_dataset(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    attrs: dict[str, Any] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write ``ds`` to a zarr store at ``path`` atomically; see :class:`StoreWriter`.

    The Dataset's own attrs and ``attrs`` go into the store's root attributes (as JSON).
    """
    writer = StoreWriter(path, overwrite=overwrite, storage_options=storage_options)
    writer.write_stage("data", ds)
    return writer.commit({**ds.attrs, **(attrs or {})})


@dataclass(frozen=True)
class Result:
    """A finished dmotif result store, opened lazily.

    Attributes
    ----------
    path : str
        Where the store is.
    dataset : xarray.Dataset
        Everything in the store.
    config : dict
        The run's full configuration (parameters, version, input identity, seed).
    attrs : dict
        All root attributes.
    """

    path: str
    # The attrs hold the configuration and the motifs' evidence: keep them out of the repr.
    dataset: xr.Dataset = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def atoms(self) -> xr.Dataset:
        """The variables over the ``atom`` dim (positions, features, layout, labels…) with the
        attrs detection gave the atom table (``spacing_px``…), as the library's functions
        take it."""
        names = [v for v, da in self.dataset.data_vars.items() if "atom" in da.dims]
        return self.dataset[names].assign_attrs(self.attrs.get("atoms_attrs", {}))

    @property
    def hierarchy(self) -> nx.DiGraph | None:
        """The motif hierarchy graph, or None when the store has none.

        An edited labelling's graph (and a store of an older dmotif) sits in the root
        attribute ``hierarchy``; a run's graph in arrays (see
        :func:`dmotif.hierarchy.serialisation.graph_dataset`).
        """
        data = self.attrs.get("hierarchy")
        if data is None:
            from ..hierarchy.serialisation import graph_from_dataset

            return graph_from_dataset(self.dataset)
        import networkx as nx

        return nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")


def write_result(
    ds: xr.Dataset,
    path: str | os.PathLike,
    *,
    config: dict[str, Any] | None = None,
    hierarchy: nx.DiGraph | None = None,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write a result Dataset, its configuration and hierarchy graph atomically.

    Parameters
    ----------
    ds : xarray.Dataset
        Per-atom results over dim ``atom`` (and any other variables).
    path : str or os.PathLike
        The store to create (local path or fsspec URL).
    config : dict, optional
        The run's configuration, saved under the ``config`` attribute.
    hierarchy : networkx.DiGraph, optional
        Saved as arrays (node-link JSON bytes and stacked mean patches), not attributes.
    overwrite : bool
        Replace an existing store. Default: refuse with :class:`StoreExistsError`.
    storage_options : dict, optional
        fsspec options for a remote store.

    Returns
    -------
    str
        The path written.
    """
    from .. import __version__

    attrs: dict[str, Any] = {"dmotif_version": __version__, "config": config or {}}
    if hierarchy is not None:
        from ..hierarchy.serialisation import graph_dataset

        # The graph given replaces one the dataset already holds (e.g. a run's, read back).
        graph = graph_dataset(hierarchy)
        ds = xr.merge([ds.drop_vars(list(graph.data_vars), errors="ignore"), graph],
                      combine_attrs="override")
    return write_dataset(ds, path, overwrite=overwrite, attrs=attrs,
                         storage_options=storage_options)


def open_result(
    path: str | os.PathLike, *, storage_options: dict[str, Any] | None = None
) -> Result:
    """Open a finished result store.

    Raises
    ------
    StoreError
        When there is no store at ``path``.
    StoreIncompleteError
        When the store (or only its partial sibling) was left by an interrupted write.
    """
    text = os.fspath(path).rstrip("/")
    fs, root = _fs(text, storage_options)
    if not fs.exists(root):
        _, partial_root = _fs(_partial_of(text), storage_options)
        if fs.exists(partial_root):
            raise StoreIncompleteError(
                f"{text!r} was never completed: an interrupted write left {_partial_of(text)!r}. "
                "Run the same command again to resume, or delete the partial store."
            )
        raise StoreError(f"no result store at {text!r}. Check the path.")
    group = open_zarr_group(text, storage_options)
    if group is None:
        raise StoreError(f"{text!r} is a zarr array, not a dmotif result store.")
    attrs = dict(group.attrs)
    if not attrs.get(COMPLETE_ATTR, False):
        raise StoreIncompleteError(
            f"{text!r} is incomplete (no completion mark: an interrupted or foreign write). "
            "Its contents cannot be trusted; write it again with overwrite=True."
        )
    if "config" not in attrs and "image" in group:
        # Image stacks are written by the same atomic writer, with the same completion mark.
        raise StoreError(
            f"{text!r} is an image stack, not a dmotif result; pass the store that dmotif run "
            f"wrote from it (e.g. dmotif run {text} -o result.zarr)."
        )
    ds = xr.open_zarr(text, consolidated=False, zarr_format=3, storage_options=storage_options)
    return Result(text, ds, dict(attrs.get("config", {})), attrs)
