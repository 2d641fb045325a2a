"""The ``dmotif`` command line (typer); rich output lives here and only here."""

from __future__ import annotations

import functools
import gc
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import click
import typer
from rich.console import Console
from rich.table import Table

from .errors import DmotifError

app = typer.Typer(
    name="dmotif",
    help="Structural motifs and their hierarchy from atomic-resolution images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(soft_wrap=True)  # never break a path across lines
F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(func: F) -> F:
    """Print a DmotifError as one line on stderr and exit with status 2, no traceback.

    Any other exception is a bug of dmotif: its traceback goes to a log file and the user
    gets one line naming that file, with exit status 3.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DmotifError as exc:
            typer.echo(f"dmotif: error: {' '.join(str(exc).split())}", err=True)
            raise typer.Exit(code=2) from None
        except click.exceptions.ClickException:
            raise  # usage errors: typer prints them
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            log = _write_crash_log(exc)
            typer.echo(f"dmotif: internal error ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())[:200]}); please report it with the log "
                       f"{log}", err=True)
            raise typer.Exit(code=3) from None

    return wrapper  # type: ignore[return-value]


def _write_crash_log(exc: BaseException) -> str:
    """Write the traceback of ``exc`` to a fresh file in the temporary folder; its path."""
    import tempfile
    import traceback

    from . import __version__

    fd, path = tempfile.mkstemp(prefix="dmotif-error-", suffix=".log")
    with os.fdopen(fd, "w") as fh:
        fh.write(f"dmotif {__version__}; python {sys.version.split()[0]}; argv {sys.argv}\n")
        fh.write("".join(traceback.format_exception(exc)))
    return path


@app.command()
@_one_line_errors
def synth(
    kind: Annotated[str, typer.Argument(help="tmd, perovskite, shapes or twisted.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output store (.zarr).")],
    size: Annotated[int, typer.Option(help="Image size in pixels (square).")] = 512,
    frames: Annotated[int, typer.Option(help="Number of frames.")] = 1,
    pixel_size: Annotated[float, typer.Option(help="nm per pixel.")] = 0.015,
    dose: Annotated[float, typer.Option(help="Poisson counts per unit peak; 0: none.")] = 100.0,
    read_noise: Annotated[float, typer.Option(help="Gaussian noise, units of the peak.")] = 0.17,
    seed: Annotated[int, typer.Option(help="Seed of defects, origin and noise.")] = 0,
    chunk: Annotated[int, typer.Option(help="Tile size of the stack.")] = 1024,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Write a synthetic image stack with its ground truth (positions, motifs, cells)."""
    from . import synthetic

    if Path(output).suffix != ".zarr":
        raise DmotifError(f"the output of synth is a zarr store; name it *.zarr, not {output!s}.")
    sample = synthetic.generate(
        kind, size=size, frames=frames, pixel_size=pixel_size, dose=dose or None,
        read_noise=read_noise, seed=seed, chunks=chunk,
    )
    with console.status(f"rendering {frames} × {size}² {kind} …"):
        synthetic.save(sample, output, overwrite=overwrite)
    console.print(
        f"wrote [bold]{output}[/]: {frames} × {size}² {kind}, "
        f"{sample.atoms.sizes['atom']} columns of {len(sample.motif_names)} motifs"
    )


@app.command()
@_one_line_errors
def info(path: Annotated[str, typer.Argument(help="An image, stack or result store.")]) -> None:
    """Describe what an image stack or a result store holds."""
    for table in describe(path):
        console.print(table)


def describe(path: str) -> list[Table]:
    """Tables that describe ``path``: its image stack, truth, or result contents."""
    from .io.store import open_zarr_group

    tables: list[Table] = []
    group = None
    if path.rstrip("/").endswith(".zarr"):
        if not Path(path).exists() and "://" not in path:
            raise DmotifError(f"no such store: {path!r}. Check the path.")
        group = open_zarr_group(path)
    if group is not None and "image" not in group:
        tables.extend(_describe_result(path))
        return tables
    from .io.images import open_image

    img = open_image(path)
    t = Table(title=f"image stack {path}", show_header=False)
    t.add_row("dims", str(dict(img.sizes)))
    t.add_row("dtype", str(img.dtype))
    t.add_row("chunks", " × ".join(str(c[0]) for c in img.chunks))
    t.add_row("pixel size", f"{img.attrs['pixel_size']} {img.attrs['units']}")
    t.add_row(
        "field of view",
        f"{img.sizes['y'] * img.attrs['pixel_size']:.4g} × "
        f"{img.sizes['x'] * img.attrs['pixel_size']:.4g} {img.attrs['units']}",
    )
    tables.append(t)
    if group is not None and "dmotif_synthetic" in group.attrs:
        tables.append(_describe_truth(path))
    return tables


def _describe_truth(path: str) -> Table:
    import numpy as np

    from .synthetic import load

    sample = load(path)
    counts = np.bincount(sample.atoms["label"].values, minlength=len(sample.motif_names))
    t = Table(title=f"ground truth ({sample.params['kind']})")
    t.add_column("motif")
    t.add_column("columns", justify="right")
    for name, n in zip(sample.motif_names, counts, strict=True):
        t.add_row(name, str(int(n)))
    t.add_row("(empty sites)", str(sample.vacancies.sizes.get("vacancy", 0)))
    return t


def _describe_result(path: str) -> list[Table]:
    import numpy as np

    from .io.store import open_result

    res = open_result(path)
    atoms = res.atoms
    t = Table(title=f"dmotif result {path}", show_header=False)
    t.add_row("dmotif version", str(res.attrs.get("dmotif_version", "?")))
    t.add_row("atoms", str(atoms.sizes.get("atom", 0)))
    t.add_row("variables", ", ".join(sorted(atoms.data_vars)))
    if "frame" in atoms:
        t.add_row("frames", str(len(np.unique(atoms["frame"].values))))
    tables = [t]
    for name in sorted(v for v in atoms.data_vars if str(v).startswith("label")):
        labels = atoms[name].values
        m = Table(title=f"motifs ({name})")
        m.add_column("motif", justify="right")
        m.add_column("atoms", justify="right")
        m.add_column("fraction", justify="right")
        values, counts = np.unique(labels, return_counts=True)
        for v, c in zip(values, counts, strict=True):
            m.add_row("unassigned" if v < 0 else str(int(v)), str(int(c)),
                      f"{c / labels.size:.2%}")
        tables.append(m)
    graph = res.hierarchy
    if graph is not None:
        levels = sorted({d.get("level", 0) for _, d in graph.nodes(data=True)})
        h = Table(title="hierarchy", show_header=False)
        h.add_row("levels", ", ".join(map(str, levels)))
        h.add_row("motifs", str(graph.number_of_nodes()))
        h.add_row("edges", str(graph.number_of_edges()))
        tables.append(h)
    return tables


@app.command()
@_one_line_errors
def run(
    inputs: Annotated[
        list[str],
        typer.Argument(help="Image file, stack (.zarr) or URL; or several files, globs or "
                            "folders, learned together as the frames of one result."),
    ],
    output: Annotated[str, typer.Option("-o", "--output", help="Result store (.zarr).")],
    config: Annotated[
        Path | None, typer.Option(help="Parameters (TOML or JSON); missing ones are defaults.")
    ] = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Address of a running dask scheduler, tcp://host:port.")
    ] = None,
    cluster: Annotated[
        str, typer.Option(help="Cluster to start: local, slurm or kubernetes.")
    ] = "local",
    cluster_config: Annotated[
        Path | None, typer.Option(help="jobqueue YAML or DaskCluster manifest (deploy/).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (local) or jobs/replicas.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed; overrides the config's.")] = None,
    detector: Annotated[
        str | None, typer.Option(help="4D-STEM input: virtual detector bf/abf/adf/haadf/icom.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    processes: Annotated[
        bool | None,
        typer.Option("--processes/--threads",
                     help="Local cluster of worker processes, or threads of this process "
                          "(quicker to start). Default: threads for small inputs."),
    ] = None,
) -> None:
    """Detect, describe, lay out, label and build the hierarchy; resumable."""
    from .pipeline import run as run_pipeline

    source: str | list[str] = inputs[0] if len(inputs) == 1 else inputs
    res = _with_progress(
        lambda progress: run_pipeline(
            source, output, config=config, scheduler=scheduler, cluster=cluster,
            cluster_config=cluster_config, workers=workers, seed=seed, detector=detector,
            overwrite=overwrite, processes=processes, progress=progress,
        )
    )
    _print_run_summary(res)


@app.command()
@_one_line_errors
def report(
    result: Annotated[str, typer.Argument(help="A result store written by dmotif run.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="HTML file (default: beside the store).")
    ] = None,
) -> None:
    """Write a self-contained HTML report (and PNG figures) of a result."""
    from .viz.html_report import report as make_report

    with console.status("drawing figures …"):
        path = make_report(result, output)
    console.print(f"wrote [bold]{path}[/] and figures in {path.with_name(path.stem + '_files')}")


@app.command("export")
@_one_line_errors
def export_result(
    result: Annotated[str, typer.Argument(help="A result store written by dmotif run.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The file to write.")],
    format: Annotated[
        str | None,
        typer.Option("--format", "-f",
                     help="csv, parquet, ase (extended XYZ), graphml or json; "
                          "default: from the output's suffix."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Export the atoms (csv, parquet, ase) or the motif hierarchy (graphml, json) of a result."""
    from .io.export import export

    with console.status(f"writing {output} …"):
        path = export(result, output, format=format, overwrite=overwrite)
    console.print(f"wrote [bold]{path}[/]")


@app.command()
@_one_line_errors
def demo(
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the demo files.")] = (
        Path("dmotif-demo")
    ),
    size: Annotated[int, typer.Option(help="Image size in pixels.")] = 1024,
    frames: Annotated[int, typer.Option(help="Number of frames.")] = 2,
    overwrite: Annotated[bool, typer.Option(help="Replace earlier demo files.")] = False,
) -> None:
    """Synthesise a TMD stack with known defects, run the pipeline on it, and report."""
    from . import synthetic
    from .pipeline import run as run_pipeline
    from .viz.html_report import report as make_report

    output.mkdir(parents=True, exist_ok=True)
    stack = output / "tmd.zarr"
    result = output / "tmd.dmotif.zarr"
    with console.status(f"synthesising {frames} × {size}² TMD …"):
        sample = synthetic.tmd(size=size, frames=frames, seed=0)
        synthetic.save(sample, stack, overwrite=overwrite)
    res = _with_progress(
        lambda progress: run_pipeline(stack, result, overwrite=overwrite, progress=progress)
    )
    _print_run_summary(res)
    path = make_report(res, output / "report.html")
    console.print(f"report: [bold]{path}[/]")


@app.command()
@_one_line_errors
def detect(
    input: Annotated[str, typer.Argument(help="Image file, stack (.zarr) or URL.")],
    output: Annotated[str, typer.Option("-o", "--output", help="Atom table store (.zarr).")],
    refine: Annotated[str, typer.Option(help="Sub-pixel refinement: com, gaussian or none.")] = (
        "com"
    ),
    min_distance: Annotated[
        float | None, typer.Option(help="Minimum column distance, px (default: from spacing).")
    ] = None,
    pixel_size: Annotated[float | None, typer.Option(help="nm per pixel, if not in file.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
) -> None:
    """Find the atom columns of an image (sub-pixel) and write their table."""
    from .detect import detect_atoms
    from .io.images import open_image, source_identity
    from .io.store import write_result

    image = open_image(input, pixel_size=pixel_size)
    with console.status("detecting atom columns …"):
        atoms = detect_atoms(image, refine=None if refine == "none" else refine,
                             min_distance=min_distance)
    config = {"detect": {"refine": refine, "min_distance": min_distance},
              "input": source_identity(input)}
    write_result(atoms, output, config=config, overwrite=overwrite)
    console.print(f"wrote [bold]{output}[/]: {atoms.sizes['atom']:,} atoms, spacing "
                  f"{atoms.attrs['spacing_px']:.2f} px")


@app.command()
@_one_line_errors
def explore(
    result: Annotated[str, typer.Argument(help="A result store written by dmotif run.")],
    address: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 to share.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port (0: a free one).")] = 0,
    browser: Annotated[bool, typer.Option(help="Open a web browser.")] = False,
) -> None:
    """Serve the linked layout ↔ image explorer, with motif editing, until Ctrl-C."""
    from .viz.explorer import serve

    _show_log()  # the server logs its address
    serve(result, address=address, port=port, open_browser=browser)


def _show_log() -> None:
    """Print dmotif's INFO log records on the console: the library logs, the CLI shows them."""
    from rich.logging import RichHandler

    log = logging.getLogger("dmotif")
    if not any(isinstance(h, RichHandler) for h in log.handlers):
        log.addHandler(RichHandler(console=console, show_time=False, show_path=False))
    log.setLevel(logging.INFO)


def _with_progress(job: Callable[[Callable[[str, str], None]], Any]) -> Any:
    """Run ``job`` with a rich status line that follows the pipeline's stages."""
    with console.status("starting …") as status:

        def progress(stage: str, message: str) -> None:
            if message == "start":
                status.update(f"[bold]{stage}[/] …")
            elif message.startswith("tasks "):
                status.update(f"[bold]{stage}[/] … {message} on the cluster")
            else:
                console.print(f"[green]✓[/] {stage}: {message}")

        return job(progress)


def _print_run_summary(res: Any) -> None:
    from .io.summary import summary_rows

    table = Table(title=f"dmotif run → {res.path}", show_header=False)
    for key, value in summary_rows(res):
        table.add_row(key, value)
    console.print(table)


def main() -> None:
    """Entry point of the ``dmotif`` script."""
    # Rich wraps at the terminal width; in pipes and CI keep whole lines.
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", "120")
    try:
        app()
    finally:
        # Python's finalisation garbage-collects every object of the libraries a run imported
        # (numba, dask, xarray, scikit-learn…): about a second before the shell gets back.
        # Frozen objects are skipped; atexit handlers still run.
        gc.freeze()


if __name__ == "__main__":  # python -m dmotif.cli
    main()
