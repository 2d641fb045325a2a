"""The kernel of one tile's detection: smoothing, peaks, sub-pixel refinement (no dask)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._peaks import local_maxima, smooth
from ._refine import COM_ITERATIONS, FIT_WINDOW, START_ITERATIONS, centre_of_mass, gaussian_fit

__all__ = ["detect_tile"]


def detect_tile(
    tile: np.ndarray,
    *,
    sigma: float,
    min_distance: float,
    threshold: float,
    refine: str | None,
    window: float,
    strong: float | None = None,
    site: float | None = None,
    support: float | None = None,
    translations: np.ndarray | None = None,
    neighbours: Sequence[np.ndarray] = (),
    cell_site: float | None = None,
    anchor: float | None = None,
    tolerance: float = 0.0,
    link: float = 0.0,
    core: tuple[int, int, int, int] | None = None,
    origin: tuple[int, int] = (0, 0),
) -> dict[str, np.ndarray]:
    """Detect the atom columns of one 2-D tile.

    Parameters
    ----------
    tile : ndarray (ny, nx)
    sigma : float
        Smoothing scale, pixels.
    min_distance : float
        Smallest distance between two columns, pixels.
    threshold : float
        Lowest smoothed value of a column.
    strong, site, support, translations, neighbours, cell_site, anchor, tolerance, link
        How a column below ``strong`` is supported (see :func:`local_maxima`).
    refine : {"com", "gaussian", None}
        Sub-pixel refinement.
    window : float
        Radius of the centre-of-mass disk, pixels; the Gaussian fit reads ``4/3`` of it.
    core : (y0, y1, x0, x1), optional
        Only columns whose integer peak lies in this region are returned.
    origin : (int, int)
        Image position of the tile's first pixel; positions are returned in image pixels as
        ``(peak + origin) + offset``, the same bits whatever the tile.

    Returns
    -------
    dict of ndarray
        ``y``, ``x`` (float64, image pixels), ``intensity`` (the smoothed peak value, float32)
        and, for ``"gaussian"``, ``amplitude`` and ``width``; in raster order of the peaks.
    """
    img = np.asarray(tile, dtype=np.float64)
    sm = smooth(img, sigma)
    peaks = local_maxima(sm, min_distance=min_distance, threshold=threshold, strong=strong,
                         site=site, support=support, translations=translations,
                         neighbours=neighbours, cell_site=cell_site, anchor=anchor,
                         tolerance=tolerance, link=link, core=core)
    out = {"intensity": sm[peaks[:, 0], peaks[:, 1]].astype(np.float32)}
    dy = np.zeros(len(peaks))
    dx = np.zeros(len(peaks))
    if refine is not None:
        n_iter = START_ITERATIONS if refine == "gaussian" else COM_ITERATIONS
        dy, dx = centre_of_mass(img, peaks, window=window, n_iter=n_iter)
    if refine == "gaussian":
        fit = gaussian_fit(img, peaks, dy, dx, window=FIT_WINDOW * window, sigma=sigma)
        dy, dx = fit[:, 1], fit[:, 2]
        out["amplitude"] = fit[:, 0].astype(np.float32)
        out["width"] = fit[:, 3].astype(np.float32)
    out["y"] = (peaks[:, 0] + origin[0]).astype(np.float64) + dy
    out["x"] = (peaks[:, 1] + origin[1]).astype(np.float64) + dx
    return out
