"""A self-contained HTML report of a result store (figures embedded), plus the figures as PNG."""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..io.images import open_image
from ..io.store import Result, open_result
from .hierarchy_plot import plot_hierarchy
from .plots import MOTIF_COLORS, plot_layout, plot_motifs

__all__ = ["plot_atoms_on_image", "plot_frame_fractions", "report", "summary_rows"]

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
    ax.legend(loc="upper right", fontsize=7, markerscale=1.5, framealpha=0.8)
    fig.tight_layout()
    return fig


def plot_frame_fractions(frames: np.ndarray, labels: np.ndarray) -> Figure:
    """Stacked bars: the fraction of each motif in each frame."""
    ids = np.unique(frames)
    motifs = np.unique(labels)
    fractions = np.array(
        [[np.mean(labels[frames == f] == m) for f in ids] for m in motifs]
    )
    fig = Figure(figsize=(6.4, 3.2))
    ax = fig.add_subplot()
    cmap = MOTIF_COLORS
    bottom = np.zeros(ids.size)
    for m, frac in zip(motifs, fractions, strict=True):
        color = "0.6" if m < 0 else cmap(int(m) % cmap.N)
        ax.bar(ids, frac, bottom=bottom, color=color,
               label="unassigned" if m < 0 else f"motif {int(m)}")
        bottom += frac
    ax.set_xticks(ids)
    ax.set_xlabel("frame")
    ax.set_ylabel("fraction of atoms")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncols=min(len(motifs), 5), loc="lower right")
    fig.tight_layout()
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def _figures(res: Result) -> dict[str, tuple[str, bytes]]:
    """Every figure the store allows, as (caption, PNG bytes), in page order."""
    ds = res.dataset
    figs: dict[str, tuple[str, bytes]] = {}
    labels = ds["label"].values if "label" in ds else None
    src = res.config.get("input", {}).get("path")
    if labels is not None and src and (Path(src).exists() or "://" in src):
        image = open_image(src, check=False)
        figs["atoms"] = ("Atoms coloured by motif (central crop of frame 0)",
                         _png(plot_atoms_on_image(image, ds, labels)))
    if "layout" in ds and labels is not None:
        figs["layout"] = ("Force-relaxed layout of the Zernike features, coloured by motif",
                          _png(plot_layout(ds["layout"].values, labels)))
    if "mean_patch" in ds:
        frames = res.attrs.get("cluster_attrs", {}).get("mean_patch_frames")
        n_frames = ds["frame"].values.max() + 1 if "frame" in ds else 1
        over = "" if frames is None or len(frames) >= n_frames else (
            f" (patches averaged over frames {', '.join(map(str, frames))})")
        figs["motifs"] = (f"Mean patch of each motif, with its count{over}",
                          _png(plot_motifs(ds)))
    graph = res.hierarchy
    if graph is not None and graph.number_of_nodes():
        figs["hierarchy"] = ("Motif hierarchy: an arrow B → A reads 'B is made of A'",
                             _png(plot_hierarchy(graph)))
    if labels is not None and "frame" in ds:
        figs["fractions"] = ("Fraction of each motif per frame",
                             _png(plot_frame_fractions(ds["frame"].values, labels)))
    return figs


def summary_rows(res: Result) -> list[tuple[str, str]]:
    """(name, value) rows that summarise a result: atoms, motifs, levels, time per stage."""
    ds = res.dataset
    rows = [("atoms", f"{ds.sizes.get('atom', 0):,}")]
    if "label" in ds:
        lab = ds["label"].values
        n_motifs = len(np.unique(lab[lab >= 0]))
        rows.append(("motifs", str(n_motifs)))
        rows.append(("unassigned", f"{np.mean(lab < 0):.2%}"))
    graph = res.hierarchy
    if graph is not None:
        levels = sorted({int(d.get("level", 0)) for _, d in graph.nodes(data=True)})
        rows.append(("hierarchy levels", ", ".join(map(str, levels))))
    status = res.attrs.get("hierarchy_attrs", {}).get("status")
    if status:
        rows.append(("hierarchy", status))
    for stage, seconds in res.attrs.get("dmotif_timings", {}).items():
        rows.append((f"time: {stage}", f"{seconds:.1f} s"))
    rows.append(("dmotif version", str(res.attrs.get("dmotif_version", "?"))))
    return rows


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
        config=config,
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
figure {{ display: inline-block; margin: 1em; vertical-align: top; max-width: 520px; }}
figure img {{ max-width: 100%; border: 1px solid #ccc; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: .85em; }}
</style></head>
<body>
<h1>dmotif report: {title}</h1>
<table id="summary">{rows}</table>
<section id="figures">
{figures}
</section>
<h2>Configuration</h2>
<pre id="config">{config}</pre>
</body></html>
"""
