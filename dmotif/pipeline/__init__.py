"""The whole method in one call, resumable: configuration, the run, its progress, its cluster.

- :mod:`dmotif.pipeline.runner`: :func:`run` (detect → Zernike → PCA → FR layout → labels →
  hierarchy, each stage persisted into the result store as it finishes);
- :mod:`dmotif.pipeline.config`: the configuration of a run (:func:`default_config`,
  :func:`load_config`, :func:`dump_config_toml`);
- :mod:`dmotif.pipeline.deploy`: the dask cluster a run starts or joins (local, SLURM,
  Kubernetes); ``_progress`` counts the tasks of each stage on it.
"""

from __future__ import annotations

from .config import STAGES, default_config, dump_config_toml, load_config
from .runner import run

__all__ = ["STAGES", "default_config", "dump_config_toml", "load_config", "run"]
