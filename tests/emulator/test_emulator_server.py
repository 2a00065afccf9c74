"""The emulator over real HTTP: start/stop, a whole connection, concurrency, connection reset, standalone."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from emulator_support import ACCOUNTING, REALM, REDIRECT_URI
from qbo_local.emulator import EmulatorConfig, EmulatorServer

CLIENT = ("http-client", "http-secret")
TIMEOUT = 10


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(), port=0) as running:
        yield running


def connect(url: str) -> dict[str, str]:
    params = {
        "client_id": CLIENT[0],
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": ACCOUNTING,
        "state": "s1",
    }
    page = requests.get(f"{url}/connect/oauth2", params=params, timeout=TIMEOUT)
    assert page.status_code == 200
    decision = requests.post(
        f"{url}/connect/oauth2/decision", data=params | {"realm_id": REALM}, allow_redirects=False, timeout=TIMEOUT
    )
    callback = parse_qs(urlsplit(decision.headers["Location"]).query)
    response = requests.post(
        f"{url}/oauth2/v1/tokens/bearer",
        data={"grant_type": "authorization_code", "code": callback["code"][0], "redirect_uri": REDIRECT_URI},
        auth=CLIENT,
        headers={"Accept": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def companyinfo(url: str, access_token: str) -> requests.Response:
    return requests.get(
        f"{url}/v3/company/{REALM}/companyinfo/{REALM}?minorversion=75",
        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        timeout=TIMEOUT,
    )


def test_server_starts_serves_a_connection_and_stops() -> None:
    server = EmulatorServer(EmulatorConfig(), host="127.0.0.1", port=0).start()
    url = server.url
    try:
        assert url.startswith("http://127.0.0.1:")
        assert requests.get(f"{url}/_emulator/health", timeout=TIMEOUT).json()["status"] == "ok"
        tokens = connect(url)
        response = companyinfo(url, tokens["access_token"])
        assert response.status_code == 200
        assert response.json()["CompanyInfo"]["CompanyName"] == "Sandbox Company_US_1"
        assert response.headers["intuit_tid"]
    finally:
        server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/_emulator/health", timeout=TIMEOUT)


def test_concurrent_refreshes_of_one_token_let_exactly_one_win(server: EmulatorServer) -> None:
    server.emulator.update_config({"rate_limits": False})
    refresh_token = connect(server.url)["refresh_token"]

    def refresh(_: int) -> int:
        return requests.post(
            f"{server.url}/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
            auth=CLIENT,
            timeout=TIMEOUT,
        ).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(refresh, range(8)))

    # One rotation wins; every replay is invalid_grant, and the first replay kills the grant.
    assert sorted(statuses) == [200] + [400] * 7
    assert server.emulator.stats.grant_type("refresh_token") == 8
    assert server.emulator.grants()[0]["revoked"] is True


def test_eleventh_concurrent_api_request_is_throttled() -> None:
    entered = threading.Semaphore(0)
    release = threading.Event()

    def blocking_sleep(_: float) -> None:
        entered.release()
        release.wait(TIMEOUT)

    config = EmulatorConfig(sleep=blocking_sleep, rate_limit_per_second=100)
    with EmulatorServer(config, port=0) as server, ThreadPoolExecutor(max_workers=10) as pool:
        access_token = connect(server.url)["access_token"]
        server.emulator.faults.set_delay("api", 1.0)  # every api call now blocks inside its slot
        try:
            held = [pool.submit(companyinfo, server.url, access_token) for _ in range(10)]
            assert all(entered.acquire(timeout=TIMEOUT) for _ in range(10))

            eleventh = companyinfo(server.url, access_token)
        finally:
            release.set()

        assert eleventh.status_code == 429
        assert eleventh.headers["Retry-After"] == "60"
        assert [future.result().status_code for future in held] == [200] * 10


def test_connection_reset_closes_without_an_answer(server: EmulatorServer) -> None:
    server.emulator.faults.inject("token", "connection_reset")

    with pytest.raises(requests.ConnectionError):
        requests.post(
            f"{server.url}/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": "x"},
            auth=CLIENT,
            timeout=TIMEOUT,
        )
    assert requests.get(f"{server.url}/_emulator/health", timeout=TIMEOUT).status_code == 200


def test_admin_api_over_http(server: EmulatorServer) -> None:
    requests.post(f"{server.url}/_emulator/faults", json={"group": "api", "fault": "http_503"}, timeout=TIMEOUT)
    tokens = connect(server.url)

    assert companyinfo(server.url, tokens["access_token"]).status_code == 503
    assert companyinfo(server.url, tokens["access_token"]).status_code == 200
    stats = requests.get(f"{server.url}/_emulator/stats", timeout=TIMEOUT).json()
    assert stats["api_resources"] == {"companyinfo": 2}


def test_standalone_entry_point() -> None:
    root = Path(__file__).resolve().parents[2]
    paths = [str(root / "local"), str(root / "layers" / "qbo_connect"), os.environ.get("PYTHONPATH")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
    process = subprocess.Popen(
        [sys.executable, "-m", "qbo_local.emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        url = line.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:"), line
        assert requests.get(f"{url}/_emulator/health", timeout=TIMEOUT).json()["status"] == "ok"
    finally:
        process.terminate()
        process.wait(TIMEOUT)
