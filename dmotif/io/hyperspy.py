"""HyperSpy in and out: ``Signal2D`` as an image stack, and a result as a marked ``Signal2D``.

:func:`signal_stack` (reached through :func:`dmotif.open_image`) turns a (lazy) ``Signal2D``, or a
list of them, into the ``(frame, y, x)`` stack with the signal axes' calibration;
:func:`to_hyperspy` gives a frame of a result's image back as a ``Signal2D`` with one set of
point markers per motif. hyperspy is the ``hyperspy`` extra and is imported only by
:func:`to_hyperspy`: reading a signal needs nothing but the object itself.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
import xarray as xr

from .._image import as_image_stack
from ..errors import DataError, ParameterError, require
from .edits import active_labels
from .images import result_image, unit_to_nm
from .store import Result, open_result

if TYPE_CHECKING:
    from hyperspy.signals import Signal2D

__all__ = ["is_signals", "signal_stack", "to_hyperspy"]

_UNASSIGNED_COLOR = "0.6"  # grey, as matplotlib reads it
_MARKER_SIZE = 8  # points


def _is_signal(obj: Any) -> bool:
    # Duck-typed, so that telling a signal from an array never imports hyperspy (~2 s).
    return hasattr(obj, "axes_manager") and hasattr(obj, "data")


def is_signals(source: Any) -> bool:
    """True for a HyperSpy signal, or a non-empty list or tuple of them."""
    if isinstance(source, list | tuple):
        return bool(source) and all(_is_signal(s) for s in source)
    return _is_signal(source)


def _calibration(signal: Any) -> tuple[float | None, tuple[float, float]]:
    """nm per pixel (None when the units are not a length) and the ``(y, x)`` offsets in nm."""
    axes = signal.axes_manager.signal_axes  # HyperSpy lists the signal axes x first
    if len(axes) != 2:
        raise DataError(
            f"a HyperSpy signal with {len(axes)} signal axes is not an image; pass a Signal2D "
            "(for a spectrum image, take an image out of it first, e.g. signal.T)."
        )
    ax_x, ax_y = axes
    factors = [unit_to_nm(ax.units) for ax in (ax_y, ax_x)]
    if factors[0] is None or factors[1] is None:
        return None, (0.0, 0.0)
    sy, sx = (float(ax.scale) * f for ax, f in zip((ax_y, ax_x), factors, strict=True))
    if not np.isclose(sy, sx, rtol=1e-6):
        raise DataError(
            f"the signal's pixels are not square ({sy:g} nm × {sx:g} nm); dmotif needs square "
            "pixels. Resample it, e.g. signal.rebin(scale=...), or pass pixel_size= to override."
        )
    return sx, (float(ax_y.offset) * factors[0], float(ax_x.offset) * factors[1])


def signal_stack(
    source: Any, *, pixel_size: float | None = None, chunks: Any = "auto"
) -> xr.DataArray:
    """A HyperSpy ``Signal2D`` (or a list of them) as a ``(frame, y, x)`` image stack.

    Parameters
    ----------
    source : Signal2D or list of Signal2D
        A single image, a stack with one navigation axis (it becomes ``frame``), or a list of
        images of one shape and one calibration (one frame each). Lazy signals stay lazy.
    pixel_size : float, optional
        nm per pixel; overrides the signals' calibration.
    chunks : "auto", int or tuple
        Tile size; see :func:`dmotif.open_image`.

    Returns
    -------
    xarray.DataArray
        As :func:`dmotif.open_image` returns. Where the signal axes are a length (nm, Å, µm…),
        ``y``/``x`` are the axes' values in nm, offset included (attrs ``pixel_size``,
        ``units="nm"``, ``offset = [y0, x0]`` in nm); else they are pixels. attrs ``source``
        holds the signal's title.

    Raises
    ------
    DataError
        When a signal is not 2-D in its signal axes, has more than one navigation axis, or the
        list mixes shapes or calibrations.
    """
    signals = list(source) if isinstance(source, list | tuple) else [source]
    calibs = [_calibration(s) for s in signals]
    if any(c != calibs[0] for c in calibs[1:]):
        raise DataError(
            f"the signals differ in calibration ({sorted({c[0] for c in calibs}, key=str)} nm "
            "per pixel, or in offset); open them one by one, or pass pixel_size= to use one."
        )
    nav = [s.axes_manager.navigation_dimension for s in signals]
    if max(nav) > 1 or (len(signals) > 1 and max(nav) > 0):
        raise DataError(
            f"a Signal2D with {max(nav)} navigation axes (or a list of stacks) cannot become one "
            "(frame, y, x) stack; pass one image or one stack per call. For 4D-STEM data, use "
            "dmotif.open_4dstem."
        )
    arrays = [s.data if isinstance(s.data, da.Array) else np.asarray(s.data) for s in signals]
    if len({a.shape for a in arrays}) > 1:
        raise DataError(
            f"the signals differ in shape ({sorted({a.shape for a in arrays})}); a stack needs "
            "images of one size: crop them, or open them one by one."
        )
    data = arrays[0] if len(arrays) == 1 else da.stack(
        [a if isinstance(a, da.Array) else da.from_array(a) for a in arrays])
    ps, (oy, ox) = calibs[0]
    if pixel_size is not None:
        ps, oy, ox = pixel_size, 0.0, 0.0
    stack = as_image_stack(data, pixel_size=ps, chunks=chunks)
    if ps is not None:
        # The coords are the signal's axis values (offset included), so a position read off
        # the DataArray is the position HyperSpy shows.
        stack = stack.assign_coords(
            y=stack["y"].copy(data=stack["y"].values + oy),
            x=stack["x"].copy(data=stack["x"].values + ox),
        )
        stack.attrs["offset"] = [oy, ox]
    stack.attrs["source"] = str(signals[0].metadata.get_item("General.title", "") or
                                "HyperSpy Signal2D")
    return stack


def to_hyperspy(
    result: Result | str | os.PathLike,
    *,
    frame: int = 0,
    image: Any = None,
    motifs: Sequence[int] | None = None,
) -> Signal2D:
    """One frame of a result's image as a HyperSpy ``Signal2D``, atoms marked by motif.

    Parameters
    ----------
    result : Result, str or os.PathLike
        An opened result or the path of its store.
    frame : int
        The frame to return.
    image : path, array, DataArray or Signal2D, optional
        The image the result was learned from; by default the input file the run recorded.
        Needed when the run read an array or a signal (nothing on disk to re-open).
    motifs : sequence of int, optional
        Motif labels to mark (-1: unassigned atoms). Default: all.

    Returns
    -------
    hyperspy.signals.Signal2D
        The frame, with signal axes ``x``, ``y`` calibrated as the image (nm, offset
        included; pixels when uncalibrated) and, in ``metadata.Markers``, one permanent
        ``Points`` marker per motif, named after the motif, one colour each (grey for the
        unassigned atoms; label k has colour k of matplotlib's ``tab10``, as in dmotif's
        figures), offsets ``(x, y)`` in the axes' units. ``signal.plot()`` shows them.

    Raises
    ------
    MissingDependencyError
        When hyperspy is not installed (``pip install 'dmotif[hyperspy]'``).
    ImageFileError
        When the image cannot be found; pass ``image=``.
    ParameterError
        When ``frame`` is not a frame of the image.

    Examples
    --------
    >>> sig = dmotif.to_hyperspy("scan.dmotif.zarr", frame=0)  # doctest: +SKIP
    >>> sig.plot()  # doctest: +SKIP
    """
    hs = require("hyperspy.api", extra="hyperspy", feature="dmotif.to_hyperspy")
    from matplotlib.colors import to_hex

    from ..viz.plots import MOTIF_COLORS

    res = result if isinstance(result, Result) else open_result(result)
    stack = result_image(res, image)
    n_frames = stack.sizes["frame"]
    if not 0 <= frame < n_frames:
        raise ParameterError(f"frame must be in 0..{n_frames - 1}; got {frame}.")
    signal = hs.signals.Signal2D(np.asarray(stack.isel(frame=frame).data))
    calibrated = stack.attrs.get("units", "px") != "px"
    scale = float(stack.attrs["pixel_size"]) if calibrated else 1.0
    origin = {d: float(stack[d].values[0]) for d in ("y", "x")}
    for axis, dim in zip(signal.axes_manager.signal_axes, ("x", "y"), strict=True):
        axis.name, axis.scale, axis.offset = dim, scale, origin[dim]
        if calibrated:
            axis.units = stack.attrs["units"]
    signal.metadata.General.title = f"{stack.attrs.get('source', 'dmotif image')} frame {frame}"

    ds = res.dataset
    mine = np.flatnonzero(ds["frame"].values == frame)
    xy = np.column_stack([origin["x"] + ds["x"].values[mine] * scale,
                          origin["y"] + ds["y"].values[mine] * scale])
    labels = active_labels(res)
    names = labels.attrs["motif_names"]
    frame_labels = labels.values[mine]
    wanted = np.unique(frame_labels) if motifs is None else np.asarray(motifs, dtype=int)
    for label in (int(v) for v in np.unique(frame_labels) if v in wanted):
        rows = frame_labels == label
        # label k gets colour k, as in every dmotif figure, so a motif looks the same in each
        color = _UNASSIGNED_COLOR if label < 0 else to_hex(MOTIF_COLORS(label % MOTIF_COLORS.N))
        marker = hs.plot.markers.Points(offsets=xy[rows], sizes=_MARKER_SIZE, color=color)
        marker.name = names.get(label, "unassigned" if label < 0 else f"motif {label}")
        signal.add_marker(marker, permanent=True, plot_marker=False)
    return signal
