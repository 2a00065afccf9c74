"""Property-based fuzzing of the admin routes: whatever arrives, never a 5xx; without an authorizer's word, a 401
and no write at all; the client secret never in an answer. Methods, paths (real routes and garbage), bodies
(JSON of every shape, or not JSON) and authorizer contexts (none, malformed, a real user) are all generated.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qbo_connect import runtime
from test_admin_api import MACHINE, USER, admin_event, admin_function
from test_fuzz_public_routes import CONNECTION_ID, deployment

__all__ = ["deployment"]
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
FUZZ = settings(max_examples=600 if os.environ.get("CI") else 150, deadline=None, suppress_health_check=HEALTH)
pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

SEGMENTS = [
    "connections",
    CONNECTION_ID,
    "Acme%20Books",
    "client-secret",
    "authorize-link",
    "reset",
    "test",
    "refresh",
    "import",
    "callback-url",
    "metering",
    "..",
    "%00",
    "%2F",
    "ünïcode",
    "a" * 300,
]
paths = st.lists(st.one_of(st.sampled_from(SEGMENTS), st.text(min_size=1, max_size=20)), min_size=0, max_size=4).map(
    lambda parts: "/" + "/".join(parts)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=15), children, max_size=5),
    max_leaves=12,
)
FIELDS = [
    "name",
    "client_id",
    "client_secret",
    "environment",
    "realm_id",
    "scopes",
    "base_url",
    "deep",
    "lifetime_seconds",
    "refresh_token",
    "access_token",
    "connection_id",
]
bodies = st.one_of(
    st.none(),
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=4).map(json.dumps),
)
methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
no_authorizer = st.one_of(
    st.none(),
    st.just({}),
    st.dictionaries(st.sampled_from(["jwt", "iam", "lambda"]), json_values, max_size=2).filter(
        lambda a: (
            not (
                isinstance(a.get("jwt"), dict)
                and isinstance(a["jwt"].get("claims"), dict)
                and a["jwt"]["claims"].get("sub")
            )
            and not (isinstance(a.get("iam"), dict) and a["iam"].get("userArn"))
        )
    ),
)


def _answer(deployment, method, path, body, authorizer, iam=False):
    event = admin_event(method, path, body, authorizer=authorizer, iam=iam)
    answer, writes, intuit_calls = deployment.run_with_intuit(admin_function.handler, event)
    return answer, writes, intuit_calls


@FUZZ
@given(method=methods, path=paths, body=bodies, authorizer=no_authorizer, iam=st.booleans())
def test_without_an_authorizer_every_request_is_refused_with_no_write(deployment, method, path, body, authorizer, iam):
    answer, writes, intuit_calls = _answer(deployment, method, path, body, authorizer, iam)
    assert answer["statusCode"] == 401, answer
    assert writes == [] and intuit_calls == []


@FUZZ
@given(method=methods, path=paths, body=bodies, who=st.sampled_from([USER, MACHINE]))
def test_an_administrators_bad_requests_never_get_a_5xx_or_the_secret(deployment, method, path, body, who):
    stored = runtime.services().vault.read(CONNECTION_ID)
    secret = stored.client_secret if stored else None
    answer, _, _ = _answer(deployment, method, path, body, who, who is MACHINE)
    assert answer["statusCode"] < 500, answer
    assert secret is None or secret not in answer.get("body", "")
    assert answer["headers"]["Content-Type"] == "application/json"


@FUZZ
@given(month=st.text(max_size=30), who=st.sampled_from([USER, MACHINE]))
def test_any_month_asked_of_the_metering_route_is_an_answer_or_a_400_never_a_5xx(deployment, month, who):
    event = admin_event("GET", "/metering", authorizer=who, iam=who is MACHINE)
    event["queryStringParameters"] = {"month": month}
    answer, writes, intuit_calls = deployment.run_with_intuit(admin_function.handler, event)
    assert answer["statusCode"] in (200, 400), answer
    assert writes == [] and intuit_calls == []
    if answer["statusCode"] == 200:
        assert json.loads(answer["body"])["month"] == (month or json.loads(answer["body"])["month"])
