"""Figures of the column measurements: displacement arrows, strain maps, the intensity histogram
with its Gaussian mixture (matplotlib; every function returns its figure)."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from .plots import MOTIF_COLORS

__all__ = ["measurement_figures", "plot_displacements", "plot_intensity_histogram",
           "plot_strain"]

#: Maps show a central crop of at most this many pixels a side, where columns are resolved.
CROP = 640
STRAIN_VARS = ("strain_xx", "strain_yy", "strain_xy", "rotation")


def _crop(image: xr.DataArray, atoms: xr.Dataset, frame: int) -> tuple[np.ndarray, tuple,
                                                                       np.ndarray]:
    """The central crop of a frame, its extent for imshow and the atoms inside it."""
    ny, nx = image.sizes["y"], image.sizes["x"]
    y0, x0 = max(0, (ny - CROP) // 2), max(0, (nx - CROP) // 2)
    y1, x1 = min(ny, y0 + CROP), min(nx, x0 + CROP)
    pixels = np.asarray(image.isel(frame=frame, y=slice(y0, y1), x=slice(x0, x1)).values)
    y, x = atoms["y"].values, atoms["x"].values
    frames = atoms["frame"].values if "frame" in atoms else np.zeros(y.size, int)
    inside = (frames == frame) & (y >= y0) & (y < y1) & (x >= x0) & (x < x1)
    return pixels, (x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5), inside


def plot_displacements(image: xr.DataArray, atoms: xr.Dataset, disp_y: Any, disp_x: Any, *,
                       frame: int = 0, spacing: float | None = None) -> Figure:
    """Arrows of each column's displacement over a central crop of the image.

    Parameters
    ----------
    image : xarray.DataArray
        The ``(frame, y, x)`` stack.
    atoms : xarray.Dataset
        Atom table with ``frame``, ``y``, ``x`` (pixels).
    disp_y, disp_x : array_like
        Displacement per atom, pixels (NaN: no arrow), e.g. from :func:`dmotif.displacements`.
    frame : int
        The frame to draw.
    spacing : float, optional
        The column spacing, pixels: the 90th percentile of the arrows is drawn 0.4 of it long
        (default: the crop's width over 20).

    Returns
    -------
    matplotlib.figure.Figure
        Arrows exaggerated by the factor in the title, coloured by length (colour bar, px).
    """
    pixels, extent, inside = _crop(image, atoms, frame)
    dy, dx = np.asarray(disp_y, float), np.asarray(disp_x, float)
    sel = inside & np.isfinite(dy) & np.isfinite(dx)
    length = np.hypot(dy[sel], dx[sel])
    top = float(np.percentile(length, 90)) if length.size else 1.0
    spacing = spacing or (extent[1] - extent[0]) / 20
    gain = 0.4 * spacing / top if top > 0 else 1.0
    fig = Figure(figsize=(7, 6.2))
    ax = fig.add_subplot()
    ax.imshow(pixels, cmap="gray", extent=extent)
    q = ax.quiver(atoms["x"].values[sel], atoms["y"].values[sel], dx[sel] * gain, dy[sel] * gain,
                  length, angles="xy", scale_units="xy", scale=1, cmap="plasma", width=0.003,
                  headwidth=4)
    fig.colorbar(q, ax=ax, label="displacement (px)", shrink=0.8)
    ax.set_title(f"frame {frame}: displacements × {gain:.0f}")
    ax.set_axis_off()
    return fig


def plot_strain(image: xr.DataArray, atoms: xr.Dataset, strain: xr.Dataset, *,
                frame: int = 0) -> Figure:
    """ε_xx, ε_yy, ε_xy and the rotation of each column over a central crop of the image.

    Parameters
    ----------
    image : xarray.DataArray
        The ``(frame, y, x)`` stack.
    atoms : xarray.Dataset
        Atom table with ``frame``, ``y``, ``x`` (pixels).
    strain : xarray.Dataset
        ``strain_xx``, ``strain_yy``, ``strain_xy``, ``rotation`` over ``atom`` (as
        :func:`dmotif.strain` returns them).
    frame : int
        The frame to draw.

    Returns
    -------
    matplotlib.figure.Figure
        Four panels with symmetric colour bars to the 95th percentile of the magnitudes (in
        %, the rotation in degrees).
    """
    pixels, extent, inside = _crop(image, atoms, frame)
    fig = Figure(figsize=(10, 9))
    for i, name in enumerate(STRAIN_VARS):
        ax = fig.add_subplot(2, 2, i + 1)
        values = np.asarray(strain[name].values, float)
        values = np.rad2deg(values) if name == "rotation" else values * 100
        sel = inside & np.isfinite(values)
        # the colour scale ignores the few columns beside defects and edges
        top = float(np.percentile(np.abs(values[sel]), 95)) if sel.any() else 1.0
        ax.imshow(pixels, cmap="gray", extent=extent)
        sc = ax.scatter(atoms["x"].values[sel], atoms["y"].values[sel], c=values[sel], s=14,
                        cmap="RdBu_r", vmin=-top, vmax=top, linewidths=0)
        unit = "°" if name == "rotation" else "%"
        fig.colorbar(sc, ax=ax, label=f"{name} ({unit})", shrink=0.8)
        ax.set_title(name)
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def plot_intensity_histogram(values: Any, labels: Any,
                             components: dict[str, dict[str, list[float]]] | None = None,
                             *, bins: int = 80) -> Figure:
    """Histogram of a per-column intensity per motif, with its Gaussian mixture.

    Parameters
    ----------
    values : array_like
        One intensity per column (e.g. the cross-sections).
    labels : array_like of int
        The motif of each column (-1 left out).
    components : dict, optional
        Per motif (its label as a string) the mixture's ``mean``, ``sd`` and ``weight`` lists
        (as a run's ``measure_attrs["intensity"]`` holds them); each is drawn as a curve.
    bins : int
        Histogram bins.

    Returns
    -------
    matplotlib.figure.Figure
    """
    vals = np.asarray(values, float)
    lab = np.asarray(labels)
    ok = np.isfinite(vals) & (lab >= 0)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    if not ok.any():
        ax.set_title("no intensities")
        return fig
    edges = np.histogram_bin_edges(vals[ok], bins=bins)
    width = edges[1] - edges[0]
    grid = np.linspace(edges[0], edges[-1], 600)
    for m in np.unique(lab[ok]):
        colour = MOTIF_COLORS(int(m) % MOTIF_COLORS.N)
        sel = ok & (lab == m)
        ax.hist(vals[sel], bins=edges, color=colour, alpha=0.45, label=f"motif {int(m)}")
        mix = (components or {}).get(str(int(m)))
        if mix:
            density = sum(w * np.exp(-0.5 * ((grid - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))
                          for mu, sd, w in zip(mix["mean"], mix["sd"], mix["weight"],
                                               strict=True))
            ax.plot(grid, density * sel.sum() * width, color=colour, lw=1.5,
                    label=f"motif {int(m)}: {len(mix['mean'])} components")
    ax.set_xlabel("cross-section (image units × px²)")
    ax.set_ylabel("columns")
    ax.legend(fontsize=8)
    return fig


def measurement_figures(res: Any, image: xr.DataArray | None) -> dict[str, tuple[str, Figure]]:
    """The report's figures of a run's column measurements (none when it made none).

    Parameters
    ----------
    res : dmotif.Result
        A finished result.
    image : xarray.DataArray or None
        Its image stack, when it can be read (the maps need it; the histogram does not).

    Returns
    -------
    dict
        ``name -> (caption, figure)``, in page order.
    """
    ds = res.dataset
    summary = res.attrs.get("measure_attrs", {})
    figs: dict[str, tuple[str, Figure]] = {}
    if not summary.get("enabled") or "cross_section" not in ds:
        return figs
    spacing = res.attrs.get("atoms_attrs", {}).get("spacing_px")
    atoms = ds[["frame", "y", "x"]]
    pair = summary.get("displacement", {})
    if image is not None and "disp_y" in ds:
        figs["displacements"] = (
            f"Displacement of each motif-{pair.get('motif')} column from the centre of its "
            f"motif-{pair.get('reference')} cell (arrows exaggerated; colour: length in px)",
            plot_displacements(image, atoms, ds["disp_y"].values, ds["disp_x"].values,
                               spacing=spacing))
    if image is not None and "strain_xx" in ds:
        figs["strain"] = (
            f"Strain and rotation of the motif-{summary.get('strain', {}).get('motif')} "
            "sublattice about each column, against the frame's mean lattice",
            plot_strain(image, atoms, ds[list(STRAIN_VARS)]))
    figs["intensities"] = (
        "Column cross-sections (Voronoi cell, background subtracted) per motif, with the "
        "Gaussian mixture whose number of components BIC chose (atom counting)",
        plot_intensity_histogram(ds["cross_section"].values, ds["label"].values,
                                 summary.get("intensity")))
    return figs
