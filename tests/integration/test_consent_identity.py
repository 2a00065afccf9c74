"""Who consented, end to end on moto and the emulator: the real OAuth adapter reads the ID token, asks
userinfo, and the connection, its summary and its Connection Authorized event name the person."""

from __future__ import annotations

import json

import boto3
from qbo_connect import intuit
from qbo_connect.domain.administration import NewConnection
from test_client_emulator import CLIENT_ID, CLIENT_SECRET, connect, world  # noqa: F401 - the fixture

OPENID = (intuit.ACCOUNTING_SCOPE, "openid", "email", "profile")


def _new_connection(world, name: str) -> str:  # noqa: F811
    created = world.services.administration.create(
        NewConnection(name=name, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, scopes=OPENID)
    )
    return created.connection_id


def test_the_person_signed_in_at_intuit_is_recorded_on_the_connection_and_in_its_event(world, monkeypatch) -> None:  # noqa: F811
    published = []
    monkeypatch.setattr(world.services.events, "publish", lambda events: published.extend(events))
    person = world.admin("POST", "/person", {"email": "controller@acme.example", "given_name": "Cam"})
    connection_id = _new_connection(world, "Identity Books")

    connect(world.services, world.emulator.url, connection_id)

    stored = world.services.store.get(connection_id)
    assert (stored.consented_by.sub, stored.consented_by.email) == (person["sub"], "controller@acme.example")
    assert world.admin("GET", "/stats")["calls"]["userinfo"] == 1
    (authorized,) = [e.detail for e in published if e.detail_type == "Connection Authorized"]
    assert authorized["consented_by"] == {
        "sub": person["sub"],
        "email": "controller@acme.example",
        "email_verified": True,
    }
    # Nothing of the ID token is kept: not in the secret, not on the item.
    secret = world.services.session.client("secretsmanager").get_secret_value(
        SecretId=world.services.settings.connection_secret_name(connection_id)
    )["SecretString"]
    item = boto3.client("dynamodb").get_item(
        TableName=world.services.settings.table_name, Key={"pk": {"S": f"connection#{connection_id}"}}
    )
    assert "id_token" not in secret and set(json.loads(secret)["token_set"]) >= {"access_token", "refresh_token"}
    assert "id_token" not in json.dumps(item)


def test_when_userinfo_fails_the_consent_stands_and_the_person_is_unknown(world, monkeypatch) -> None:  # noqa: F811
    published = []
    monkeypatch.setattr(world.services.events, "publish", lambda events: published.extend(events))
    world.admin("POST", "/faults", {"group": "userinfo", "fault": "http_503", "times": 1})
    connection_id = _new_connection(world, "Unknown Person Books")

    connect(world.services, world.emulator.url, connection_id)

    stored = world.services.store.get(connection_id)
    assert stored.status.value == "connected"
    assert stored.consented_by.sub is None
    assert stored.consented_by.unknown_reason == "userinfo failed (intuit_unavailable)"
    assert world.services.vault.read(connection_id).token_set is not None  # the grant is kept
