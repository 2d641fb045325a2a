"""The deploy/ recipes: they parse, match dask-jobqueue's and dask-kubernetes' own structures,
and every command line in them is one the dmotif CLI accepts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from dmotif.cli import app
from dmotif.errors import ParameterError
from dmotif.pipeline.deploy import (
    LOCAL_WORKER_ENV,
    client_in_background,
    dask_client,
    slurm_cluster,
)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def _run_command_parses(args: list[str]) -> dict[str, Any]:
    """Parse ``dmotif run ...`` arguments with the real CLI, without running anything."""
    assert args[:2] == ["dmotif", "run"]
    command = typer.main.get_command(app)
    ctx = command.make_context("dmotif", list(args[1:]), resilient_parsing=False)
    sub = command.get_command(ctx, "run")
    return sub.make_context("run", list(args[2:])).params


def test_dockerfile_installs_as_the_readme_says() -> None:
    docker = (DEPLOY / "container" / "Dockerfile").read_text()
    readme = (ROOT / "README.md").read_text()
    installs = re.findall(r"^RUN (pip install .+)$", docker, flags=re.M)
    assert installs == ['pip install ".[io,cloud,deploy]"']
    assert installs[0] in readme
    assert "COPY dmotif ./dmotif" in docker and "COPY pyproject.toml" in docker


def test_slurm_jobqueue_config_builds_a_job_script() -> None:
    pytest.importorskip("dask_jobqueue")
    import dask

    # Only the test keeps the scheduler on loopback with a free dashboard port.
    local = {"dashboard_address": "127.0.0.1:0", "host": "127.0.0.1"}
    with dask.config.set({"jobqueue.slurm.scheduler-options": local}):
        cluster = slurm_cluster(DEPLOY / "slurm" / "jobqueue.yaml", workers=0)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -J dmotif-worker" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH --mem=30G" in script or "#SBATCH --mem=32G" in script
    assert "#SBATCH -t 02:00:00" in script
    assert "#SBATCH --exclusive" in script
    assert "export NUMBA_NUM_THREADS=2" in script
    assert "--nworkers 4" in script


def test_slurm_config_without_section_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.yaml"
    bad.write_text("jobqueue:\n  pbs: {cores: 1}\n")
    with pytest.raises(ParameterError, match="no 'jobqueue: slurm:' section"):
        slurm_cluster(bad, workers=0)


def test_sbatch_script_is_valid_bash_and_its_command_parses() -> None:
    script = DEPLOY / "slurm" / "run.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    line = next(x for x in script.read_text().splitlines() if x.startswith("dmotif run"))
    args = shlex.split(line.replace('"$INPUT"', "in.zarr").replace('"$OUTPUT"', "out.zarr")
                       .replace('"$CONFIG"', "jq.yaml").replace('"$WORKERS"', "8"))
    params = _run_command_parses(args)
    assert params["cluster"] == "slurm" and params["workers"] == 8


def _skeleton(obj: Any) -> Any:
    """The key structure of a manifest (dict keys and list lengths of named items)."""
    if isinstance(obj, dict):
        return {k: _skeleton(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list) and obj and isinstance(obj[0], dict) and "name" in obj[0]:
        return {item["name"]: _skeleton(item) for item in obj}
    return None


def _contains(big: Any, small: Any, path: str = "") -> list[str]:
    """Key paths of ``small`` missing from ``big``."""
    if not isinstance(small, dict):
        return []
    missing = []
    for k, v in small.items():
        if not isinstance(big, dict) or k not in big:
            missing.append(path + "/" + str(k))
        else:
            missing += _contains(big[k], v, path + "/" + str(k))
    return missing


def test_daskcluster_manifest_matches_the_operators_spec() -> None:
    ops = pytest.importorskip("dask_kubernetes.operator")
    ours = yaml.safe_load((DEPLOY / "kubernetes" / "daskcluster.yaml").read_text())
    theirs = ops.make_cluster_spec(name="dmotif", image=ours["spec"]["worker"]["spec"]
                                   ["containers"][0]["image"], n_workers=4)
    assert ours["apiVersion"] == theirs["apiVersion"] and ours["kind"] == theirs["kind"]
    assert _contains(_skeleton(ours), _skeleton(theirs)) == []
    worker = ours["spec"]["worker"]["spec"]["containers"][0]
    scheduler = ours["spec"]["scheduler"]["spec"]["containers"][0]
    assert worker["args"][0] == "dask-worker" and scheduler["args"][0] == "dask-scheduler"
    assert worker["image"] == scheduler["image"]


def test_kubernetes_job_runs_a_command_the_cli_accepts() -> None:
    job = yaml.safe_load((DEPLOY / "kubernetes" / "dmotif-job.yaml").read_text())
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    params = _run_command_parses(args)
    assert params["scheduler"].startswith("tcp://dmotif-scheduler")
    assert params["output"].startswith("s3://")


def _environment(names: list[str]) -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in names}


def test_embedded_cluster_workers_get_their_environment() -> None:
    messages: list[str] = []
    with dask_client(workers=1, log=messages.append) as client:
        seen = client.run(_environment, [*LOCAL_WORKER_ENV, "MALLOC_TRIM_THRESHOLD_"])
    (env,) = seen.values()
    # dmotif's settings are added to distributed's own, which stay
    assert env == {**LOCAL_WORKER_ENV, "MALLOC_TRIM_THRESHOLD_": "65536"}
    assert messages and "dashboard http://127.0.0.1:" in messages[0]


def test_threads_cluster_runs_in_this_process_without_dashboard() -> None:
    messages: list[str] = []
    with dask_client(workers=2, processes=False, log=messages.append) as client:
        pids = client.run(os.getpid)
        info = client.scheduler_info()
        # The scheduler's HTTP server answers, but serves no dashboard page.
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"http://127.0.0.1:{info['services']['dashboard']}/status")
    assert list(pids.values()) == [os.getpid()]
    (worker,) = info["workers"].values()
    assert worker["nthreads"] == 2
    assert messages == ["2 threads of this process (no dashboard)"]


def test_cluster_started_in_background_serves_the_callers_computations() -> None:
    import dask.array as da

    with client_in_background(workers=1, processes=False) as started:
        client = started()
        with client.as_current():
            assert int(da.ones(10, chunks=5).sum().compute()) == 10
        # the computation went to this client's worker
        assert client.run(lambda dask_worker: len(dask_worker.data) >= 0)
    assert client.status == "closed"


def test_a_cluster_that_cannot_start_raises_when_waited_for() -> None:
    with pytest.raises(ParameterError, match="must be one of"), \
            client_in_background(cluster="nowhere") as started:
        started()


@pytest.mark.parametrize(("layer", "safe"), [("omp", "True"), ("workqueue", "False")])
def test_threads_are_chosen_only_where_numba_allows_concurrent_kernels(layer: str,
                                                                      safe: str) -> None:
    code = "from dmotif.pipeline.deploy import numba_threadsafe; print(numba_threadsafe())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                      "NUMBA_THREADING_LAYER": layer})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == safe
