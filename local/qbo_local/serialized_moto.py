"""A moto server that applies each DynamoDB and Secrets Manager request atomically, as AWS does.

Moto's own server handles requests in threads and checks a condition in Python between reading and
writing an item, so two racing conditional writes can both pass (two refreshers both "take" a lease;
two writers of one secret version both "succeed"). AWS applies a conditional write atomically. Races
run against plain moto would test moto, not the service: here the requests of those two services run
one at a time. Other services are left concurrent: an SQS long poll must not hold up everything else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

# X-Amz-Target prefixes of the requests applied one at a time (the JSON protocols' operation header).
ATOMIC_SERVICES = ("DynamoDB_", "secretsmanager.")


class AtomicWrites:
    """WSGI middleware: requests to the atomic services run under one lock, the rest as they come."""

    def __init__(self, app: Callable, services: tuple[str, ...] = ATOMIC_SERVICES) -> None:
        self._app = app
        self._services = services
        self._lock = threading.Lock()

    def __call__(self, environ: dict, start_response: Callable) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith(self._services):
            return self._app(environ, start_response)
        with self._lock:
            return list(self._app(environ, start_response))


def moto_app() -> Callable:
    """moto's server application, every service, with atomic DynamoDB and Secrets Manager requests."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return AtomicWrites(DomainDispatcherApplication(create_backend_app))


class SerializedMotoServer:
    """Started on construction, in a daemon thread, on `port` (0: a free one) of `host`; `url` is its
    endpoint. Raises OSError when the port is taken."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from werkzeug.serving import make_server

        class QuietHandler(MotoRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                pass

        self._server = make_server(host, port, moto_app(), threaded=True, request_handler=QuietHandler)
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
