"""Principal component analysis of the per-atom features (dask-ml, exact solver)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from ..errors import DataError, ParameterError

__all__ = ["as_atom_matrix", "pca"]

#: Default share of the variance kept when ``n_components`` is not given.
VARIANCE_KEPT = 0.95
#: Upper bound on the default number of components.
MAX_DEFAULT_COMPONENTS = 20
#: Lower bound on the default number of components (fewer when there are fewer features).
MIN_DEFAULT_COMPONENTS = 10
#: Rows per chunk of the canonical chunking that makes the result independent of the input's.
_CANONICAL_ROWS = 65536


def as_atom_matrix(features: xr.DataArray | np.ndarray, *, name: str = "features") -> xr.DataArray:
    """Return ``features`` as a 2-D float DataArray with ``atom`` first.

    A numpy or dask array is wrapped with dims ``("atom", "feature")``; a DataArray must be
    2-D with ``atom`` among its dims. Integer input is cast to float64.
    """
    if not isinstance(features, xr.DataArray):
        arr = features if isinstance(features, da.Array) else np.asarray(features)
        if arr.ndim != 2:
            raise DataError(
                f"{name} must be a 2-D array (atom, feature); got shape {arr.shape}. "
                "Reshape to one row per atom."
            )
        features = xr.DataArray(arr, dims=("atom", "feature"))
    if features.ndim != 2 or "atom" not in features.dims:
        raise DataError(
            f"{name} must be 2-D with an 'atom' dim; got dims {features.dims}. "
            "Pass a DataArray with dims ('atom', <feature dim>)."
        )
    features = features.transpose("atom", ...)
    if not np.issubdtype(features.dtype, np.floating):
        if not np.issubdtype(features.dtype, np.number):
            raise DataError(f"{name} must be numeric; got dtype {features.dtype}.")
        features = features.astype(np.float64)
    return features


def _canonical_dask(values: np.ndarray | da.Array) -> da.Array:
    """Rechunk to row blocks fixed by the shape alone, one block of columns.

    dask-ml's tall-skinny SVD needs a single column chunk, and its float sums depend on the row
    blocks: fixing them makes the result bit-identical whatever chunking the caller used.
    """
    n_rows = values.shape[0]
    rows = min(_CANONICAL_ROWS, n_rows)
    if isinstance(values, da.Array):
        return values.rechunk((rows, -1))
    return da.from_array(values, chunks=(rows, -1))


def _project(block: np.ndarray, mean: np.ndarray, components: np.ndarray) -> np.ndarray:
    with threadpool_limits(limits=1, user_api="blas"):
        return (block - mean) @ components.T


def pca(
    features: xr.DataArray | np.ndarray,
    *,
    n_components: int | None = None,
) -> xr.DataArray:
    """Project per-atom features on their principal components.

    Parameters
    ----------
    features : xarray.DataArray or numpy.ndarray
        Features with dims ``("atom", <feature dim>)`` (e.g. ``("atom", "zernike")``), numpy-
        or dask-backed; a plain 2-D array is read as one row per atom.
    n_components : int, optional
        Number of components kept. By default the fewest that explain 95 % of the variance,
        at least 10 (or all but one feature, when there are fewer) and at most 20. Must be
        smaller than the number of features.

    Returns
    -------
    xarray.DataArray
        Scores with dims ``("atom", "component")`` (dask-backed, float of the input's
        precision), the ``atom`` coordinate carried over; attrs ``n_components`` and
        ``explained_variance_ratio`` (list, one value per kept component).

    Notes
    -----
    dask-ml's exact tall-skinny QR solver (``svd_solver="tsqr"``) is used: its randomized path
    breaks with current scikit-learn. The input is rechunked to row blocks that depend only
    on its shape, so the result is the same for any chunking. Each component's sign is fixed
    so that its largest loading is positive.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(500, 6)) * [5.0, 3.0, 1.0, 0.1, 0.1, 0.1]
    >>> scores = pca(x, n_components=2)
    >>> scores.dims, scores.shape
    (('atom', 'component'), (500, 2))
    """
    from dask_ml.decomposition import PCA  # dask-ml (and scikit-learn) on first use: ~0.4 s

    features = as_atom_matrix(features)
    n_atoms, n_features = features.shape
    if n_components is not None:
        if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
            raise ParameterError(f"n_components must be an int or None; got {n_components!r}.")
        if not 1 <= n_components < n_features:
            raise ParameterError(
                f"n_components must be in [1, n_features); got n_components={n_components} "
                f"with n_features={n_features}. Pass fewer components or None."
            )
    if n_atoms < 2:
        raise DataError(f"PCA needs at least 2 atoms; got {n_atoms}.")
    x = _canonical_dask(features.data)
    if not bool(da.isfinite(x).all().compute()):
        raise DataError(
            f"features contain NaN or inf ({int((~da.isfinite(x)).sum().compute())} of "
            f"{n_atoms * n_features} values); drop or fill those atoms first."
        )
    model = PCA(n_components=min(n_atoms, n_features), svd_solver="tsqr")
    # One BLAS thread, as on dask workers: a threaded GEMM rounds differently per thread count.
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(x)
    ratio = np.asarray(model.explained_variance_ratio_, dtype=np.float64)
    if n_components is None:
        n_components = int(np.searchsorted(np.cumsum(ratio), VARIANCE_KEPT) + 1)
        # The floor keeps the weak, noise-like components: with only the two or three that
        # hold most of the variance, each motif's kNN graph is a low-dimensional mesh that
        # the FR layout folds into many small beads (one class becomes tens of clusters).
        floor = min(MIN_DEFAULT_COMPONENTS, n_features - 1)
        n_components = min(max(n_components, floor), MAX_DEFAULT_COMPONENTS, n_features)
    components = np.asarray(model.components_[:n_components], dtype=x.dtype)
    largest = np.argmax(np.abs(components), axis=1)
    signs = np.sign(components[np.arange(n_components), largest])
    components *= signs[:, None]
    mean = np.asarray(model.mean_, dtype=x.dtype)
    scores = x.map_blocks(_project, mean, components, chunks=(x.chunks[0], (n_components,)),
                          dtype=x.dtype)
    out = xr.DataArray(
        scores,
        dims=("atom", "component"),
        coords={"component": np.arange(n_components)},
        name="pca",
        attrs={
            "n_components": int(n_components),
            "explained_variance_ratio": [float(r) for r in ratio[:n_components]],
        },
    )
    if "atom" in features.coords:
        out = out.assign_coords(atom=features.coords["atom"])
    return out
