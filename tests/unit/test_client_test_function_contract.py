"""The test function's documented contract (docs/schemas/test-function.*.schema.json) against its real answers:
the payload parser, and ConnectionTests.run for success, deep success and every failure code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fakes import CLIENT_ID, FORCED_REFRESH_AGE, FakeCompanyApi, FakeWorld
from jsonschema import Draft202012Validator
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.connection_test import NEXT_STEPS, ConnectionTests
from qbo_connect.errors import (
    Busy,
    Conflict,
    ErrorCode,
    Forbidden,
    IntuitUnavailable,
    ObjectNotFound,
    Throttled,
    Unauthorized,
    ValidationFailed,
    VaultUnavailable,
)
from qbo_connect.invocation import connection_test_payload

ROOT = Path(__file__).resolve().parents[2]
REQUEST = json.loads((ROOT / "docs/schemas/test-function.request.schema.json").read_text())
RESPONSE = json.loads((ROOT / "docs/schemas/test-function.response.schema.json").read_text())
REALM = "9341453050000001"

# Codes the test function can never answer with; every other ErrorCode needs a next step and a schema entry.
# An unknown refresh outcome reaches the test function as intuit_unavailable; revocation is admin-only.
NOT_FROM_THE_TEST_FUNCTION = {
    ErrorCode.ALREADY_EXISTS,
    ErrorCode.STALE_OBJECT,
    ErrorCode.OUTCOME_UNKNOWN,
    ErrorCode.REVOCATION_REFUSED,
}


def assert_valid(schema: dict[str, Any], instance: Any) -> None:
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def is_valid(schema: dict[str, Any], instance: Any) -> bool:
    return Draft202012Validator(schema).is_valid(instance)


class DeepCompanyApi(FakeCompanyApi):
    """The fake CompanyApi plus the accounting query a deep test runs."""

    customers = 3

    def customer_count(self, *, base_url: str, realm_id: str, access_token: str, usage, deadline_seconds=None) -> int:
        self.company_info(base_url=base_url, realm_id=realm_id, access_token=access_token, usage=usage)  # same checks
        return self.customers


@pytest.fixture
def deep_world(world: FakeWorld) -> FakeWorld:
    world.company_api = DeepCompanyApi(world.identity)
    world.tests = ConnectionTests(world.store, world.lifecycle, world.company_api, world.events, world.clock)
    return world


def test_the_schemas_are_valid_draft_2020_12():
    for schema in (REQUEST, RESPONSE):
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(schema)
    for example in REQUEST["examples"]:
        assert_valid(REQUEST, example)
    for example in RESPONSE["examples"]:
        assert_valid(RESPONSE, example)


def test_the_documented_error_codes_are_exactly_those_the_test_function_answers_with():
    documented = {entry["const"] for entry in RESPONSE["$defs"]["error_code"]["oneOf"]}
    assert documented == {code.value for code in NEXT_STEPS}
    assert set(NEXT_STEPS) == set(ErrorCode) - NOT_FROM_THE_TEST_FUNCTION


def test_the_sample_event_is_a_valid_request():
    assert_valid(REQUEST, json.loads((ROOT / "events/test.json").read_text()))


@pytest.mark.parametrize(
    "payload",
    [
        {"connection_id": "demo"},
        {"connection_id": "qbc-1a2b3c4d5e6f", "deep": True},
        {"connection_id": "qbc-1a2b3c4d5e6f", "deep": False, "note": "unknown fields are ignored"},
        {},
        {"deep": True},
        {"connection_id": 42},
        {"connection_id": "Not An ID"},
        {"connection_id": "demo", "deep": "true"},
        {"connection_id": "demo", "deep": 1},
        {"connection_id": "demo", "deep": None},
        ["demo"],
        "demo",
    ],
)
def test_the_request_schema_accepts_exactly_what_the_function_accepts(payload):
    seen: list[tuple[str, bool]] = []
    answer = connection_test_payload(payload, lambda connection_id, deep: seen.append((connection_id, deep)) or {})
    accepted = bool(seen)
    assert is_valid(REQUEST, payload) == accepted
    if accepted:
        assert seen == [(payload["connection_id"], payload.get("deep", False))]
    else:
        assert_valid(RESPONSE, answer)
        assert answer["error"]["code"] == "invalid_input"


def test_a_successful_test_matches_the_schema(world):
    connection = world.connected()
    body = world.tests.run(connection.connection_id).as_json()
    assert body["ok"] is True and "checks" not in body
    assert_valid(RESPONSE, body)


def test_a_deep_test_reports_each_check(deep_world):
    connection = deep_world.connected()
    body = deep_world.tests.run(connection.connection_id, deep=True).as_json()
    assert_valid(RESPONSE, body)
    assert body["ok"] is True
    assert list(body["checks"]) == ["company_info", "accounting_scope", "accounting_query"]
    assert all(check["ok"] for check in body["checks"].values())
    assert "3 customers" in body["checks"]["accounting_query"]["message"]


def test_a_deep_test_of_a_grant_without_the_accounting_scope_is_forbidden(deep_world):
    deep_world.identity.register_client(CLIENT_ID, "payments-only-secret")
    connection = deep_world.administration.create(
        NewConnection(
            name="Payments Only",
            client_id=CLIENT_ID,
            scopes=("com.intuit.quickbooks.payment",),
            client_secret="payments-only-secret",
        )
    )
    deep_world.connect(connection.connection_id)
    shallow = deep_world.tests.run(connection.connection_id).as_json()
    assert shallow["ok"] is True  # CompanyInfo alone does not notice
    body = deep_world.tests.run(connection.connection_id, deep=True).as_json()
    assert_valid(RESPONSE, body)
    assert body["error"]["code"] == "forbidden"
    assert body["checks"]["company_info"]["ok"] is True
    assert body["checks"]["accounting_scope"]["ok"] is False
    assert "accounting_query" not in body["checks"]


def test_a_deep_test_whose_accounting_query_fails_says_which_check(deep_world):
    connection = deep_world.connected()
    original = deep_world.company_api.customer_count

    def refused(**kwargs):
        raise Forbidden("Intuit refused access to this company's accounting data (003100: ...)", intuit_tid="1-x")

    deep_world.company_api.customer_count = refused  # type: ignore[method-assign]
    body = deep_world.tests.run(connection.connection_id, deep=True).as_json()
    deep_world.company_api.customer_count = original  # type: ignore[method-assign]
    assert_valid(RESPONSE, body)
    assert body["error"]["code"] == "forbidden" and body["error"]["intuit_tid"] == "1-x"
    assert [name for name, check in body["checks"].items() if not check["ok"]] == ["accounting_query"]


def _not_found(world: FakeWorld) -> str:
    return "qbc-000000000000"


def _not_connected(world: FakeWorld) -> str:
    return world.create_connection("Never Connected").connection_id


def _needs_reauthorization(world: FakeWorld) -> str:
    connection_id = world.connected().connection_id
    world.clock.advance(FORCED_REFRESH_AGE)
    world.identity.revoke_grant(REALM)
    world.identity.invalidate_access_tokens(REALM)
    return connection_id


def _invalid_client(world: FakeWorld) -> str:
    connection_id = world.connected().connection_id
    world.clock.advance(3600)  # the token must be refreshed, and the app's secret was changed at Intuit
    world.identity.rotate_client_secret(CLIENT_ID, "a-new-secret-nobody-told-us")
    return connection_id


def _vault_unavailable(world: FakeWorld) -> str:
    connection_id = world.connected().connection_id
    world.clock.advance(3600)  # the token must be refreshed, and neither the vault nor KMS takes the new one
    world.vault.fail_next_writes(1, VaultUnavailable("Secrets Manager refused the write (ThrottlingException)"))
    world.sealer.fail_next(1, RuntimeError("KMS is down too"))
    return connection_id


def _api_fails(*errors: Any):
    def arrange(world: FakeWorld) -> str:
        connection_id = world.connected().connection_id
        for error in errors:
            world.company_api.fail_next(1, error)
        return connection_id

    return arrange


FAILURES = {
    "not_found": _not_found,
    "not_connected": _not_connected,
    "needs_reauthorization": _needs_reauthorization,
    "invalid_client": _invalid_client,
    "unauthorized": _api_fails(Unauthorized, Unauthorized),
    "forbidden": _api_fails(Forbidden),
    "throttled": _api_fails(Throttled("Intuit is rate limiting this company", retry_after=60, intuit_tid="1-t")),
    "intuit_unavailable": _api_fails(IntuitUnavailable),
    "busy": _api_fails(Busy),
    "conflict": _api_fails(Conflict),
    "object_not_found": _api_fails(ObjectNotFound("QuickBooks has no such object (610: Object Not Found)")),
    "validation_failed": _api_fails(ValidationFailed("QuickBooks refused the request (2010: ...)")),
    "vault_unavailable": _vault_unavailable,
}


def test_every_documented_failure_has_a_real_answer_below():
    documented = {entry["const"] for entry in RESPONSE["$defs"]["error_code"]["oneOf"]}
    assert set(FAILURES) == documented - {"invalid_input"}  # invalid_input: the request test above


@pytest.mark.parametrize("code", sorted(FAILURES))
def test_each_failure_matches_the_schema_and_says_what_to_do(world, code):
    connection_id = FAILURES[code](world)
    body = world.tests.run(connection_id).as_json()
    assert_valid(RESPONSE, body)
    assert body["ok"] is False
    assert body["error"]["code"] == code
    assert body["error"]["next_step"] == NEXT_STEPS[ErrorCode(code)]
