"""A synthetic sample: the lazy image stack and its exact ground truth, stored and read back."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import xarray as xr

from ..errors import DataError
from ..io.store import write_dataset

__all__ = ["Synthetic", "load", "save"]


@dataclass(frozen=True)
class Synthetic:
    """A synthetic image stack and its ground truth.

    Attributes
    ----------
    image : xarray.DataArray
        ``(frame, y, x)`` float32, dask-backed (lazy), coords in nm.
    atoms : xarray.Dataset
        Truth over dim ``atom``: ``frame``, ``y``, ``x`` (pixels), ``label`` (int32, index
        into ``attrs["motif_names"]``), ``amplitude``, ``site_i``, ``site_j``, ``basis``.
    vacancies : xarray.Dataset
        Lattice sites left empty, over dim ``vacancy``: ``frame``, ``y``, ``x``, ``basis``.
    cells : xarray.Dataset or None
        Truth per Bravais cell over dim ``cell``: ``frame``, ``y``, ``x`` (position of basis
        site 0), ``site_i``, ``site_j`` and ``labels(cell, basis)`` (-1 where a site is empty).
    params : dict
        Every parameter of the generator (JSON-serialisable).
    """

    image: xr.DataArray
    atoms: xr.Dataset
    vacancies: xr.Dataset
    cells: xr.Dataset | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def motif_names(self) -> list[str]:
        """Names of the true motif labels, indexed by label."""
        return list(self.atoms.attrs["motif_names"])

    def to_dataset(self) -> xr.Dataset:
        """Return one Dataset (image plus truth, truth variables prefixed) for storage."""
        parts = [self.image.to_dataset(name="image")]
        for prefix, ds in (("atom", self.atoms), ("vacancy", self.vacancies), ("cell", self.cells)):
            if ds is None:
                continue
            renamed = ds.rename({v: f"{prefix}_{v}" for v in ds.data_vars})
            parts.append(renamed.drop_attrs())
        out = xr.merge(parts, combine_attrs="override", compat="no_conflicts", join="outer")
        out.attrs = {
            "dmotif_synthetic": self.params["kind"],
            "params": dict(self.params),
            "motif_names": self.motif_names,
        }
        out["image"].attrs = dict(self.image.attrs)
        return out


_TRUTH_PREFIXES = ("atom", "vacancy", "cell")


def save(sample: Synthetic, path: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Write a synthetic sample (image and truth) to a zarr store, atomically.

    :func:`dmotif.open_image` reads the image back; :func:`load` the whole sample.
    """
    return write_dataset(sample.to_dataset(), path, overwrite=overwrite)


def load(path: str | os.PathLike) -> Synthetic:
    """Read a sample written by :func:`save` (or ``dmotif synth``)."""
    ds = xr.open_zarr(os.fspath(path), consolidated=False, zarr_format=3)
    if "dmotif_synthetic" not in ds.attrs:
        raise DataError(
            f"{os.fspath(path)!r} is not a synthetic sample (no truth). Write one with "
            "`dmotif synth KIND -o FILE.zarr`."
        )
    parts: dict[str, xr.Dataset | None] = {}
    for prefix in _TRUTH_PREFIXES:
        names = [v for v in ds.data_vars if v.startswith(prefix + "_")]
        part = ds[names].rename({v: v[len(prefix) + 1 :] for v in names}).compute()
        parts[prefix] = part.drop_vars(list(part.coords)).drop_attrs() if names else None
    atoms = parts["atom"]
    atoms.attrs = {"motif_names": list(ds.attrs["motif_names"]),
                   "kind": ds.attrs["dmotif_synthetic"]}
    image = ds["image"]
    return Synthetic(image, atoms, parts["vacancy"], parts["cell"], dict(ds.attrs["params"]))
