"""A self-contained HTML report of a result store (figures embedded), plus the figures as PNG."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..io.images import open_image
from ..io.store import Result, open_result
from ..io.summary import summary_rows
from .hierarchy_plot import plot_hierarchy
from .measure_plots import measurement_figures
from .overview import plot_defect_map, plot_overview
from .plots import MOTIF_COLORS, grey_range, plot_layout, plot_map, plot_motifs

__all__ = ["MAX_PIXELS", "motif_rows", "plot_atoms_on_image", "plot_frame_fractions", "report",
           "summary_rows"]

_CROP = 640


def plot_atoms_on_image(image: Any, atoms: Any, labels: np.ndarray, *, frame: int = 0) -> Figure:
    """Frame ``frame`` of ``image`` with its atoms coloured by motif (a central crop).

    Parameters
    ----------
    image : xarray.DataArray
        The image stack ``(frame, y, x)``.
    atoms : xarray.Dataset
        Atom table with ``frame``, ``y``, ``x`` (pixels).
    labels : numpy.ndarray
        Motif label per atom (-1 unassigned, drawn as small black crosses).
    frame : int
        The frame to show.

    Returns
    -------
    matplotlib.figure.Figure
    """
    ny, nx = image.sizes["y"], image.sizes["x"]
    y0, x0 = max(0, (ny - _CROP) // 2), max(0, (nx - _CROP) // 2)
    y1, x1 = min(ny, y0 + _CROP), min(nx, x0 + _CROP)
    pixels = np.asarray(image.isel(frame=frame, y=slice(y0, y1), x=slice(x0, x1)).values)
    fy = np.asarray(atoms["frame"].values) == frame
    ay, ax_ = np.asarray(atoms["y"].values), np.asarray(atoms["x"].values)
    inside = fy & (ay >= y0) & (ay < y1) & (ax_ >= x0) & (ax_ < x1)
    fig = Figure(figsize=(6.4, 6.4 * (y1 - y0) / max(x1 - x0, 1)))
    ax = fig.add_subplot()
    ax.imshow(pixels, cmap="gray", extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5))
    cmap = MOTIF_COLORS
    lab = labels[inside]
    for k in np.unique(lab):
        sel = lab == k
        if k < 0:
            ax.scatter(ax_[inside][sel], ay[inside][sel], s=8, marker="x", c="k",
                       label="unassigned")
        else:
            ax.scatter(ax_[inside][sel], ay[inside][sel], s=3, color=cmap(int(k) % cmap.N),
                       linewidths=0, label=f"motif {int(k)}")
    ax.set_title(f"frame {frame}, pixels y {y0}–{y1}, x {x0}–{x1}")
    ax.set_axis_off()
    # beside the image, not over it
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, markerscale=1.5)
    fig.tight_layout()
    return fig


def plot_frame_fractions(frames: np.ndarray, labels: np.ndarray, *, max_motifs: int = 12,
                         names: dict[int, str] | None = None) -> Figure:
    """Stacked bars: the fraction of each motif in each frame (the largest ``max_motifs``
    motifs in colour, named by ``names`` where given, the others and the unassigned atoms as
    grey bands)."""
    ids, f_idx = np.unique(frames, return_inverse=True)
    motifs, m_idx, totals = np.unique(labels, return_inverse=True, return_counts=True)
    # one pass over the atoms whatever the numbers of frames and motifs
    table = np.bincount(f_idx.ravel() * motifs.size + m_idx.ravel(),
                        minlength=ids.size * motifs.size).reshape(ids.size, motifs.size)
    fractions = (table / np.maximum(table.sum(1, keepdims=True), 1)).T
    big = [i for i in np.argsort(-totals, kind="stable") if motifs[i] >= 0][:max_motifs]
    fig = Figure(figsize=(8.4, 3.4))
    ax = fig.add_axes((0.08, 0.15, 0.66, 0.8))
    cmap = MOTIF_COLORS
    bottom = np.zeros(ids.size)
    for i in sorted(big, key=lambda i: motifs[i]):
        m = int(motifs[i])
        ax.bar(ids, fractions[i], bottom=bottom, color=cmap(m % cmap.N),
               label=f"motif {(names or {}).get(m, m)}")
        bottom += fractions[i]
    others = 1.0 - bottom
    if (others > 1e-9).any():
        ax.bar(ids, others, bottom=bottom, color="0.6",
               label="unassigned and smaller motifs" if len(big) < (motifs >= 0).sum()
               else "unassigned")
    ax.set_xticks(ids if ids.size <= 30 else ids[:: -(-ids.size // 30)])
    ax.set_xlabel("frame")
    ax.set_ylabel("fraction of atoms")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    return fig


#: No figure of the report is larger than this (pixels): a browser shows it at once.
MAX_PIXELS = 25_000_000
_DPI = 110


def _png(fig: Figure) -> bytes:
    w, h = fig.get_size_inches()
    dpi = min(_DPI, (MAX_PIXELS / (w * h)) ** 0.5)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _patch_png(patch: np.ndarray, vmin: float, vmax: float, size: int = 64) -> str:
    """A mean patch as a small inline PNG (data URI), magnified by pixel repetition, on the
    grey scale ``vmin``–``vmax``."""
    from matplotlib.image import imsave

    p = np.nan_to_num(np.asarray(patch, np.float32))
    rep = max(1, size // max(p.shape))
    buf = io.BytesIO()
    imsave(buf, np.kron(p, np.ones((rep, rep), np.float32)), cmap="gray", vmin=vmin,
           vmax=vmax, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _motif_names(res: Result) -> dict[int, str]:
    graph = res.hierarchy
    names = {int(d["label"]): str(d["name"]) for _, d in (graph.nodes(data=True) if graph
                                                           else []) if d.get("level") == 1
             and "label" in d}
    return names


def motif_rows(res: Result, *, max_rows: int = 60) -> list[dict[str, Any]]:
    """One row per motif (the ``max_rows`` most frequent): name, count, fraction, mean
    intensity, mean patch (data URI) and the evidence of the decision from ``cluster_attrs``
    (separation from the nearest motif, p-value, that motif).

    All mean patches share one grey scale (the range of all of them), as a microscopist
    compares columns: a brighter motif shows brighter, which separately scaled patches hide.
    """
    ds = res.dataset
    if "label" not in ds:
        return []
    lab = ds["label"].values
    ks, counts = np.unique(lab[lab >= 0], return_counts=True)
    inten = (np.bincount(lab[lab >= 0], weights=ds["intensity"].values[lab >= 0])
             if "intensity" in ds else None)
    ev = res.attrs.get("cluster_attrs", {})
    names = _motif_names(res)
    patches = ds["mean_patch"].values if "mean_patch" in ds else None
    grey = grey_range(patches) if patches is not None else (None, None)
    if grey[0] is None:  # no finite patch: nothing to draw
        patches = None
    motif_ids = ds["motif"].values.tolist() if "motif" in ds.coords else list(range(ks.size))
    rows = []
    for k, c in sorted(zip(ks.tolist(), counts.tolist(), strict=True), key=lambda r: -r[1]):
        row: dict[str, Any] = {"motif": names.get(k, str(k)), "label": k, "count": c,
                               "fraction": c / lab.size,
                               "intensity": None if inten is None else inten[k] / c}
        j = motif_ids.index(k) if k in motif_ids else None
        if patches is not None and j is not None:
            row["patch"] = _patch_png(patches[j], *grey)
        for key in ("separation", "p_value", "nearest_motif"):
            vals = ev.get(key)
            row[key] = vals[j] if isinstance(vals, list) and j is not None and j < len(
                vals) else None
        if row["nearest_motif"] is not None:
            row["nearest_motif"] = names.get(int(row["nearest_motif"]), row["nearest_motif"])
        rows.append(row)
    return rows[:max_rows] + ([{"more": len(rows) - max_rows}] if len(rows) > max_rows else [])


def _motif_table(rows: list[dict[str, Any]]) -> str:
    def num(v: Any, fmt: str) -> str:
        return "–" if v is None else format(v, fmt)

    def pval(v: Any) -> str:  # a p-value below the smallest double is not zero
        return "&lt; 1e-300" if v == 0 else num(v, ".2g")

    body = []
    for r in rows:
        if "more" in r:
            body.append(f'<tr><td colspan="8">+ {r["more"]} more motifs</td></tr>')
            continue
        img = (f'<img class="patch" alt="mean patch of motif {html.escape(r["motif"])}" '
               f'src="{r["patch"]}">' if "patch" in r else "")
        body.append(
            f'<tr class="motif"><th>{html.escape(r["motif"])}</th><td>{r["label"]}</td>'
            f'<td>{r["count"]:,}</td><td>{r["fraction"]:.1%}</td>'
            f'<td>{num(r["intensity"], ".3g")}</td><td>{img}</td>'
            f'<td>{num(r["separation"], ".2f")}</td><td>{pval(r["p_value"])}</td>'
            f'<td>{html.escape(str(r["nearest_motif"] or "–"))}</td></tr>'
        )
    return ('<table id="motifs"><tr><th>motif</th><th>label</th><th>atoms</th><th>share</th>'
            "<th>mean intensity</th><th>mean patch</th><th>separation</th><th>p-value</th>"
            "<th>nearest motif</th></tr>" + "".join(body) + "</table>")


def _sites_note(res: Result) -> str:
    """What the split of the motifs by site did (:func:`dmotif.site_motifs`), if it ran."""
    note = res.attrs.get("cluster_attrs", {}).get("sites")
    return f'<p id="sites">Sites: {html.escape(str(note))}.</p>' if note else ""


def _cell_table(res: Result, max_rows: int = 20) -> str:
    graph = res.hierarchy
    if graph is None:
        return ""
    nodes = sorted((d for _, d in graph.nodes(data=True) if d.get("level") in (2, 3)
                    and "view" not in d), key=lambda d: (d["level"], -d.get("count", 0)))
    if not nodes:
        return ""
    total = {lv: sum(d["count"] for d in nodes if d["level"] == lv) for lv in (2, 3)}
    seen = Counter(str(d.get("title") or d["name"]) for d in nodes)
    shown: Counter[str] = Counter()

    def text(d: dict[str, Any]) -> str:
        # One composition in several arrangements (the same cells, other neighbours): the
        # types' own names repeat too, so the rows are numbered, most frequent first.
        title = str(d.get("title") or d["name"])
        if seen[title] == 1:
            return html.escape(title)
        shown[title] += 1
        return html.escape(title) + f" <small>(arrangement {shown[title]})</small>"

    body = "".join(
        f'<tr class="cell"><td>{d["level"]}</td><td>{text(d)}</td><td>{d["count"]:,}</td>'
        f'<td>{d["count"] / max(total[d["level"]], 1):.1%}</td></tr>' for d in nodes[:max_rows])
    if len(nodes) > max_rows:
        body += f'<tr><td colspan="4">+ {len(nodes) - max_rows} more</td></tr>'
    return ('<table id="cells"><tr><th>level</th><th>cell type / pattern</th><th>count</th>'
            "<th>share of its level</th></tr>" + body + "</table>")


def _figures(res: Result) -> dict[str, tuple[str, bytes]]:
    """Every figure the store allows, as (caption, PNG bytes), in page order."""
    ds = res.dataset
    figs: dict[str, tuple[str, bytes]] = {}
    labels = ds["label"].values if "label" in ds else None
    src = res.config.get("input", {}).get("path")
    names = _motif_names(res)
    image = None
    if labels is not None and src and (Path(src).exists() or "://" in src):
        image = open_image(src, check=False)
        atoms = ds[["frame", "y", "x"]]
        spacing = float(res.attrs.get("atoms_attrs", {}).get("spacing_px") or 10.0)
        figs["atoms"] = ("Atoms coloured by motif: the whole field of view and a zoom where "
                         "the columns are resolved",
                         _png(plot_overview(image, atoms, labels, names, spacing=spacing)))
        cells = None
        if "cell_type" in ds:
            cells = {"frame": ds["cell_frame"].values, "y": ds["cell_y"].values,
                     "x": ds["cell_x"].values, "type": ds["cell_type"].values,
                     "titles": [t[:48] for t in ds["cell_type"].attrs.get("titles", [])]}
        figs["defects"] = ("Defect map: rare motifs (dots) and rare cell types (squares) over "
                           "the whole image",
                           _png(plot_defect_map(image, atoms, labels, names, cells)))
    if "continuum" in ds and image is not None:
        figs["continuum"] = ("Continuous variation: each column's place along the continuum "
                             "its neighbourhood's features trace (dmotif.continuum_coordinate)",
                             _png(plot_map(image, atoms, ds["continuum"].values,
                                           label="place along the continuum",
                                           size=float(np.clip(6e4 / len(labels), 1, 12)))))
    if "layout" in ds and labels is not None:
        figs["layout"] = ("Force-relaxed layout of the Zernike features, coloured by motif",
                          _png(plot_layout(ds["layout"].values, labels, max_points=50_000,
                                           names=names)))
    if "mean_patch" in ds and ds.sizes.get("motif", 0) <= 36:
        frames = res.attrs.get("cluster_attrs", {}).get("mean_patch_frames")
        n_frames = ds["frame"].values.max() + 1 if "frame" in ds else 1
        over = "" if frames is None or len(frames) >= n_frames else (
            f" (patches averaged over frames {', '.join(map(str, frames))})")
        figs["motifs"] = (f"Mean patch of each motif, with its count{over}",
                          _png(plot_motifs(ds, names=names)))
    graph = res.hierarchy
    if graph is not None and graph.number_of_nodes():
        figs["hierarchy"] = ("Motif hierarchy: an arrow B → A reads 'B is made of A' (×n: "
                             "n times); level 3 draws each pattern's cells in the colours of "
                             "their level-2 types; the 8 most frequent motifs of each level, "
                             "the rest summarised",
                             _png(plot_hierarchy(graph)))
    if labels is not None and "frame" in ds and np.ptp(ds["frame"].values) > 0:
        figs["fractions"] = ("Fraction of each motif per frame",
                             _png(plot_frame_fractions(ds["frame"].values, labels,
                                                       names=names)))
    figs |= {name: (caption, _png(fig))
             for name, (caption, fig) in measurement_figures(res, image).items()}
    return figs


def report(
    result: str | os.PathLike | Result, output: str | os.PathLike | None = None
) -> Path:
    """Write a self-contained HTML report of a result store, and its figures as PNG files.

    Parameters
    ----------
    result : path or Result
        A finished result store.
    output : path, optional
        The HTML file; default ``<store>.report.html`` beside the store. PNGs go into the
        folder ``<output stem>_files`` beside it.

    Returns
    -------
    pathlib.Path
        The HTML file written.
    """
    res = result if isinstance(result, Result) else open_result(result)
    html_path = Path(output) if output is not None else Path(res.path.rstrip("/") + ".report.html")
    png_dir = html_path.with_name(html_path.stem + "_files")
    png_dir.mkdir(parents=True, exist_ok=True)
    figs = _figures(res)
    parts = []
    for name, (caption, png) in figs.items():
        (png_dir / f"{name}.png").write_bytes(png)
        b64 = base64.b64encode(png).decode()
        parts.append(
            f'<figure id="{name}"><img alt="{html.escape(caption)}" '
            f'src="data:image/png;base64,{b64}"><figcaption>{html.escape(caption)}'
            "</figcaption></figure>"
        )
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in summary_rows(res)
    )
    config = html.escape(json.dumps(res.config, indent=2, default=str))
    page = _PAGE.format(
        title=html.escape(Path(res.path).name), rows=rows, figures="\n".join(parts),
        config=config, motifs=_motif_table(motif_rows(res)) + _sites_note(res),
        cells=_cell_table(res),
    )
    tmp = html_path.with_name(f".{html_path.name}.partial")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, html_path)
    return html_path


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>dmotif report: {title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222;
       background: #fff; }}
h1 {{ font-size: 1.6em; }} table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ text-align: left; padding: .25em 1em; border-bottom: 1px solid #ddd; }}
figure {{ display: block; margin: 1em 0; }}
img.patch {{ width: 48px; height: 48px; image-rendering: pixelated; }}
figure img {{ max-width: 100%; border: 1px solid #ccc; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: .85em; }}
</style></head>
<body>
<h1>dmotif report: {title}</h1>
<table id="summary">{rows}</table>
<h2>Motifs</h2>
<p>Separation: Mahalanobis distance to the nearest motif in the PCA scores (motifs are kept
apart from about 4.65, where their distributions overlap by under 1 %); p-value: Hotelling's
test that the two are one motif. A motif named "X on Y site" is told apart from X by the
sublattice site its columns sit on, not by their patch, so its separation from X may be small;
so is that of two motifs split by the mean features of their sublattice sites (different on
average over hundreds of columns, not column by column). Mean intensity: the smoothed image at
the column centres, background included. The mean patches share one grey scale, so a brighter
column type shows brighter.</p>
{motifs}
<h2>Cell types and patterns</h2>
{cells}
<section id="figures">
{figures}
</section>
<h2>Configuration</h2>
<pre id="config">{config}</pre>
</body></html>
"""
