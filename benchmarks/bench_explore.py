"""Explorer responsiveness at a million atoms: dmotif's explorer against a plain bokeh app.

The data: a stand-in result store of 1,000,000 atoms (the truth columns of a synthetic 8192²
TMD frame, three jittered copies of each) with a blob-per-motif layout, and the 8192² image.

- dmotif: ``dmotif.viz.explorer.serve`` (rasterised layout, image overview + tiles).
- baseline: the plain bokeh way, every atom a point of a ``scatter`` in the layout (client-side
  box selection, indices synced to the server) beside the same image overview.

Each server runs in its own process (its peak RSS is read from /proc before it stops); headless
Debian chromium (playwright) measures

- load: the server process from start to listening (imports + reading the store);
- first paint: page navigation → the bokeh document is idle (rendered);
- selection round trip: mouse-up of a box drag in the layout → the server's update (highlight
  of the selected atoms on the image) is in the page and painted (two animation frames).

Run: ``python benchmarks/bench_explore.py [--atoms 1000000] [--keep DIR] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
CENTRES = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0], [6.0, 6.0]])


def make_store(directory: Path, n_atoms: int, size: int) -> str:
    import xarray as xr

    import dmotif
    from dmotif import synthetic

    out = directory / f"result_{n_atoms}.zarr"
    if out.exists():
        return str(out)
    sample = synthetic.tmd(size=size, seed=1)
    image_path = directory / f"image_{size}.zarr"
    if not image_path.exists():
        synthetic.save(sample, image_path)
    atoms = sample.atoms
    copies = -(-n_atoms // atoms.sizes["atom"])
    rng = np.random.default_rng(0)
    y = np.concatenate([atoms["y"].values + (k > 0) * rng.normal(0, 2, atoms.sizes["atom"])
                        for k in range(copies)])[:n_atoms]
    x = np.concatenate([atoms["x"].values + (k > 0) * rng.normal(0, 2, atoms.sizes["atom"])
                        for k in range(copies)])[:n_atoms]
    labels = np.tile(atoms["label"].values, copies)[:n_atoms].astype(np.int32)
    order = np.lexsort((x, y))
    y, x, labels = y[order], x[order], labels[order]
    layout = CENTRES[labels] + rng.normal(0, 0.8, (n_atoms, 2))
    ds = xr.Dataset({
        "frame": ("atom", np.zeros(n_atoms, np.int32)), "y": ("atom", y), "x": ("atom", x),
        "layout": (("atom", "axis"), layout.astype(np.float32)), "label": ("atom", labels),
    })
    dmotif.write_result(ds, out, config={"input": {"path": str(image_path)}})
    return str(out)


# --------------------------------------------------------------------------- servers


def serve_dmotif(store: str) -> None:
    from dmotif.viz.explorer import serve

    server = serve(store, block=False)
    print(server.url, flush=True)
    sys.stdin.read()  # until the driver closes our stdin
    server.stop()


def serve_baseline(store: str) -> None:
    """The plain bokeh app: every atom a point, selection computed in the browser."""
    import asyncio

    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.layouts import row
    from bokeh.models import BoxSelectTool, ColumnDataSource, LinearColorMapper, Range1d
    from bokeh.palettes import Category10, Greys256
    from bokeh.plotting import figure
    from bokeh.server.server import Server

    from dmotif.viz.explorer import ExplorerData
    from dmotif.viz.explorer.server import _free_port

    data = ExplorerData(store)
    small, step, (low, high) = data.overview(0)
    colours = np.array(Category10[10])[data.labels % 10]

    def make(doc):
        src = ColumnDataSource({"x": data.lx, "y": data.ly, "c": colours}, name="points")
        lay = figure(name="layout", width=520, height=520, tools="pan,wheel_zoom,reset")
        lay.scatter("x", "y", color="c", size=2, source=src)
        lay.add_tools(BoxSelectTool())
        lay.toolbar.active_drag = lay.select_one(BoxSelectTool)
        img = figure(name="image", width=520, height=520, x_range=Range1d(0, data.width),
                     y_range=Range1d(data.height, 0))
        img.image(image=[small], x=-0.5, y=-0.5, dw=small.shape[1] * step,
                  dh=small.shape[0] * step,
                  color_mapper=LinearColorMapper(palette=Greys256, low=low, high=high))
        hi = ColumnDataSource({"x": [], "y": []}, name="highlight")
        img.scatter("x", "y", size=9, fill_alpha=0, line_color="#ffd400", source=hi)

        def on_select(_a, _o, new):
            idx = np.asarray(new, dtype=np.int64)[:50_000]
            hi.data = {"x": data.x[idx], "y": data.y[idx]}

        src.selected.on_change("indices", on_select)
        doc.add_root(row(lay, img))

    asyncio.set_event_loop(asyncio.new_event_loop())
    port = _free_port("127.0.0.1")
    server = Server({"/": Application(FunctionHandler(make))}, address="127.0.0.1", port=port,
                    allow_websocket_origin=[f"127.0.0.1:{port}"],
                    websocket_max_message_size=2**31 - 1)
    server.start()
    print(f"http://127.0.0.1:{port}/", flush=True)
    import threading

    threading.Thread(target=lambda: (sys.stdin.read(), server.io_loop.add_callback(
        server.io_loop.stop)), daemon=True).start()
    server.io_loop.start()


# --------------------------------------------------------------------------- driver


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _to_page(page, x, y):
    return page.evaluate(
        """([x, y]) => {
            const plot = Bokeh.index.get_one(Bokeh.documents[0].get_model_by_name('layout'))
            const rect = plot.canvas_view.el.getBoundingClientRect()
            return [rect.left + plot.frame.x_scale.compute(x),
                    rect.top + plot.frame.y_scale.compute(y)]
        }""", [x, y])


def measure(method: str, store: str, repeat: int) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", method, "--store", store],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    url = proc.stdout.readline().strip()
    load = time.perf_counter() - t0
    out: dict[str, float] = {"load_s": load}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            paints, trips = [], []
            for _ in range(repeat):
                page = browser.new_page(viewport={"width": 1200, "height": 950})
                t = time.perf_counter()
                page.goto(url)
                page.wait_for_function(
                    "() => window.Bokeh && Bokeh.documents.length > 0"
                    " && Bokeh.documents[0].get_model_by_name('layout') !== null"
                    " && Bokeh.documents[0].is_idle", timeout=120_000, polling=20)
                paints.append(time.perf_counter() - t)
                for corner in ((6.0, 0.0), (0.0, 6.0)):  # select one blob, then another
                    (x0, y0) = _to_page(page, corner[0] - 2.5, corner[1] + 2.5)
                    (x1, y1) = _to_page(page, corner[0] + 2.5, corner[1] - 2.5)
                    before = page.evaluate("Bokeh.documents[0].get_model_by_name('highlight')"
                                           ".data.x.length")
                    page.mouse.move(x0, y0)
                    page.mouse.down()
                    page.mouse.move(x1, y1, steps=3)
                    t = time.perf_counter()
                    page.mouse.up()
                    page.wait_for_function(
                        """(before) => {
                          const n = Bokeh.documents[0].get_model_by_name('highlight')
                              .data.x.length
                          if (n === before || n === 0) return false
                          return new Promise(r => requestAnimationFrame(
                              () => requestAnimationFrame(() => r(true))))
                        }""", arg=before, timeout=120_000, polling=10)
                    trips.append(time.perf_counter() - t)
                page.close()
            browser.close()
        out["first_paint_s"] = float(np.median(paints))
        out["first_paint_max_s"] = float(np.max(paints))
        out["selection_s"] = float(np.median(trips))
        out["selection_max_s"] = float(np.max(trips))
        out["peak_rss_mib"] = _peak_rss_mib(proc.pid)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=8192, help="image side, pixels")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="directory to keep (and reuse) the data in")
    parser.add_argument("--serve", choices=("dmotif", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    if args.serve:
        (serve_dmotif if args.serve == "dmotif" else serve_baseline)(args.store)
        return
    directory = Path(args.keep or tempfile.mkdtemp(prefix="bench_explore_"))
    directory.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    store = make_store(directory, args.atoms, args.size)
    print(f"data: {args.atoms:,} atoms, {args.size}² image ({time.perf_counter() - t:.1f} s)")
    rows = {"dmotif": measure("dmotif", store, args.repeat)}
    if not args.skip_baseline:
        rows["plain bokeh"] = measure("baseline", store, args.repeat)
    cols = ("load_s", "first_paint_s", "first_paint_max_s", "selection_s", "selection_max_s",
            "peak_rss_mib")
    print(f"{'method':<12}" + "".join(f"{c:>19}" for c in cols))
    for name, res in rows.items():
        print(f"{name:<12}" + "".join(f"{res[c]:>19.2f}" for c in cols))
    if "plain bokeh" in rows:
        a, b = rows["dmotif"], rows["plain bokeh"]
        print("ratio (plain / dmotif): first paint "
              f"{b['first_paint_s'] / a['first_paint_s']:.1f}×, selection "
              f"{b['selection_s'] / a['selection_s']:.1f}×")
    print(f"targets: first paint ≤ 3 s, selection round trip ≤ 1 s at {args.atoms:,} atoms "
          f"(median of {args.repeat})")


if __name__ == "__main__":
    main()
