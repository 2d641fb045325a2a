"""Progress of the distributed work of a run: tasks submitted to the cluster and tasks done.

A scheduler plugin counts the tasks that enter the scheduler to be computed and those that
finish; while a stage runs, a thread reads the counts every half second and hands the stage's
share of them to a callback (the CLI shows them in its status line). Progress is optional: a
scheduler that cannot load dmotif (a remote one without it installed) simply gives none.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = ["TaskCounter", "stage_tasks"]

#: Seconds between two readings of the counts.
INTERVAL = 0.5
# States a task leaves "released" for when it is submitted to be computed; scattered data goes
# straight to "memory" and is not counted.
_SUBMITTED = frozenset({"waiting", "queued", "processing", "no-worker"})


class TaskCounter(SchedulerPlugin):
    """Counts the tasks submitted to the scheduler and those computed (or failed).

    A task sent back before it finished (its worker was lost, or it was cancelled) leaves the
    count, and counts again if it is submitted again; so once everything submitted has
    finished, ``done == submitted``.
    """

    name = "dmotif-task-counter"

    def __init__(self) -> None:
        self.submitted = 0
        self.done = 0

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        if start == "released" and finish in _SUBMITTED:
            self.submitted += 1
        elif start in _SUBMITTED and finish == "released":
            self.submitted -= 1
        elif start == "processing" and finish in ("memory", "erred"):
            self.done += 1


def _counts(dask_scheduler: Any) -> tuple[int, int]:
    """(done, submitted) so far, installing the counter on the scheduler the first time."""
    dask_scheduler.add_plugin(TaskCounter(), idempotent=True)
    counter = dask_scheduler.plugins[TaskCounter.name]
    return counter.done, counter.submitted


@contextlib.contextmanager
def stage_tasks(client: Any, report: Callable[[int, int], None]) -> Iterator[None]:
    """Report ``(done, submitted)`` tasks of ``client``'s cluster since the block began.

    ``report`` is called every :data:`INTERVAL` seconds while the counts change, and once when
    the block ends normally. Without a scheduler that can run the counter, nothing is reported.
    """
    try:
        base = client.run_on_scheduler(_counts)
    # A scheduler without dmotif installed cannot unpickle the counter; a run needs no
    # progress, so it goes on without.
    except Exception:
        yield
        return

    def delta() -> tuple[int, int]:
        done, submitted = client.run_on_scheduler(_counts)
        return done - base[0], submitted - base[1]

    stop = threading.Event()

    def poll() -> None:
        last = (0, 0)
        while not stop.wait(INTERVAL):
            now = delta()
            if now != last and now[1]:
                report(*now)
                last = now

    thread = threading.Thread(target=poll, name="dmotif-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    final = delta()
    if final[1]:
        report(*final)
