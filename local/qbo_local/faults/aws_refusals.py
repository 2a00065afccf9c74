"""AWS refusing a request before acting on it, with botocore's own retries still in play.

A refusal in AWS's shape changes nothing (a throttled PutItem writes no item, a PutSecretValue over a quota
creates no version, the entries PutEvents reports as failed are not published), and botocore retries it as
it does in Lambda (standard mode: throttling and 5xx answers, with backoff, a bounded number of times)
before it raises.

A `before-send` handler that answers with the error does not give that shape under moto. botocore's endpoint
emits before-send to every handler and uses the first answer that is not None (botocore/endpoint.py,
_do_get_response), and moto's in-process stub is one of those handlers (moto/core/models.py appends it to
botocore's BUILTIN_HANDLERS): moto acts on the request whichever answer wins. That is "AWS acted and its
answer was lost", a real shape too, but not a refusal. Answering at before-call keeps the request from moto,
and also from botocore's retry loop, which AWS's throttling never skips.

So AwsRefusals takes moto's stub off one session's before-send and stands in its place, in front of it: a
request it refuses never reaches moto; every other request goes to moto's stub unchanged (and when the stub
does not answer, e.g. against moto's server, over HTTP as before). The answer is given at before-send, so
botocore parses it with the client's own parser and its retry handler decides, as against AWS.
`lose_answers` gives the other shape explicitly: moto acts, then the answer is replaced by an error.

Install it before the session's clients are made (each client copies the session's handlers when created).
Answers are in the JSON protocols (DynamoDB, Secrets Manager, EventBridge, Cognito, SQS, KMS).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from botocore.awsrequest import AWSResponse
from moto.core.models import botocore_stubber

# What AWS's JSON protocols answer: an HTTP status and a body, by the request's body.
Answer = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]

# The HTTP status AWS gives each error code it answers with 5xx (the rest, throttling included, are 400s).
_SERVER_ERRORS = {
    "InternalServerError": 500,
    "InternalServiceError": 500,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
    "ServiceUnavailableException": 503,
}


def error(code: str, message: str, status: int | None = None) -> Answer:
    """AWS's error answer: `code` (as AWS spells it, e.g. DynamoDB's "com.amazonaws.dynamodb.v20120810#...")
    and `message` in the JSON protocol's body."""
    status = status or _SERVER_ERRORS.get(code.split("#")[-1], 400)
    return lambda _body: (status, {"__type": code, "message": message})


def every_entry_failed(code: str, message: str) -> Answer:
    """PutEvents' answer when it accepted none of the entries: 200, each entry with its error, nothing published."""

    def answer(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        entries = [{"ErrorCode": code, "ErrorMessage": message} for _ in body.get("Entries", [])]
        return 200, {"FailedEntryCount": len(entries), "Entries": entries}

    return answer


def always(_body: dict[str, Any]) -> bool:
    return True


@dataclass
class Refusal:
    """One operation's requests answered by `answer` (those `when` picks; the first `times` of them, or all).

    refused: requests answered here (each of botocore's attempts counts). passed: requests of the operation
    that `when` picked and that went on to moto after the refusals ran out.
    """

    # The service's ID as botocore's event names spell it, and the operation: "dynamodb.PutItem"; the service's ID
    # alone ("dynamodb") takes every operation of the service.
    operation: str
    answer: Answer
    times: int | None = None
    when: Callable[[dict[str, Any]], bool] = always
    acts_first: bool = False  # moto acts on the request, then its answer is replaced (the answer was lost)
    refused: int = 0
    passed: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def stop(self) -> None:
        """AWS accepts this operation's requests again."""
        with self._lock:
            self.times = self.refused

    def takes(self, operation: str, body: dict[str, Any]) -> bool:
        """Whether this request is answered here; counts it either way."""
        if self.operation not in (operation, operation.partition(".")[0]) or not self.when(body):
            return False
        with self._lock:
            if self.times is not None and self.refused >= self.times:
                self.passed += 1
                return False
            self.refused += 1
            return True


class AwsRefusals:
    """In front of moto on one boto3 session: `refuse` answers requests before moto sees them."""

    def __init__(self, session: Any) -> None:
        self._refusals: list[Refusal] = []
        session.events.unregister("before-send", botocore_stubber)
        session.events.register("before-send", self._front_door)

    def refuse(
        self,
        operation: str,
        code: str,
        message: str,
        *,
        status: int | None = None,
        times: int | None = None,
        when: Callable[[dict[str, Any]], bool] = always,
    ) -> Refusal:
        """AWS answers `code` (status 400, or the code's 5xx) to the first `times` requests (all when None)."""
        return self.answer(operation, error(code, message, status), times=times, when=when)

    def answer(
        self,
        operation: str,
        answer: Answer,
        *,
        times: int | None = None,
        when: Callable[[dict[str, Any]], bool] = always,
    ) -> Refusal:
        """AWS gives `answer` without acting on the request (e.g. every_entry_failed for PutEvents)."""
        refusal = Refusal(operation, answer, times, when)
        self._refusals.append(refusal)
        return refusal

    def lose_answers(self, operation: str, code: str, message: str, *, times: int | None = 1) -> Refusal:
        """AWS acts on the first `times` requests, and the caller gets `code` instead of the answer (a 500 after
        the write landed): botocore retries it as any other. Acts through moto's in-process stub (not its server)."""
        refusal = Refusal(operation, error(code, message), times, acts_first=True)
        self._refusals.append(refusal)
        return refusal

    def _front_door(self, event_name: str, request: Any, **kwargs: Any) -> AWSResponse | None:
        operation = event_name.removeprefix("before-send.")
        body = json.loads(request.body or b"{}") if _is_json(request) else {}
        refusal = next((r for r in self._refusals if r.takes(operation, body)), None)
        if refusal is None:
            return botocore_stubber(event_name=event_name, request=request, **kwargs)
        if refusal.acts_first:
            botocore_stubber(event_name=event_name, request=request, **kwargs)
        if not _is_json(request):
            raise NotImplementedError(f"AwsRefusals answers the JSON protocols only, not {operation}")
        status, answer = refusal.answer(body)
        return _response(request, status, answer)


def _content_type(request: Any) -> str:
    value = request.headers.get("Content-Type", "")
    return value.decode() if isinstance(value, bytes) else value


def _is_json(request: Any) -> bool:
    return _content_type(request).startswith("application/x-amz-json")


def _response(request: Any, status: int, answer: dict[str, Any]) -> AWSResponse:
    body = json.dumps(answer).encode()
    headers = {
        "Content-Type": _content_type(request),
        "Content-Length": str(len(body)),
        "x-amzn-RequestId": str(uuid.uuid4()),
        "Date": formatdate(usegmt=True),
    }
    return AWSResponse(request.url, status, headers, _Body(body))


class _Body:
    """The HTTP body as botocore's response reads it."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_options: Any):
        yield self._body
