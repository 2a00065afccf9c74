"""The local router against recording fake handlers, over real HTTP: the events it builds have exactly
API Gateway's HTTP API payload format 2.0 shape, and handler answers come back as API Gateway sends them."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from qbo_local.functions import LambdaContext, LocalFunction
from qbo_local.router import Route, Router, RouterServer
from qbo_local.template import http_routes, load_template

ROOT = Path(__file__).resolve().parents[2]
AUTHORIZE_ROUTE = "GET /connections/{connection_id}/authorize"
CALLBACK_ROUTE = "GET /oauth/callback"
EVENT_KEYS = {"version", "routeKey", "rawPath", "rawQueryString", "headers", "requestContext", "isBase64Encoded"}
CONTEXT_KEYS = {
    "accountId",
    "apiId",
    "domainName",
    "domainPrefix",
    "http",
    "requestId",
    "routeKey",
    "stage",
    "time",
    "timeEpoch",
}


class Recorder:
    """A fake handler: records each (event, context) and answers what the test sets."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], Any]] = []
        self.answer: Callable[[dict[str, Any]], Any] = lambda event: {"statusCode": 200, "body": "ok"}

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        self.calls.append((event, context))
        return self.answer(event)

    @property
    def event(self) -> dict[str, Any]:
        assert len(self.calls) == 1, f"expected one invocation, got {len(self.calls)}"
        return self.calls[0][0]

    @property
    def context(self) -> LambdaContext:
        return self.calls[0][1]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def router(recorder: Recorder) -> Iterator[RouterServer]:
    """The template's own routes, each to the recorder, plus a POST route for request bodies."""
    routes = [
        Route.of(r.method, r.path, LocalFunction.from_handler(r.function, recorder))
        for r in http_routes(load_template(ROOT / "template.yaml"))
    ]
    routes.append(Route.of("POST", "/upload", LocalFunction.from_handler("UploadFunction", recorder)))
    with RouterServer(Router(routes), host="localhost", port=0) as server:
        yield server


def raw_get(server: RouterServer, target: str, headers: list[tuple[str, str]]) -> http.client.HTTPResponse:
    """A GET with headers exactly as given (repeats included), which requests cannot send."""
    connection = http.client.HTTPConnection("localhost", server.port, timeout=10)
    connection.putrequest("GET", target, skip_accept_encoding=True)
    for name, value in headers:
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_event_for_a_request_with_repeated_query_keys_cookies_and_headers_is_payload_2_0(
    router: RouterServer, recorder: Recorder
) -> None:
    before = int(time.time() * 1000)
    response = raw_get(
        router,
        "/connections/demo/authorize?exp=1764343872&kid=k1&sig=first&sig=second&blank=",
        [
            ("User-Agent", "router-test/1.0"),
            ("Cookie", "theme=dark; __Host-qbo_oauth_state=abc123"),
            ("X-Repeated", "one"),
            ("X-Repeated", "two"),
            ("Accept", "text/html"),
        ],
    )
    after = int(time.time() * 1000)

    assert response.status == 200
    event = recorder.event
    assert set(event) == EVENT_KEYS | {"cookies", "queryStringParameters", "pathParameters"}
    assert event["version"] == "2.0"
    assert event["routeKey"] == AUTHORIZE_ROUTE
    assert event["rawPath"] == "/connections/demo/authorize"
    assert event["rawQueryString"] == "exp=1764343872&kid=k1&sig=first&sig=second&blank="
    assert event["cookies"] == ["theme=dark", "__Host-qbo_oauth_state=abc123"]
    assert event["queryStringParameters"] == {"exp": "1764343872", "kid": "k1", "sig": "first,second", "blank": ""}
    assert event["pathParameters"] == {"connection_id": "demo"}
    assert event["isBase64Encoded"] is False
    assert "body" not in event

    headers = event["headers"]
    assert all(name == name.lower() and isinstance(value, str) for name, value in headers.items())
    assert "cookie" not in headers  # moved into `cookies`, as API Gateway does
    assert headers["x-repeated"] == "one,two"
    assert headers["user-agent"] == "router-test/1.0"
    assert headers["accept"] == "text/html"
    assert headers["host"] == f"localhost:{router.port}"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-port"] == str(router.port)
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", headers["x-amzn-trace-id"])

    context = event["requestContext"]
    assert set(context) == CONTEXT_KEYS
    assert context["accountId"] == "123456789012"
    assert context["apiId"] == "local"
    assert context["domainName"] == f"localhost:{router.port}"
    assert context["domainPrefix"] == "localhost"
    assert context["http"] == {
        "method": "GET",
        "path": "/connections/demo/authorize",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "router-test/1.0",
    }
    assert str(uuid.UUID(context["requestId"])) == context["requestId"]
    assert response.getheader("apigw-requestid") == context["requestId"]
    assert context["routeKey"] == AUTHORIZE_ROUTE
    assert context["stage"] == "$default"
    assert isinstance(context["timeEpoch"], int)
    assert before <= context["timeEpoch"] <= after
    assert re.fullmatch(r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000", context["time"])
    assert time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(context["timeEpoch"] // 1000)) == context["time"]


def test_handler_gets_a_lambda_like_context(router: RouterServer, recorder: Recorder) -> None:
    requests.get(f"{router.url}/oauth/callback", timeout=10)

    context = recorder.context
    assert context.function_name == "qbo-connect-local-CallbackFunction"
    assert context.function_version == "$LATEST"
    assert context.invoked_function_arn == (
        "arn:aws:lambda:us-east-1:123456789012:function:qbo-connect-local-CallbackFunction"
    )
    assert context.memory_limit_in_mb
    assert str(uuid.UUID(context.aws_request_id)) == context.aws_request_id
    assert context.aws_request_id != recorder.event["requestContext"]["requestId"]  # Lambda's own ID, as on AWS
    assert context.log_group_name == "/aws/lambda/qbo-connect-local-CallbackFunction"
    assert context.log_stream_name
    assert 0 < context.get_remaining_time_in_millis() <= 30_000


def test_request_without_query_or_cookies_leaves_those_fields_out(router: RouterServer, recorder: Recorder) -> None:
    requests.get(f"{router.url}/oauth/callback", timeout=10)

    event = recorder.event
    assert set(event) == EVENT_KEYS
    assert event["routeKey"] == CALLBACK_ROUTE
    assert event["requestContext"]["routeKey"] == CALLBACK_ROUTE
    assert event["rawQueryString"] == ""


def test_text_body_is_passed_as_is_and_binary_body_as_base64(router: RouterServer, recorder: Recorder) -> None:
    requests.post(f"{router.url}/upload", json={"a": 1}, timeout=10)
    binary = bytes(range(256))
    requests.post(f"{router.url}/upload", data=binary, headers={"Content-Type": "application/octet-stream"}, timeout=10)

    (text_event, _), (binary_event, _) = recorder.calls
    assert text_event["body"] == '{"a": 1}'
    assert text_event["isBase64Encoded"] is False
    assert text_event["headers"]["content-type"] == "application/json"
    assert base64.b64decode(binary_event["body"]) == binary
    assert binary_event["isBase64Encoded"] is True
    assert binary_event["routeKey"] == "POST /upload"


def test_handler_status_headers_cookies_and_body_come_back_over_http(router: RouterServer, recorder: Recorder) -> None:
    recorder.answer = lambda event: {
        "statusCode": 302,
        "headers": {"Location": "https://example.com/next", "X-Count": 3},
        "multiValueHeaders": {"X-Multi": ["a", "b"]},
        "cookies": ["first=1; Path=/; HttpOnly", "second=2; Max-Age=0"],
        "body": "moved",
        "isBase64Encoded": False,
    }

    response = raw_get(router, "/oauth/callback", [])

    assert response.status == 302
    assert response.getheader("Location") == "https://example.com/next"
    assert response.getheader("X-Count") == "3"
    assert [v for k, v in response.getheaders() if k.lower() == "x-multi"] == ["a", "b"]
    assert [v for k, v in response.getheaders() if k.lower() == "set-cookie"] == [
        "first=1; Path=/; HttpOnly",
        "second=2; Max-Age=0",
    ]
    assert response.getheader("Content-Length") == "5"


def test_base64_body_from_the_handler_is_decoded(router: RouterServer, recorder: Recorder) -> None:
    payload = b"\x89PNG\r\n\x1a\n\x00\xff"
    recorder.answer = lambda event: {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png"},
        "body": base64.b64encode(payload).decode(),
        "isBase64Encoded": True,
    }

    response = requests.get(f"{router.url}/oauth/callback", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert response.content == payload


def test_a_plain_json_answer_becomes_200_application_json(router: RouterServer, recorder: Recorder) -> None:
    recorder.answer = lambda event: {"ok": True}

    response = requests.get(f"{router.url}/oauth/callback", timeout=10)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"ok": True}


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/"), ("GET", "/connections/demo"), ("POST", "/oauth/callback"), ("GET", "/oauth/callback/extra")],
)
def test_unknown_route_answers_404_not_found_like_api_gateway(
    router: RouterServer, recorder: Recorder, method: str, path: str
) -> None:
    response = requests.request(method, f"{router.url}{path}", timeout=10)

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"message": "Not Found"}
    assert recorder.calls == []


def test_handler_exception_answers_500_and_logs_the_traceback(
    router: RouterServer, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(event: dict[str, Any]) -> Any:
        raise RuntimeError("handler blew up")

    recorder.answer = explode
    caplog.set_level(logging.ERROR, logger="qbo_local.router")

    response = requests.get(f"{router.url}/oauth/callback", timeout=10)

    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"message": "Internal Server Error"}
    failures = [r for r in caplog.records if r.name == "qbo_local.router" and r.exc_info]
    assert len(failures) == 1
    assert "handler blew up" in caplog.text
    assert "Traceback" in caplog.text


def test_a_response_api_gateway_would_refuse_answers_500(router: RouterServer, recorder: Recorder) -> None:
    recorder.answer = lambda event: {"statusCode": "two hundred", "body": "?"}

    response = requests.get(f"{router.url}/oauth/callback", timeout=10)

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}


def test_request_log_never_shows_the_query_string(
    router: RouterServer, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="qbo_local.router")

    requests.get(f"{router.url}/oauth/callback?code=secret-code-value&state=secret-state-value", timeout=10)

    assert "GET /oauth/callback -> 200" in caplog.text
    assert "secret-code-value" not in caplog.text
    assert "secret-state-value" not in caplog.text
    assert json.dumps(recorder.event["queryStringParameters"]) == json.dumps(
        {"code": "secret-code-value", "state": "secret-state-value"}
    )
