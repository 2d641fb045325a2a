"""numpy kernels of the explorer: rasterising a layout, hit-testing selections, cutting patches.

Pure numpy/scipy/matplotlib (no dask, no xarray, no bokeh), so each is tested alone on plain
arrays. They are written for a million points per call: every one is a handful of vectorised
passes, no Python loop over points.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.path import Path
from scipy import ndimage

__all__ = [
    "block_mean",
    "in_box",
    "in_polygon",
    "mean_patch",
    "palette_rgb",
    "quantity_codes",
    "raster_counts",
    "shade",
]

# Category20 reordered so that the first ten are the strong members of each pair: motifs 0–9
# get well-separated colours, 10–19 their lighter partners.
_CATEGORY20 = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)
UNASSIGNED_COLOUR = "#b0b0b0"
#: Colours of a measured quantity, low to high (viridis), then grey for atoms without a value.
VALUE_HEXES = [f"#{r:02x}{g:02x}{b:02x}" for r, g, b in np.rint(
    255 * colormaps["viridis"](np.linspace(0.0, 1.0, 256))[:, :3]).astype(int)]
VALUE_RGB = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)]
                      for h in (*VALUE_HEXES, UNASSIGNED_COLOUR)], dtype=np.uint8)


def palette_rgb(labels: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Hex colours and an ``(n, 3)`` uint8 RGB table for motif ids ``labels`` (-1 is grey)."""
    hexes = [
        UNASSIGNED_COLOUR if lab < 0 else _CATEGORY20[int(lab) % len(_CATEGORY20)]
        for lab in labels
    ]
    rgb = np.array([[int(h[i : i + 2], 16) for i in (1, 3, 5)] for h in hexes], dtype=np.uint8)
    return hexes, rgb.reshape(-1, 3)


def quantity_codes(values: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Rows of :data:`VALUE_RGB` for per-atom ``values``, and the range they span.

    The range is the 1st–99th percentile of the finite values (so that a few failed fits do
    not wash out the rest); values beyond it take its end colours, NaN the grey last row.
    """
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.full(len(values), len(VALUE_HEXES), dtype=np.int64), (0.0, 1.0)
    low, high = (float(v) for v in np.percentile(values[finite], [1.0, 99.0]))
    high = high if high > low else low + 1.0
    scaled = np.floor((values - low) / (high - low) * len(VALUE_HEXES))
    codes = np.clip(np.nan_to_num(scaled, nan=0.0), 0, len(VALUE_HEXES) - 1).astype(np.int64)
    codes[~finite] = len(VALUE_HEXES)
    return codes, (low, high)


def raster_counts(
    x: np.ndarray,
    y: np.ndarray,
    codes: np.ndarray,
    n_codes: int,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    shape: tuple[int, int],
) -> np.ndarray:
    """Count points per pixel and per code: an ``(n_codes, height, width)`` int64 histogram.

    Pixel ``[c, i, j]`` counts the points of code ``c`` with ``x`` in column ``j`` and ``y`` in
    row ``i`` of the grid spanning ``x_range`` × ``y_range`` (row 0 at ``y_range[0]``). Points
    outside the ranges, or with a code outside ``[0, n_codes)``, are not counted. Equal to
    ``numpy.histogram2d`` per code, but one ``bincount`` for all codes.
    """
    height, width = shape
    (x0, x1), (y0, y1) = x_range, y_range
    if x1 <= x0 or y1 <= y0 or len(x) == 0:
        return np.zeros((n_codes, height, width), dtype=np.int64)
    fx = (np.asarray(x, dtype=np.float64) - x0) * (width / (x1 - x0))
    fy = (np.asarray(y, dtype=np.float64) - y0) * (height / (y1 - y0))
    # histogram2d puts the right edge in the last bin; do the same.
    j = np.where(fx == width, width - 1, np.floor(fx))
    i = np.where(fy == height, height - 1, np.floor(fy))
    ok = (j >= 0) & (j < width) & (i >= 0) & (i < height) & (codes >= 0) & (codes < n_codes)
    flat = (codes[ok].astype(np.int64) * height + i[ok].astype(np.int64)) * width
    flat += j[ok].astype(np.int64)
    counts = np.bincount(flat, minlength=n_codes * height * width)
    return counts.reshape(n_codes, height, width)


def shade(counts: np.ndarray, rgb: np.ndarray, *, min_alpha: int = 60) -> np.ndarray:
    """Colour an ``(n_codes, h, w)`` count stack: an ``(h, w)`` uint32 RGBA image for bokeh.

    Each pixel's colour is the count-weighted mean of the codes' colours ``rgb`` (``(n_codes,
    3)`` uint8), its opacity grows with the log of its total count from ``min_alpha`` to 255;
    empty pixels are transparent. The uint32 holds the bytes R, G, B, A in memory order, as
    bokeh's ``image_rgba`` expects.
    """
    total = counts.sum(axis=0)
    out = np.zeros((*total.shape, 4), dtype=np.uint8)
    filled = total > 0
    if filled.any():
        weights = counts[:, filled].astype(np.float64)
        mixed = (rgb.astype(np.float64).T @ weights) / total[filled]
        out[filled, :3] = np.clip(np.rint(mixed.T), 0, 255).astype(np.uint8)
        level = np.log1p(total[filled]) / np.log1p(total.max())
        out[filled, 3] = np.rint(min_alpha + (255 - min_alpha) * level).astype(np.uint8)
    return out.view(np.uint32).reshape(total.shape)


def in_box(
    x: np.ndarray, y: np.ndarray, x_range: tuple[float, float], y_range: tuple[float, float]
) -> np.ndarray:
    """Mask of the points inside the closed box ``x_range`` × ``y_range`` (either order)."""
    (x0, x1), (y0, y1) = sorted(x_range), sorted(y_range)
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def in_polygon(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Mask of the points inside the polygon with vertices ``(px, py)`` (a lasso)."""
    px, py = np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64)
    mask = np.zeros(len(x), dtype=bool)
    if len(px) < 3:
        return mask
    # The bounding box is cheap and usually rejects most points before the exact test.
    candidates = np.flatnonzero(in_box(x, y, (px.min(), px.max()), (py.min(), py.max())))
    if len(candidates):
        path = Path(np.column_stack([px, py]), closed=False)
        points = np.column_stack([x[candidates], y[candidates]])
        mask[candidates] = path.contains_points(points)
    return mask


def block_mean(image: np.ndarray, step: int) -> np.ndarray:
    """Downsample a 2-D image by the mean of ``step`` × ``step`` blocks (ragged edge trimmed,
    unless the image is smaller than one block)."""
    if step <= 1:
        return np.asarray(image, dtype=np.float32)
    h, w = image.shape
    hh, ww = max(h // step, 1), max(w // step, 1)
    by, bx = min(step, h), min(step, w)
    cut = np.asarray(image[: hh * by, : ww * bx], dtype=np.float32)
    return cut.reshape(hh, by, ww, bx).mean(axis=(1, 3), dtype=np.float32)


def mean_patch(window: np.ndarray, ys: np.ndarray, xs: np.ndarray, radius: int) -> np.ndarray:
    """Mean of the ``(2r+1)²`` patches of ``window`` centred at sub-pixel ``(ys, xs)``.

    Bilinear interpolation (``scipy.ndimage.map_coordinates``, order 1); beyond the window's
    edge the nearest pixel is repeated. With no centres the result is all NaN.
    """
    size = 2 * radius + 1
    if len(ys) == 0:
        return np.full((size, size), np.nan, dtype=np.float32)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    total = np.zeros((size, size), dtype=np.float64)
    # Batches bound the coordinate arrays (3 × batch × size² floats).
    batch = max(1, 200_000 // (size * size))
    for start in range(0, len(ys), batch):
        cy = np.asarray(ys[start : start + batch], dtype=np.float64)
        cx = np.asarray(xs[start : start + batch], dtype=np.float64)
        rows = cy[:, None, None] + offsets[None, :, None]
        cols = cx[:, None, None] + offsets[None, None, :]
        rows, cols = np.broadcast_arrays(rows, cols)
        values = ndimage.map_coordinates(
            np.asarray(window, dtype=np.float64), [rows.ravel(), cols.ravel()],
            order=1, mode="nearest",
        )
        total += values.reshape(len(cy), size, size).sum(axis=0)
    return (total / len(ys)).astype(np.float32)
