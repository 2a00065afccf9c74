"""The token function's documented contract (docs/schemas/token-function.*.schema.json) against its real answers:
the payload parser, and TokenAccess.answer for a token and for every way none can be had."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeWorld
from jsonschema import Draft202012Validator
from qbo_connect.errors import Busy, Conflict, IntuitUnavailable, VaultUnavailable
from qbo_connect.invocation import token_payload
from qbo_connect.token_access import TokenAccess

ROOT = Path(__file__).resolve().parents[2]
REQUEST = json.loads((ROOT / "docs/schemas/token-function.request.schema.json").read_text())
RESPONSE = json.loads((ROOT / "docs/schemas/token-function.response.schema.json").read_text())
REALM = "9341453050000001"
HOUR = 3600


def errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in Draft202012Validator(schema).iter_errors(instance)]


def answer(world: FakeWorld, payload: dict[str, Any]) -> dict[str, Any]:
    access = TokenAccess(world.lifecycle, world.store, world.clock)
    return token_payload(payload, lambda cid, valid: access.answer(cid, min_valid_seconds=valid))


def test_a_token_answer_matches_the_schema_and_is_valid_as_long_as_asked(world):
    connection_id = world.connected(realm_id=REALM).connection_id
    world.clock.advance(HOUR - 600)  # ten minutes left: asking for fifteen refreshes

    given = answer(world, {"connection_id": connection_id, "min_valid_seconds": 900})

    assert errors(RESPONSE, given) == []
    assert given["ok"] is True and given["expires_at"] >= world.clock.now() + 900
    assert world.identity.is_access_token_valid(given["access_token"], REALM)
    assert world.identity.refresh_calls == 1


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        (lambda w, cid: w.identity.revoke_grant(REALM), "needs_reauthorization"),
        (lambda w, cid: w.identity.fail_next(w.timings.attempts, IntuitUnavailable("HTTP 503")), "intuit_unavailable"),
        (lambda w, cid: w.admin.reset(cid, actor="admin"), "not_connected"),
    ],
)
def test_every_failure_matches_the_schema_and_holds_no_token(world, setup, code):
    connection_id = world.connected(realm_id=REALM).connection_id
    world.clock.advance(2 * HOUR)
    setup(world, connection_id)

    given = answer(world, {"connection_id": connection_id})

    assert errors(RESPONSE, given) == []
    assert given["ok"] is False and given["error"]["code"] == code
    assert "access_token" not in json.dumps(given)


@pytest.mark.parametrize(
    "payload",
    [{}, {"connection_id": 7}, {"connection_id": "qbc-1", "min_valid_seconds": 1801}, {"connection_id": "Bad ID"}],
)
def test_a_payload_the_schema_refuses_is_refused_by_the_function(world, payload):
    given = answer(world, payload)

    assert errors(REQUEST, payload) != []
    assert given["error"]["code"] == "invalid_input" and errors(RESPONSE, given) == []


def test_every_code_the_function_can_answer_is_documented():
    documented = {entry["const"] for entry in RESPONSE["$defs"]["error_code"]["oneOf"]}

    assert {Busy.code, Conflict.code, VaultUnavailable.code} <= {*documented}
    assert {"not_found", "not_connected", "needs_reauthorization", "invalid_client", "invalid_input"} <= documented
