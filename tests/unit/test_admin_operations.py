"""The administrator's operations (shared by the CLI, the admin API and the console)."""

from __future__ import annotations

import json
import secrets

import pytest
from fakes import API_BASE_URL, CLIENT_ID, DAY
from qbo_connect.domain.admin_operations import ConnectionUpdate, ImportedTokens
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.connection import ConnectionStatus
from qbo_connect.domain.events import EventType
from qbo_connect.errors import ConnectionAlreadyExists, InvalidInput, NeedsReauthorization, VaultUnavailable
from qbo_connect.intuit import ACCOUNTING_SCOPE as ACCOUNTING
from qbo_connect.ports import ClientCredentials

REALM = "9341453050000001"
ACTOR = "jwt:alice"


def _changes(world) -> list[dict]:
    return [dict(e.detail) for e in world.events.published if e.detail_type == EventType.CHANGED.value]


def test_every_change_is_recorded_with_who_and_what_and_never_the_secret(world):
    world.identity.register_client(CLIENT_ID, world.client_secret)
    created = world.admin.create(
        NewConnection(name="Acme", client_id=CLIENT_ID, client_secret=world.client_secret), actor=ACTOR
    )
    world.admin.update(created.connection_id, ConnectionUpdate(name="Acme US"), actor=ACTOR)
    world.admin.set_client_secret("Acme US", world.client_secret, actor="iam:arn:aws:iam::1:role/ops")
    world.connect(created.connection_id)
    world.clock.advance(600)
    world.admin.refresh("Acme US", actor=ACTOR)
    world.admin.reset("Acme US", actor=ACTOR)
    world.admin.delete("Acme US", actor=ACTOR)

    changes = _changes(world)
    assert [c["action"] for c in changes] == [
        "created",
        "updated",
        "client_secret_set",
        "refreshed",
        "reset",
        "deleted",
    ]
    assert changes[1]["fields"] == ["name"] and changes[1]["name"] == "Acme US"
    assert changes[2]["actor"] == "iam:arn:aws:iam::1:role/ops"
    assert all(c["occurred_at"] and c["connection_id"] == created.connection_id for c in changes)
    assert world.client_secret not in json.dumps(changes)


def test_rename_moves_the_name_and_refuses_a_taken_one(world):
    first = world.create_connection("First")
    world.create_connection("Second")

    world.admin.update("First", ConnectionUpdate(name="Renamed"), actor=ACTOR)
    assert world.admin.find("Renamed").connection_id == first.connection_id
    assert world.store.find_by_name("First") is None

    with pytest.raises(ConnectionAlreadyExists):
        world.admin.update("Renamed", ConnectionUpdate(name="Second"), actor=ACTOR)
    assert world.admin.find("Renamed").connection_id == first.connection_id


def test_an_update_that_cannot_be_stored_changes_nothing_not_even_the_name(world):
    # Renaming and moving the client ID in one update: Secrets Manager refuses the new secret past its deadline and
    # sealing it fails too. The administrator is told it failed; the connection must then be exactly as it was,
    # under its old name, not half-updated under the new one.
    connection = world.create_connection("Acme")
    world.vault.fail_next_writes(1, VaultUnavailable("Secrets Manager refused the write (ThrottlingException)"))
    world.sealer.fail_next(1, RuntimeError("KMS refused"))

    with pytest.raises(VaultUnavailable):
        world.admin.update("Acme", ConnectionUpdate(name="Acme US", client_id="ABnewclient1234"), actor=ACTOR)

    kept = world.admin.find("Acme")
    assert kept.lease_owner is None  # given back: no refresh token was sent under it, nothing to fence
    assert (kept.connection_id, kept.name, kept.client_id) == (connection.connection_id, "Acme", CLIENT_ID)
    assert world.store.find_by_name("Acme US") is None
    assert world.vault.read(connection.connection_id).client_id == CLIENT_ID
    assert "updated" not in [c["action"] for c in _changes(world)]


def test_an_update_whose_new_name_is_claimed_meanwhile_changes_nothing_else_either(world):
    # The name is free when the update looks, but another administrator creates a connection with it while this one
    # stores the rest (the vault's write may take seconds). The update is refused as a taken name; it must then
    # have changed nothing, not have stored the scopes with no Connection Changed event to say who did.
    connection = world.create_connection("Acme")
    scopes_before = connection.scopes
    save = world.store.save

    def save_while_the_name_is_claimed(*args, **kwargs):
        world.store.save = save
        world.create_connection("Acme US")
        return save(*args, **kwargs)

    world.store.save = save_while_the_name_is_claimed

    with pytest.raises(ConnectionAlreadyExists):
        world.admin.update("Acme", ConnectionUpdate(name="Acme US", scopes=[ACCOUNTING, "openid"]), actor=ACTOR)

    kept = world.store.get(connection.connection_id)
    assert (kept.name, kept.scopes) == ("Acme", scopes_before), "refused, yet half of it was stored"
    assert "updated" not in [c["action"] for c in _changes(world)]


def test_update_carries_client_id_and_company_pin_into_the_secret_document(world):
    connection = world.create_connection()

    saved = world.admin.update(
        connection.connection_id,
        ConnectionUpdate(client_id="ABnewclient1234", realm_id=REALM, scopes=("com.intuit.quickbooks.accounting",)),
        actor=ACTOR,
    )

    secret = world.vault.read(connection.connection_id)
    assert (saved.client_id, saved.realm_id) == ("ABnewclient1234", REALM)
    assert (secret.client_id, secret.realm_id) == ("ABnewclient1234", REALM)
    assert secret.client_secret == world.client_secret  # kept: only the fields asked for change
    assert _changes(world)[-1]["fields"] == ["client_id", "realm_id"]


def test_app_environment_and_company_cannot_change_under_live_tokens(world):
    connection = world.create_connection()
    world.connect(connection.connection_id)
    before = world.connection(connection.connection_id)

    for change in (
        ConnectionUpdate(client_id="ABotherclient99"),
        ConnectionUpdate(environment="production"),
        ConnectionUpdate(realm_id="123"),
    ):
        with pytest.raises(InvalidInput, match="reset it first"):
            world.admin.update(connection.connection_id, change, actor=ACTOR)

    assert world.connection(connection.connection_id).version == before.version
    assert world.admin.test(connection.connection_id).as_json()["ok"]


@pytest.mark.parametrize(
    "change",
    [
        ConnectionUpdate(),
        ConnectionUpdate(name="bad/name"),
        ConnectionUpdate(scopes=("made.up.scope",)),
        ConnectionUpdate(environment="staging"),
        ConnectionUpdate(base_url="https://evil.example.com"),
        ConnectionUpdate(realm_id="not-a-number"),
    ],
)
def test_bad_updates_are_refused_and_change_nothing(world, change):
    connection = world.create_connection()
    with pytest.raises(InvalidInput):
        world.admin.update(connection.connection_id, change, actor=ACTOR)
    assert world.connection(connection.connection_id) == connection
    assert _changes(world) == []


def test_authorize_link_lifetime_defaults_to_30_minutes_and_may_reach_7_days(world):
    connection = world.create_connection()
    now = world.clock.now()

    default = world.admin.authorize_link(connection.connection_id, api_base_url=API_BASE_URL, callback_url="cb")
    week = world.admin.authorize_link(
        connection.connection_id, api_base_url=API_BASE_URL, callback_url="cb", lifetime_seconds=7 * DAY
    )

    assert default.expires_at == int(now + 1800)
    assert week.expires_at == int(now + 7 * DAY)
    assert f"exp={int(now + 7 * DAY)}" in week.url
    world.clock.advance(6 * DAY)
    world.start(connection.connection_id)  # a fresh link still works
    for lifetime in (7 * DAY + 1, 0, -5, True):
        with pytest.raises(InvalidInput, match="7 days"):
            world.admin.authorize_link(
                connection.connection_id, api_base_url=API_BASE_URL, callback_url="cb", lifetime_seconds=lifetime
            )


def _exported_refresh_token(world, name: str = "Other tool") -> str:
    """A grant another tool holds: connected elsewhere, its refresh token read out."""
    other = world.create_connection(name)
    world.connect(other.connection_id)
    return world.vault.read(other.connection_id).token_set.refresh_token


def test_import_verifies_the_refresh_token_by_one_refresh_and_then_counts_as_connected(world):
    connection = world.create_connection()
    exported = _exported_refresh_token(world)
    calls = world.identity.refresh_calls

    saved = world.admin.import_tokens(
        connection.connection_id, ImportedTokens(exported, access_token="old-access-token", realm_id=REALM), actor=ACTOR
    )

    assert world.identity.refresh_calls == calls + 1
    assert saved.status is ConnectionStatus.CONNECTED and saved.realm_id == REALM
    stored = world.vault.read(connection.connection_id).token_set
    assert stored.refresh_token != exported  # the rotated one, persisted
    assert stored.access_token != "old-access-token"
    assert world.admin.test(connection.connection_id).as_json()["ok"]
    assert _changes(world)[-1]["action"] == "imported"
    assert exported not in json.dumps(_changes(world))


def test_a_refused_import_changes_nothing(world):
    connection = world.create_connection()
    before = world.connection(connection.connection_id)

    with pytest.raises(NeedsReauthorization, match="nothing was changed"):
        world.admin.import_tokens(
            connection.connection_id, ImportedTokens("rt-from-nowhere-123", realm_id=REALM), actor=ACTOR
        )
    for bad in (ImportedTokens("short"), ImportedTokens("has spaces in it"), ImportedTokens("x" * 5000)):
        with pytest.raises(InvalidInput):
            world.admin.import_tokens(connection.connection_id, bad, actor=ACTOR)
    with pytest.raises(InvalidInput, match="company ID"):
        world.admin.import_tokens(connection.connection_id, ImportedTokens("rt-without-realm"), actor=ACTOR)

    assert world.connection(connection.connection_id) == before
    assert world.vault.read(connection.connection_id).token_set is None


def _outside_tools_refresh_token(world) -> str:
    """A grant a tool outside this deployment holds: the same app, consented to on the same company."""
    redirect_uri = "https://other-tool.example.com/callback"
    url = world.identity.authorization_url(
        CLIENT_ID, redirect_uri=redirect_uri, scopes=[ACCOUNTING], state=secrets.token_urlsafe(16)
    )
    code = world.identity.approve(url, realm_id=REALM)["code"]
    credentials = ClientCredentials(CLIENT_ID, world.client_secret)
    return world.identity.exchange_code(
        credentials, code=code, redirect_uri=redirect_uri, scopes=(ACCOUNTING,)
    ).refresh_token


def test_import_into_a_connected_connection_takes_over_the_grant_and_revokes_nothing(world):
    # Revoking the connection's own grant first (a reset) would disconnect the app from the company, the
    # grant being imported included: the import replaces the tokens as a reconnect does.
    connection = world.connected()
    exported = _outside_tools_refresh_token(world)

    saved = world.admin.import_tokens(connection.connection_id, ImportedTokens(exported, realm_id=REALM), actor=ACTOR)

    assert saved.status is ConnectionStatus.CONNECTED
    assert world.identity.revocation_calls == 0
    assert world.admin.test(connection.connection_id).as_json()["ok"]


def test_replacing_a_live_grant_by_import_needs_the_company_named(world):
    # The pinned company stands in for a missing company ID on a new connection; replacing a working grant
    # on that assumption could store another company's tokens in its place.
    connection = world.connected()
    before = world.vault.read(connection.connection_id).token_set
    exported = _outside_tools_refresh_token(world)

    with pytest.raises(InvalidInput, match="company ID"):
        world.admin.import_tokens(connection.connection_id, ImportedTokens(exported), actor=ACTOR)

    assert world.vault.read(connection.connection_id).token_set == before
    assert world.identity.refresh_calls == 0


def test_the_list_says_what_needs_a_person(world):
    fine = world.create_connection("Fine")
    world.identity.refresh_seconds = 10 * 365 * DAY  # its rolling expiry stays beyond the hard one below
    world.connect(fine.connection_id)
    world.identity.refresh_seconds = 100 * DAY
    world.create_connection("Fresh")
    revoked = world.create_connection("Revoked")
    world.connect(revoked.connection_id, realm_id="9341453050000002")
    world.identity.revoke_grant("9341453050000002")
    world.clock.advance(600)  # a refresh right after another is skipped as already done
    world.admin.refresh("Revoked", actor=ACTOR)

    views = {v["name"]: v for v in world.admin.list()}

    assert views["Fine"]["attention"] is None
    assert views["Fine"]["days_to_hard_expiry"] > 1000
    assert views["Fresh"]["attention"].startswith("not connected")
    assert views["Revoked"]["status"] == "needs_reauthorization"
    assert views["Revoked"]["attention"].startswith("needs reauthorization: ")
    world.clock.advance(5 * 365 * DAY - 10 * DAY)
    assert world.admin.show("Fine")["attention"].startswith("the grant ends in 9 days (Intuit's five-year limit)")
    world.clock.advance(11 * DAY)
    assert world.admin.show("Fine")["attention"].startswith("grant ended")


def test_the_attention_says_which_end_of_the_grant_is_near_and_what_helps(world):
    """A grant ends at its refresh token's rolling expiry or at Intuit's five-year limit, whichever comes first. A
    refresh that succeeds moves the rolling end out; only a reconnect moves the hard one. The attention (list,
    show, console) must name the end that is near and the action that helps, not "hard expiry near" for both."""
    # Intuit has answered every refresh for 80 days with the same refresh token and what is left of its life
    # (intuit/oauth-pythonclient#17): its rolling expiry, 100 days after the consent, has not moved.
    rolling = world.connected("Rolling").connection_id
    world.identity.rotates_refresh_tokens = False
    for _ in range(80):
        world.clock.advance(DAY)
        world.lifecycle.refresh(rolling)
    world.clock.advance(3600)  # 19 days and 23 hours left
    world.identity.rotates_refresh_tokens = True
    world.identity.hard_seconds = 20 * DAY + 3600  # an old grant: its five years end 20 days from now
    hard = world.connected("Hard").connection_id

    rolling_view, hard_view = world.admin.show(rolling), world.admin.show(hard)

    assert rolling_view["status"] == hard_view["status"] == "connected"
    said = rolling_view["attention"]
    assert said.startswith("the refresh token expires in 19 days (its rolling expiry)"), said
    assert "hard" not in said and "a refresh that succeeds moves it out" in said and "reconnect" in said
    said = hard_view["attention"]
    assert said.startswith("the grant ends in 20 days (Intuit's five-year limit)"), said
    assert said.endswith("a company administrator must reconnect before then") and "refresh" not in said
    assert (rolling_view.get("grant_ends_by"), hard_view.get("grant_ends_by")) == ("rolling", "hard")
    assert rolling_view.get("grant_ending_soon") is hard_view.get("grant_ending_soon") is True
    world.identity.hard_seconds = 5 * 365 * DAY
    assert world.admin.show(world.connected("Fine").connection_id).get("grant_ending_soon") is False


def test_an_invalid_client_left_past_the_grants_end_asks_for_a_reconnect_and_a_new_secret_promises_no_grant(world):
    """The app's secret was regenerated in Intuit's portal and nobody set it here for 120 days: the refresh
    token's rolling expiry (100 days after the last refresh) has passed, so a new client secret alone cannot
    bring the grant back. What the list, show and set-secret say must stay true: reconnect."""
    connection = world.create_connection("Acme")
    world.connect(connection.connection_id, realm_id=REALM)
    world.identity.rotate_client_secret(CLIENT_ID, "the-new-client-secret")
    world.clock.advance(3600 - 900 + 1)  # due
    world.lifecycle.refresh(connection.connection_id)
    assert world.admin.show("Acme")["attention"].startswith("invalid client")
    grant_ends_at = world.connection(connection.connection_id).grant_ends_at

    world.clock.advance(120 * DAY)
    assert grant_ends_at < world.clock.now()

    view = world.admin.show("Acme")
    assert "reconnect" in view["attention"] and "ended" in view["attention"]
    saved = world.admin.set_client_secret("Acme", "the-new-client-secret", actor=ACTOR)
    assert saved.status is ConnectionStatus.NEEDS_REAUTHORIZATION
    assert world.admin.show("Acme")["attention"].startswith("needs reauthorization")
    assert world.events.detail_types[-2:] == [EventType.NEEDS_REAUTHORIZATION.value, EventType.CHANGED.value]
    calls = world.identity.refresh_calls
    with pytest.raises(NeedsReauthorization):
        world.lifecycle.valid_token(connection.connection_id)
    assert world.identity.refresh_calls == calls  # nothing is sent with a refresh token known to be dead

    world.connect(connection.connection_id, realm_id=REALM)  # a company administrator reconnects
    assert world.connection(connection.connection_id).status is ConnectionStatus.CONNECTED
    world.lifecycle.valid_token(connection.connection_id)
