"""Property-based fuzzing of the two public routes: whatever a browser (or anyone) sends, never a 5xx, and no
write to the table or to Secrets Manager unless the request is a genuinely valid signed link.

The events are API Gateway HTTP API payload 2.0 events with arbitrary query strings (encoded, raw or garbage;
repeated keys; unicode, control characters, huge values), headers, cookies and path connection IDs. One
deployment on moto serves the whole module; a botocore `before-call` hook on its session records every
write call made while an example runs. 1,000 examples per route in CI (CI=true), 200 otherwise.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import boto3
import pytest
import responses
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from qbo_connect import intuit, runtime
from qbo_connect.adapters.dynamodb_event_history import create_events_table
from qbo_connect.adapters.dynamodb_store import create_table
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.authorization import STATE_COOKIE
from test_handlers import (
    LambdaContext,
    administrators_pool,
    authorize_function,
    callback_function,
    lambda_environment,
)

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "intuit"
REGION = "eu-west-1"
TABLE = "qbo-connect-fuzz-test"
EVENTS_TABLE = "qbo-connect-fuzz-test-events"
API_HOST = "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
CONNECTION_ID = "acme"
LINK_PARAMS = ("exp", "kid", "sig")
CALLBACK_PARAMS = ("state", "code", "realmId", "error", "error_description")
INTUIT_URLS = (intuit.TOKEN_URL, intuit.REVOCATION_URL, intuit.SANDBOX_API_BASE_URL)
WRITES = {
    ("dynamodb", "PutItem"),
    ("dynamodb", "UpdateItem"),
    ("dynamodb", "DeleteItem"),
    ("dynamodb", "BatchWriteItem"),
    ("dynamodb", "TransactWriteItems"),
    ("secretsmanager", "PutSecretValue"),
    ("secretsmanager", "CreateSecret"),
    ("secretsmanager", "UpdateSecret"),
    ("secretsmanager", "DeleteSecret"),
}

HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
FUZZ = settings(max_examples=1000 if os.environ.get("CI") else 200, deadline=None, suppress_health_check=HEALTH)
# Each example of a whole flow starts one first (an authorize request): fewer, dearer examples.
FUZZ_FLOWS = settings(max_examples=300 if os.environ.get("CI") else 60, deadline=None, suppress_health_check=HEALTH)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


authorize_handler = authorize_function.handler
callback_handler = callback_function.handler


@dataclass
class Deployment:
    session: boto3.Session
    http: responses.RequestsMock
    link: dict[str, str]  # a valid signed link's query for CONNECTION_ID
    pending_state: str  # a real state, pending for a browser the fuzzer never is
    writes: list[tuple[str, str]] = field(default_factory=list)
    recording: bool = False

    def record(self, model, **_: object) -> None:
        call = (model.service_model.service_name, model.name)
        if self.recording and call in WRITES:
            self.writes.append(call)

    def run(self, handler, event: dict) -> tuple[dict, list[tuple[str, str]]]:
        """The handler's answer and the writes it made; a request that reached Intuit fails the example."""
        answer, writes, intuit_calls = self.run_with_intuit(handler, event)
        assert intuit_calls == [], intuit_calls
        return answer, writes

    def run_with_intuit(self, handler, event: dict) -> tuple[dict, list[tuple[str, str]], list[str]]:
        self.writes.clear()
        calls_before = len(self.http.calls)
        self.recording = True
        try:
            answer = handler(event, LambdaContext())
        finally:
            self.recording = False
        return answer, list(self.writes), [c.request.url for c in list(self.http.calls)[calls_before:]]

    def start_flow(self) -> tuple[str, str]:
        """A genuine authorize request: (the state Intuit will send back, the browser's cookie)."""
        answer = authorize_handler(_event("authorize", CONNECTION_ID, self.link), LambdaContext())
        assert answer["statusCode"] == 302, answer.get("body")
        state = parse_qs(urlsplit(answer["headers"]["Location"]).query)["state"][0]
        return state, answer["cookies"][0].split(";")[0]


def _token_endpoint(request) -> tuple[int, dict, str]:
    answer = json.loads((FIXTURES / "token_response_with_hard_expiry.json").read_text())
    answer |= {"access_token": "eyJ-" + secrets.token_urlsafe(32), "refresh_token": "AB11-" + secrets.token_urlsafe(32)}
    return 200, {"intuit_tid": "1-fuzz"}, json.dumps(answer)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    with pytest.MonkeyPatch.context() as env:
        lambda_environment(env, table=TABLE, secret_prefix="qbo-connect/fuzz-test/", events_table=EVENTS_TABLE)
        runtime.reset_services()
        with mock_aws(), responses.RequestsMock(assert_all_requests_are_fired=False) as http:
            # Only a callback from the browser that started a flow may reach Intuit (Deployment.run checks).
            http.add_callback(responses.POST, intuit.TOKEN_URL, callback=_token_endpoint)
            http.post(intuit.REVOCATION_URL, status=200)
            http.get(
                re.compile(re.escape(intuit.SANDBOX_API_BASE_URL) + r"/v3/company/\d+/companyinfo/\d+.*"),
                body=(FIXTURES / "companyinfo.json").read_text(),
                content_type="application/json",
            )
            env.setenv("QBO_ADMIN_USER_POOL_ID", administrators_pool(boto3.Session(region_name=REGION)))
            services = runtime.services()
            deployment = Deployment(session=services.session, http=http, link={}, pending_state="")
            # Clients copy the session's event hooks when they are created: register before any exists.
            services.session.events.register("before-call", deployment.record)
            create_table(services.session.client("dynamodb"), TABLE)
            create_events_table(services.session.client("dynamodb"), EVENTS_TABLE)
            services.signing_keys.current()  # created now, not by the first example
            services.administration.create(
                NewConnection(
                    name="Acme Books",
                    client_id="ABfakeclientid0123456789",
                    client_secret="cs-" + secrets.token_urlsafe(24),
                    connection_id=CONNECTION_ID,
                )
            )
            link = services.authorize_links.create(f"https://{API_HOST}", CONNECTION_ID)
            deployment.link = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
            started, _ = deployment.run(authorize_handler, _event("authorize", CONNECTION_ID, deployment.link))
            deployment.pending_state = parse_qs(urlsplit(started["headers"]["Location"]).query)["state"][0]
            try:
                yield deployment
            finally:
                runtime.reset_services()


# --- events ---------------------------------------------------------------------------------------
def _sample(route: str) -> dict:
    return json.loads((ROOT / "events" / f"{route}.json").read_text())


SAMPLES = {route: _sample(route) for route in ("authorize", "callback")}


def _event(
    route: str,
    connection_id: str | None,
    query: dict[str, str] | None = None,
    *,
    raw_query: str | None = None,
    headers: dict[str, str] | None = None,
    cookies: list[str] | None = None,
) -> dict:
    event = json.loads(json.dumps(SAMPLES[route]))
    if route == "authorize":
        path = f"/connections/{connection_id}/authorize"
        event["pathParameters"] = {"connection_id": connection_id}
    else:
        path = "/oauth/callback"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = _urlencode(query or {}) if raw_query is None else raw_query
    event["queryStringParameters"] = query or None
    event["headers"] = {**event["headers"], **(headers or {})}
    event.pop("cookies", None)
    if cookies is not None:
        event["cookies"] = cookies
    return event


def _urlencode(pairs) -> str:
    # A lone surrogate goes out as its UTF-8-style bytes, the way a client could put it on the wire.
    return urlencode(pairs, errors="surrogatepass")


def _api_gateway_params(pairs: list[tuple[str, str]]) -> dict[str, str] | None:
    """queryStringParameters as API Gateway builds them: repeated keys joined with commas."""
    joined: dict[str, str] = {}
    for name, value in pairs:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined or None


SPECIALS = [
    "",
    " ",
    "=",
    "&",
    ";",
    ",",
    "%",
    "%00",
    "%zz",
    "\x00",
    "\r\n",
    "\ud7ff",
    "\ud800",  # a lone surrogate: what a JSON "\\ud800" escape in the event would become
    "\u202e",
    "²",
    "١٢٣",
    "-1",
    "0",
    "99999999999999999999999999",
    "k1",
    "access_denied",
    "9341453050000001",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    '{"a":1}',
    "A" * 64,
]

huge = st.builds(
    lambda piece, count: piece * count,
    st.sampled_from(["a", "%", "é", "\x00", "<", "=", "&", ";", "💥", "9"]),
    st.integers(1_000, 12_000),
)
# Characters that break naive code are drawn often, not left to chance: st.text alone never makes a surrogate.
awkward = st.sampled_from(["\ud800", "\udfff", "\x00", "\r", "\n", "<", "%", "&", "=", ";", ",", "é", "²", "\u202e"])
text = st.text(st.one_of(st.characters(), awkward), max_size=60)
value = st.one_of(text, st.sampled_from(SPECIALS), huge)
small_value = st.one_of(st.text(st.one_of(st.characters(), awkward), max_size=40), st.sampled_from(SPECIALS))
# What a real browser can send: no lone surrogate (st.text never makes one).
harmless_value = st.one_of(st.text(max_size=40), st.sampled_from([v for v in SPECIALS if v != "\ud800"]))
names = st.one_of(st.sampled_from([*LINK_PARAMS, *CALLBACK_PARAMS]), st.text(max_size=20))
header_names = st.one_of(
    st.sampled_from(["host", "user-agent", "cookie", "accept", "origin", "referer", "x-forwarded-for", "content-type"]),
    st.text(max_size=30),
)
cookie = st.one_of(
    st.builds(lambda v: f"{STATE_COOKIE}={v}", value),
    st.builds(lambda n, v: f"{n}={v}", st.text(max_size=20), small_value),
    st.text(max_size=80),
    huge,
)
cookies = st.one_of(st.none(), st.lists(cookie, max_size=6))
headers = st.dictionaries(header_names, value, max_size=6)


@st.composite
def queries(draw, real_params: dict[str, str]) -> tuple[str, dict[str, str] | None]:
    """(rawQueryString, queryStringParameters): consistent as API Gateway makes them, or not at all."""
    pairs = draw(st.lists(st.tuples(names, value), max_size=8))
    # Real values (a genuine link's parts, a pending state) mixed in give the fuzzer something to break.
    pairs += draw(st.lists(st.sampled_from(sorted(real_params.items())), max_size=3))
    pairs = draw(st.permutations(pairs))
    shape = draw(st.sampled_from(["encoded", "raw", "garbage"]))
    if shape == "encoded":
        return _urlencode(pairs), _api_gateway_params(pairs)
    if shape == "raw":
        return "&".join(f"{k}={v}" for k, v in pairs), _api_gateway_params(pairs)
    return draw(st.one_of(st.text(max_size=200), huge)), draw(
        st.one_of(st.none(), st.dictionaries(names, value, max_size=5))
    )


@st.composite
def mutated_links(draw, link: dict[str, str]) -> tuple[str, dict[str, str] | None]:
    """A genuine link with one part replaced, dropped or repeated, plus arbitrary extras."""
    pairs = list(link.items())
    index = draw(st.integers(0, len(pairs) - 1))
    name, original = pairs[index]
    mutation = draw(st.sampled_from(["replace", "drop", "repeat"]))
    if mutation == "replace":
        pairs[index] = (name, draw(value.filter(lambda v: v != original)))
    elif mutation == "drop":
        del pairs[index]
    else:
        pairs.append((name, draw(st.one_of(st.just(original), value))))
    pairs = draw(st.permutations(pairs + draw(st.lists(st.tuples(names, small_value), max_size=3))))
    return _urlencode(pairs), _api_gateway_params(pairs)


def _assert_safe(answer: dict) -> None:
    assert answer["statusCode"] < 500, answer.get("body", "")[:500]
    if answer["statusCode"] in {400, 403, 404, 409}:
        body = answer.get("body") or ""
        assert "<script" not in body


# --- the properties -------------------------------------------------------------------------------
@FUZZ
@given(data=st.data())
def test_no_authorize_request_gets_a_5xx_and_only_a_genuine_link_writes(deployment, data):
    connection_id = data.draw(
        st.one_of(
            st.just(CONNECTION_ID),
            st.sampled_from(["other", "ACME", "acme ", "a", "acme/x"]),
            st.text(max_size=80),
            huge,
        )
    )
    raw_query, params = data.draw(st.one_of(queries(deployment.link), mutated_links(deployment.link)))
    event = _event(
        "authorize",
        connection_id,
        params,
        raw_query=raw_query,
        headers=data.draw(headers),
        cookies=data.draw(cookies),
    )
    answer, writes = deployment.run(authorize_handler, event)

    _assert_safe(answer)
    if writes:  # only a genuine link may write, and then exactly its one state item
        carries_the_link = connection_id == CONNECTION_ID and all(
            (params or {}).get(k) == deployment.link[k] for k in LINK_PARAMS
        )
        assert carries_the_link and answer["statusCode"] == 302, (answer["statusCode"], writes)
        assert writes == [("dynamodb", "PutItem")]


@FUZZ
@given(data=st.data())
def test_a_valid_link_with_arbitrary_harmless_extras_writes_exactly_one_state(deployment, data):
    extras = data.draw(
        st.dictionaries(st.text(max_size=20).filter(lambda n: n not in LINK_PARAMS), harmless_value, max_size=4)
    )
    pairs = data.draw(st.permutations([*deployment.link.items(), *extras.items()]))
    event = _event(
        "authorize",
        CONNECTION_ID,
        dict(pairs),
        raw_query=_urlencode(pairs),
        headers=data.draw(st.dictionaries(header_names, harmless_value, max_size=4)),
        cookies=data.draw(st.one_of(st.none(), st.lists(st.text(max_size=80), max_size=4))),
    )

    answer, writes = deployment.run(authorize_handler, event)

    assert answer["statusCode"] == 302, answer.get("body", "")[:500]
    assert writes == [("dynamodb", "PutItem")]


@FUZZ
@given(data=st.data())
def test_no_callback_request_gets_a_5xx_or_writes_anything(deployment, data):
    # The pending state is real, but its browser's cookie is the one thing the fuzzer cannot produce.
    raw_query, params = data.draw(queries({"state": deployment.pending_state, "realmId": "9341453050000001"}))
    event = _event(
        "callback", None, params, raw_query=raw_query, headers=data.draw(headers), cookies=data.draw(cookies)
    )

    answer, writes = deployment.run(callback_handler, event)

    _assert_safe(answer)
    assert writes == [], (answer["statusCode"], writes)


@FUZZ_FLOWS
@given(data=st.data())
def test_a_callback_from_the_right_browser_with_any_answer_gets_no_5xx_and_stores_only_on_success(deployment, data):
    state, cookie = deployment.start_flow()
    answer_from_intuit = data.draw(
        st.fixed_dictionaries(
            {
                "code": st.one_of(
                    st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=60),
                    st.text(awkward, min_size=1, max_size=5),
                    value,
                    st.none(),
                ),
                "realmId": st.one_of(st.just("9341453050000001"), st.from_regex(r"\A[0-9]{1,40}\Z"), value, st.none()),
            },
            optional={"error": value, "error_description": value, "extra": value},
        )
    )
    present = [(k, v) for k, v in answer_from_intuit.items() if v is not None]
    pairs = data.draw(st.permutations([*present, ("state", state)]))
    event = _event("callback", None, dict(pairs), raw_query=_urlencode(pairs), cookies=[cookie])

    answer, writes, intuit_calls = deployment.run_with_intuit(callback_handler, event)

    assert answer["statusCode"] < 500, answer.get("body", "")[:500]
    stored = ("secretsmanager", "PutSecretValue") in writes
    assert stored == (answer["statusCode"] == 200), (answer["statusCode"], writes)
    assert ("dynamodb", "PutItem") not in writes and ("secretsmanager", "CreateSecret") not in writes
    hosts = {urlsplit(url).hostname for url in intuit_calls}
    # The token endpoint, the revocation endpoint (a company other than the one connected first), CompanyInfo.
    assert hosts <= {urlsplit(url).hostname for url in INTUIT_URLS}, (answer["statusCode"], intuit_calls)
