"""The admin API's handler as API Gateway calls it: payload 2.0 events with the JWT or IAM authorizer's context,
the real adapters on moto, Intuit faked with `responses`. One test per operation, plus what must never happen."""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from urllib.parse import parse_qs

import boto3
import pytest
from fakes import FakeClock
from qbo_connect import intuit, runtime
from qbo_connect.runtime import build_services
from test_handlers import (
    ADMINISTRATOR,
    API_HOST,
    CLIENT_ID,
    CONNECTION_ID,
    EVENTS_TABLE,
    REALM,
    REGION,
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


def admin_event(
    method: str, path: str, body=None, *, authorizer: dict | None = USER, iam: bool = False, query: str = ""
) -> dict:
    event = json.loads(json.dumps(SAMPLE))
    event["rawQueryString"] = query
    if query:
        event["queryStringParameters"] = {k: ",".join(v) for k, v in parse_qs(query, keep_blank_values=True).items()}
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
        event["requestContext"]["authorizer"] = _issued_by_the_pool(authorizer)
    if body is None:
        event.pop("body")
    else:
        event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def _pool_sub(cognito, pool_id: str, username: str) -> str:
    attributes = cognito.admin_get_user(UserPoolId=pool_id, Username=username)["UserAttributes"]
    return next(a["Value"] for a in attributes if a["Name"] == "sub")


def _issued_by_the_pool(authorizer):
    """events/admin.json's `sub` stands for the signed-in person's own: a token the pool issues carries the sub of
    the user it names, which moto makes up at admin_create_user. Any other sub is left as the test wrote it."""
    jwt = authorizer.get("jwt") if isinstance(authorizer, dict) else None
    claims = jwt.get("claims") if isinstance(jwt, dict) else None
    pool_id = os.environ.get("QBO_ADMIN_USER_POOL_ID")
    if not (isinstance(claims, dict) and pool_id and claims.get("sub") == USER["jwt"]["claims"]["sub"]):
        return authorizer
    cognito = boto3.client("cognito-idp", region_name=REGION)
    try:
        sub = _pool_sub(cognito, pool_id, str(claims.get("cognito:username")))
    except cognito.exceptions.ClientError:  # no such user (or pool): the placeholder stays, and is refused
        return authorizer
    return {**authorizer, "jwt": {**authorizer["jwt"], "claims": {**claims, "sub": sub}}}


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
        (
            "POST",
            "/connections",
            {"name": "Acme 2", "client_id": CLIENT_ID, "refresh_policy": ""},
            400,
            "invalid_input",
        ),
        (
            "POST",
            "/connections",
            {"name": "Acme 2", "client_id": CLIENT_ID, "refresh_policy": None},
            400,
            "invalid_input",
        ),
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


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        # What a client in a Latin-1 terminal sends: API Gateway (and the local router) hand a body that is not
        # UTF-8 to the function base64-encoded. It was an unhandled UnicodeDecodeError: a 500.
        ("POST", "/connections", f'{{"name": "Caf\xe9 Books", "client_id": "{CLIENT_ID}"}}'),
        ("PUT", f"/connections/{CONNECTION_ID}/client-secret", '{"client_secret": "s\xe9cret-0123456789"}'),
    ],
    ids=["create", "set-secret"],
)
def test_a_body_that_is_not_utf8_gets_a_400_saying_so_and_changes_nothing(stack, method, path, raw):
    stack.create_connection()
    before = runtime.services().store.get(CONNECTION_ID)
    event = admin_event(method, path)
    event["body"] = base64.b64encode(raw.encode("latin-1")).decode("ascii")
    event["isBase64Encoded"] = True

    answer = admin_function.handler(event, LambdaContext())

    assert answer["statusCode"] == 400, answer
    error = json.loads(answer["body"])["error"]
    assert error["code"] == "invalid_input" and "UTF-8" in error["message"]
    assert "s\xe9cret" not in answer["body"]
    assert runtime.services().store.get(CONNECTION_ID) == before
    assert len(runtime.services().store.list()) == 1


def test_an_empty_environment_is_refused_and_changes_nothing(stack):
    # An empty environment is no environment: it must not quietly mean sandbox, nor put back the default
    # base URL of a connection that has its own.
    stack.create_connection()
    status, _ = call("PATCH", f"/connections/{CONNECTION_ID}", {"base_url": intuit.PRODUCTION_API_BASE_URL})
    assert status == 200
    before = runtime.services().store.get(CONNECTION_ID)

    status, answer = call("PATCH", f"/connections/{CONNECTION_ID}", {"environment": ""})
    created_status, created = call("POST", "/connections", {"name": "Other", "client_id": CLIENT_ID, "environment": ""})

    assert status == created_status == 400
    for error in (answer["error"], created["error"]):
        assert error["code"] == "invalid_input" and "`sandbox` or `production`" in error["message"]
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


def _claims(**changes) -> dict:
    claims = {**USER["jwt"]["claims"], **changes}
    return {"jwt": {"claims": {k: v for k, v in claims.items() if v is not None}, "scopes": None}}


@pytest.mark.parametrize(
    "groups",
    [None, "[]", "[operators]", "[qbo-connect-admins-readonly]", "qbo-connect-admins-x", ["operators"], 7],
)
def test_a_pool_user_outside_the_administrators_group_is_refused_and_changes_nothing(stack, groups):
    stack.create_connection()
    before = runtime.services().store.get(CONNECTION_ID)
    outsider = _claims(**{"cognito:groups": groups, "cognito:username": "bob"})

    for method, path, body in [
        ("GET", "/connections", None),
        ("POST", "/connections", {"name": "Intruder", "client_id": CLIENT_ID}),
        ("PUT", f"/connections/{CONNECTION_ID}/client-secret", {"client_secret": "attacker-secret-1"}),
        ("POST", f"/connections/{CONNECTION_ID}/authorize-link", {}),
        ("DELETE", f"/connections/{CONNECTION_ID}", None),
        ("GET", f"/connections/{CONNECTION_ID}/events", None),
    ]:
        status, answer = call(method, path, body, authorizer=outsider)
        assert (status, answer["error"]["code"]) == (403, "forbidden"), (method, path, answer)
        assert "bob" in answer["error"]["message"] and "'qbo-connect-admins'" in answer["error"]["message"]
        assert "admin-add-user-to-group" in answer["error"]["message"]

    assert runtime.services().store.get(CONNECTION_ID) == before
    assert len(runtime.services().store.list()) == 1
    assert runtime.services().admin.events(CONNECTION_ID).events == []  # nothing recorded: nothing happened


@pytest.mark.parametrize("groups", ["[qbo-connect-admins]", "[operators qbo-connect-admins]", ["qbo-connect-admins"]])
def test_a_member_of_the_administrators_group_is_let_in_however_the_claim_is_written(stack, groups):
    status, answer = call("GET", "/connections", authorizer=_claims(**{"cognito:groups": groups}))
    assert status == 200, answer


def test_the_administrators_group_is_the_deployments_choice(stack, monkeypatch):
    monkeypatch.setenv("QBO_ADMIN_GROUP", "ops")
    runtime.reset_services()
    cognito, pool_id = stack.aws.client("cognito-idp"), os.environ["QBO_ADMIN_USER_POOL_ID"]
    cognito.create_group(UserPoolId=pool_id, GroupName="ops")
    cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=ADMINISTRATOR, GroupName="ops")

    assert call("GET", "/connections")[0] == 403  # alice is in qbo-connect-admins, not in ops
    assert call("GET", "/connections", authorizer=_claims(**{"cognito:groups": "[ops]"}))[0] == 200
    assert call("GET", "/connections", iam=True, authorizer=MACHINE)[0] == 200  # IAM decides for machines


REMOVALS = {
    "removed from the group": lambda cognito, pool, name: cognito.admin_remove_user_from_group(
        UserPoolId=pool, Username=name, GroupName="qbo-connect-admins"
    ),
    "disabled": lambda cognito, pool, name: cognito.admin_disable_user(UserPoolId=pool, Username=name),
    "deleted": lambda cognito, pool, name: cognito.admin_delete_user(UserPoolId=pool, Username=name),
}


@pytest.mark.parametrize("removal", sorted(REMOVALS))
def test_an_administrator_removed_after_signing_in_is_refused_within_a_minute_though_their_token_is_valid(
    stack, monkeypatch, removal
):
    # Cognito's ID token stays valid for its hour whatever happens to the person: its cognito:groups claim is what
    # the pool said at sign-in. Someone removed for cause must not keep changing connections for that hour.
    pool_id = os.environ["QBO_ADMIN_USER_POOL_ID"]  # the stack's, with alice in the group
    clock = FakeClock(time.time())
    monkeypatch.setattr(runtime, "_services", build_services(clock=clock))
    stack.create_connection()
    assert call("GET", "/connections")[0] == 200

    REMOVALS[removal](stack.aws.client("cognito-idp"), pool_id, ADMINISTRATOR)
    clock.advance(60)

    for method, path, body in [
        ("GET", "/connections", None),
        ("PUT", f"/connections/{CONNECTION_ID}/client-secret", {"client_secret": "removed-admins-secret-1"}),
        ("DELETE", f"/connections/{CONNECTION_ID}", None),
    ]:
        status, answer = call(method, path, body)
        assert (status, answer["error"]["code"]) == (403, "forbidden"), (removal, method, path, answer)
        assert "alice" in answer["error"]["message"] and "no longer" in answer["error"]["message"], answer
    assert runtime.services().store.get(CONNECTION_ID) is not None
    assert runtime.services().admin.events(CONNECTION_ID).events == []


def test_a_token_of_a_deleted_administrator_does_not_pass_for_a_new_user_given_the_same_name(stack, monkeypatch):
    # Alice's token (up to an hour left) names her by user name. She is deleted (say her password leaked) and a
    # user named alice is created again and put in the group: a new person to the pool, with a sub of its own.
    # The old token is hers, not the new user's, and must stay refused; so must one whose name finds another user.
    pool_id, cognito = os.environ["QBO_ADMIN_USER_POOL_ID"], stack.aws.client("cognito-idp")
    clock = FakeClock(time.time())
    monkeypatch.setattr(runtime, "_services", build_services(clock=clock))
    stack.create_connection()
    old_token = _claims(sub=_pool_sub(cognito, pool_id, ADMINISTRATOR))
    assert call("GET", "/connections", authorizer=old_token)[0] == 200

    cognito.admin_delete_user(UserPoolId=pool_id, Username=ADMINISTRATOR)
    cognito.admin_create_user(UserPoolId=pool_id, Username=ADMINISTRATOR, MessageAction="SUPPRESS")
    cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=ADMINISTRATOR, GroupName="qbo-connect-admins")
    clock.advance(60)

    status, answer = call("DELETE", f"/connections/{CONNECTION_ID}", authorizer=old_token)
    assert (status, answer["error"]["code"]) == (403, "forbidden"), answer
    assert "no longer" in answer["error"]["message"], answer
    assert runtime.services().store.get(CONNECTION_ID) is not None
    assert call("GET", "/connections")[0] == 200  # the new alice's own token (her sub) is let in


def set_secret_as_a_machine(stack) -> None:
    status, answer = call(
        "PUT",
        f"/connections/{CONNECTION_ID}/client-secret",
        {"client_secret": stack.client_secret},
        iam=True,
        authorizer=MACHINE,
    )
    assert status == 200, answer


def test_every_change_is_an_event_naming_who_made_it(stack):
    published = []
    events = runtime.services().events
    original = events.publish
    events.publish = lambda batch: (published.extend(batch), original(batch))[-1]
    stack.create_connection()

    call("PATCH", f"/connections/{CONNECTION_ID}", {"scopes": [intuit.ACCOUNTING_SCOPE, "openid"]})
    set_secret_as_a_machine(stack)

    changes = [e.detail for e in published if e.detail_type == "Connection Changed"]
    assert [(c["action"], c["actor"], c["fields"]) for c in changes] == [
        ("updated", "user:alice", ["scopes"]),
        ("client_secret_set", "iam:arn:aws:iam::123456789012:role/ticketing", ["client_secret"]),
    ]
    assert stack.client_secret not in json.dumps(changes)


def test_the_connections_events_are_listed_newest_first_a_page_at_a_time_naming_who_changed_what(stack):
    stack.create_connection()
    call("PATCH", f"/connections/{CONNECTION_ID}", {"name": "Acme US"})
    set_secret_as_a_machine(stack)
    stack.connect()
    call("POST", f"/connections/{CONNECTION_ID}/reset", {})

    status, first = call("GET", "/connections/Acme%20US/events", query="limit=2")
    assert status == 200, first
    status, rest = call("GET", f"/connections/{CONNECTION_ID}/events", query=f"before={first['next_before']}")
    assert status == 200 and rest["next_before"] is None

    events = first["events"] + rest["events"]
    assert [(e["detail_type"], e["detail"].get("action"), e["detail"].get("actor")) for e in events] == [
        ("Connection Changed", "reset", "user:alice"),
        ("Connection Reset", None, None),
        ("Connection Authorized", None, None),
        ("Connection Changed", "client_secret_set", "iam:arn:aws:iam::123456789012:role/ticketing"),
        ("Connection Changed", "updated", "user:alice"),
    ]
    assert all(e["published"] and isinstance(e["occurred_at"], int) for e in events)
    assert all(e["event_id"] == e["detail"]["event_id"] for e in events)
    stored = boto3.resource("dynamodb").Table(EVENTS_TABLE).scan()["Items"]
    assert len(stored) == 5
    assert not any(value in json.dumps(events) + repr(stored) for value in stack.secret_values())


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=101", "limit=ten", "limit=-1", "before=yesterday", "page=2", "limit=1&limit=2"],
)
def test_bad_paging_of_the_events_is_refused_with_what_to_send(stack, query):
    stack.create_connection()

    status, answer = call("GET", f"/connections/{CONNECTION_ID}/events", query=query)

    assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
    assert "limit" in answer["error"]["message"] or "before" in answer["error"]["message"]


def test_the_events_of_a_deleted_connection_say_who_deleted_it_and_an_unknown_one_is_not_found(stack):
    stack.create_connection()
    call("DELETE", f"/connections/{CONNECTION_ID}", iam=True, authorizer=MACHINE)

    status, answer = call("GET", f"/connections/{CONNECTION_ID}/events")
    assert status == 200
    assert answer["events"][0]["detail"]["action"] == "deleted"
    assert answer["events"][0]["detail"]["actor"] == "iam:arn:aws:iam::123456789012:role/ticketing"
    assert call("GET", "/connections/qbc-000000000000/events")[0] == 404
    assert call("GET", "/connections/Acme%20Books/events")[0] == 404


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
    # The due connections, the gauges, and the events still to publish (the event history's own table).
    assert {p.get("IndexName") for name, p in during_sweep if name == "Query"} == {
        "refresh-due",
        "by-status",
        "by-name",
        "pending-publish",
    }
    # The listing index is read for the month's API call counts only (the metering gauge), not the connections.
    listed = [p for name, p in during_sweep if name == "Query" and p.get("IndexName") == "by-name"]
    assert len(listed) == 1 and "usage#" in str(listed[0]["ExpressionAttributeValues"])


def _times(value, key: str = "") -> list[tuple[str, object]]:
    """Every `..._at` field, at any depth, and `reauthorize_by` (also a time)."""
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in _times(v, k)]
    if isinstance(value, list):
        return [found for item in value for found in _times(item, key)]
    return [(key, value)] if (key.endswith("_at") or key == "reauthorize_by") and value is not None else []


def test_times_in_the_answers_are_whole_epoch_seconds_as_in_all_public_json(stack):
    """README: "Times in all public JSON ... are whole epoch seconds". The connection item keeps fractions; a
    client that reads the admin API into integers (Go's int64, a typed TypeScript client) is refused
    1796618291.209."""
    call("POST", "/connections", {"name": "Acme Books", "client_id": CLIENT_ID, "connection_id": CONNECTION_ID})
    call("POST", f"/connections/{CONNECTION_ID}/test", {})  # records a last test, with its time

    answers = [
        call("GET", f"/connections/{CONNECTION_ID}")[1],
        call("GET", "/connections")[1],
        call("PATCH", f"/connections/{CONNECTION_ID}", {"name": "Acme US"})[1],
        call("GET", f"/connections/{CONNECTION_ID}/events")[1],
    ]

    times = [found for answer in answers for found in _times(answer)]
    assert {"created_at", "tested_at", "occurred_at"} <= {key for key, _ in times}
    # An event's own detail keeps EventBridge's ISO 8601 occurred_at (README, Events); every number is whole.
    assert [(key, value) for key, value in times if not isinstance(value, int | str)] == []
