"""The /_emulator/ admin API: health, stats, faults, clients, companies, config, grants, clock, reset."""

from __future__ import annotations

from typing import Any

import pytest
from emulator_support import REALM, Intuit
from flask import Flask

Tokens = dict[str, Any]


def test_health(admin: Any) -> None:
    body = admin.get("/_emulator/health").get_json()

    assert body["status"] == "ok"
    assert body["companies"] == 2


def test_stats_over_http(admin: Any, intuit: Intuit, tokens: Tokens) -> None:
    intuit.refresh(tokens["refresh_token"])

    stats = admin.get("/_emulator/stats").get_json()
    admin.delete("/_emulator/stats")

    assert stats["grant_types"] == {"authorization_code": 1, "refresh_token": 1}
    assert stats["calls"]["token"] == 2
    assert admin.get("/_emulator/stats").get_json()["calls"] == {}


def test_faults_over_http(admin: Any, intuit: Intuit, tokens: Tokens) -> None:
    set_response = admin.post(
        "/_emulator/faults",
        json=[
            {"group": "token", "fault": "http_503", "times": 2, "grant_type": "refresh_token"},
            {"group": "api", "delay": 1.5},
            {"include_hard_expiry": "always"},
        ],
    )
    knobs = set_response.get_json()

    assert set_response.status_code == 200
    assert knobs["faults"]["token"][0]["kind"] == "http_503"
    assert knobs["faults"]["token"][0]["times"] == 2
    assert knobs["delays"] == {"api": 1.5}
    assert knobs["include_hard_expiry"] == "always"
    assert intuit.refresh(tokens["refresh_token"]).status_code == 503

    cleared = admin.delete("/_emulator/faults").get_json()

    assert cleared == {
        "delays": {},
        "faults": {"token": [], "revoke": [], "api": [], "userinfo": []},
        "include_hard_expiry": "header",
    }
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200


def test_fault_until_cleared_over_http(admin: Any, intuit: Intuit, tokens: Tokens) -> None:
    admin.post("/_emulator/faults", json={"group": "token", "fault": "http_500", "until_cleared": True})

    assert [intuit.refresh(tokens["refresh_token"]).status_code for _ in range(3)] == [500] * 3
    admin.delete("/_emulator/faults?group=token")
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"group": "token", "fault": "meteor"},
        {"group": "nowhere", "fault": "http_500"},
        {"fault": "http_500"},
        {"group": "token", "delay": -1},
        {"group": "token", "fault": "http_500", "colour": "red"},
        {"include_hard_expiry": "sometimes"},
        "not an object",
    ],
)
def test_bad_fault_requests_are_400(admin: Any, body: Any) -> None:
    response = admin.post("/_emulator/faults", json=body)

    assert response.status_code == 400
    assert "error" in response.get_json()


def test_register_client(app: Flask, admin: Any) -> None:
    app.emulator.update_config({"open_registration": False})

    response = admin.post("/_emulator/clients", json={"client_id": "registered", "client_secret": "s3"})

    assert response.status_code == 201
    assert Intuit(admin, "registered", "s3").connect()["access_token"]
    assert admin.post("/_emulator/clients", json={"client_id": "x"}).status_code == 400


def test_add_company_and_seed_customers(admin: Any) -> None:
    created = admin.post("/_emulator/companies", json={"realm_id": "4620816365000000", "name": "Acme"})
    seeded = admin.post("/_emulator/companies/4620816365000000/customers", json={"count": 250})
    intuit = Intuit(admin)
    tokens = intuit.connect(realm="4620816365000000")

    count = intuit.query("select count(*) from Customer", tokens["access_token"], realm="4620816365000000")

    assert created.status_code == 201
    assert seeded.get_json() == {"realm_id": "4620816365000000", "created": 250, "total": 253}
    assert count.get_json()["QueryResponse"]["totalCount"] == 253
    assert "Acme" in admin.get("/connect/oauth2", query_string=intuit.authorize_params()).get_data(as_text=True)
    assert admin.post("/_emulator/companies", json={"realm_id": "4620816365000000", "name": "Again"}).status_code == 400
    assert admin.post("/_emulator/companies/404/customers", json={"count": 1}).status_code == 404


def test_change_config_at_run_time(admin: Any, intuit: Intuit) -> None:
    response = admin.post("/_emulator/config", json={"access_token_seconds": 60, "refresh_token_seconds": 120})

    tokens = intuit.connect()

    assert response.get_json()["access_token_seconds"] == 60
    assert (tokens["expires_in"], tokens["x_refresh_token_expires_in"]) == (60, 120)
    assert admin.get("/_emulator/config").get_json()["refresh_token_seconds"] == 120


@pytest.mark.parametrize(
    "body", [{"access_token_seconds": "60"}, {"access_token_seconds": True}, {"clock": 1}, {"max_concurrent": -1}]
)
def test_bad_config_changes_are_400(admin: Any, body: dict[str, Any]) -> None:
    assert admin.post("/_emulator/config", json=body).status_code == 400


def test_config_never_shows_client_secrets(app: Flask, admin: Any) -> None:
    app.emulator.register_client("cid", "very-secret-value")

    text = admin.get("/_emulator/config").get_data(as_text=True)

    assert "cid" in text
    assert "very-secret-value" not in text


def test_grants_and_user_disconnect(admin: Any, intuit: Intuit, tokens: Tokens) -> None:
    grants = admin.get("/_emulator/grants").get_json()["grants"]
    grant_id = grants[0]["grant_id"]

    disconnected = admin.post(f"/_emulator/grants/{grant_id}/revoke")

    assert grants[0]["realm_id"] == REALM
    assert tokens["refresh_token"] not in str(grants)
    assert disconnected.status_code == 200
    assert intuit.api(f"/companyinfo/{REALM}", tokens["access_token"]).status_code == 401
    assert admin.get("/_emulator/grants").get_json()["grants"][0]["revoked"] is True
    assert admin.post("/_emulator/grants/nope/revoke").status_code == 404


def test_advance_the_clock_over_http(admin: Any, intuit: Intuit, tokens: Tokens) -> None:
    admin.post("/_emulator/clock", json={"advance": 3600})

    assert intuit.api(f"/companyinfo/{REALM}", tokens["access_token"]).status_code == 401
    assert admin.post("/_emulator/clock", json={"advance": -5}).status_code == 400


def test_reset_forgets_grants_and_counters(admin: Any, intuit: Intuit, tokens: Tokens) -> None:
    response = admin.post("/_emulator/reset")

    assert response.status_code == 200
    assert intuit.refresh(tokens["refresh_token"]).status_code == 400
    assert admin.get("/_emulator/grants").get_json() == {"grants": []}
    assert admin.get("/_emulator/stats").get_json()["grant_types"] == {"refresh_token": 1}


def test_admin_answers_carry_no_intuit_tid(admin: Any) -> None:
    assert "intuit_tid" not in admin.get("/_emulator/health").headers
