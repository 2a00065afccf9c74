"""The four Lambda handlers, called as Lambda calls them: payload 2.0 events built like events/*.json, the real
adapters on moto, Intuit's endpoints faked with `responses`, the services built from environment variables."""

from __future__ import annotations

import importlib.util
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import responses
from moto import mock_aws
from qbo_connect import intuit, runtime
from qbo_connect.adapters.dynamodb_event_history import create_events_table
from qbo_connect.adapters.dynamodb_store import create_table
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.authorization import STATE_COOKIE
from qbo_connect.settings import DEFAULT_ADMIN_GROUP
from qbo_local.sample_events import http_event

if TYPE_CHECKING:
    from conftest import LogScan

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "intuit"
REGION = "eu-west-1"
TABLE = "qbo-connect-handlers-test"
ADMINISTRATOR = "alice"  # events/admin.json's signed-in person
EVENTS_TABLE = "qbo-connect-handlers-test-events"
API_HOST = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
REALM = "9341453050000001"
CLIENT_ID = "ABfakeclientid0123456789"
CONNECTION_ID = "acme"

# A handler that adds no metric of its own still flushes (the cold-start metric): Powertools warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


def _load_handler(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_function_app", ROOT / "functions" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


authorize_function = _load_handler("authorize")
callback_function = _load_handler("callback")
refresh_function = _load_handler("refresh")
test_function = _load_handler("test")
token_function = _load_handler("token")


REFRESH_FUNCTION_MILLIS = 360_000  # template.yaml: RefreshFunction's Timeout


@dataclass
class LambdaContext:
    function_name: str = "qbo-connect-Function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:qbo-connect-Function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    remaining_millis: int = 300_000  # a fresh invocation of the refresh or test function (template.yaml)

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_millis


class RefreshFunctionInProcess:
    """Lambda's synchronous Invoke of the refresh function (TokenLifecycle's hand-off), run in this process: its
    handler runs to the end on the payload with the function's own time, as Lambda runs an invocation whatever
    its caller does; a caller whose wait has passed by then (the services' clock) gets no answer."""

    def __init__(self, clock) -> None:
        self._clock = clock
        self.payloads: list[dict] = []

    def refresh(self, payload: dict, *, wait_seconds: float) -> dict | None:
        self.payloads.append(payload)
        give_up_at = self._clock.now() + wait_seconds
        # Another invocation with its own end: the caller's (InvocationClock.ends_at) does not stop it.
        callers_end = getattr(self._clock, "ends_at", None)
        if callers_end is not None:
            self._clock.ends_at = float("inf")
        try:
            answer = refresh_function.handler(dict(payload), LambdaContext(remaining_millis=REFRESH_FUNCTION_MILLIS))
        finally:
            if callers_end is not None:
                self._clock.ends_at = callers_end
        return answer if self._clock.now() <= give_up_at else None


class TokenEndpoint:
    """Intuit's token endpoint behind `responses`: a new token pair for every code or refresh token it accepts."""

    def __init__(self, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.forms: list[dict[str, str]] = []
        self.issued: list[dict] = []

    def __call__(self, request) -> tuple[int, dict, str]:
        self.forms.append({k: v[0] for k, v in parse_qs(request.body).items()})
        answer = {
            **json.loads((FIXTURES / "token_response_with_hard_expiry.json").read_text()),
            "access_token": "eyJ-" + secrets.token_urlsafe(32),
            "refresh_token": "AB11-" + secrets.token_urlsafe(32),
            "expires_in": self.expires_in,
        }
        self.issued.append(answer)
        return 200, {"intuit_tid": f"1-tid-{len(self.issued)}"}, json.dumps(answer)

    def values(self) -> set[str]:
        return {t[k] for t in self.issued for k in ("access_token", "refresh_token")}


@dataclass
class Stack:
    http: responses.RequestsMock
    aws: boto3.Session
    token_endpoint: TokenEndpoint
    client_secret: str = field(default_factory=lambda: "cs-" + secrets.token_urlsafe(24))
    seen: set[str] = field(default_factory=set)  # codes, states and cookies this test handed around

    def secret_values(self) -> set[str]:
        return {self.client_secret, *self.seen, *self.token_endpoint.values()}

    def create_connection(self) -> None:
        runtime.services().administration.create(
            NewConnection(
                name="Acme Books", client_id=CLIENT_ID, client_secret=self.client_secret, connection_id=CONNECTION_ID
            )
        )

    def authorize_query(self) -> dict[str, str]:
        link = runtime.services().authorize_links.create(f"https://{API_HOST}", CONNECTION_ID)
        assert urlsplit(link).path == f"/connections/{CONNECTION_ID}/authorize"
        return {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}

    def authorize(self, query: dict[str, str]) -> dict:
        event = http_event("authorize.json", f"/connections/{CONNECTION_ID}/authorize", query)
        return authorize_function.handler(event, LambdaContext())

    def callback(self, query: dict[str, str], cookies: list[str]) -> dict:
        return callback_function.handler(
            http_event("callback.json", "/oauth/callback", query, cookies), LambdaContext()
        )

    def consent_given(self) -> tuple[dict[str, str], list[str]]:
        """The signed link opened and Connect clicked on Intuit's consent screen: the callback's query and the
        browser's cookies, for `callback`."""
        started = self.authorize(self.authorize_query())
        state = parse_qs(urlsplit(started["headers"]["Location"]).query)["state"][0]
        cookie = started["cookies"][0].split(";")[0]
        code = "AB11-code-" + secrets.token_urlsafe(24)
        self.seen |= {state, code}
        return {"code": code, "state": state, "realmId": REALM}, [cookie]

    def connect(self) -> dict:
        """Click through: the signed link, Intuit's consent screen, the callback."""
        return self.callback(*self.consent_given())


def lambda_environment(
    env: pytest.MonkeyPatch, *, table: str, secret_prefix: str, events_table: str | None = None
) -> None:
    """What the template gives a function, pointed at moto: no profile, no endpoint, no queue; the event
    history only with `events_table` (create it with create_events_table)."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "QBO_PUBLIC_BASE_URL", "QBO_REFRESH_QUEUE_URL"):
        env.delenv(name, raising=False)
    if events_table:
        env.setenv("QBO_EVENTS_TABLE_NAME", events_table)
    else:
        env.delenv("QBO_EVENTS_TABLE_NAME", raising=False)
    for name, value in {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "QBO_TABLE_NAME": table,
        "QBO_SECRET_PREFIX": secret_prefix,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOGGER_LOG_EVENT": "false",
        "QBO_METERING_FLUSH_SECONDS": "0",  # as the template's Globals: each call's count written at once
    }.items():
        env.setenv(name, value)


def administrators_pool(session, username: str = ADMINISTRATOR, group: str = DEFAULT_ADMIN_GROUP) -> str:
    """A Cognito pool (moto) with the administrators' group and `username` in it, as the deployment has."""
    cognito = session.client("cognito-idp")
    pool_id = cognito.create_user_pool(PoolName="administrators")["UserPool"]["Id"]
    cognito.create_group(UserPoolId=pool_id, GroupName=group)
    cognito.admin_create_user(UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS")
    cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
    return pool_id


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch, log_scan: LogScan) -> Iterator[Stack]:
    """A deployment on moto; when the test ends, no token, code, state or secret it made was logged."""
    lambda_environment(monkeypatch, table=TABLE, secret_prefix="qbo-connect/handlers-test/", events_table=EVENTS_TABLE)
    token_endpoint = TokenEndpoint()
    runtime.reset_services()
    with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as http:
        session = boto3.Session(region_name=REGION)
        create_table(session.client("dynamodb"), TABLE)
        create_events_table(session.client("dynamodb"), EVENTS_TABLE)
        # The admin API asks the pool whether a signed-in person is still an administrator (events/admin.json's).
        monkeypatch.setenv("QBO_ADMIN_USER_POOL_ID", administrators_pool(session))
        http.add_callback(responses.POST, intuit.TOKEN_URL, callback=token_endpoint)
        http.get(
            intuit.SANDBOX_API_BASE_URL + intuit.company_info_path(REALM),
            body=(FIXTURES / "companyinfo.json").read_text(),
            content_type="application/json",
            headers={"intuit_tid": "1-tid-company"},
        )
        # A caller with too little time hands its refresh to the refresh function (QBO_REFRESH_FUNCTION_NAME).
        monkeypatch.setattr(
            runtime.Services, "refresh_handoff", property(lambda services: RefreshFunctionInProcess(services.clock))
        )
        stack = Stack(http, session, token_endpoint)
        try:
            yield stack
        finally:
            runtime.reset_services()
    log_scan.assert_free_of(stack.secret_values())


def test_a_valid_link_redirects_to_intuit_with_a_host_only_secure_state_cookie(stack):
    stack.create_connection()

    answer = stack.authorize(stack.authorize_query())

    assert answer["statusCode"] == 302
    location = answer["headers"]["Location"]
    query = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert location.startswith(intuit.AUTHORIZATION_URL + "?")
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"https://{API_HOST}/oauth/callback"
    assert query["scope"] == intuit.ACCOUNTING_SCOPE
    (cookie,) = answer["cookies"]
    name_value, *attributes = [part.strip() for part in cookie.split(";")]
    assert name_value.startswith(f"{STATE_COOKIE}=") and query["state"] not in cookie
    assert {"Secure", "HttpOnly", "SameSite=Lax", "Path=/"} <= set(attributes)
    assert not any(a.lower().startswith("domain") for a in attributes)  # __Host- cookies have none
    assert answer["headers"]["Cache-Control"] == "no-store"
    stack.seen.add(query["state"])


def test_a_tampered_link_gets_a_403_page_and_no_redirect(stack):
    stack.create_connection()
    query = stack.authorize_query()
    query["sig"] = ("A" if query["sig"][0] != "A" else "B") + query["sig"][1:]

    answer = stack.authorize(query)

    assert answer["statusCode"] == 403
    assert "Location" not in answer["headers"]
    assert not answer.get("cookies")
    assert answer["headers"]["Content-Type"].startswith("text/html")
    assert "frame-ancestors 'none'" in answer["headers"]["Content-Security-Policy"]
    assert "This link is not valid" in answer["body"]


def test_the_callback_connects_and_then_the_test_function_answers_ok(stack):
    stack.create_connection()

    page = stack.connect()

    assert page["statusCode"] == 200, page["body"]
    assert "Connected" in page["body"] and "Fake Sandbox Company" in page["body"]
    assert page["headers"]["X-Content-Type-Options"] == "nosniff"
    assert any(c.startswith(f"{STATE_COOKIE}=;") and "Max-Age=0" in c for c in page["cookies"])
    exchange = stack.token_endpoint.forms[0]
    assert exchange["grant_type"] == "authorization_code"
    assert exchange["redirect_uri"] == f"https://{API_HOST}/oauth/callback"

    answer = test_function.handler({"connection_id": CONNECTION_ID}, LambdaContext())

    assert answer["ok"] is True, answer
    assert answer["company_name"] == "Fake Sandbox Company"
    assert answer["realm_id"] == REALM
    assert json.dumps(answer).count("eyJ-") == 0  # no token in the answer


def test_a_callback_left_too_little_of_its_invocation_does_not_spend_the_code_on_a_grant_it_could_not_store(stack):
    # The callback waited for the connection's lease and the app and company's (another consent, a refresh, a
    # reset held them): what is left of its invocation no longer covers the code exchange and storing Intuit's
    # answer. Lambda stops an invocation at its timeout; stopped after the exchange, the code is spent, the grant
    # issued and never stored, and the person sees API Gateway's bare error.
    stack.create_connection()
    query, cookies = stack.consent_given()
    settings = runtime.services().settings
    needed = settings.consent_call_deadline_seconds + settings.persist_seconds
    short = LambdaContext(remaining_millis=int((needed - 1) * 1000))

    page = callback_function.handler(http_event("callback.json", "/oauth/callback", query, cookies), short)

    exchanges = len(stack.token_endpoint.forms)  # counted, not shown: each form holds a code
    assert exchanges == 0, "the code was exchanged with too little time left to store the grant"
    assert page["statusCode"] in (409, 503), page["body"]
    assert "fresh authorize link" in page["body"] and "nothing was stored" in page["body"].lower(), page["body"]
    assert runtime.services().store.get(CONNECTION_ID).status.value == "not_connected"


def test_replaying_the_callback_changes_nothing(stack):
    stack.create_connection()
    started = stack.authorize(stack.authorize_query())
    state = parse_qs(urlsplit(started["headers"]["Location"]).query)["state"][0]
    cookie = started["cookies"][0].split(";")[0]
    query = {"code": "AB11-code-" + secrets.token_urlsafe(24), "state": state, "realmId": REALM}
    stack.seen |= {state, query["code"]}
    assert stack.callback(query, [cookie])["statusCode"] == 200

    replay = stack.callback(query, [cookie])

    assert replay["statusCode"] == 400
    assert "already used" in replay["body"]
    assert len(stack.token_endpoint.forms) == 1


def test_the_scheduled_sweep_refreshes_a_due_connection(stack):
    stack.token_endpoint.expires_in = 600  # inside the 15-minute margin: due at once
    stack.create_connection()
    stack.connect()
    first_refresh_token = stack.token_endpoint.issued[0]["refresh_token"]

    summary = refresh_function.handler({"action": "sweep"}, LambdaContext())

    assert summary == {"due": 1, "outcomes": {"refreshed": 1}}
    refresh = stack.token_endpoint.forms[-1]
    assert refresh == {"grant_type": "refresh_token", "refresh_token": first_refresh_token} | {
        k: v for k, v in refresh.items() if k == "scope"
    }
    stored = runtime.services().vault.read(CONNECTION_ID).token_set
    assert stored.refresh_token == stack.token_endpoint.issued[-1]["refresh_token"]


def test_the_sweep_fans_out_over_the_queue_and_the_queue_batch_refreshes(stack, monkeypatch):
    sqs = stack.aws.client("sqs")
    queue_url = sqs.create_queue(QueueName="qbo-refresh")["QueueUrl"]
    monkeypatch.setenv("QBO_REFRESH_QUEUE_URL", queue_url)
    runtime.reset_services()
    stack.token_endpoint.expires_in = 600
    stack.create_connection()
    stack.connect()

    assert refresh_function.handler({"action": "sweep"}, LambdaContext()) == {"due": 1, "enqueued": 1}
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    batch = json.loads((ROOT / "events" / "refresh-queue.json").read_text())
    batch["Records"] = [
        {**batch["Records"][0], "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"]}
        for m in messages
    ]

    answer = refresh_function.handler(batch, LambdaContext())

    assert answer == {"batchItemFailures": []}
    assert len(stack.token_endpoint.issued) == 2
    stored = runtime.services().vault.read(CONNECTION_ID).token_set
    assert stored.refresh_token == stack.token_endpoint.issued[-1]["refresh_token"]


@pytest.mark.parametrize("payload", [{}, {"connection_id": 7}, {"connection_id": "Not An ID"}, {"name": "acme"}])
def test_the_test_function_answers_invalid_input_for_a_bad_payload(stack, payload):
    answer = test_function.handler(payload, LambdaContext())

    assert answer["ok"] is False
    assert answer["error"]["code"] == "invalid_input"


def test_the_test_function_says_what_to_do_for_a_connection_not_yet_connected(stack):
    stack.create_connection()

    answer = test_function.handler({"connection_id": CONNECTION_ID}, LambdaContext())

    assert answer["ok"] is False
    assert answer["error"]["code"] == "not_connected"
    assert "authorize-link" in answer["error"]["message"]


# --- the token function -------------------------------------------------------------------------------
def test_the_token_function_hands_out_the_stored_token_and_where_to_use_it(stack):
    stack.create_connection()
    stack.connect()
    stored = runtime.services().vault.read(CONNECTION_ID).token_set

    answer = token_function.handler({"connection_id": CONNECTION_ID}, LambdaContext())

    assert answer == {
        "ok": True,
        "connection_id": CONNECTION_ID,
        "realm_id": REALM,
        "base_url": intuit.SANDBOX_API_BASE_URL,
        "token_type": "bearer",
        "access_token": stored.access_token,
        "expires_at": int(stored.expires_at),
        "scopes": list(stored.scopes),
        "refresh_policy": "eager",
    }
    assert len(stack.token_endpoint.issued) == 1  # no refresh: the stored token serves
    # (the fixture then checks that no token reached the logs)


def test_an_on_demand_token_too_short_for_the_caller_is_refreshed_once_under_the_lease(stack):
    from qbo_connect.domain.admin_operations import ConnectionUpdate

    stack.token_endpoint.expires_in = 600  # the stored token has ten minutes left
    stack.create_connection()
    stack.connect()
    runtime.services().admin.update(CONNECTION_ID, ConnectionUpdate(refresh_policy="on_demand"), actor="test")
    stack.token_endpoint.expires_in = 3600

    first = token_function.handler({"connection_id": CONNECTION_ID, "min_valid_seconds": 1200}, LambdaContext())
    again = token_function.handler({"connection_id": CONNECTION_ID, "min_valid_seconds": 1200}, LambdaContext())

    assert first["ok"] is True and first["refresh_policy"] == "on_demand"
    assert [form["grant_type"] for form in stack.token_endpoint.forms] == ["authorization_code", "refresh_token"]
    assert first["access_token"] == again["access_token"] == stack.token_endpoint.issued[-1]["access_token"]
    assert runtime.services().vault.read(CONNECTION_ID).token_set.access_token == first["access_token"]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"connection_id": "Not An ID"},
        {"connection_id": CONNECTION_ID, "min_valid_seconds": 3600},
        {"connection_id": CONNECTION_ID, "min_valid_seconds": -1},
        {"connection_id": CONNECTION_ID, "min_valid_seconds": "300"},
        {"connection_id": CONNECTION_ID, "min_valid_seconds": True},
    ],
)
def test_the_token_function_refuses_a_bad_payload_and_calls_nothing(stack, payload):
    stack.create_connection()
    stack.connect()

    answer = token_function.handler(payload, LambdaContext())

    assert answer["ok"] is False and answer["error"]["code"] == "invalid_input"
    assert "access_token" not in answer
    assert len(stack.token_endpoint.issued) == 1


def test_the_token_function_says_what_to_do_when_no_token_can_be_had(stack):
    stack.create_connection()

    answer = token_function.handler({"connection_id": CONNECTION_ID}, LambdaContext())
    unknown = token_function.handler({"connection_id": "nobody"}, LambdaContext())

    assert answer["ok"] is False and answer["error"]["code"] == "not_connected"
    assert "authorize-link" in answer["error"]["message"]
    assert unknown["error"]["code"] == "not_found"
