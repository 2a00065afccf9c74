"""A moto server whose requests run one at a time, as DynamoDB applies a conditional write atomically.

Moto's own server handles requests in threads and checks a condition in Python, so two racing
conditional writes could both pass: races run against it would test moto, not the service. With the
lock, a double refresh seen by a race test or the chaos soak is the service's bug.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class _OneAtATime:
    def __init__(self, app: Callable) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        with self._lock:
            return list(self._app(environ, start_response))


class SerializedMotoServer:
    """Started on construction, on a free loopback port, in a daemon thread; `url` is its endpoint."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                pass

        app = _OneAtATime(DomainDispatcherApplication(create_backend_app))
        self._server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=QuietHandler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="moto", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
