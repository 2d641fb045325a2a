"""A coordinate along the manifold a layout traces: continuous variation, not clusters."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._random import Seed, seed_int
from ..errors import DataError, ParameterError

__all__ = ["manifold_coordinate"]


def manifold_coordinate(
    layout: xr.DataArray | np.ndarray,
    *,
    n_components: int = 1,
    n_neighbors: int = 15,
    max_landmarks: int = 2000,
    seed: Seed = 0,
) -> xr.DataArray:
    """A coordinate along the manifold a layout traces (continuous variation, not clusters).

    Isomap (geodesic distances over a kNN graph) unrolls the curve or sheet the points lie on.
    Above ``max_landmarks`` points it is fitted on a seeded sample and the others are placed
    by its out-of-sample transform, so memory stays bounded. The coordinate is scaled to
    [0, 1] per component; its sign is fixed so that it grows with the first layout axis.

    Parameters
    ----------
    layout : xarray.DataArray or ndarray
        ``(atom, axis)`` points, e.g. the FR layout.
    n_components : int
        1 for a curve, 2 for a sheet.
    n_neighbors : int
        Neighbours of the kNN graph.
    max_landmarks : int
        Largest sample Isomap is fitted on.
    seed : int, numpy.random.Generator or None
        Seed of the landmark sample (normalised as every dmotif seed: None is 0, a Generator
        gives one draw).

    Returns
    -------
    xarray.DataArray
        ``(atom,)`` when ``n_components == 1``, else ``(atom, component)``.

    Raises
    ------
    DataError
        Fewer points than ``n_neighbors + 1`` or non-finite points.
    ParameterError
        ``n_components`` not 1 or 2.
    """
    from sklearn.manifold import Isomap

    if n_components not in (1, 2):
        raise ParameterError(f"n_components must be 1 or 2; got {n_components!r}.")
    pts = np.asarray(layout.values if isinstance(layout, xr.DataArray) else layout, float)
    if pts.ndim != 2 or len(pts) <= n_neighbors or not np.isfinite(pts).all():
        raise DataError(
            f"layout must be a finite (atom, axis) array with more than n_neighbors="
            f"{n_neighbors} points; got shape {pts.shape}."
        )
    rng = np.random.default_rng(seed_int(seed))
    fit_idx = (np.sort(rng.choice(len(pts), max_landmarks, replace=False))
               if len(pts) > max_landmarks else np.arange(len(pts)))
    iso = Isomap(n_neighbors=n_neighbors, n_components=n_components)
    iso.fit(pts[fit_idx])
    coord = iso.transform(pts)
    for k in range(n_components):
        c = coord[:, k]
        if np.corrcoef(c, pts[:, 0])[0, 1] < 0:
            c = -c
        coord[:, k] = (c - c.min()) / max(np.ptp(c), 1e-12)
    if n_components == 1:
        return xr.DataArray(coord[:, 0], dims=("atom",), name="manifold")
    return xr.DataArray(coord, dims=("atom", "component"), name="manifold")
