"""Figures of the layout, the motifs and per-atom values on the image (matplotlib; every
function returns its figure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib as mpl
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ..errors import DataError

__all__ = ["MOTIF_COLORS", "grey_range", "plot_layout", "plot_map", "plot_motifs"]


#: One colour per motif label, shared by every dmotif figure (label k -> colour k).
MOTIF_COLORS = mpl.colormaps["tab10"]

def plot_layout(
    layout: xr.DataArray | np.ndarray,
    labels: xr.DataArray | np.ndarray | None = None,
    *,
    point_size: float = 1.0,
    max_points: int = 200_000,
    seed: int = 0,
    names: dict[int, str] | None = None,
) -> Figure:
    """Scatter the 2-D layout, coloured by motif (unassigned atoms in grey).

    Parameters
    ----------
    layout : xarray.DataArray or numpy.ndarray
        Layout with dims ``("atom", "axis")``.
    labels : xarray.DataArray or numpy.ndarray, optional
        Motif labels over ``atom`` (-1 unassigned).
    point_size : float, default 1.0
        Marker area in points².
    max_points : int, default 200000
        At most this many atoms are drawn (a seeded sample), to keep the figure light.
    seed : int, default 0
        Seed of that sample.
    names : dict, optional
        Label -> name shown in the legend (default: the label).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = plot_layout(np.random.default_rng(0).normal(size=(100, 2)), np.zeros(100, int))
    >>> len(fig.axes)
    1
    """
    y = np.asarray(layout.values if isinstance(layout, xr.DataArray) else layout)
    lab = np.zeros(y.shape[0], dtype=np.int64) if labels is None else np.asarray(labels)
    keep = np.arange(y.shape[0])
    if keep.size > max_points:
        keep = np.sort(np.random.default_rng(seed).choice(keep.size, max_points, replace=False))
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    y, lab = y[keep], lab[keep]
    unassigned = lab < 0
    ax.scatter(*y[unassigned].T, s=point_size, c="0.7", linewidths=0, label="unassigned")
    cmap = MOTIF_COLORS
    for motif in np.unique(lab[~unassigned]):
        pts = y[lab == motif]
        ax.scatter(*pts.T, s=point_size, color=cmap(motif % cmap.N), linewidths=0,
                   label=(names or {}).get(int(motif), str(motif)))
    if labels is not None:
        # beside the axes, never over the points; the 12 largest motifs, the rest counted
        handles, texts = ax.get_legend_handles_labels()
        sizes = [len(c.get_offsets()) for c in ax.collections]
        by_size = sorted(range(1, len(texts)), key=lambda i: -sizes[i])
        keep = ([0] if unassigned.any() else []) + by_size[:12]
        if len(by_size) > 12:
            ax.plot([], [], ls="", label=f"+ {len(by_size) - 12} more")
            keep.append(len(texts))
            handles, texts = ax.get_legend_handles_labels()
        ax.legend([handles[i] for i in keep], [texts[i] for i in keep], title="motif",
                  markerscale=4 / max(point_size, 0.1), fontsize="small",
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.subplots_adjust(right=0.78)
    ax.set_xlabel("l0")
    ax.set_ylabel("l1")
    ax.set_aspect("equal", adjustable="datalim")
    return fig


def plot_motifs(summary: xr.Dataset, *, ncols: int = 6, cmap: str = "gray",
                names: Mapping[int, str] | None = None) -> Figure:
    """Mean patch of each motif, titled with its name and share of the atoms, all on one
    colour scale (a brighter motif shows brighter).

    Parameters
    ----------
    summary : xarray.Dataset
        Output of :func:`dmotif.motif_summary` with a ``mean_patch`` variable.
    ncols : int, default 6
        Panels per row.
    cmap : str, default "gray"
        Colour map of the patches.
    names : mapping of int to str, optional
        A name per motif label (the hierarchy's level-1 names, as the report uses); the
        label otherwise.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> ds = xr.Dataset({"mean_patch": (("motif", "py", "px"), np.ones((3, 5, 5))),
    ...                  "fraction": ("motif", [0.5, 0.3, 0.2])})
    >>> len(plot_motifs(ds).axes)
    3
    """
    if "mean_patch" not in summary:
        raise DataError(
            "summary has no mean_patch; call motif_summary(labels, patches=...) first."
        )
    patches = summary["mean_patch"].transpose("motif", ...).values
    k = patches.shape[0]
    ncols = max(1, min(ncols, k))
    nrows = max(1, -(-k // ncols))
    fig = Figure(figsize=(2 * ncols, 2.2 * nrows))
    lo, hi = grey_range(patches)
    for motif in range(k):
        ax = fig.add_subplot(nrows, ncols, motif + 1)
        ax.imshow(patches[motif], cmap=cmap, vmin=lo, vmax=hi)
        title = f"motif {(names or {}).get(motif, motif)}"
        if "fraction" in summary:
            title += f" ({100 * float(summary['fraction'][motif]):.1f} %)"
        ax.set_title(title, fontsize="small")
        ax.set_axis_off()
    return fig


def grey_range(patches: Any) -> tuple[float, float] | tuple[None, None]:
    """The least and greatest finite value over all ``patches`` (arrays of any shapes): one
    grey scale for mean patches compared side by side, so a brighter motif shows brighter;
    ``(None, None)`` (matplotlib's own scaling) when none is finite."""
    values = np.concatenate([np.ravel(p) for p in patches]) if len(patches) else np.empty(0)
    values = values[np.isfinite(values)]
    return (float(values.min()), float(values.max())) if values.size else (None, None)


def plot_map(
    image: xr.DataArray | np.ndarray,
    atoms: xr.Dataset,
    values: Any,
    *,
    frame: int = 0,
    cmap: str = "viridis",
    size: float = 12.0,
    max_side: int = 1200,
    label: str | None = None,
) -> Figure:
    """Paint a per-atom value (manifold coordinate, label, registry...) on the image.

    Parameters
    ----------
    image : xarray.DataArray or ndarray
        ``(frame, y, x)`` stack or a 2-D image. A stack is block-averaged to at most
        ``max_side`` pixels on its long side (the atoms keep their places), so the figure
        stays small whatever the image.
    atoms : xarray.Dataset
        Atom table with ``frame``, ``y``, ``x`` (pixels).
    values : array_like
        One number per atom.
    frame : int
        Frame to draw.
    cmap : str
        Colormap of the values.
    size : float
        Marker size.
    max_side : int, default 1200
        Largest side, pixels, of the drawn image of a stack.
    label : str, optional
        Title of the colour bar.

    Returns
    -------
    matplotlib.figure.Figure
        The image in grey with one coloured marker per atom of ``frame`` and a colour bar.

    Raises
    ------
    DataError
        When ``values`` does not hold one number per atom.
    """
    vals = np.asarray(values.values if isinstance(values, xr.DataArray) else values, float)
    if vals.shape != (atoms.sizes["atom"],):
        raise DataError(
            f"values must hold one number per atom ({atoms.sizes['atom']}); got shape "
            f"{vals.shape}."
        )
    if isinstance(image, xr.DataArray) and "frame" in image.dims:
        from .overview import view_of

        img, step = view_of(image, frame, max_side)
    else:
        img = np.asarray(image.values if isinstance(image, xr.DataArray) else image)
        img, step = (img[frame] if img.ndim == 3 else img), 1
    sel = (atoms["frame"].values == frame) if "frame" in atoms else np.ones(vals.size, bool)
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    ax.imshow(img, cmap="gray", extent=(-0.5, img.shape[1] * step - 0.5,
                                        img.shape[0] * step - 0.5, -0.5))
    sc = ax.scatter(atoms["x"].values[sel], atoms["y"].values[sel], c=vals[sel], s=size,
                    cmap=cmap)
    fig.colorbar(sc, ax=ax, label=label)
    ax.set_axis_off()
    return fig
