"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from moto.server import ThreadedMotoServer
from refresh_support import Stack, stack_factory


@pytest.fixture
def plain_moto() -> Iterator[str]:
    """The URL of moto's own threaded server, as it is (no atomic writes, no strict Cognito): for tests
    that show what plain moto does, or that need nothing more."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def make_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Stack]]:
    """make_stack(clock, emulator_sleep=None, **settings) -> a Stack on its own table, secrets and emulator."""
    yield from stack_factory(monkeypatch)
