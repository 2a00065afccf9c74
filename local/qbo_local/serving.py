"""A WSGI app on werkzeug's threaded server, served from a daemon thread: the emulator and the router."""

from __future__ import annotations

import errno
import threading
from types import TracebackType
from typing import Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


class QuietRequestHandler(WSGIRequestHandler):
    """Leaves request logging to the app, which logs one line of its own (never a query string)."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class BackgroundServer:
    """Binding happens in the constructor, so the port is known (port=0 picks a free one) before start()."""

    def __init__(
        self, app: Any, host: str, port: int, *, request_handler: type[WSGIRequestHandler], thread_name: str
    ) -> None:
        try:
            self._server: BaseWSGIServer = make_server(host, port, app, threaded=True, request_handler=request_handler)
        except SystemExit:
            # werkzeug exits the process when it cannot bind; the caller should say what to do instead.
            raise OSError(errno.EADDRINUSE, f"cannot listen on {host}:{port}") from None
        self.host = host
        self._thread_name = thread_name
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._thread is None:
            # A short poll interval keeps stop() quick, which matters to test suites that start many servers.
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=self._thread_name, daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (a standalone entry point)."""
        self._server.serve_forever()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
