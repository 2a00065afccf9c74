"""The admin API's handler as API Gateway calls it: payload 2.0 events with the JWT or IAM authorizer's context,
the real adapters on moto, Intuit faked with `responses`. One test per operation, plus what must never happen."""

from __future__ import annotations

import json
import secrets

import pytest
from qbo_connect import intuit, runtime
from test_handlers import (
    API_HOST,
    CLIENT_ID,
    CONNECTION_ID,
    REALM,
    ROOT,
    LambdaContext,
    _load_handler,
    refresh_function,
    stack,
)

admin_function = _load_handler("admin")
console_function = _load_handler("console")
SAMPLE = json.loads((ROOT / "events" / "admin.json").read_text())
USER = {"jwt": SAMPLE["requestContext"]["authorizer"]["jwt"]}
MACHINE = {
    "iam": {
        "accessKey": "AKIAEXAMPLE",
        "accountId": "123456789012",
        "userArn": "arn:aws:iam::123456789012:role/ticketing",
    }
}

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
__all__ = ["stack"]  # the fixture, shared with the other handler tests


def admin_event(method: str, path: str, body=None, *, authorizer: dict | None = USER, iam: bool = False) -> dict:
    event = json.loads(json.dumps(SAMPLE))
    full = ("/iam" if iam else "") + "/admin" + path
    event["rawPath"] = event["requestContext"]["http"]["path"] = full
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = event["requestContext"]["routeKey"] = (
        "ANY /iam/admin/{proxy+}" if iam else "ANY /admin/{proxy+}"
    )
    event["pathParameters"] = {"proxy": path.lstrip("/")}
    event["requestContext"]["requestId"] = secrets.token_urlsafe(10)
    if authorizer is None:
        event["requestContext"].pop("authorizer")
    else:
        event["requestContext"]["authorizer"] = authorizer
    if body is None:
        event.pop("body")
    else:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def call(method: str, path: str, body=None, **options) -> tuple[int, dict]:
    answer = admin_function.handler(admin_event(method, path, body, **options), LambdaContext())
    return answer["statusCode"], json.loads(answer["body"])


def test_create_set_secret_link_show_update_and_delete_through_the_api(stack):
    status, created = call(
        "POST", "/connections", {"name": "Acme Books", "client_id": CLIENT_ID, "connection_id": CONNECTION_ID}
    )
    assert status == 201 and created["client_secret_set"] is False and created["attention"] == "client secret not set"

    status, with_secret = call(
        "PUT", f"/connections/{CONNECTION_ID}/client-secret", {"client_secret": stack.client_secret}
    )
    assert status == 200 and with_secret["client_secret_set"] is True
    assert stack.client_secret not in json.dumps(with_secret)

    status, link = call("POST", f"/connections/{CONNECTION_ID}/authorize-link", {"lifetime_seconds": 3 * 86400})
    assert status == 200 and link["authorize_url"].startswith(
        f"https://{API_HOST}/connections/{CONNECTION_ID}/authorize?"
    )
    assert link["callback_url"] == f"https://{API_HOST}/oauth/callback"

    status, renamed = call(
        "PATCH", "/connections/Acme%20Books", {"name": "Acme US", "realm_id": REALM}, iam=True, authorizer=MACHINE
    )
    assert status == 200 and (renamed["name"], renamed["realm_id"]) == ("Acme US", REALM)

    status, on_demand = call("PATCH", f"/connections/{CONNECTION_ID}", {"refresh_policy": "on_demand"})
    assert status == 200 and on_demand["refresh_policy"] == "on_demand"

    status, listed = call("GET", "/connections")
    assert status == 200 and [c["name"] for c in listed["connections"]] == ["Acme US"]
    assert listed["callback_url"] == f"https://{API_HOST}/oauth/callback"

    status, deleted = call("DELETE", "/connections/Acme%20US")
    assert status == 200 and deleted == {
        "connection_id": CONNECTION_ID,
        "deleted": True,
        "revocation": "nothing to revoke",
    }
    assert call("GET", f"/connections/{CONNECTION_ID}")[0] == 404


def test_the_month_s_api_calls_per_app_and_connection_are_read_through_the_api(stack):
    stack.create_connection()
    stack.connect()  # reads the company's name: one call
    call("POST", f"/connections/{CONNECTION_ID}/test", {"deep": False})  # CompanyInfo: another

    status, report = call("GET", "/metering")
    status_iam, same = call("GET", "/metering", iam=True, authorizer=MACHINE)

    assert status == status_iam == 200 and report == same
    (app,) = report["apps"]
    assert app["client_id"] == CLIENT_ID and app["allowance"] == 500_000
    assert (app["sandbox_reads"], app["metered_calls"]) == (2, 0)  # sandbox: counted, not metered
    assert app["connections"] == [
        {"connection_id": CONNECTION_ID, "name": "Acme Books", "environment": "sandbox", "reads": 2, "writes": 0}
    ]
    assert metering_of("2020-01") == (200, {"month": "2020-01", "alarm_at_percent": 80.0, "apps": []})


def metering_of(month: str) -> tuple[int, dict]:
    event = admin_event("GET", "/metering")
    event["queryStringParameters"] = {"month": month}
    event["rawQueryString"] = f"month={month}"
    answer = admin_function.handler(event, LambdaContext())
    return answer["statusCode"], json.loads(answer["body"])


def test_a_month_that_is_not_yyyy_mm_is_a_400_saying_how_to_write_it(stack):
    status, body = metering_of("May")
    assert status == 400 and body["error"]["code"] == "invalid_input"
    assert "YYYY-MM" in body["error"]["message"]


def test_test_refresh_and_reset_once_connected(stack):
    stack.create_connection()
    stack.connect()

    status, report = call("POST", f"/connections/{CONNECTION_ID}/test", {"deep": False})
    assert status == 200 and report["ok"] is True and report["company_name"] == "Fake Sandbox Company"

    status, refreshed = call("POST", f"/connections/{CONNECTION_ID}/refresh", {})
    assert status == 200 and refreshed["connection"]["status"] == "connected"

    status, reset = call("POST", f"/connections/{CONNECTION_ID}/reset", {})
    assert status == 200 and reset["status"] == "not_connected"
    status, report = call("POST", f"/connections/{CONNECTION_ID}/test", {})
    assert report["ok"] is False and report["error"]["code"] == "not_connected"


def test_import_connects_after_one_refresh_of_the_imported_token(stack):
    stack.create_connection()
    exported = "AB11-exported-" + secrets.token_urlsafe(24)

    status, imported = call(
        "POST", f"/connections/{CONNECTION_ID}/import", {"refresh_token": exported, "realm_id": REALM}
    )

    assert status == 200, imported
    assert imported["status"] == "connected" and imported["realm_id"] == REALM
    (form,) = stack.token_endpoint.forms
    assert (form["grant_type"], form["refresh_token"]) == ("refresh_token", exported)  # the one verifying refresh
    assert exported not in json.dumps(imported)
    stack.seen.add(exported)
    assert call("POST", f"/connections/{CONNECTION_ID}/test", {})[1]["ok"] is True


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/connections", "not json", 400, "invalid_input"),
        ("POST", "/connections", [1, 2], 400, "invalid_input"),
        ("POST", "/connections", {"name": "x"}, 400, "invalid_input"),
        ("POST", "/connections", {"name": "Acme", "client_id": CLIENT_ID, "is_admin": True}, 400, "invalid_input"),
        ("POST", "/connections", {"name": "Acme", "client_id": 7}, 400, "invalid_input"),
        ("POST", "/connections", {"name": "Acme Books", "client_id": CLIENT_ID}, 409, "already_exists"),
        ("GET", "/connections/nobody", None, 404, "not_found"),
        ("PATCH", f"/connections/{CONNECTION_ID}", {}, 400, "invalid_input"),
        ("PATCH", f"/connections/{CONNECTION_ID}", {"refresh_policy": "sometimes"}, 400, "invalid_input"),
        ("PATCH", f"/connections/{CONNECTION_ID}", {"refresh_policy": 1}, 400, "invalid_input"),
        ("PUT", f"/connections/{CONNECTION_ID}/client-secret", {"client_secret": "short"}, 400, "invalid_input"),
        ("POST", f"/connections/{CONNECTION_ID}/authorize-link", {"lifetime_seconds": 8 * 86400}, 400, "invalid_input"),
        ("POST", f"/connections/{CONNECTION_ID}/test", {"deep": "yes"}, 400, "invalid_input"),
        ("GET", "/nothing-here", None, 404, "not_found"),
    ],
)
def test_bad_requests_get_json_errors_with_the_test_functions_codes_and_change_nothing(
    stack, method, path, body, status, code
):
    stack.create_connection()
    before = runtime.services().store.get(CONNECTION_ID)

    answer_status, answer = call(method, path, body)

    assert (answer_status, answer["error"]["code"]) == (status, code), answer
    assert answer["error"]["message"] and answer["error"]["next_step"]
    assert runtime.services().store.get(CONNECTION_ID) == before
    assert len(runtime.services().store.list()) == 1


def test_a_request_no_authorizer_vouched_for_is_refused_before_anything_runs(stack):
    stack.create_connection()
    before = runtime.services().store.get(CONNECTION_ID)

    for method, path, body in [
        ("GET", "/connections", None),
        ("DELETE", f"/connections/{CONNECTION_ID}", None),
        ("POST", f"/connections/{CONNECTION_ID}/reset", {}),
    ]:
        for authorizer in (None, {}, {"jwt": {"claims": {}}}, {"iam": {"userArn": ""}}, {"lambda": {"admin": True}}):
            status, answer = call(method, path, body, authorizer=authorizer)
            assert status == 401 and answer["error"]["code"] == "unauthorized"

    assert runtime.services().store.get(CONNECTION_ID) == before


def test_every_change_is_an_event_naming_who_made_it(stack):
    published = []
    events = runtime.services().events
    original = events.publish
    events.publish = lambda batch: (published.extend(batch), original(batch))[-1]
    stack.create_connection()

    call("PATCH", f"/connections/{CONNECTION_ID}", {"scopes": [intuit.ACCOUNTING_SCOPE, "openid"]})
    call(
        "PUT",
        f"/connections/{CONNECTION_ID}/client-secret",
        {"client_secret": stack.client_secret},
        iam=True,
        authorizer=MACHINE,
    )

    changes = [e.detail for e in published if e.detail_type == "Connection Changed"]
    assert [(c["action"], c["actor"], c["fields"]) for c in changes] == [
        ("updated", "user:alice", ["scopes"]),
        ("client_secret_set", "iam:arn:aws:iam::123456789012:role/ticketing", ["client_secret"]),
    ]
    assert stack.client_secret not in json.dumps(changes)


def test_the_console_page_is_served_with_a_strict_policy_and_its_configuration(stack, monkeypatch):
    monkeypatch.setenv("QBO_ADMIN_USER_POOL_ID", "eu-west-1_AbCdEf123")
    monkeypatch.setenv("QBO_ADMIN_CONSOLE_CLIENT_ID", "4h1fakeconsoleclient")
    runtime.reset_services()

    def get(path: str) -> dict:
        event = admin_event("GET", "/", authorizer=None)
        event["rawPath"] = event["requestContext"]["http"]["path"] = path
        event["routeKey"] = event["requestContext"]["routeKey"] = "GET /" if path == "/" else "GET /console/{file}"
        return console_function.handler(event, LambdaContext())

    page = get("/")
    policy = page["headers"]["Content-Security-Policy"]
    assert page["statusCode"] == 200 and '<script src="/console/app.js"' in page["body"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert "connect-src 'self' https://cognito-idp.eu-west-1.amazonaws.com;" in policy
    assert "<script>" not in page["body"] and " on" not in page["body"].split("<body>")[1].split(">")[0]
    config = json.loads(get("/console/config.json")["body"])
    assert config == {
        "client_id": "4h1fakeconsoleclient",
        "user_pool_id": "eu-west-1_AbCdEf123",
        "cognito_url": "https://cognito-idp.eu-west-1.amazonaws.com/",
        "api_base": "/admin",
    }
    script = get("/console/app.js")
    assert script["headers"]["Content-Type"].startswith("text/javascript")
    code = "\n".join(line for line in script["body"].splitlines() if not line.strip().startswith("//"))
    for unsafe in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "localStorage", "eval("):
        assert unsafe not in code
    assert get("/console/../../etc/passwd")["statusCode"] == 404


def test_the_sweep_counts_connections_by_status_from_the_index_without_a_scan(stack):
    calls: list[tuple[str, dict]] = []
    runtime.services().session.events.register(
        "before-parameter-build.dynamodb", lambda model, params, **_: calls.append((model.name, params))
    )
    stack.create_connection()
    call("POST", "/connections", {"name": "Second", "client_id": CLIENT_ID})
    stack.connect()
    calls.clear()

    refresh_function.handler({"action": "sweep"}, LambdaContext())
    during_sweep = list(calls)

    counts = {status.value: n for status, n in runtime.services().store.count_by_status().items()}
    assert counts == {"not_connected": 1, "connected": 1, "needs_reauthorization": 0, "invalid_client": 0}
    assert "Scan" not in {name for name, _ in during_sweep}
    assert {p.get("IndexName") for name, p in during_sweep if name == "Query"} == {
        "refresh-due",
        "by-status",
        "by-name",
    }
    # The listing index is read for the month's API call counts only (the metering gauge), not the connections.
    listed = [p for name, p in during_sweep if name == "Query" and p.get("IndexName") == "by-name"]
    assert len(listed) == 1 and "usage#" in str(listed[0]["ExpressionAttributeValues"])
