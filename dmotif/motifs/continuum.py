"""Discrete motifs or a continuum: does the variation of the features live in regions?

Column types (and the defects among them) alternate from site to site: over a neighbourhood of
a few spacings they mix in fixed proportions, so the features averaged over it hardly vary.
A continuous variation (the local stacking across the moiré of a twisted bilayer, a strain or
composition gradient) is a property of the region: it survives the average. The *regional
share* is the share of the features' variance that survives averaging over each atom's
neighbourhood (:func:`dmotif.neighbourhood_mean`, 3 spacings); it is computed on the features
as they are and with each atom's feature vector scaled to unit length, and the smaller of the
two is kept, so that a slow change of brightness (thickness, contamination, scan), which
scales the features, is not taken for a continuum.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .._random import Seed
from ..embed.reduce import as_atom_matrix
from ..errors import DataError
from ..features._neighbourhood import neighbourhood_sums
from ..features.neighbourhood import locate

__all__ = ["CONTINUUM_SHARE", "continuum_coordinate", "feature_structure"]

#: Regional share above which the features are a continuum. Measured on the Zernike features
#: (default radius) of abTEM images: 0.002–0.081 on MoSe2, SrTiO3 and hBN with defects (ADF and
#: ABF, clean to 10⁴ e/Å²) and on three real micrographs (Se-implanted MoS2, perovskite ADF and
#: ABF); 0.164–0.211 on a 4°-twisted MoSe2 bilayer (ADF and ABF, clean and 10⁵ e/Å², one
#: moiré period or half of one in the image).
CONTINUUM_SHARE = 0.12


#: Frames the share is computed on, at most (evenly spaced across a stack): memory and time
#: stay those of a few frames whatever the stack.
MAX_FRAMES = 16


def _spread(values: np.ndarray) -> float:
    """Summed squared deviations of the rows of ``values`` from their mean."""
    return float(((values - values.mean(axis=0)) ** 2).sum())


def feature_structure(
    features: xr.DataArray | np.ndarray,
    atoms: xr.Dataset,
    *,
    reach: float | None = None,
) -> dict[str, float | str]:
    """Whether the features vary as discrete motifs or as a continuum across the image.

    Parameters
    ----------
    features : xarray.DataArray or numpy.ndarray
        ``(atom, <feature dim>)`` features in the order of ``atoms``: the Zernike features
        (:func:`dmotif.zernike_features`), not PCA scores, whose centring loses the brightness
        that the unit scaling divides out.
    atoms : xarray.Dataset
        The atom table: ``y``, ``x`` (pixels) and, for a stack, ``frame``.
    reach : float, optional
        Radius of the neighbourhood, pixels; default 3 nearest-neighbour spacings.

    Returns
    -------
    dict
        ``structure``: ``"continuum"`` when the regional share exceeds
        :data:`CONTINUUM_SHARE` (0.12), else ``"discrete"``; ``regional_share``: the share
        (0: the neighbourhoods all look alike, 1: the features are a smooth field). Only atoms
        whose neighbourhood lies inside the atoms' extent in their frame count (all atoms if
        none does), on at most 16 frames of a stack, evenly spaced.

    Raises
    ------
    DataError
        Features and atoms of different lengths, or non-finite values.
    ParameterError
        ``reach`` not a positive number.

    Notes
    -----
    Noise alone leaves about ``1 / k`` of its variance, ``k`` the atoms in a neighbourhood
    (about 33 at 3 spacings in a hexagonal lattice). A continuum that the image covers only in
    part still counts (half a moiré period: 0.17–0.21); a variation with the period of a few
    spacings does not survive the average and is not seen.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> yy, xx = np.mgrid[0:40, 0:40].reshape(2, -1) * 10.0
    >>> atoms = xr.Dataset({"y": ("atom", yy), "x": ("atom", xx)}, attrs={"spacing_px": 10.0})
    >>> types = np.where((yy + xx) % 20 == 0, 1.0, 2.0)[:, None] * [1.0, 0.5]
    >>> feature_structure(types, atoms)["structure"]
    'discrete'
    >>> gradient = np.column_stack([1 + xx / 400, 1 - xx / 400])
    >>> feature_structure(gradient, atoms)["structure"]
    'continuum'
    """
    feats = as_atom_matrix(features)
    frame, yx, reach = locate(atoms, feats.shape[0], reach)
    frames = np.unique(frame)
    frames = frames[np.unique(np.linspace(0, frames.size - 1, MAX_FRAMES).round().astype(int))]
    total, kept = np.zeros(2), np.zeros(2)
    for f in frames:
        rows = np.flatnonzero(frame == f)
        values = np.asarray(feats[rows].values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError(f"features of frame {f} contain NaN or inf; drop those atoms first.")
        lo, hi = yx[rows].min(axis=0) + reach, yx[rows].max(axis=0) - reach
        inner = ((yx[rows] >= lo) & (yx[rows] <= hi)).all(axis=1)
        inner = inner if inner.any() else np.ones_like(inner)
        norm = np.linalg.norm(values, axis=1, keepdims=True)
        unit = np.divide(values, norm, out=np.zeros_like(values), where=norm > 0)
        # The features as they are and scaled to unit length side by side: one neighbourhood
        # search and one sparse product for both.
        both = np.hstack([values, unit])
        sums, counts = neighbourhood_sums(both, np.zeros(rows.size, np.int64), yx[rows], reach)
        smooth = (sums / counts[:, None])[inner]
        p = values.shape[1]
        for j in range(2):
            total[j] += _spread(both[inner, j * p : (j + 1) * p])
            kept[j] += _spread(smooth[:, j * p : (j + 1) * p])
    share = float(np.min(np.divide(kept, total, out=np.zeros(2), where=total > 0)))
    return {"structure": "continuum" if share > CONTINUUM_SHARE else "discrete",
            "regional_share": share}


def continuum_coordinate(
    scores: xr.DataArray | np.ndarray,
    atoms: xr.Dataset,
    *,
    reach: float | None = None,
    seed: Seed = 0,
) -> xr.DataArray:
    """Each atom's place, 0 to 1, along the continuum its neighbourhood's features trace.

    Where :func:`feature_structure` calls the features a continuum (a twisted bilayer's local
    stacking, a strain or composition gradient), the motifs are only pieces of it: this
    coordinate is what to map. The scores are averaged over each atom's neighbourhood
    (:func:`dmotif.neighbourhood_mean`: the column types mix in fixed proportions there and
    the regional variation is left), and :func:`dmotif.manifold_coordinate` unrolls the
    curve they trace. A run stores it as ``continuum`` when it calls the features a
    continuum.

    Parameters
    ----------
    scores : xarray.DataArray or numpy.ndarray
        ``(atom, <dim>)`` PCA scores (or features) in the order of ``atoms``.
    atoms : xarray.Dataset
        The atom table: ``y``, ``x`` (pixels) and, for a stack, ``frame``.
    reach : float, optional
        Radius of the neighbourhood, pixels; default 3 nearest-neighbour spacings.
    seed : int, numpy.random.Generator or None, default 0
        Seed of the landmark sample of :func:`dmotif.manifold_coordinate`.

    Returns
    -------
    xarray.DataArray
        float64 over ``atom`` named ``"continuum"``, 0 to 1; its sign is arbitrary (the end
        with the larger first score is 1). Attrs ``reach`` (pixels).

    Examples
    --------
    Columns of two random types along a gradient in x: the coordinate follows the gradient,
    not the types.

    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> y, x = rng.uniform(0, 400, (2, 1600))
    >>> atoms = xr.Dataset({"y": ("atom", y), "x": ("atom", x)}, attrs={"spacing_px": 10.0})
    >>> kind = rng.integers(0, 2, 1600)
    >>> scores = np.column_stack([kind + x / 400, kind - (x / 400) ** 2])
    >>> c = continuum_coordinate(scores, atoms)
    >>> round(float(np.corrcoef(c, x)[0, 1]), 2)
    0.99
    """
    from ..embed.manifold import manifold_coordinate
    from ..features.neighbourhood import neighbourhood_mean

    smooth = neighbourhood_mean(scores, atoms, reach=reach)
    coord = manifold_coordinate(smooth.values, seed=seed)
    return coord.rename("continuum").assign_attrs(reach=smooth.attrs["reach"])
