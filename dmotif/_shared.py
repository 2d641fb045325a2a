"""Inputs that many dask tasks read, kept out of the task graph on a dask.distributed cluster.

A numpy array embedded in ``dask.delayed`` calls travels inside the graph through the
scheduler (dask warns above 10 MB: the landmark index of a 1.39 M-atom layout made a 203 MB
graph, the atom table of its Zernike features 42 MB). On a cluster such inputs are scattered to
the workers once instead, and tasks hold their futures.
"""

from __future__ import annotations

from typing import Any

import dask

__all__ = ["active_client", "compute", "share"]


def active_client() -> Any:
    """The active ``distributed.Client``, or None (no client, or distributed not installed)."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def share(obj: Any) -> Any:
    """``obj`` as an argument of ``dask.delayed`` calls: its future on the workers when a
    client is active (one transfer per worker that needs it), else ``obj`` itself."""
    client = active_client()
    if client is None:
        return obj
    # In a list, so that a dict or tuple is scattered whole rather than item by item.
    return client.scatter([obj], hash=False)[0]


def compute(tasks: list) -> list:
    """Compute delayed ``tasks`` on the active client, else one after the other here.

    Without a client the tasks run in this thread: each is meant to be parallel over cores
    inside numba, whose default thread pool must not be entered concurrently.
    """
    client = active_client()
    if client is None:
        return list(dask.compute(*tasks, scheduler="synchronous"))
    return client.gather(client.compute(tasks))
