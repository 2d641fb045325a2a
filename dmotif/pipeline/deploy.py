"""Where a run's dask work goes: an embedded LocalCluster, an existing scheduler, SLURM or
Kubernetes. The recipes in ``deploy/`` are the configuration files these functions read."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import ParameterError

__all__ = ["CLUSTER_KINDS", "THREADS_MAX_PIXELS", "client_in_background", "dask_client",
           "numba_threadsafe"]

CLUSTER_KINDS = ("local", "slurm", "kubernetes")
#: Inputs of up to this many pixels run on threads of the calling process by default: a
#: LocalCluster of worker processes takes seconds to start (each worker imports dask and
#: dmotif) and to stop, more than its parallelism saves on a small input.
THREADS_MAX_PIXELS = 64 * 2**20
#: Seconds to wait for a scheduler that accepted the connection to answer as a dask scheduler.
CONNECT_TIMEOUT = 10


def _read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    import yaml

    p = Path(path)
    if not p.exists():
        raise ParameterError(f"no such cluster configuration: {os.fspath(p)!r}.")
    with open(p) as fh:
        return yaml.safe_load(fh) or {}


def slurm_cluster(config: str | os.PathLike, *, workers: int) -> Any:
    """A dask-jobqueue ``SLURMCluster`` from a jobqueue YAML file, scaled to ``workers`` jobs.

    The file is dask configuration (``jobqueue: slurm: ...``), as in
    ``deploy/slurm/jobqueue.yaml``; creating the cluster submits nothing until it is scaled.
    """
    from dask_jobqueue import SLURMCluster

    settings = _read_yaml(config)
    if "slurm" not in settings.get("jobqueue", {}):
        raise ParameterError(
            f"{os.fspath(config)!r} has no 'jobqueue: slurm:' section; start from "
            "deploy/slurm/jobqueue.yaml."
        )
    # The file's keys are dask-jobqueue's config names; as arguments they persist with the
    # cluster (dask config set in a context would be gone when jobs are created later).
    kwargs = {k.replace("-", "_"): v for k, v in settings["jobqueue"]["slurm"].items()}
    cluster = SLURMCluster(**kwargs)
    cluster.scale(jobs=workers)
    return cluster


def kubernetes_cluster(config: str | os.PathLike, *, workers: int) -> Any:
    """A dask-kubernetes operator ``KubeCluster`` from a DaskCluster manifest."""
    from dask_kubernetes.operator import KubeCluster

    spec = _read_yaml(config)
    if spec.get("kind") != "DaskCluster":
        raise ParameterError(
            f"{os.fspath(config)!r} is not a DaskCluster manifest (kind {spec.get('kind')!r}); "
            "start from deploy/kubernetes/daskcluster.yaml."
        )
    spec["spec"]["worker"]["replicas"] = workers
    return KubeCluster(custom_cluster_spec=spec)


#: Environment of the embedded LocalCluster's workers. distributed sets MALLOC_TRIM_THRESHOLD_,
#: which freezes glibc's mmap threshold at 128 KiB: every tile's temporaries (tens of MB) are
#: then fresh mmaps, paid in page faults and zeroing at each task. With this setting only arrays
#: over 64 MiB are: detection of 16 x 4096² on 2 workers 19.8-21.7 s -> 17.1-18.1 s.
LOCAL_WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": str(64 * 2**20)}


@contextlib.contextmanager
def dask_client(
    *,
    client: Any = None,
    scheduler: str | None = None,
    cluster: str = "local",
    cluster_config: str | os.PathLike | None = None,
    workers: int | None = None,
    processes: bool = True,
    log: Callable[[str], None] = lambda msg: None,
) -> Iterator[Any]:
    """Yield a ``distributed.Client`` for a run, closing what this function started.

    Parameters
    ----------
    client : distributed.Client, optional
        Use as is (not closed here).
    scheduler : str, optional
        Connect to a running scheduler, ``tcp://host:port``.
    cluster : {"local", "slurm", "kubernetes"}
        Otherwise start this kind of cluster: an embedded LocalCluster of worker processes
        (default), SLURM jobs (dask-jobqueue) or a Kubernetes DaskCluster (dask-kubernetes).
    cluster_config : path, optional
        The jobqueue YAML or the DaskCluster manifest for ``slurm``/``kubernetes``.
    workers : int, optional
        Worker processes (local; default: one per core, at most 8) or jobs/replicas; with
        ``processes=False`` the threads of the one local worker.
    processes : bool
        For ``cluster="local"``: worker processes (True), or one worker of threads in this
        process (False), which starts and stops in a fraction of a second (and serves no
        dashboard).
    log : callable
        Receives one line naming the cluster and its dashboard.
    """
    from distributed import Client, LocalCluster

    # Every client here is made current for the block (and never set as the process's
    # default): dask computations inside then use exactly the client given, not a default
    # client left behind by an earlier Client() whose connection failed.
    if client is not None:
        with client.as_current():
            yield client
        return
    if scheduler is not None:
        try:
            c = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise ParameterError(
                f"cannot connect to the dask scheduler at {scheduler!r} within "
                f"{CONNECT_TIMEOUT} s ({exc}); check the address and that it is running."
            ) from None
        with c, c.as_current():
            log(f"connected to {scheduler}; dashboard {c.dashboard_link}")
            yield c
        return
    if cluster not in CLUSTER_KINDS:
        raise ParameterError(f"cluster must be one of {CLUSTER_KINDS}; got {cluster!r}.")
    if cluster == "local":
        n = workers or max(1, min(os.cpu_count() or 1, 8))
        made = LocalCluster(n_workers=n if processes else 1,
                            threads_per_worker=1 if processes else n, processes=processes,
                            dashboard_address="127.0.0.1:0",
                            # The dashboard (bokeh) takes 0.45 s to start: a small input's
                            # run on threads is over in a few seconds.
                            scheduler_kwargs={"dashboard": processes},
                            # A failed task's error reaches the client, which raises it
                            # once; the workers' own ERROR lines would repeat it on stderr.
                            silence_logs=logging.CRITICAL,
                            **({"env": LOCAL_WORKER_ENV} if processes else {}))
    else:
        if cluster_config is None:
            raise ParameterError(
                f"--cluster {cluster} needs --cluster-config (see deploy/{cluster}/)."
            )
        factory = slurm_cluster if cluster == "slurm" else kubernetes_cluster
        made = factory(cluster_config, workers=workers or 4)
    with made, Client(made, set_as_default=False) as c, c.as_current():
        if cluster == "local" and not processes:
            log(f"{n} threads of this process (no dashboard)")
        else:
            log(f"{cluster} dask cluster; dashboard {c.dashboard_link}")
        yield c


def numba_threadsafe() -> bool:
    """Whether numba's threading layer lets several threads launch parallel kernels at once.

    On threads, two tasks may run parallel kernels together: the OpenMP and TBB layers allow
    it, numba's own ``workqueue`` layer (the one left where neither is installed, e.g. often
    on macOS) aborts the process.
    """
    import numba

    try:
        from numba.np.ufunc import parallel

        parallel._launch_threads()  # picks the layer without running a kernel
        return numba.threading_layer() != "workqueue"
    except Exception:  # an unknown numba: assume the worst
        return False


@contextlib.contextmanager
def client_in_background(**kwargs: Any) -> Iterator[Callable[[], Any]]:
    """Start :func:`dask_client` ``(**kwargs)`` in a thread at once; yield a function that
    waits for its client.

    The cluster starts (worker processes import dask and dmotif) while the caller opens and
    hashes its input. The caller makes the client current in its own thread
    (``client.as_current()``); the cluster is closed, in the thread that started it, when
    the block ends.
    """
    stack = contextlib.ExitStack()
    pool = ThreadPoolExecutor(1, thread_name_prefix="dmotif-cluster")
    started = pool.submit(stack.enter_context, dask_client(**kwargs))
    try:
        yield started.result
    finally:
        with contextlib.suppress(Exception):  # an error starting it was the caller's to see
            started.result()
        pool.submit(stack.close).result()
        pool.shutdown()
