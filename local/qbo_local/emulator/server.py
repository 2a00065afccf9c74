"""The Flask app factory and a real threaded HTTP server for it."""

from __future__ import annotations

from flask import Flask, Response, request
from werkzeug.serving import WSGIRequestHandler

from ..serving import BackgroundServer
from . import accounting_routes, admin_routes, oauth_routes
from .config import EmulatorConfig
from .facts import ADMIN_PREFIX, TID_HEADER
from .responses import new_tid
from .state import EmulatorState


def create_app(config: EmulatorConfig | None = None) -> Flask:
    """A Flask app emulating Intuit; app.emulator is its EmulatorState (faults, stats, clock...)."""
    app = Flask(__name__)
    # In-process callers (the test client) see an injected connection_reset, or an emulator bug, as an
    # exception rather than a made-up 500; over HTTP werkzeug still logs it and answers 500.
    app.config["PROPAGATE_EXCEPTIONS"] = True
    app.emulator = EmulatorState(config or EmulatorConfig())  # type: ignore[attr-defined]
    app.register_blueprint(oauth_routes.bp)
    app.register_blueprint(accounting_routes.bp)
    app.register_blueprint(admin_routes.bp)

    @app.after_request
    def _support_id(response: Response) -> Response:
        # Intuit tags every answer with a fresh support id; clients should log it with failures.
        if not request.path.startswith(ADMIN_PREFIX):
            response.headers[TID_HEADER] = new_tid()
        return response

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class EmulatorServer(BackgroundServer):
    """create_app behind werkzeug's threaded server, run in a daemon thread.

    with EmulatorServer(config).start() as server:
        requests.get(server.url + "/_emulator/health")
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        quiet: bool = True,
    ) -> None:
        self.app = create_app(config)
        self.emulator: EmulatorState = self.app.emulator  # type: ignore[attr-defined]
        handler = _QuietHandler if quiet else WSGIRequestHandler
        super().__init__(self.app, host, port, request_handler=handler, thread_name="intuit-emulator")

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if host in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard bind is reached over loopback
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"
