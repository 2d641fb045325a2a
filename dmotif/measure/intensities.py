"""Column-intensity statistics: a Gaussian mixture over each motif's cross-sections, its number
of components chosen by the Bayesian information criterion (atom counting)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .._random import seed_int
from ..errors import DataError, ParameterError
from ._source import columns_of

__all__ = ["intensity_statistics"]

# A component needs this many columns per free parameter on average, else the mixture stops
# growing: BIC alone lets a few outliers have a component of their own.
MIN_PER_COMPONENT = 5


def _mixture(values: np.ndarray, max_components: int, seed: int) -> tuple[Any, list[float]]:
    """The mixture of 1 to ``max_components`` components with the lowest BIC, and every BIC."""
    from sklearn.mixture import GaussianMixture

    best, bics = None, []
    x = values.reshape(-1, 1)
    for k in range(1, max_components + 1):
        if len(values) < MIN_PER_COMPONENT * 3 * k:
            break
        gmm = GaussianMixture(k, n_init=3, random_state=seed, reg_covar=1e-6 * values.var())
        gmm.fit(x)
        bics.append(float(gmm.bic(x)))
        if best is None or bics[-1] < min(bics[:-1]):
            best = gmm
    return best, bics


def intensity_statistics(
    source: Any,
    *,
    labels: Any = None,
    variable: str = "cross_section",
    max_components: int = 8,
    seed: int = 0,
) -> xr.Dataset:
    """A Gaussian mixture over each motif's column intensities, as many components as BIC says.

    For each level-1 motif, mixtures of 1 to ``max_components`` Gaussians are fitted to its
    columns' ``variable`` (by default the Voronoi cross-section of
    :func:`dmotif.refine_columns`, which grows about linearly with the number of atoms in a
    thin column) and the one with the lowest Bayesian information criterion is kept: its
    components, ordered by mean, are the classes of atom counting; each column gets the class
    most likely to hold it.

    Parameters
    ----------
    source : dmotif.Result or xarray.Dataset
        A run's result, or an atom table with ``variable`` (and ``label``).
    labels : array_like of int, optional
        The motif of each column; default the table's ``label``.
    variable : str
        The per-column intensity (e.g. ``"cross_section"``, ``"fit_amplitude"``,
        ``"intensity"``).
    max_components : int
        The most components tried per motif (fewer when a motif has under 15 columns per
        component).
    seed : int
        Seed of the mixtures' initialisations.

    Returns
    -------
    xarray.Dataset
        ``component_mean``, ``component_sd``, ``component_weight`` over ``(motif,
        component)`` (NaN beyond a motif's number of components), ``n_components`` and
        ``bic`` (``(motif, k)``, the criterion of each size tried) per motif, and
        ``intensity_class`` over ``atom`` (int32, -1 for unlabelled columns or missing
        values). Attrs ``variable``.

    Raises
    ------
    DataError
        When the table has no ``variable``.
    ParameterError
        When ``max_components`` is not a positive int.

    Examples
    --------
    >>> import numpy as np, xarray as xr, dmotif
    >>> rng = np.random.default_rng(0)
    >>> cs = np.concatenate([rng.normal(m, 0.05, 200) for m in (1, 2, 3)])
    >>> atoms = xr.Dataset({"y": ("atom", cs), "x": ("atom", cs), "cross_section": ("atom", cs),
    ...                     "label": ("atom", np.zeros(600, int))})
    >>> stats = dmotif.intensity_statistics(atoms)
    >>> int(stats["n_components"][0]), stats["component_mean"][0, :3].round(1).values.tolist()
    (3, [1.0, 2.0, 3.0])
    """
    if isinstance(max_components, bool) or not isinstance(max_components, int) \
            or max_components < 1:
        raise ParameterError(f"max_components must be an int >= 1; got {max_components!r}.")
    cols = columns_of(source, labels)
    if variable not in cols.atoms:
        raise DataError(
            f"the atom table has no {variable!r}; run dmotif.refine_columns first for "
            "'cross_section', or name another per-column variable."
        )
    values = np.asarray(cols.atoms[variable].values, dtype=np.float64)
    motifs = np.unique(cols.labels[cols.labels >= 0])
    shape = (len(motifs), max_components)
    mean, sd, weight, bic = (np.full(shape, np.nan) for _ in range(4))
    n_comp = np.zeros(len(motifs), np.int32)
    klass = np.full(len(values), -1, np.int32)
    for i, m in enumerate(motifs):
        idx = np.flatnonzero((cols.labels == m) & np.isfinite(values))
        gmm, bics = _mixture(values[idx], max_components, seed_int(seed))
        bic[i, :len(bics)] = bics
        if gmm is None:
            continue
        order = np.argsort(gmm.means_[:, 0])
        k = len(order)
        n_comp[i] = k
        mean[i, :k] = gmm.means_[order, 0]
        sd[i, :k] = np.sqrt(gmm.covariances_.reshape(-1)[order])
        weight[i, :k] = gmm.weights_[order]
        rank = np.argsort(order)
        klass[idx] = rank[gmm.predict(values[idx].reshape(-1, 1))]
    comp = ("motif", "component")
    return xr.Dataset(
        {"component_mean": (comp, mean), "component_sd": (comp, sd),
         "component_weight": (comp, weight), "bic": (("motif", "k"), bic),
         "n_components": ("motif", n_comp), "intensity_class": ("atom", klass)},
        coords={"motif": motifs, "component": np.arange(max_components),
                "k": np.arange(1, max_components + 1)},
        attrs={"variable": variable},
    )
