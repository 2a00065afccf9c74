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
