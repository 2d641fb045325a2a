"""The explorer as a bokeh application (:func:`explore`, for Jupyter) and as a local web server
(:func:`serve`, ``dmotif explore``)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
from typing import Any

from ...errors import DmotifError, ParameterError
from ...io.store import Result
from .data import ExplorerData
from .state import Explorer

__all__ = ["ExplorerServer", "explore", "serve"]

logger = logging.getLogger(__name__)


def _require_bokeh() -> None:
    try:
        import bokeh  # noqa: F401
    except ModuleNotFoundError as exc:
        raise DmotifError(
            "the explorer needs bokeh, which is not installed: pip install 'dmotif[explore]'."
        ) from exc


def explore(result: Result | str | os.PathLike, *, image: Any = None,
            radius: int | None = None, max_points: int = 50_000) -> Any:
    """The explorer as a bokeh application, to show inline in Jupyter.

    Parameters
    ----------
    result : Result, str or os.PathLike
        A result store (see :class:`ExplorerData` for what it must hold).
    image : str, os.PathLike or array, optional
        The image stack, if not at the path recorded in the store.
    radius : int, optional
        Patch radius in pixels (default: the run's, else the atom spacing).
    max_points : int
        Most atoms drawn on the image at once (a sample beyond).

    Returns
    -------
    bokeh.application.Application
        Show it with ``bokeh.io.show(app)`` after ``bokeh.io.output_notebook()`` (JupyterLab or
        Notebook; pass ``notebook_url=`` when the notebook server is not at localhost:8888).

    Raises
    ------
    DataError, ImageFileError, StoreError
        When the store or its image cannot be used.

    Examples
    --------
    >>> from bokeh.io import output_notebook, show  # doctest: +SKIP
    >>> output_notebook()  # doctest: +SKIP
    >>> show(dmotif.explore("scan.dmotif.zarr"))  # doctest: +SKIP
    """
    _require_bokeh()
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler

    from ._document import build_document

    data = ExplorerData(result, image=image, radius=radius)
    return Application(FunctionHandler(
        lambda doc: build_document(doc, data, max_points=max_points)))


class ExplorerServer:
    """A running explorer server (see :func:`serve`).

    Attributes
    ----------
    url : str
        Where to point a browser.
    sessions : list of Explorer
        The state of each open browser session (for scripts and tests).
    """

    def __init__(self, data: ExplorerData, address: str, port: int, max_points: int,
                 allow_websocket_origin: list[str] | None) -> None:
        self.data = data
        self.address = address
        self.port = port or _free_port(address)
        self.sessions: list[Explorer] = []
        self._max_points = max_points
        host = f"[{address}]" if ":" in address else address
        self.url = f"http://{host}:{self.port}/"
        self._origins = [f"{host}:{self.port}", f"localhost:{self.port}",
                         *(allow_websocket_origin or [])]
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _make_server(self) -> Any:
        from bokeh.application import Application
        from bokeh.application.handlers.function import FunctionHandler
        from bokeh.server.server import Server

        from ._document import build_document

        def make(doc: Any) -> None:
            state = build_document(doc, self.data, max_points=self._max_points,
                                   on_session=self.sessions.append)
            doc.on_session_destroyed(lambda _ctx: self.sessions.remove(state))

        return Server({"/": Application(FunctionHandler(make))}, address=self.address,
                      port=self.port, allow_websocket_origin=self._origins)

    def run(self, *, open_browser: bool = False) -> None:
        """Serve in this thread until interrupted (Ctrl-C)."""
        self._server = self._make_server()
        self._server.start()
        if open_browser:
            self._server.io_loop.add_callback(self._server.show, "/")
        try:
            self._server.io_loop.start()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.stop()

    def start(self) -> ExplorerServer:
        """Serve from a background thread; return once the server listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def main() -> None:
            asyncio.set_event_loop(asyncio.new_event_loop())
            try:
                self._server = self._make_server()
                self._server.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            self._server.io_loop.start()

        self._thread = threading.Thread(target=main, name="dmotif-explore", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop a server started with :meth:`start`."""
        if self._server is None or self._thread is None:
            return
        loop = self._server.io_loop

        def shutdown() -> None:
            self._server.stop()
            loop.stop()

        loop.add_callback(shutdown)
        self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> ExplorerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port(address: str) -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def serve(
    result_path: str | os.PathLike,
    *,
    address: str = "127.0.0.1",
    port: int = 0,
    open_browser: bool = False,
    image: Any = None,
    radius: int | None = None,
    max_points: int = 50_000,
    allow_websocket_origin: list[str] | None = None,
    block: bool = True,
) -> ExplorerServer:
    """Serve the explorer of a result store as a local web app.

    Parameters
    ----------
    result_path : str or os.PathLike
        The result store.
    address : str
        Interface to listen on; loopback by default. Another address (e.g. ``"0.0.0.0"``)
        exposes the explorer, and the power to edit the store, to the network.
    port : int
        TCP port; 0 picks a free one.
    open_browser : bool
        Open the page in the default browser once serving.
    image, radius, max_points
        As for :func:`explore`.
    allow_websocket_origin : list of str, optional
        Further ``host:port`` origins the page may be loaded from (e.g. behind a proxy).
    block : bool
        Serve until interrupted (the command line; the address is logged at INFO level by the
        logger ``dmotif.viz.explorer.server``). False: serve from a background thread and
        return at once; call ``.stop()`` when done.

    Returns
    -------
    ExplorerServer
        Its ``url``; with ``block=False``, the running server.

    Raises
    ------
    DataError, ImageFileError, StoreError
        When the store or its image cannot be used.
    ParameterError
        When the port is out of range.

    Examples
    --------
    >>> srv = dmotif.viz.explorer.serve("scan.dmotif.zarr", block=False)  # doctest: +SKIP
    >>> print(srv.url)  # doctest: +SKIP
    http://127.0.0.1:40123/
    >>> srv.stop()  # doctest: +SKIP
    """
    if not 0 <= int(port) <= 65535:
        raise ParameterError(f"port must be in 0..65535 (0 = any free port); got {port}.")
    _require_bokeh()
    data = ExplorerData(result_path, image=image, radius=radius)
    server = ExplorerServer(data, address, int(port), max_points, allow_websocket_origin)
    if not block:
        return server.start()
    logger.info("serving %s at %s (Ctrl-C to stop)", data.result.path, server.url)
    server.run(open_browser=open_browser)
    return server
