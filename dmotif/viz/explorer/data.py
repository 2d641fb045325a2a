"""What every session of an explorer server shares, read once: atoms, layout, labels and access
to the image stack (cached tiles, overviews, patches)."""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from typing import Any

import dask.array as da
import numpy as np

from ...errors import DataError
from ...io.edits import active_labels
from ...io.images import result_image
from ...io.store import Result, open_result
from ...measure.stage import MEASURED_VARS
from . import _kernels as K

__all__ = ["ExplorerData"]

_OVERVIEW_PX = 1024  # longest side of a frame's cached overview
_VIEW_PX = 800  # longest side of an image re-read for the visible region
_TILE_CACHE = 32  # full-resolution tiles kept in memory (1024² float32 = 4 MiB each)
_MEAN_PATCH_ATOMS = 1000  # atoms averaged for the selection's mean patch


class ExplorerData:
    """What every session of a server shares, read once: atoms, layout, labels, image access.

    Parameters
    ----------
    result : Result, str or os.PathLike
        A result store with ``frame``, ``y``, ``x``, ``layout(atom, axis)`` and a labelling.
    image : str, os.PathLike or xarray.DataArray, optional
        The image stack; by default the one named by the store's ``config["input"]["path"]``
        (a relative path is tried against the working directory, then beside the store).
    radius : int, optional
        Patch radius in pixels; by default the run's Zernike radius, else the nearest-neighbour
        distance of the atoms.

    Raises
    ------
    DataError
        When the store lacks positions, a 2-D layout or labels.
    ImageFileError
        When the image cannot be found; pass ``image=``.
    """

    def __init__(self, result: Result | str | os.PathLike, *, image: Any = None,
                 radius: int | None = None) -> None:
        self.result = result if isinstance(result, Result) else open_result(result)
        ds = self.result.dataset
        missing = [v for v in ("frame", "y", "x", "layout") if v not in ds]
        if missing:
            raise DataError(
                f"{self.result.path!r} lacks {missing}: the explorer needs atom positions and "
                "the 2-D layout. Run the pipeline through its layout stage first."
            )
        if ds["layout"].ndim != 2 or ds["layout"].shape[1] != 2:
            raise DataError(
                f"'layout' must be (atom, 2); got shape {ds['layout'].shape}."
            )
        self.frame = ds["frame"].values.astype(np.int32)
        self.y = ds["y"].values.astype(np.float64)
        self.x = ds["x"].values.astype(np.float64)
        layout = ds["layout"].values.astype(np.float64)
        self.lx, self.ly = layout[:, 0].copy(), layout[:, 1].copy()
        labels = active_labels(self.result)
        self.labels_name = str(labels.name)
        self.labels = labels.values.astype(np.int32)
        self.names: dict[int, str] = dict(labels.attrs["motif_names"])
        #: The per-atom measurements of the run (``[measure]``), by name, to colour atoms by.
        self.measured: dict[str, np.ndarray] = {
            name: ds[name].values.astype(np.float64) for name in MEASURED_VARS
            if name in ds and ds[name].dims == ("atom",)
        }
        self.image = self._open_image(image)
        self.n_frames, self.height, self.width = (int(s) for s in self.image.shape)
        self._bounds = [np.cumsum((0, *c)) for c in self.image.data.chunks[1:]]
        self._tiles: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self._overviews: dict[int, tuple[np.ndarray, int, tuple[float, float]]] = {}
        self._frame_index: dict[int, np.ndarray] = {}
        self._tree: Any = None
        self.radius = int(radius) if radius is not None else self._default_radius()
        # Hover needs a k-d tree of the layout (about 0.5 s per million atoms): build it aside
        # so that it delays neither the first paint nor the first selection.
        self._tree_thread = threading.Thread(target=self._build_tree, daemon=True,
                                             name="dmotif-explore-tree")
        self._tree_thread.start()

    def _build_tree(self) -> None:
        from scipy.spatial import cKDTree

        self._tree = cKDTree(np.column_stack([self.lx, self.ly]))

    @property
    def n_atoms(self) -> int:
        return len(self.x)

    def _open_image(self, image: Any) -> Any:
        return result_image(self.result, image)

    def _default_radius(self) -> int:
        configured = self.result.config.get("features", {}).get("radius")
        if isinstance(configured, int | float) and configured > 0:
            return int(configured)
        spacing = self.result.attrs.get("atoms_attrs", {}).get("spacing_px")
        if not spacing:
            from scipy.spatial import cKDTree

            idx = self.atoms_of_frame(int(self.frame[0]))[:20_000] if self.n_atoms else []
            if len(idx) < 2:
                return 8
            pts = np.column_stack([self.y[idx], self.x[idx]])
            dist, _ = cKDTree(pts).query(pts, k=2)
            spacing = float(np.median(dist[:, 1]))
        return max(2, math.ceil(spacing))

    def atoms_of_frame(self, frame: int) -> np.ndarray:
        """Indices of the atoms of ``frame`` (cached)."""
        if frame not in self._frame_index:
            self._frame_index[frame] = np.flatnonzero(self.frame == frame)
        return self._frame_index[frame]

    # ----------------------------------------------------------------- image access
    def _tile(self, frame: int, ty: int, tx: int) -> np.ndarray:
        key = (frame, ty, tx)
        if key in self._tiles:
            self._tiles.move_to_end(key)
            return self._tiles[key]
        block = self.image.data.blocks[frame, ty, tx].compute(scheduler="threads")[0]
        self._tiles[key] = np.asarray(block, dtype=np.float32)
        if len(self._tiles) > _TILE_CACHE:
            self._tiles.popitem(last=False)
        return self._tiles[key]

    def window(self, frame: int, y0: int, y1: int, x0: int, x1: int) -> tuple[np.ndarray, int, int]:
        """Pixels ``[y0:y1, x0:x1]`` of ``frame`` clipped to the image, from cached tiles;
        returns the array and its clipped origin ``(y0, x0)``."""
        y0, y1 = max(0, y0), min(self.height, y1)
        x0, x1 = max(0, x0), min(self.width, x1)
        out = np.empty((max(0, y1 - y0), max(0, x1 - x0)), dtype=np.float32)
        by, bx = self._bounds
        for ty in range(np.searchsorted(by, y0, "right") - 1, np.searchsorted(by, y1, "left")):
            for tx in range(np.searchsorted(bx, x0, "right") - 1, np.searchsorted(bx, x1, "left")):
                tile = self._tile(frame, ty, tx)
                sy0, sy1 = max(y0, by[ty]), min(y1, by[ty + 1])
                sx0, sx1 = max(x0, bx[tx]), min(x1, bx[tx + 1])
                out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[
                    sy0 - by[ty] : sy1 - by[ty], sx0 - bx[tx] : sx1 - bx[tx]
                ]
        return out, y0, x0

    def overview(self, frame: int) -> tuple[np.ndarray, int, tuple[float, float]]:
        """A frame downsampled (block mean) to at most 1024 px a side, its step, and a display
        range (0.5–99.5 percentiles); cached per frame."""
        if frame not in self._overviews:
            step = max(1, math.ceil(max(self.height, self.width) / _OVERVIEW_PX))
            plane = self.image.data[frame]
            if step > 1:
                plane = da.coarsen(np.mean, plane, {0: step, 1: step}, trim_excess=True)
            small = np.asarray(plane.compute(scheduler="threads"), dtype=np.float32)
            low, high = (float(v) for v in np.percentile(small, [0.5, 99.5]))
            self._overviews[frame] = (small, step, (low, high if high > low else low + 1.0))
        return self._overviews[frame]

    def view(self, frame: int, x_range: tuple[float, float], y_range: tuple[float, float],
             max_px: int = _VIEW_PX) -> tuple[np.ndarray, float, float, float, float]:
        """The visible region at a resolution fit for ``max_px`` screen pixels.

        Returns the array and its placement ``(x, y, dw, dh)`` in pixel coordinates, where
        pixel ``(i, j)`` is centred on ``(x, y) = (j, i)`` as atom positions are. Coarse
        views come from the cached overview; finer ones read only the tiles they cover.
        """
        small, ov_step, _ = self.overview(frame)
        x0, x1 = (int(v) for v in (max(0, math.floor(min(x_range))),
                                   min(self.width, math.ceil(max(x_range)))))
        y0, y1 = (int(v) for v in (max(0, math.floor(min(y_range))),
                                   min(self.height, math.ceil(max(y_range)))))
        if x1 <= x0 or y1 <= y0:
            return small, -0.5, -0.5, small.shape[1] * ov_step, small.shape[0] * ov_step
        step = max(1, math.ceil(max(x1 - x0, y1 - y0) / max_px))
        if step >= ov_step:  # coarse enough: from the overview in memory
            factor = step // ov_step
            step = factor * ov_step
            x0, y0 = x0 // ov_step * ov_step, y0 // ov_step * ov_step
            region = small[y0 // ov_step : -(-y1 // ov_step), x0 // ov_step : -(-x1 // ov_step)]
            arr = K.block_mean(region, factor)
        else:
            region = self.image.data[frame, y0:y1, x0:x1].compute(scheduler="threads")
            arr = K.block_mean(np.asarray(region), step)
        return arr, x0 - 0.5, y0 - 0.5, arr.shape[1] * step, arr.shape[0] * step

    def patch(self, atom: int) -> np.ndarray:
        """The ``(2r+1)²`` patch centred (sub-pixel) on ``atom``."""
        r = self.radius
        cy, cx = self.y[atom], self.x[atom]
        win, oy, ox = self.window(int(self.frame[atom]), int(cy) - r - 1, int(cy) + r + 3,
                                  int(cx) - r - 1, int(cx) + r + 3)
        return K.mean_patch(win, np.array([cy - oy]), np.array([cx - ox]), r)

    def mean_patch(self, atoms: np.ndarray, *, seed: int = 0) -> np.ndarray:
        """Mean patch of (a sample of) ``atoms``.

        At most 1000 atoms, taken from the fewest image tiles that hold them (so that a
        selection spread over a huge image costs a few tile reads, not the whole image).
        """
        r = self.radius
        if len(atoms) == 0:
            return np.full((2 * r + 1, 2 * r + 1), np.nan, dtype=np.float32)
        rng = np.random.default_rng(seed)
        if len(atoms) > 20 * _MEAN_PATCH_ATOMS:
            atoms = rng.choice(atoms, 20 * _MEAN_PATCH_ATOMS, replace=False)
        by, bx = self._bounds
        ty = np.searchsorted(by, self.y[atoms], "right") - 1
        tx = np.searchsorted(bx, self.x[atoms], "right") - 1
        key = (self.frame[atoms].astype(np.int64) * len(by) + ty) * len(bx) + tx
        keys, counts = np.unique(key, return_counts=True)
        total = np.zeros((2 * r + 1, 2 * r + 1), dtype=np.float64)
        used = 0
        for k in keys[np.argsort(-counts, kind="stable")]:
            members = atoms[key == k]
            f, rest = divmod(int(k), len(by) * len(bx))
            t_y, t_x = divmod(rest, len(bx))
            y0, y1, x0, x1 = int(by[t_y]), int(by[t_y + 1]), int(bx[t_x]), int(bx[t_x + 1])
            # Atoms whose patch lies inside their tile need that tile alone (one read, not up
            # to nine); the others only when there are no such atoms.
            inner = ((self.y[members] >= y0 + r + 1) & (self.y[members] <= y1 - r - 2)
                     & (self.x[members] >= x0 + r + 1) & (self.x[members] <= x1 - r - 2))
            margin = 0 if inner.any() else r + 2
            members = (members[inner] if inner.any() else members)[: _MEAN_PATCH_ATOMS - used]
            win, oy, ox = self.window(f, y0 - margin, y1 + margin, x0 - margin, x1 + margin)
            patch = K.mean_patch(win, self.y[members] - oy, self.x[members] - ox, r)
            total += patch.astype(np.float64) * len(members)
            used += len(members)
            if used >= _MEAN_PATCH_ATOMS:
                break
        return (total / used).astype(np.float32)

    def nearest_in_layout(self, lx: float, ly: float, tolerance: float, *,
                          wait: bool = True) -> int | None:
        """The atom nearest to ``(lx, ly)`` in the layout, if within ``tolerance``.

        Until the layout's k-d tree is built, None at once unless ``wait``.
        """
        if self._tree is None:
            if not wait:
                return None
            self._tree_thread.join()
        dist, idx = self._tree.query([lx, ly], distance_upper_bound=tolerance)
        return int(idx) if np.isfinite(dist) else None
