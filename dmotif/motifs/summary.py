"""Per-motif summaries: size, representative atoms, mean patch and mean features."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import DataError

__all__ = ["motif_summary"]


def _group_means(values: xr.DataArray, labels: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``values`` (atom first) over the atoms of each motif, dask-friendly."""
    values = values.transpose("atom", ...)
    flat = values.data.reshape(values.shape[0], -1)
    onehot = (labels[:, None] == np.arange(k)[None, :]).astype(np.float64)
    if isinstance(flat, da.Array):
        onehot = da.from_array(onehot, chunks=(flat.chunks[0], -1))
    sums = np.asarray(da.compute(onehot.T @ flat)[0])
    counts = np.maximum(np.bincount(labels[labels >= 0], minlength=k), 1)
    return (sums / counts[:, None]).reshape((k, *values.shape[1:]))


def motif_summary(
    labels: xr.DataArray | np.ndarray,
    *,
    patches: xr.DataArray | None = None,
    features: xr.DataArray | np.ndarray | None = None,
    layout: xr.DataArray | np.ndarray | None = None,
    n_examples: int = 5,
) -> xr.Dataset:
    """Per motif: its size, representative atoms and, when given, mean patch and features.

    Parameters
    ----------
    labels : xarray.DataArray or numpy.ndarray
        Labels over ``atom`` (from :func:`dmotif.cluster`); -1 is unassigned and not summarised.
    patches : xarray.DataArray, optional
        Patches with dims ``("atom", "py", "px")`` (numpy- or dask-backed).
    features : xarray.DataArray or numpy.ndarray, optional
        Per-atom features ``(atom, <dim>)``; gives ``mean_feature`` and, without a layout,
        picks the representatives.
    layout : xarray.DataArray or numpy.ndarray, optional
        The 2-D layout; representatives are the atoms nearest the motif's medoid in it.
    n_examples : int, default 5
        Representative atoms per motif (padded with -1 for smaller motifs).

    Returns
    -------
    xarray.Dataset
        Over dim ``motif``: ``count``, ``fraction`` (of all atoms), ``examples(motif,
        example)`` (atom positions, int64), and ``mean_patch(motif, py, px)`` /
        ``mean_feature(motif, feature)`` when patches / features are given.

    Examples
    --------
    >>> import numpy as np
    >>> summary = motif_summary(np.array([0, 0, 1, -1, 0]), n_examples=2)
    >>> summary["count"].values.tolist(), summary["examples"].values.tolist()
    ([3, 1], [[0, 1], [2, -1]])
    """
    lab = np.asarray(labels.values if isinstance(labels, xr.DataArray) else labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer):
        raise DataError(f"labels must be 1-D integers; got shape {lab.shape}, {lab.dtype}.")
    n = lab.size
    k = int(lab.max() + 1) if n else 0
    counts = np.bincount(lab[lab >= 0], minlength=k)
    where = layout if layout is not None else features
    space = None
    if where is not None:
        space = np.asarray(where.values if isinstance(where, xr.DataArray) else where)
        if space.shape[0] != n:
            raise DataError(f"labels have {n} atoms but layout/features have {space.shape[0]}.")
    examples = np.full((k, n_examples), -1, dtype=np.int64)
    for motif in range(k):
        members = np.flatnonzero(lab == motif)
        if space is not None:
            pts = space[members].reshape(members.size, -1)
            centre = np.median(pts, axis=0)
            medoid = pts[np.argmin(((pts - centre) ** 2).sum(axis=1))]
            members = members[np.argsort(((pts - medoid) ** 2).sum(axis=1), kind="stable")]
        take = members[:n_examples]
        examples[motif, : take.size] = take
    ds = xr.Dataset(
        {
            "count": ("motif", counts.astype(np.int64)),
            "fraction": ("motif", counts / max(n, 1)),
            "examples": (("motif", "example"), examples),
        },
        coords={"motif": np.arange(k)},
    )
    for name, values in (("mean_patch", patches), ("mean_feature", features)):
        if values is None:
            continue
        if not isinstance(values, xr.DataArray):
            values = xr.DataArray(np.asarray(values), dims=("atom", "feature"))
        if values.sizes.get("atom") != n:
            raise DataError(f"{name}: expected {n} atoms, got dims {dict(values.sizes)}.")
        other = [d for d in values.transpose("atom", ...).dims if d != "atom"]
        ds[name] = (("motif", *other), _group_means(values, lab, k))
    return ds
