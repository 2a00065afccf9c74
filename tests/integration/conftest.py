"""Fixtures shared by the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from refresh_support import Stack, stack_factory


@pytest.fixture
def make_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Stack]]:
    """make_stack(clock, emulator_sleep=None, **settings) -> a Stack on its own table, secrets and emulator."""
    yield from stack_factory(monkeypatch)
