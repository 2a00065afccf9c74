"""Fixtures for the Intuit emulator tests (helpers live in emulator_support.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

try:
    import qbo_local.emulator  # noqa: F401
except ModuleNotFoundError:  # the project is not installed: use the source tree
    _ROOT = Path(__file__).resolve().parents[2]
    sys.path[:0] = [str(_ROOT / "local"), str(_ROOT / "layers" / "qbo_connect")]
# Whatever pytest's import mode, the test modules can import their helpers.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from emulator_support import FakeClock, FakeSleep, Intuit
from flask import Flask
from qbo_local.emulator import EmulatorConfig, create_app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleep(clock: FakeClock) -> FakeSleep:
    return FakeSleep(clock)


@pytest.fixture
def config(clock: FakeClock, sleep: FakeSleep) -> EmulatorConfig:
    return EmulatorConfig(clock=clock, sleep=sleep)


@pytest.fixture
def app(config: EmulatorConfig) -> Flask:
    return create_app(config)


@pytest.fixture
def intuit(app: Flask) -> Intuit:
    return Intuit(app.test_client())


@pytest.fixture
def tokens(intuit: Intuit) -> dict[str, Any]:
    return intuit.connect()


@pytest.fixture
def admin(app: Flask) -> Any:
    """The emulator's admin API (/_emulator/...), in process."""
    return app.test_client()
