"""Named attacks on the two public routes, through the real handlers on moto, with `responses` standing in for Intuit.

Each test is one row of docs/security.md's threat model. Attacks already proven elsewhere (a tampered
signature, a plain replay: tests/integration/test_handlers.py; the domain rules: tests/unit/) are not
repeated here. "Changes nothing" is checked on everything an attacker could want to change: every
table item, every secret's current value, and the calls made to Intuit. Every test ends with the
`stack` fixture's log scan, which here also looks for the signing key.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
import yaml
from fakes import FakeClock
from qbo_connect import intuit, runtime
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.authorization import STATE_COOKIE, AuthorizeLinks
from test_admin_api import admin_event, admin_function
from test_handlers import (  # noqa: F401 (`stack` is the fixture these tests use)
    API_HOST,
    CLIENT_ID,
    CONNECTION_ID,
    FIXTURES,
    REALM,
    ROOT,
    TABLE,
    LambdaContext,
    Stack,
    authorize_function,
    callback_function,
    http_event,
    stack,
    test_function,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>"
OTHER_REALM = "4620816365000000042"
EVIL_BASE_URL = "https://evil.example"


# --- helpers --------------------------------------------------------------------------------------
def snapshot(deployment: Stack) -> dict:
    """Everything an attacker might want to change: table items, current secret values, calls to Intuit."""
    items = deployment.aws.client("dynamodb").scan(TableName=TABLE, ConsistentRead=True)["Items"]
    manager = deployment.aws.client("secretsmanager")
    values = {
        s["Name"]: manager.get_secret_value(SecretId=s["ARN"])["SecretString"]
        for s in manager.list_secrets()["SecretList"]
    }
    return {
        "items": sorted(json.dumps(i, sort_keys=True) for i in items),
        "secrets": values,
        "intuit_calls": [(c.request.method, c.request.url) for c in deployment.http.calls],
    }


def state_items(deployment: Stack) -> list[dict]:
    items = deployment.aws.client("dynamodb").scan(TableName=TABLE, ConsistentRead=True)["Items"]
    return [i for i in items if i["pk"]["S"].startswith("state#")]


def token_set(connection_id: str = CONNECTION_ID):
    secret = runtime.services().vault.read(connection_id)
    return secret.token_set if secret else None


def start(deployment: Stack, query: dict[str, str] | None = None) -> tuple[str, str]:
    """Open a valid authorize link: (the state Intuit will send back, the browser's state cookie)."""
    answer = deployment.authorize(query or deployment.authorize_query())
    assert answer["statusCode"] == 302, answer["body"]
    state = parse_qs(urlsplit(answer["headers"]["Location"]).query)["state"][0]
    cookie = answer["cookies"][0].split(";")[0]
    deployment.seen |= {state, cookie.partition("=")[2]}
    return state, cookie


def code(deployment: Stack) -> str:
    value = "AB11-code-" + secrets.token_urlsafe(24)
    deployment.seen.add(value)
    return value


def authorize_at(connection_id: str, query: dict[str, str]) -> dict:
    event = http_event("authorize.json", f"/connections/{connection_id}/authorize", query)
    return authorize_function.handler(event, LambdaContext())


def assert_refused_page(answer: dict, status: int, text: str) -> None:
    assert answer["statusCode"] == status, answer["body"]
    assert text in answer["body"]
    assert "Location" not in answer["headers"]
    assert answer["headers"]["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in answer["headers"]["Content-Security-Policy"]


@pytest.fixture
def attack(stack: Stack):  # noqa: F811 (the fixture imported above)
    """The stack with connection `acme` (client secret set); the signing key joins the values the log scan seeks."""
    stack.create_connection()
    yield stack
    document = json.loads(
        stack.aws.client("secretsmanager").get_secret_value(SecretId=runtime.services().settings.signing_key_name)[
            "SecretString"
        ]
    )
    stack.seen.add(document["key"])


# --- authorize links ------------------------------------------------------------------------------
def test_an_expired_link_starts_nothing(attack):
    keys = runtime.services().signing_keys
    old = AuthorizeLinks(keys, FakeClock(time.time() - 1801), lifetime_seconds=1800)
    link = old.create(f"https://{API_HOST}", CONNECTION_ID)
    before = snapshot(attack)

    answer = attack.authorize({k: v[0] for k, v in parse_qs(urlsplit(link).query).items()})

    assert_refused_page(answer, 403, "This link has expired")
    assert not answer.get("cookies")
    assert snapshot(attack) == before


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda q: {**q, "exp": str(int(q["exp"]) + 3600)}, id="expiry-pushed-back"),
        pytest.param(lambda q: {**q, "kid": "k2"}, id="unknown-key-id"),
        pytest.param(lambda q: {**q, "sig": q["sig"][:-1]}, id="signature-truncated"),
        pytest.param(lambda q: {**q, "sig": q["sig"] + "A"}, id="signature-extended"),
        pytest.param(lambda q: {k: v for k, v in q.items() if k != "sig"}, id="signature-missing"),
        pytest.param(lambda q: {**q, "exp": "-1"}, id="expiry-not-a-number"),
        # These two were a 500 before: "²".isdigit() is true but int() refuses it; compare_digest refuses non-ASCII.
        pytest.param(lambda q: {**q, "exp": "²"}, id="expiry-in-superscript-digits"),
        pytest.param(lambda q: {**q, "sig": "é" + q["sig"][1:]}, id="signature-not-ascii"),
        pytest.param(lambda q: {**q, "exp": "\uff10" + q["exp"]}, id="expiry-in-fullwidth-digits"),
    ],
)
def test_a_tampered_link_starts_nothing(attack, tamper):
    query = attack.authorize_query()
    before = snapshot(attack)

    answer = attack.authorize(tamper(query))

    assert_refused_page(answer, 403, "This link is not valid")
    assert not answer.get("cookies")
    assert snapshot(attack) == before


def test_a_link_for_another_connection_starts_nothing_for_this_one(attack):
    runtime.services().administration.create(
        NewConnection(
            name="Other Books", client_id=CLIENT_ID, client_secret=attack.client_secret, connection_id="other"
        )
    )
    query_for_acme = attack.authorize_query()
    before = snapshot(attack)

    answer = authorize_at("other", query_for_acme)

    assert_refused_page(answer, 403, "This link is not valid")
    assert not answer.get("cookies")
    assert snapshot(attack) == before


# --- OAuth state ----------------------------------------------------------------------------------
@pytest.mark.parametrize("cookie_holds", ["nothing", "the forged state's own binding"])
def test_a_forged_state_is_refused_and_touches_nothing(attack, cookie_holds):
    start(attack)  # a genuine flow is pending: the forged state must not reach it either
    forged = secrets.token_urlsafe(32)
    cookies = [] if cookie_holds == "nothing" else [f"{STATE_COOKIE}={secrets.token_hex(32)}"]
    before = snapshot(attack)

    answer = attack.callback({"code": code(attack), "state": forged, "realmId": REALM}, cookies)

    assert_refused_page(answer, 400, "This sign-in can&#x27;t be completed")
    assert snapshot(attack) == before
    assert not answer.get("cookies")  # whatever cookie the browser holds may bind its own pending flow


def test_states_are_256_random_bits_kept_only_as_hashes_and_secrets_are_compared_in_constant_time(attack, monkeypatch):
    compared: list[tuple[str, str]] = []
    compare_digest = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or compare_digest(a, b))
    flows = [start(attack) for _ in range(20)]

    states = [state for state, _ in flows]
    assert len(set(states)) == len(states)
    assert all(len(base64.urlsafe_b64decode(state + "=")) == 32 for state in states)  # 256 bits each
    stored = json.dumps(snapshot(attack)["items"])
    assert not any(state in stored for state in states)  # the table holds hashes of them only
    link = attack.authorize_query()
    attack.authorize({**link, "sig": "B" * 43})
    attack.callback({"code": code(attack), "state": states[0], "realmId": REALM}, [flows[1][1]])
    assert ("B" * 43) in {b for _, b in compared}  # the link's signature
    assert flows[1][1].partition("=")[2] in {a for a, _ in compared}  # the browser's binding


def test_a_replayed_state_with_the_attackers_own_code_is_refused_and_changes_nothing(attack):
    state, cookie = start(attack)
    assert attack.callback({"code": code(attack), "state": state, "realmId": REALM}, [cookie])["statusCode"] == 200
    stored = token_set()
    before = snapshot(attack)

    answer = attack.callback({"code": code(attack), "state": state, "realmId": OTHER_REALM}, [cookie])

    assert_refused_page(answer, 400, "already used")
    assert snapshot(attack) == before
    assert token_set() == stored


def test_an_expired_state_is_refused_even_while_the_table_still_holds_it(attack):
    state, cookie = start(attack)
    (item,) = state_items(attack)
    # Ten minutes and a second later, and DynamoDB's TTL has not deleted the item yet (it may take days).
    attack.aws.client("dynamodb").update_item(
        TableName=TABLE,
        Key={"pk": item["pk"]},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 1)}},
    )

    answer = attack.callback({"code": code(attack), "state": state, "realmId": REALM}, [cookie])

    assert_refused_page(answer, 400, "took too long")
    assert state_items(attack) == []  # spent: it cannot be tried again
    assert attack.token_endpoint.forms == []
    assert token_set() is None


@pytest.mark.parametrize(
    "victim_cookies", ["none", "the victim's own flow", "the state itself as the cookie", "a non-ASCII cookie"]
)
def test_a_state_from_another_browser_is_refused_and_survives_for_the_browser_that_started_it(attack, victim_cookies):
    attacker_state, attacker_cookie = start(attack)
    cookies = {
        "none": [],
        "the victim's own flow": [start(attack)[1]],
        "the state itself as the cookie": [f"{STATE_COOKIE}={attacker_state}"],
        "a non-ASCII cookie": [f"{STATE_COOKIE}=é"],  # was a 500: compare_digest refuses non-ASCII str
    }[victim_cookies]
    attackers_callback = {"code": code(attack), "state": attacker_state, "realmId": REALM}
    before = snapshot(attack)

    answer = attack.callback(attackers_callback, cookies)

    assert_refused_page(answer, 403, "Finish in the browser you started in")
    assert snapshot(attack) == before
    assert not answer.get("cookies")  # the victim's own pending flow keeps its cookie
    finished = attack.callback({**attackers_callback, "code": code(attack)}, [attacker_cookie])
    assert finished["statusCode"] == 200, finished["body"]


# --- the callback's answer from Intuit ------------------------------------------------------------
def _create_preset_connection(attack) -> None:
    """A connection bound to OTHER_REALM beforehand, with Intuit's revocation endpoint answering."""
    runtime.services().administration.create(
        NewConnection(
            name="Preset Books",
            client_id=CLIENT_ID,
            client_secret=attack.client_secret,
            connection_id="preset",
            realm_id=OTHER_REALM,
        )
    )
    attack.http.post(intuit.REVOCATION_URL, status=200)


def test_choosing_another_company_revokes_the_new_tokens_stores_nothing_and_names_both(attack):
    _create_preset_connection(attack)
    query = {k: v[0] for k, v in parse_qs(urlsplit(runtime.services().authorize_links.create(
        f"https://{API_HOST}", "preset")).query).items()}  # fmt: skip
    started = authorize_at("preset", query)
    state = parse_qs(urlsplit(started["headers"]["Location"]).query)["state"][0]
    attack.seen.add(state)

    answer = attack.callback(
        {"code": code(attack), "state": state, "realmId": REALM}, [started["cookies"][0].split(";")[0]]
    )

    assert_refused_page(answer, 409, "Wrong company chosen")
    assert f"<code>{REALM}</code>" in answer["body"] and f"<code>{OTHER_REALM}</code>" in answer["body"]
    assert "Revocation of the new access at Intuit: revoked." in answer["body"]
    (revocation,) = [c for c in attack.http.calls if c.request.url == intuit.REVOCATION_URL]
    assert json.loads(revocation.request.body) == {"token": attack.token_endpoint.issued[-1]["refresh_token"]}
    assert token_set("preset") is None
    preset = runtime.services().store.get("preset")
    assert preset.status.value == "not_connected" and preset.realm_id == OTHER_REALM


def test_access_denied_stores_nothing_and_never_calls_the_token_endpoint(attack):
    state, cookie = start(attack)

    answer = attack.callback({"error": "access_denied", "state": state}, [cookie])

    assert_refused_page(answer, 403, "access was denied")
    assert attack.token_endpoint.forms == []
    assert token_set() is None and state_items(attack) == []


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"realmId": REALM}, id="missing-code"),
        pytest.param({"code": "", "realmId": REALM}, id="empty-code"),
        pytest.param({"code": "A" * 513, "realmId": REALM}, id="code-too-long"),
        pytest.param({"code": "AB11-code"}, id="missing-realm"),
        pytest.param({"code": "AB11-code", "realmId": "93414530x"}, id="realm-not-a-number"),
    ],
)
def test_a_callback_without_a_usable_code_or_realm_stores_nothing(attack, query):
    state, cookie = start(attack)

    answer = attack.callback({**query, "state": state}, [cookie])

    assert_refused_page(answer, 400, "Incomplete answer from Intuit")
    assert attack.token_endpoint.forms == []
    assert token_set() is None and state_items(attack) == []


def test_a_code_that_is_not_text_gets_a_400_page_and_never_reaches_intuit(attack):
    # A lone surrogate (what a JSON "\ud800" escape in the event becomes) cannot be sent on: it was a 503.
    state, cookie = start(attack)
    event = http_event("callback.json", "/oauth/callback", {"state": state, "realmId": REALM}, [cookie])
    event["queryStringParameters"]["code"] = "\ud800"
    event["rawQueryString"] += "&code=%ED%A0%80"
    before = snapshot(attack)

    answer = callback_function.handler(event, LambdaContext())

    assert_refused_page(answer, 400, "Bad request")
    assert snapshot(attack) == before  # the state is still pending; no call to Intuit


# --- input limits ---------------------------------------------------------------------------------
def _oversized_query(event: dict) -> None:
    event["rawQueryString"] += "&pad=" + "x" * 5000
    event["queryStringParameters"]["pad"] = "x" * 5000


def _oversized_cookie(event: dict) -> None:
    event["cookies"] = [*event.get("cookies", []), "big=" + "y" * 5000]


def _many_cookies(event: dict) -> None:
    event["cookies"] = [*event.get("cookies", []), *(f"c{i}={'z' * 40}" for i in range(200))]


def _oversized_header(event: dict) -> None:
    event["headers"]["user-agent"] = "Mozilla/5.0 " + "w" * 9000


def _repeated_parameter(event: dict) -> None:
    first = event["rawQueryString"].split("&")[0]
    event["rawQueryString"] += "&" + first
    name, _, value = first.partition("=")
    event["queryStringParameters"][name] = f"{value},{value}"  # API Gateway joins repeats with commas


LIMITS = {
    "query-over-4-KiB": _oversized_query,
    "cookie-over-4-KiB": _oversized_cookie,
    "200-cookies": _many_cookies,
    "header-over-8-KiB": _oversized_header,
    "repeated-parameter": _repeated_parameter,
}


@pytest.mark.parametrize("breach", list(LIMITS.values()), ids=list(LIMITS))
def test_an_oversized_or_malformed_authorize_request_gets_a_400_page_and_starts_nothing(attack, breach):
    event = http_event("authorize.json", f"/connections/{CONNECTION_ID}/authorize", attack.authorize_query())
    breach(event)  # on an otherwise valid link: the limit alone is what refuses it
    before = snapshot(attack)

    answer = authorize_function.handler(event, LambdaContext())

    assert_refused_page(answer, 400, "Bad request")
    assert not answer.get("cookies")
    assert snapshot(attack) == before


@pytest.mark.parametrize("breach", list(LIMITS.values()), ids=list(LIMITS))
def test_an_oversized_or_malformed_callback_gets_a_400_page_and_changes_nothing(attack, breach):
    state, cookie = start(attack)
    event = http_event(
        "callback.json", "/oauth/callback", {"code": code(attack), "state": state, "realmId": REALM}, [cookie]
    )
    breach(event)
    before = snapshot(attack)

    answer = callback_function.handler(event, LambdaContext())

    assert_refused_page(answer, 400, "Bad request")
    assert snapshot(attack) == before  # the state is still pending: the real browser can still finish


# --- pages ----------------------------------------------------------------------------------------
REFLECTABLE = ["state", "code", "realmId", "error", "error_description", "exp", "kid", "sig", "anything"]


@pytest.mark.parametrize("name", REFLECTABLE)
def test_html_in_any_query_parameter_is_never_echoed_raw(attack, name):
    state, cookie = start(attack)
    base = {"code": code(attack), "state": state, "realmId": REALM}

    answers = [
        attack.authorize({**attack.authorize_query(), name: HOSTILE}),
        attack.callback({**base, name: HOSTILE}, [cookie]),
    ]

    for answer in answers:
        assert answer["statusCode"] < 500
        assert HOSTILE not in answer["body"] and "<script" not in answer["body"] and "<img" not in answer["body"]
        assert "script-src" not in answer["headers"].get("Content-Security-Policy", "script-src")
        assert answer["headers"].get("X-Content-Type-Options", "nosniff") == "nosniff"


def test_html_from_intuit_and_in_a_tampered_connection_name_is_escaped(attack):
    # Intuit's error code and the company's name come from outside; the name would need a tampered table item.
    attack.aws.client("dynamodb").update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"connection#{CONNECTION_ID}"}},
        UpdateExpression="SET #n = :n",
        ExpressionAttributeNames={"#n": "name"},
        ExpressionAttributeValues={":n": {"S": HOSTILE}},
    )
    company = json.loads((FIXTURES / "companyinfo.json").read_text())
    company["CompanyInfo"]["CompanyName"] = HOSTILE
    attack.http.replace(responses.GET, intuit.SANDBOX_API_BASE_URL + intuit.company_info_path(REALM), json=company)
    state, cookie = start(attack)
    error_page = attack.callback({"error": HOSTILE, "state": state}, [cookie])
    state, cookie = start(attack)
    connected_page = attack.callback({"code": code(attack), "state": state, "realmId": REALM}, [cookie])

    assert error_page["statusCode"] == 400 and connected_page["statusCode"] == 200
    for page in (error_page, connected_page):
        assert HOSTILE not in page["body"] and "<script" not in page["body"] and "<img" not in page["body"]
        assert "&lt;script&gt;" in page["body"]


# --- where the token may go -----------------------------------------------------------------------
def test_a_foreign_base_url_never_receives_the_access_token(attack):
    # create refuses such a base URL (tests/unit/test_connection_validation.py); here the table item was tampered.
    attack.aws.client("dynamodb").update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"connection#{CONNECTION_ID}"}},
        UpdateExpression="SET base_url = :u",
        ExpressionAttributeValues={":u": {"S": EVIL_BASE_URL}},
    )
    attack.http.add(responses.GET, responses.matchers.re.compile(r"https://evil\.example/.*"), json={})
    state, cookie = start(attack)

    page = attack.callback({"code": code(attack), "state": state, "realmId": REALM}, [cookie])
    tested = test_function.handler({"connection_id": CONNECTION_ID}, LambdaContext())

    assert page["statusCode"] == 200, page["body"]  # the tokens are stored; only the company name is missing
    assert tested["ok"] is False and tested["error"]["code"] == "forbidden"
    assert not [c for c in attack.http.calls if urlsplit(c.request.url).hostname == "evil.example"]


# --- logs -----------------------------------------------------------------------------------------
def test_no_flow_logs_a_code_state_token_client_secret_or_signing_key(attack, log_scan):
    # Success, replay, another browser, denial, a tampered link, and Intuit refusing and failing.
    state, cookie = start(attack)
    other_state, _ = start(attack)
    attack.callback({"code": code(attack), "state": other_state, "realmId": REALM}, [cookie])
    assert attack.callback({"code": code(attack), "state": state, "realmId": REALM}, [cookie])["statusCode"] == 200
    attack.callback({"code": code(attack), "state": state, "realmId": REALM}, [cookie])
    state, cookie = start(attack)
    attack.callback({"error": "access_denied", "state": state}, [cookie])
    attack.authorize({**attack.authorize_query(), "sig": "A" * 43})
    for status, body in [(400, {"error": "invalid_grant"}), (500, {"error": "server_error"})]:
        refused_code = code(attack)
        attack.http.replace(
            responses.POST, intuit.TOKEN_URL, status=status, json={**body, "error_description": refused_code}
        )
        state, cookie = start(attack)
        assert attack.callback({"code": refused_code, "state": state, "realmId": REALM}, [cookie])["statusCode"] != 200
    test_function.handler({"connection_id": CONNECTION_ID}, LambdaContext())
    signing_key = json.loads(
        attack.aws.client("secretsmanager").get_secret_value(SecretId=runtime.services().settings.signing_key_name)[
            "SecretString"
        ]
    )["key"]

    log_scan.assert_free_of({*attack.secret_values(), signing_key, attack.authorize_query()["sig"]})
    assert "Consent callback rejected" in log_scan.text()  # the scan did see the handlers' logs


def test_with_lambda_logging_at_debug_no_library_logs_a_code_token_or_client_secret(attack, log_scan, caplog):
    # An operator chasing a failure sets the function's application log level to DEBUG (Lambda's logging
    # configuration): the runtime then sets the root logger to DEBUG, and every library's debug lines go out.
    # requests-oauthlib logged the token request (Basic auth header, code, refresh token) and Intuit's answer;
    # botocore logged every Secrets Manager request and answer body, the secret document itself.
    caplog.set_level(logging.DEBUG)
    assert attack.connect()["statusCode"] == 200
    admin_function.handler(admin_event("POST", f"/connections/{CONNECTION_ID}/refresh", {}), LambdaContext())
    assert test_function.handler({"connection_id": CONNECTION_ID}, LambdaContext())["ok"] is True
    attack.http.post(intuit.REVOCATION_URL, status=200)
    runtime.services().administration.reset(CONNECTION_ID)

    assert any(r.levelno == logging.DEBUG and r.name.startswith("botocore") for r in caplog.records)  # DEBUG is on
    log_scan.assert_free_of(attack.secret_values())


# --- IAM ------------------------------------------------------------------------------------------
class _CloudFormationLoader(yaml.SafeLoader):
    """Reads template.yaml's short-form intrinsics (!Ref, !If, ...) as plain {"Fn::Name": value} mappings."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        return {f"Fn::{suffix}": loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {f"Fn::{suffix}": loader.construct_sequence(node, deep=True)}
    return {f"Fn::{suffix}": loader.construct_mapping(node, deep=True)}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)
SAM_POLICY_TEMPLATES = {
    "AWSSecretsManagerGetSecretValuePolicy": {"secretsmanager:GetSecretValue"},
    "EventBridgePutEventsPolicy": {"events:PutEvents"},
}


def granted_actions(function: str) -> set[str]:
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=_CloudFormationLoader)  # noqa: S506
    granted: set[str] = set()
    for policy in template["Resources"][function]["Properties"]["Policies"]:
        managed = template["Resources"].get(policy.get("Fn::Ref")) if isinstance(policy, dict) else None
        if managed and managed["Type"] == "AWS::IAM::ManagedPolicy":  # one of the template's own policies
            policy = managed["Properties"]["PolicyDocument"]
        if isinstance(policy, dict) and "Statement" in policy:
            for statement in policy["Statement"]:
                actions = statement["Action"]
                granted |= set(actions if isinstance(actions, list) else [actions])
        elif isinstance(policy, dict):
            granted |= set().union(*(SAM_POLICY_TEMPLATES.get(name, set()) for name in policy))
    return granted


# IAM authorizes a DynamoDB transaction item by item, as the operation each item stands for (AWS's
# "Using IAM with DynamoDB transactions"); there is no action named after TransactWriteItems itself.
TRANSACTION_ITEM_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


def iam_actions(model, params) -> set[str]:
    service = model.service_model.service_name
    if (service, model.name) != ("dynamodb", "TransactWriteItems"):
        return {f"{service}:{model.name}"}
    items = json.loads(params["body"])["TransactItems"]
    return {f"dynamodb:{TRANSACTION_ITEM_ACTIONS[kind]}" for item in items for kind in item}


def test_the_public_functions_make_only_calls_their_iam_policies_grant(attack):
    """Least privilege holds in practice: every AWS call each public function makes, over every flow, is granted.

    The policies' narrowness is asserted in tests/unit/test_template.py; this proves they are enough.
    """
    _create_preset_connection(attack)
    runtime.reset_services()  # clients copy the session's hooks when created: register before any exists
    used: dict[str, set[str]] = {"AuthorizeFunction": set(), "CallbackFunction": set()}
    current: list[str] = []

    def record(model, params, **_: object) -> None:
        if current:
            used[current[0]].update(iam_actions(model, params))

    runtime.services().session.events.register("before-call", record)

    def as_function(name: str, call):
        current[:] = [name]
        try:
            return call()
        finally:
            current.clear()

    def authorize(connection_id: str = CONNECTION_ID) -> tuple[str, str]:
        link = runtime.services().authorize_links.create(f"https://{API_HOST}", connection_id)
        query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
        answer = as_function("AuthorizeFunction", lambda: authorize_at(connection_id, query))
        attack.authorize({**query, "sig": "A" * 43})
        state = parse_qs(urlsplit(answer["headers"]["Location"]).query)["state"][0]
        attack.seen.add(state)
        return state, answer["cookies"][0].split(";")[0]

    def callback(query: dict[str, str], cookie: str) -> int:
        return as_function("CallbackFunction", lambda: attack.callback(query, [cookie]))["statusCode"]

    state, cookie = authorize()
    assert callback({"code": code(attack), "state": state, "realmId": REALM}, "x=y") == 403
    assert callback({"code": code(attack), "state": state, "realmId": REALM}, cookie) == 200
    assert callback({"code": code(attack), "state": state, "realmId": REALM}, cookie) == 400
    state, cookie = authorize()
    assert callback({"error": "access_denied", "state": state}, cookie) == 403
    state, cookie = authorize("preset")
    assert callback({"code": code(attack), "state": state, "realmId": REALM}, cookie) == 409

    for function, calls in used.items():
        assert calls, function
        assert calls <= granted_actions(function), (function, calls - granted_actions(function))
    # (its read of the signing key was cached by the link's creation here; the template grants exactly that read)
    assert used["AuthorizeFunction"] == {"dynamodb:GetItem", "dynamodb:PutItem"}
