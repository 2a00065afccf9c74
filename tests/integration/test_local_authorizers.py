"""The local stack's stand-ins for API Gateway's authorizers, in front of a recording function over real HTTP:
they must refuse what API Gateway refuses, or every test built on the local stack proves less than it says."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from qbo_local.authorizers import IamAuthorizer
from qbo_local.functions import LocalFunction
from qbo_local.router import Route, Router, RouterServer

REGION = "us-east-1"
KEY_ID, SECRET_KEY = "testing", "testing"


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        return {"statusCode": 200, "body": "done"}


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def machines_route(recorder: Recorder) -> Iterator[str]:
    """template.yaml's machines' route: ANY /iam/admin/{proxy+} behind AWS_IAM."""
    iam = IamAuthorizer(KEY_ID, SECRET_KEY, REGION, "123456789012")
    route = Route.of("ANY", "/iam/admin/{proxy+}", LocalFunction.from_handler("AdminFunction", recorder), iam)
    with RouterServer(Router([route]), host="localhost", port=0) as server:
        yield f"{server.url}/iam/admin/connections/demo/client-secret"


def _signed(url: str, body: bytes, payload_hash: str) -> dict[str, str]:
    """Headers as signers that send X-Amz-Content-SHA256 make them (requests-aws4auth, the AWS SDK for Java
    v2, Postman): the header is signed, and its value stands for the body in the canonical request."""
    request = AWSRequest(
        method="PUT",
        url=url,
        data=body,
        headers={"Content-Type": "application/json", "X-Amz-Content-SHA256": payload_hash},
    )
    SigV4Auth(Credentials(KEY_ID, SECRET_KEY), "execute-api", REGION).add_auth(request)
    return dict(request.headers)


def test_a_signed_payload_hash_is_checked_against_the_body_that_arrived(machines_route, recorder):
    honest = json.dumps({"client_secret": "the-one-the-operator-set"}).encode()
    swapped = json.dumps({"client_secret": "the-one-an-attacker-wants"}).encode()
    headers = _signed(machines_route, honest, hashlib.sha256(honest).hexdigest())

    assert requests.put(machines_route, data=honest, headers=headers, timeout=10).status_code == 200

    # The same signed headers, replayed within the 15 minutes with another body: API Gateway hashes the
    # body it received, so the signature no longer matches.
    answer = requests.put(machines_route, data=swapped, headers=headers, timeout=10)
    assert answer.status_code == 403, answer.text
    assert answer.json() == {"message": "Forbidden"}
    assert [event["body"] for event in recorder.events] == [honest.decode()]


def test_a_signature_over_an_unsigned_payload_is_refused(machines_route, recorder):
    body = json.dumps({"client_secret": "anything-at-all-1"}).encode()
    answer = requests.put(
        machines_route, data=body, headers=_signed(machines_route, body, "UNSIGNED-PAYLOAD"), timeout=10
    )
    assert answer.status_code == 403, answer.text
    assert recorder.events == []
