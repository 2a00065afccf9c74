"""Helpers for the Intuit emulator tests: a fake clock and sleep, and a client that speaks Intuit."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flask.testing import FlaskClient
from werkzeug.test import TestResponse

REALM = "9341453050000001"
OTHER_REALM = "9341453050000002"
ACCOUNTING = "com.intuit.quickbooks.accounting"
REDIRECT_URI = "https://app.example.com/callback"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "intuit"


class FakeClock:
    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    """Records each sleep and moves the fake clock instead of blocking."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


class Intuit:
    """Drives the emulator the way an Intuit client would, through Flask's test client."""

    def __init__(self, http: FlaskClient, client_id: str = "test-client", secret: str = "test-secret") -> None:
        self.http = http
        self.client_id = client_id
        self.secret = secret

    def authorize_params(self, **overrides: str) -> dict[str, str]:
        params = {
            "client_id": self.client_id,
            "redirect_uri": REDIRECT_URI,
            "response_type": "code",
            "scope": ACCOUNTING,
            "state": "state-123",
        }
        params.update(overrides)
        return params

    def decide(self, realm: str = REALM, cancel: bool = False, **overrides: str) -> dict[str, str]:
        """Post the consent form; returns the callback's query parameters."""
        form = self.authorize_params(**overrides) | {"realm_id": realm}
        if cancel:
            form["cancel"] = "cancel"
        response = self.http.post("/connect/oauth2/decision", data=form)
        assert response.status_code == 302, response.get_data(as_text=True)
        location = urlsplit(response.headers["Location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
        return {key: values[0] for key, values in parse_qs(location.query).items()}

    def token(
        self, data: dict[str, str], headers: dict[str, str] | None = None, auth: str | None = None
    ) -> TestResponse:
        all_headers = {"Authorization": auth or basic(self.client_id, self.secret)}
        all_headers.update(headers or {})
        return self.http.post("/oauth2/v1/tokens/bearer", data=data, headers=all_headers)

    def exchange(self, code: str, headers: dict[str, str] | None = None) -> TestResponse:
        data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
        return self.token(data, headers)

    def connect(self, realm: str = REALM, scope: str = ACCOUNTING) -> dict[str, Any]:
        response = self.exchange(self.decide(realm, scope=scope)["code"])
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def refresh(self, refresh_token: str, headers: dict[str, str] | None = None) -> TestResponse:
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token}, headers)

    def revoke(self, token: str, auth: str | None = None) -> TestResponse:
        return self.http.post(
            "/v2/oauth2/tokens/revoke",
            json={"token": token},
            headers={"Authorization": auth or basic(self.client_id, self.secret)},
        )

    def api(self, path: str, access_token: str, method: str = "GET", realm: str = REALM, **kwargs: Any) -> TestResponse:
        headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}
        return self.http.open(f"/v3/company/{realm}{path}", method=method, headers=headers, **kwargs)

    def userinfo(self, access_token: str) -> TestResponse:
        return self.http.get("/v1/openid_connect/userinfo", headers={"Authorization": f"Bearer {access_token}"})

    def query(self, text: str, access_token: str, realm: str = REALM) -> TestResponse:
        return self.api("/query", access_token, realm=realm, query_string={"query": text, "minorversion": "75"})


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def key_tree(value: Any) -> Any:
    """The shape of a JSON value: keys and value kinds, list elements merged, values dropped."""
    if isinstance(value, dict):
        return {key: key_tree(item) for key, item in value.items()}
    if isinstance(value, list):
        merged: Any = None
        for item in value:
            merged = _merge(merged, key_tree(item))
        return [merged]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _merge(left: Any, right: Any) -> Any:
    if left is None:
        return right
    if isinstance(left, dict) and isinstance(right, dict):
        return {key: _merge(left.get(key), right.get(key)) for key in left.keys() | right.keys()}
    return left if left == right else f"{left}|{right}"
