"""Property-based fuzzing of POST /intuit/webhooks: whatever anyone sends, never a 5xx, and nothing
queued, written or published unless the body carries a valid intuit-signature.

Bodies are arbitrary bytes, arbitrary JSON, and near-misses of Intuit's two shapes; signatures are
absent, garbage, valid base64 of the wrong digest, the right digest of another body, or (for the
signed property) right. One deployment on moto serves the module; a botocore `before-call` hook
records every write. 1,000 examples per property in CI (CI=true), 200 otherwise.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws
from qbo_connect import intuit, runtime
from qbo_connect.adapters.dynamodb_store import create_table
from qbo_connect.domain.webhooks import signature_of
from test_handlers import LambdaContext, lambda_environment
from test_webhook_handlers import REGION, cloudevent, webhook_event, webhooks_function

TABLE = "qbo-connect-webhook-fuzz"
CLIENT_ID = "ABfuzzclient0123456789"
VERIFIER = "fuzz-verifier-token"
WRITES = {
    ("sqs", "SendMessage"),
    ("sqs", "SendMessageBatch"),
    ("events", "PutEvents"),
    ("dynamodb", "PutItem"),
    ("dynamodb", "UpdateItem"),
    ("dynamodb", "DeleteItem"),
    ("secretsmanager", "PutSecretValue"),
    ("secretsmanager", "CreateSecret"),
}
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
FUZZ = settings(max_examples=1000 if os.environ.get("CI") else 200, deadline=None, suppress_health_check=HEALTH)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")


@dataclass
class Deployment:
    writes: list[tuple[str, str]] = field(default_factory=list)
    recording: bool = False

    def record(self, model, **_: object) -> None:
        call = (model.service_model.service_name, model.name)
        if self.recording and call in WRITES:
            self.writes.append(call)

    def run(self, event: dict) -> tuple[dict, list[tuple[str, str]]]:
        self.writes.clear()
        self.recording = True
        try:
            answer = webhooks_function.handler(event, LambdaContext())
        finally:
            self.recording = False
        return answer, list(self.writes)


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    with pytest.MonkeyPatch.context() as env:
        lambda_environment(env, table=TABLE, secret_prefix="qbo-connect/webhook-fuzz/")
        runtime.reset_services()
        with mock_aws():
            session = boto3.Session(region_name=REGION)
            create_table(session.client("dynamodb"), TABLE)
            env.setenv("QBO_WEBHOOK_QUEUE_URL", session.client("sqs").create_queue(QueueName="fuzz")["QueueUrl"])
            services = runtime.services()
            found = Deployment()
            services.session.events.register("before-call", found.record)
            services.webhook_verifiers.set(CLIENT_ID, VERIFIER)
            try:
                yield found
            finally:
                runtime.reset_services()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
near_misses = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.text(max_size=40),
            "type": st.sampled_from(["qbo.invoice.created.v1", "qbo..v1", "qbo.x.y.z.v1", ""]) | st.text(max_size=30),
            "time": st.sampled_from(["2026-11-28T14:41:41.179851517Z", "now", ""]) | st.text(max_size=30),
            "intuitentityid": st.text(max_size=20),
            "intuitaccountid": st.from_regex(r"[0-9]{1,20}", fullmatch=True) | st.text(max_size=20),
        },
    ),
    max_size=5,
)
bodies = (
    st.binary(max_size=2048)
    | json_values.map(lambda v: json.dumps(v).encode())
    | near_misses.map(lambda v: json.dumps(v).encode())
    | st.just(json.dumps([cloudevent()]).encode())
)


def signatures(body: bytes):
    return st.one_of(
        st.none(),
        st.text(max_size=100),
        st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode()),
        st.just(signature_of(body + b" ", VERIFIER)),
        st.just(signature_of(body, "another-apps-token")),
        st.just(signature_of(body, VERIFIER).lower()),
    )


@FUZZ
@given(data=st.data(), body=bodies, base64_body=st.booleans())
def test_without_a_valid_signature_nothing_is_queued_and_never_a_5xx(deployment, data, body, base64_body) -> None:
    signature = data.draw(signatures(body))
    if signature == signature_of(body, VERIFIER):
        return  # `.lower()` of a signature that has no letters is the signature itself
    try:
        event = webhook_event(body, signature, base64_body=base64_body or _not_utf8(body))
    except UnicodeError:
        return
    answer, writes = deployment.run(event)
    assert answer["statusCode"] in {400, 401, 413}, answer
    assert writes == []


@FUZZ
@given(body=bodies, base64_body=st.booleans())
def test_a_validly_signed_body_of_any_shape_never_gets_a_5xx(deployment, body, base64_body) -> None:
    event = webhook_event(body, signature_of(body, VERIFIER), base64_body=base64_body or _not_utf8(body))
    answer, writes = deployment.run(event)
    assert answer["statusCode"] == 200, answer
    assert set(writes) <= {("sqs", "SendMessageBatch")}
    accepted = json.loads(answer["body"])["accepted"]
    assert bool(writes) == (accepted > 0)


def test_the_header_name_is_intuits(deployment) -> None:
    body = json.dumps([cloudevent()]).encode()
    event = webhook_event(body, None)
    event["headers"]["x-intuit-signature"] = signature_of(body, VERIFIER)
    assert deployment.run(event)[0]["statusCode"] == 401
    event["headers"][intuit.WEBHOOK_SIGNATURE_HEADER] = signature_of(body, VERIFIER)
    assert deployment.run(event)[0]["statusCode"] == 200


def _not_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False
