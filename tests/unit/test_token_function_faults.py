"""Review of the token function (issue 10): what a workflow in another language gets from it."""

from __future__ import annotations

from qbo_connect.token_access import TokenAccess

REALM = "9341453050000001"


def test_the_token_function_stops_handing_out_a_token_once_the_connection_is_reset(world):
    """README: reset clears the tokens ("reset: clear it"), and the token function answers not_connected
    for a connection that is not connected. The token function keeps one TokenAccess per Lambda instance
    (default_token_access) and answers from its memory while the cached token lasts: for up to an hour
    after an administrator reset the connection, every workflow that asks is handed the old token with
    ok: true: revoked at Intuit (a 401 the caller cannot explain), or, when the reset could not revoke
    it ("not revoked: ..."), a live token of a connection an administrator meant to cut off."""
    connection_id = world.connected(realm_id=REALM).connection_id
    instance = TokenAccess(world.lifecycle, world.store, world.clock)  # one warm token function instance
    before = instance.answer(connection_id, min_valid_seconds=300)
    assert before["ok"] is True

    world.admin.reset(connection_id, actor="admin@example.com")
    world.clock.advance(60)

    after = instance.answer(connection_id, min_valid_seconds=300)
    assert after["ok"] is False and after["error"]["code"] == "not_connected", (
        "a reset connection's token was handed out again"
    )


def test_a_caller_asking_more_than_a_fresh_token_gives_costs_one_refresh_and_a_clear_answer():
    """The token function accepts min_valid_seconds up to 1800, sized for Intuit's one-hour tokens. If the
    token endpoint answers a shorter expires_in (every answer carries it; any standards-compliant server
    may stand in for Intuit), a request for more than a fresh token lives refreshes, finds the new token
    still too short, refreshes again, three times in one request (three Secrets Manager versions, three
    rotations), and then answers `busy`: "being refreshed by someone else", which nobody is."""
    from fakes import FakeClock, FakeWorld, StrictIdentityProvider

    clock = FakeClock()
    world = FakeWorld(clock, StrictIdentityProvider(clock, access_seconds=900))
    connection_id = world.connected(realm_id=REALM).connection_id
    writes_before = world.vault.writes

    answer = TokenAccess(world.lifecycle, world.store, world.clock).answer(connection_id, min_valid_seconds=1200)

    assert world.identity.refresh_calls <= 1, f"{world.identity.refresh_calls} refreshes for one request"
    assert world.vault.writes - writes_before <= 1
    assert answer["ok"] or answer["error"]["code"] != "busy", answer["error"]["message"]
