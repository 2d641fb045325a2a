"""An exclusive lock on a run's output, so that two runs never write one partial store.

The lock is a small JSON document at the hidden sibling ``.NAME.lock`` of the output, naming the
run that holds it (host, pid, start time, configuration hash). It is created atomically:

- on a local file system with ``open(O_CREAT | O_EXCL)``, which fails if the file exists;
- on S3 (s3fs) with a conditional put (``If-None-Match: *``), which the object store refuses
  when the object exists (AWS S3 and moto honour it; an S3-compatible store that ignores the
  header makes it check-then-write, like the next case);
- on other fsspec file systems with fsspec's ``pipe_file(mode="create")``, which checks and then
  writes: two runs that start within the same few milliseconds may both get it there.

A lock whose process is gone (same host, pid not alive) is stale, e.g. after a SIGKILL; the next
run takes it over with a warning and resumes the partial store. A lock held on another host
cannot be checked from here and is never taken over; the message says how to remove it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

from ..errors import StoreError, StoreLockedError

__all__ = ["lock_path_of", "output_lock"]

log = logging.getLogger("dmotif")


def lock_path_of(path: str) -> str:
    """The lock of the output ``path``: its hidden sibling ``.NAME.lock``."""
    head, _, name = path.rstrip("/").rpartition("/")
    return f"{head}/.{name}.lock" if head else f".{name}.lock"


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "unknown: its lock is empty, as when a run is killed while taking it"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("start", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {started}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def _is_stale(holder: dict[str, Any]) -> bool:
    """True when the holder ran on this host and its process is gone."""
    pid = holder.get("pid")
    return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not (
        _pid_alive(pid)
    )


class _Backend:
    """Create, read and remove the lock document, atomically where the file system allows."""

    def __init__(self, lock: str, storage_options: dict[str, Any] | None) -> None:
        from .store import _fs, is_remote

        self.remote = is_remote(lock)
        self.fs, self.root = _fs(lock, storage_options)

    def create(self, body: bytes) -> bool:
        """Write ``body`` unless the lock exists; False when it does."""
        if not self.remote:
            # The output's folder may not exist yet (zarr makes parents); the lock goes first.
            os.makedirs(os.path.dirname(self.root), exist_ok=True)
            try:
                fd = os.open(self.root, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(body)
            return True
        try:
            self.fs.pipe_file(self.root, body, mode="create")
        except FileExistsError:
            return False
        except OSError as exc:
            # s3fs reports a failed If-None-Match as 412 Precondition Failed.
            if "precondition" in str(exc).lower() or getattr(exc, "errno", None) == errno.EEXIST:
                return False
            raise
        return True

    def read(self, path: str | None = None) -> dict[str, Any] | None:
        """The holder's record (of the lock, or of ``path``); None when it vanished (its run
        just finished)."""
        try:
            text = self.fs.cat_file(path or self.root)
        except FileNotFoundError:
            return None
        try:
            return dict(json.loads(text))
        except (ValueError, TypeError):
            # A holder killed between creating and writing its lock leaves it empty.
            return {}

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(self.root)

    def take_over(self, stale: dict[str, Any], body: bytes) -> bool:
        """Replace the stale lock ``stale`` by ours; False when another run was faster."""
        if self.remote:
            # An object store cannot rename atomically: remove and create (conditional put).
            self.remove()
            return self.create(body)
        aside = f"{self.root}.stale.{os.getpid()}"
        try:
            os.rename(self.root, aside)
        except FileNotFoundError:
            return self.create(body)
        moved = self.read(aside)
        if moved != stale:
            # Another run took it over between our read and our rename: what we moved is its
            # live lock. Put it back (link fails if a third run got in meanwhile) and give way.
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.root)
            os.unlink(aside)
            return False
        os.unlink(aside)
        return self.create(body)


@contextlib.contextmanager
def output_lock(
    path: str | os.PathLike,
    *,
    config_hash: str = "",
    storage_options: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Hold the exclusive lock on the output ``path`` for the duration of the block.

    Parameters
    ----------
    path : str or os.PathLike
        The output store (local path or fsspec URL).
    config_hash : str
        A digest of the run's configuration, recorded so that the holder can be identified.
    storage_options : dict, optional
        fsspec options for a remote output.

    Yields
    ------
    dict
        The record written into the lock (host, pid, start, config_hash).

    Raises
    ------
    StoreLockedError
        When another live run holds the lock; the message names it.
    StoreError
        When the lock cannot be created (e.g. the folder is not writable).
    """
    lock = lock_path_of(os.fspath(path))
    backend = _Backend(lock, storage_options)
    record = {"host": socket.gethostname(), "pid": os.getpid(), "start": time.time(),
              "config_hash": config_hash}
    body = json.dumps(record).encode()
    try:
        acquired = backend.create(body)
        if not acquired:
            holder = backend.read()
            if holder is None:  # released between our two calls
                acquired = backend.create(body)
            elif _is_stale(holder):
                log.warning("taking over the stale lock %s of a run that is gone (%s)",
                            lock, _describe(holder))
                acquired = backend.take_over(holder, body)
            if not acquired:
                holder = backend.read() or holder or {}
                raise StoreLockedError(
                    f"{os.fspath(path)!r} is being written by another run "
                    f"({_describe(holder)}); wait for it to finish, or if that run is dead on "
                    f"another host delete {lock!r}."
                )
    except OSError as exc:
        if isinstance(exc, StoreError):
            raise
        raise StoreError(f"cannot create the lock {lock!r} of the output: {exc}") from exc
    try:
        yield record
    finally:
        # Release only our own lock: a run that took ours over as stale must keep its own.
        if backend.read() == record:
            backend.remove()
