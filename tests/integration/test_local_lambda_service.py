"""The local stack's Lambda Invoke API, driven by boto3's real lambda client over real HTTP: what a function
handing a refresh off, a local workflow or the CLI hears, in Lambda's shapes."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ReadTimeoutError
from qbo_local.background import background_stack
from qbo_local.config import ACCOUNT_ID, REGION
from qbo_local.functions import LocalFunction
from qbo_local.lambda_service import LambdaServer, LambdaService

WAIT = 10  # seconds an event may take to be set before a test fails (never slept)


@contextmanager
def lambda_api(*functions: LocalFunction, clock: Callable[[], float] = time.monotonic) -> Iterator[LambdaServer]:
    with LambdaServer(LambdaService(functions, clock=clock)) as server:
        yield server


def lambda_client(server: LambdaServer, **config: Any) -> Any:
    # One attempt: botocore retries a read timeout by default, which would invoke the function again.
    return boto3.client(
        "lambda",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
        config=Config(retries={"total_max_attempts": 1}, **config),
    )


def answer_of(response: dict[str, Any]) -> Any:
    return json.loads(response["Payload"].read())


def echo(event: Any, context: Any) -> dict[str, Any]:
    return {"event": event, "function": context.function_name, "request_id": context.aws_request_id}


def test_a_synchronous_invoke_answers_the_handlers_json_by_name_full_arn_and_partial_arn() -> None:
    function = LocalFunction.from_handler("Echo", echo)
    name = function.spec.function_name
    with lambda_api(function) as server:
        client = lambda_client(server)
        payload = {"connection_id": "qbc-0123", "force": False, "min_valid_seconds": 300}
        for function_name in (
            name,
            f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}",
            f"{ACCOUNT_ID}:function:{name}",
            f"{name}:$LATEST",
        ):
            response = client.invoke(FunctionName=function_name, Payload=json.dumps(payload))

            assert response["StatusCode"] == 200
            assert "FunctionError" not in response
            assert response["ExecutedVersion"] == "$LATEST"
            answer = answer_of(response)
            assert answer["event"] == payload
            assert answer["function"] == name
            # The caller's request ID is the invocation's, as in Lambda: the function's log lines carry it.
            assert answer["request_id"] == response["ResponseMetadata"]["RequestId"]
        # No payload: the handler gets {}, as in Lambda.
        assert answer_of(client.invoke(FunctionName=name))["event"] == {}


def test_an_unknown_function_version_or_account_is_resource_not_found() -> None:
    function = LocalFunction.from_handler("Echo", echo)
    name = function.spec.function_name
    with lambda_api(function) as server:
        client = lambda_client(server)
        for function_name, qualifier, arn in (
            ("nope", None, f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:nope"),
            (name, "live", f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}:live"),
            (f"999999999999:function:{name}", None, f"arn:aws:lambda:{REGION}:999999999999:function:{name}"),
        ):
            extra = {"Qualifier": qualifier} if qualifier else {}
            with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
                client.invoke(FunctionName=function_name, Payload=b"{}", **extra)
            assert raised.value.response["Error"]["Message"] == f"Function not found: {arn}"
            assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_a_handler_that_raised_is_an_unhandled_function_error_with_its_message_only() -> None:
    def failing(event: Any, context: Any) -> None:
        refresh_token = "RT-held-by-the-handler"  # noqa: F841 - a value in the frame, which must not be sent
        raise LookupError(f"connection {event['connection_id']} does not exist")

    function = LocalFunction.from_handler("Failing", failing)
    with lambda_api(function) as server:
        response = lambda_client(server).invoke(
            FunctionName=function.spec.function_name, Payload=json.dumps({"connection_id": "qbc-0123"})
        )

    assert response["StatusCode"] == 200  # a function error is not an API error
    assert response["FunctionError"] == "Unhandled"
    body = response["Payload"].read().decode()
    error = json.loads(body)
    assert error["errorType"] == "LookupError"
    assert error["errorMessage"] == "connection qbc-0123 does not exist"
    assert error["requestId"] == response["ResponseMetadata"]["RequestId"]
    # The handler's frames only (not the local stack's), as Lambda's runtime lists them.
    assert any(", in failing\n" in frame for frame in error["stackTrace"])
    assert not any("qbo_local" in frame for frame in error["stackTrace"])
    assert "RT-held-by-the-handler" not in body


def test_an_event_invoke_answers_202_at_once_and_runs_the_handler_in_the_background() -> None:
    release, ran = threading.Event(), threading.Event()
    received: list[Any] = []

    def queued(event: Any, context: Any) -> None:
        release.wait(WAIT)
        received.append(event)
        ran.set()

    function = LocalFunction.from_handler("Queued", queued)
    with lambda_api(function) as server:
        client = lambda_client(server)
        response = client.invoke(FunctionName=function.spec.function_name, InvocationType="Event", Payload=b'{"n": 1}')
        assert response["StatusCode"] == 202
        assert response["Payload"].read() == b""
        assert not ran.is_set()  # answered before the handler ended

        release.set()
        assert ran.wait(WAIT)
        assert received == [{"n": 1}]

        dry_run = client.invoke(FunctionName=function.spec.function_name, InvocationType="DryRun", Payload=b"{}")
        assert dry_run["StatusCode"] == 204
        assert received == [{"n": 1}]  # a dry run checks the request, and runs nothing


def test_a_second_invocation_while_the_first_runs_is_served_at_once_by_another_container() -> None:
    first_started, release = threading.Event(), threading.Event()

    def handler(event: Any, context: Any) -> dict[str, Any]:
        if event.get("hold"):
            first_started.set()
            assert release.wait(WAIT)
        return {"held": bool(event.get("hold"))}

    function = LocalFunction.from_handler("Refresh", handler)
    name = function.spec.function_name
    with lambda_api(function) as server:
        client = lambda_client(server)
        first: list[Any] = []
        holder = threading.Thread(
            target=lambda: first.append(answer_of(client.invoke(FunctionName=name, Payload=b'{"hold": true}')))
        )
        holder.start()
        assert first_started.wait(WAIT)

        second = answer_of(client.invoke(FunctionName=name, Payload=b"{}"))

        assert second == {"held": False}
        assert holder.is_alive() and not first  # the first is still running
        release.set()
        holder.join(WAIT)
        assert first == [{"held": True}]
        pool = server.service.pools[name]
        assert pool.started == 2
        # Both idle now: the next invocation reuses one rather than starting a third.
        client.invoke(FunctionName=name, Payload=b"{}")
        assert pool.started == 2


def test_a_caller_that_stops_waiting_gets_a_read_timeout_and_the_invocation_still_finishes() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    persisted: list[Any] = []

    def slow_refresh(event: Any, context: Any) -> dict[str, Any]:
        started.set()
        assert release.wait(WAIT)  # Intuit's answer, slower than the caller's patience
        persisted.append(event["connection_id"])  # what the refresh stores
        finished.set()
        return {"connection_id": event["connection_id"], "outcome": "refreshed", "message": None}

    function = LocalFunction.from_handler("Refresh", slow_refresh)
    with lambda_api(function) as server:
        impatient = lambda_client(server, read_timeout=0.5)
        with pytest.raises(ReadTimeoutError):
            impatient.invoke(FunctionName=function.spec.function_name, Payload=b'{"connection_id": "qbc-0123"}')
        assert started.is_set() and not finished.is_set()

        release.set()
        assert finished.wait(WAIT)
        assert persisted == ["qbc-0123"]  # once: the caller gave up, the refresh did not

        # The server is still serving, on a new connection.
        later = lambda_client(server).invoke(
            FunctionName=function.spec.function_name, Payload=b'{"connection_id": "qbc-0456"}'
        )
        assert answer_of(later)["outcome"] == "refreshed"


def test_a_run_past_the_functions_timeout_answers_lambdas_timeout_error_and_retires_the_container() -> None:
    now = [1000.0]

    def overrunning(event: Any, context: Any) -> dict[str, Any]:
        now[0] += event["seconds"]
        return {"done": True}

    function = LocalFunction.from_handler("Slow", overrunning, timeout_seconds=3)
    name = function.spec.function_name
    with lambda_api(function, clock=lambda: now[0]) as server:
        client = lambda_client(server)
        response = client.invoke(FunctionName=name, Payload=b'{"seconds": 4}')

        assert response["FunctionError"] == "Unhandled"
        error = answer_of(response)
        assert error["errorType"] == "Sandbox.Timedout"
        assert error["errorMessage"].endswith("Task timed out after 3.00 seconds")
        assert answer_of(client.invoke(FunctionName=name, Payload=b'{"seconds": 2}')) == {"done": True}
        assert server.service.pools[name].started == 2  # Lambda replaces a timed-out container


def test_a_payload_over_six_megabytes_or_not_json_is_refused_and_runs_nothing() -> None:
    ran: list[Any] = []
    function = LocalFunction.from_handler("Echo", lambda event, context: ran.append(event))
    name = function.spec.function_name
    with lambda_api(function) as server:
        client = lambda_client(server)
        with pytest.raises(client.exceptions.RequestTooLargeException):
            client.invoke(FunctionName=name, Payload=json.dumps({"pad": "x" * (6 * 1024 * 1024)}))
        with pytest.raises(client.exceptions.InvalidRequestContentException) as raised:
            client.invoke(FunctionName=name, Payload=b'{"connection_id": "qbc-0123", "secret": "s3cr3t"')
        assert "s3cr3t" not in raised.value.response["Error"]["Message"]
        assert ran == []
        # Still serving after a refused request.
        client.invoke(FunctionName=name, Payload=b"{}")
        assert ran == [{}]


def test_the_local_stack_serves_invoke_and_its_functions_are_told_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with background_stack(tmp_path) as stack:
        environment = stack.discovery["environment"]
        assert environment["AWS_ENDPOINT_URL_LAMBDA"] == stack.discovery["lambda_endpoint_url"]
        assert environment["QBO_REFRESH_FUNCTION_NAME"] == "qbo-connect-local-RefreshFunction"
        # As a function, a workflow or the CLI makes its client: the endpoint from the environment.
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", environment["AWS_ENDPOINT_URL_LAMBDA"])
        monkeypatch.setenv("AWS_ENDPOINT_URL", stack.discovery["aws_endpoint_url"])
        client = boto3.client("lambda", region_name=REGION, aws_access_key_id="local", aws_secret_access_key="local")

        response = client.invoke(
            FunctionName=environment["QBO_REFRESH_FUNCTION_NAME"],
            Payload=json.dumps({"connection_id": "demo", "force": False, "min_valid_seconds": 300}),
        )

        assert "FunctionError" not in response
        answer = answer_of(response)
        assert answer["connection_id"] == "demo"
        assert answer["outcome"] == "not_refreshable"  # not connected yet
        assert "Lambda Invoke qbo-connect-local-RefreshFunction (RequestResponse) -> 200" in stack.log()
