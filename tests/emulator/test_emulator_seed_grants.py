"""POST /_emulator/grants: many consents at once, each as good as one clicked through (benchmarks seed this way)."""

from __future__ import annotations

from typing import Any

from emulator_support import REALM, Intuit
from flask import Flask


def test_seeded_grants_refresh_once_each_with_strict_rotation(app: Flask, intuit: Intuit) -> None:
    admin = app.test_client()
    admin.post("/_emulator/clients", json={"client_id": "test-client", "client_secret": "test-secret"})

    answer = admin.post("/_emulator/grants", json={"client_id": "test-client", "realm_id": REALM, "count": 3})
    seeded = answer.get_json()["grants"]

    assert answer.status_code == 201
    assert len({g["refresh_token"] for g in seeded}) == 3
    assert all(g["expires_in"] == 3600 for g in seeded)
    first = intuit.refresh(seeded[0]["refresh_token"])
    assert first.status_code == 200
    assert intuit.refresh(seeded[0]["refresh_token"]).status_code == 400  # consumed: strict rotation
    grants = {g["grant_id"]: g for g in admin.get("/_emulator/grants").get_json()["grants"]}
    assert grants[seeded[0]["grant_id"]]["revoked"] is True
    assert (
        grants[seeded[1]["grant_id"]] | {"refresh_count": 0, "revoked": False, "realm_id": REALM}
        == grants[seeded[1]["grant_id"]]
    )


def test_seeding_refuses_bad_counts_unknown_companies_and_scopes(app: Flask) -> None:
    admin = app.test_client()

    def seed(**body: Any) -> int:
        return admin.post("/_emulator/grants", json={"client_id": "c", "realm_id": REALM, **body}).status_code

    assert seed(count=0) == 400
    assert seed(count=20_001) == 400
    assert seed(count=True) == 400
    assert seed(scopes=["made.up"]) == 400
    assert seed(realm_id="nope") == 404
    assert admin.get("/_emulator/grants").get_json()["grants"] == []
