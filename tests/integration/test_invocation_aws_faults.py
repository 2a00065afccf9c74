"""What a workflow invoking the token or the test function receives when AWS throttles or fails the service's
own reads past botocore's retries: Secrets Manager's GetSecretValue (ThrottlingException), DynamoDB's GetItem
(ProvisionedThroughputExceededException, RequestLimitExceeded: account and table limits moto does not
enforce). The functions' answers are public contracts (docs/schemas/*.response.schema.json): a workflow
branches on `ok` and `error.code`, so it must get one of the documented codes saying to retry, not Lambda's
unhandled-error payload (`errorType: ClientError`) that no schema describes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.retries.standard import ExponentialBackoff
from fakes import FakeClock
from jsonschema import Draft202012Validator
from qbo_connect import intuit, runtime
from qbo_connect.client import QuickBooksClient
from qbo_connect.errors import ErrorCode, QboConnectError
from qbo_connect.runtime import build_services
from qbo_connect.token_access import RECHECK_SECONDS
from qbo_local.faults import AwsRefusals
from qbo_local.faults.aws_refusals import Refusal
from test_admin_api import admin_event, admin_function
from test_handlers import CONNECTION_ID, REGION, ROOT, TABLE, LambdaContext, stack, test_function, token_function

__all__ = ["stack"]  # the fixture

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

SCHEMAS = ROOT / "docs" / "schemas"
TOKEN_ANSWER = json.loads((SCHEMAS / "token-function.response.schema.json").read_text())
TEST_ANSWER = json.loads((SCHEMAS / "test-function.response.schema.json").read_text())


@dataclass(frozen=True)
class Refused:
    """AWS refusing every call of one operation, as AWS answers it (botocore retries it, then raises)."""

    operation: str  # as botocore's event names spell it: "dynamodb.GetItem"
    code: str  # as AWS's body spells it
    message: str

    def on(self, refusals: AwsRefusals) -> Refusal:
        return refusals.refuse(self.operation, self.code, self.message)

    @property
    def short_code(self) -> str:
        """The code as botocore hands it over (DynamoDB's namespace dropped)."""
        return self.code.split("#")[-1]


DYNAMODB_ERRORS = "com.amazonaws.dynamodb.v20120810#"
THROUGHPUT_EXCEEDED = Refused(
    "dynamodb.GetItem",
    DYNAMODB_ERRORS + "ProvisionedThroughputExceededException",
    "The level of configured provisioned throughput for the table was exceeded. Consider increasing your "
    "provisioning level with the UpdateTable API.",
)
FAULTS = {
    "secrets manager throttles GetSecretValue": Refused(
        "secrets-manager.GetSecretValue", "ThrottlingException", "Rate exceeded"
    ),
    "the table's throughput is exceeded on GetItem": THROUGHPUT_EXCEEDED,
    "the account's request limit is exceeded on GetItem": Refused(
        "dynamodb.GetItem",
        DYNAMODB_ERRORS + "RequestLimitExceeded",
        "Throughput exceeds the current throughput limit for your account. Please contact AWS Support at "
        "https://aws.amazon.com/support request a limit increase",
    ),
}


@pytest.fixture(params=sorted(FAULTS))
def aws_refuses(request, stack, monkeypatch):
    """A connected connection, then AWS refusing one of the reads every answer needs. botocore's backoff is
    not slept (its sleep cannot be given a clock)."""
    stack.create_connection()
    stack.connect()
    fault = FAULTS[request.param]
    session = boto3.Session(region_name=REGION)
    refusal = fault.on(AwsRefusals(session))
    monkeypatch.setattr(runtime, "_services", build_services(session=session))
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda _self, _context: 0.0)
    return stack, fault, refusal


def invoke(function, payload: dict[str, Any]) -> dict[str, Any]:
    """What the invoking workflow receives: the handler's answer, or Lambda's payload for an unhandled error."""
    try:
        return function.handler(payload, LambdaContext())
    except Exception as error:
        return {"errorMessage": str(error), "errorType": type(error).__name__}


def errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in Draft202012Validator(schema).iter_errors(instance)]


def assert_says_retry_without_secrets(stack, answer: dict[str, Any], fault: Refused, refusal: Refusal) -> None:
    assert refusal.refused > 1, "botocore did not retry the call before giving up"
    assert "errorType" not in answer, f"Lambda's unhandled-error payload: {answer}"
    assert answer["ok"] is False and answer["connection_id"] == CONNECTION_ID
    assert answer["error"]["code"] == "vault_unavailable", answer["error"]
    message = answer["error"]["message"]
    assert "retry" in message.lower() or "try again" in message.lower(), message
    assert fault.short_code in message, message  # what AWS said, for whoever looks
    dumped = json.dumps(answer)
    leaked = [value for value in stack.secret_values() if value in dumped]
    assert not leaked, "the answer holds a token or a secret"


def test_the_token_function_answers_a_retryable_error_when_aws_keeps_refusing_its_reads(aws_refuses):
    stack, fault, refusal = aws_refuses

    answer = invoke(token_function, {"connection_id": CONNECTION_ID})

    assert_says_retry_without_secrets(stack, answer, fault, refusal)
    assert errors(TOKEN_ANSWER, answer) == []


def test_the_test_function_answers_a_retryable_error_when_aws_keeps_refusing_its_reads(aws_refuses):
    stack, fault, refusal = aws_refuses

    answer = invoke(test_function, {"connection_id": CONNECTION_ID})

    assert_says_retry_without_secrets(stack, answer, fault, refusal)
    assert errors(TEST_ANSWER, answer) == []
    assert answer["error"]["next_step"]


def test_the_admin_api_answers_503_saying_to_retry_when_aws_keeps_refusing_its_reads(aws_refuses):
    # The console and the CLI show the admin API's error message; Lambda's unhandled error is a bare 500.
    stack, fault, refusal = aws_refuses
    event = admin_event("POST", f"/connections/{CONNECTION_ID}/test", {"deep": False})

    answer = invoke(admin_function, event)

    assert refusal.refused > 1, "botocore did not retry the call before giving up"
    assert "errorType" not in answer, f"Lambda's unhandled-error payload: {answer}"
    assert answer["statusCode"] == 503
    error = json.loads(answer["body"])["error"]
    assert error["code"] == "vault_unavailable" and "try again" in error["message"], error
    assert fault.short_code in error["message"]
    assert not [value for value in stack.secret_values() if value in answer["body"]], "a token or secret leaked"


def test_a_workflows_python_client_raises_the_services_retry_error_when_aws_keeps_refusing_its_reads(aws_refuses):
    # A workflow catches the service's errors (QboConnectError, each with a code); botocore's are not among them.
    stack, fault, refusal = aws_refuses
    qbo = QuickBooksClient.for_connection(CONNECTION_ID)

    with pytest.raises(QboConnectError) as raised:
        qbo.company_info()

    assert refusal.refused > 1, "botocore did not retry the call before giving up"
    assert raised.value.code is ErrorCode.VAULT_UNAVAILABLE and "try again" in raised.value.message
    assert fault.short_code in raised.value.message
    assert not [value for value in stack.secret_values() if value in str(raised.value)], "a token or secret leaked"


# --- the browser's routes: a person, not a workflow, waits on these ------------------------------------------
@pytest.fixture(params=["authorize", "callback"])
def consent_step_meets_aws_refusing(request, stack, monkeypatch):
    """The person's authorize link (or Intuit's redirect back with the code) arrives while AWS keeps refusing
    a read it needs (each of FAULTS in turn, as a browser route meets them, once botocore gave up)."""
    stack.create_connection()
    if request.param == "authorize":
        query = stack.authorize_query()
        step = lambda: stack.authorize(query)  # noqa: E731
    else:
        callback = stack.consent_given()
        step = lambda: stack.callback(*callback)  # noqa: E731
    session = boto3.Session(region_name=REGION)
    refusals = AwsRefusals(session)
    refusing = [fault.on(refusals) for fault in FAULTS.values()]
    monkeypatch.setattr(runtime, "_services", build_services(session=session))
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda _self, _context: 0.0)
    return stack, step, refusing


def test_a_consent_step_aws_keeps_refusing_shows_the_person_a_page_saying_to_try_again(consent_step_meets_aws_refusing):
    stack, step, refusing = consent_step_meets_aws_refusing

    answer = invoke(_Route(step), {})

    assert any(refusal.refused > 1 for refusal in refusing), "botocore did not retry before giving up"
    assert "errorType" not in answer, f"Lambda's unhandled error (API Gateway shows a bare 500): {answer}"
    assert answer["statusCode"] == 503
    assert answer["headers"]["Content-Type"].startswith("text/html")
    page = answer["body"]
    assert "try again" in page.lower() or "wait a minute" in page.lower(), page
    assert not [value for value in stack.secret_values() if value in json.dumps(answer)], "a token or secret leaked"


class _Route:
    """A browser route as `invoke` calls a function: its answer, or Lambda's unhandled-error payload."""

    def __init__(self, step) -> None:
        self.handler = lambda _payload, _context: step()


# --- a warm workflow: its cached token's once-a-minute check meets AWS refusing ---------------------------------
def test_a_cached_token_whose_check_aws_refuses_is_served_and_checked_again_a_minute_later(stack, monkeypatch):
    # Before the check existed a warm workflow called no AWS at all for its token's hour. A GetItem that DynamoDB
    # throttles past botocore's retries must not turn a token the process holds, valid and current a minute ago,
    # into failed requests: it is served as before, and the check is made again a minute later, not at every
    # request (each would wait out botocore's retries while holding the connection's lock).
    stack.create_connection()
    stack.connect()
    session = boto3.Session(region_name=REGION)
    refusals = AwsRefusals(session)
    clock = FakeClock(time.time())
    monkeypatch.setattr(runtime, "_services", build_services(session=session, clock=clock))
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda _self, _context: 0.0)
    qbo = QuickBooksClient.for_connection(CONNECTION_ID)
    assert qbo.company_info()["CompanyName"]

    refusal = THROUGHPUT_EXCEEDED.on(refusals)
    clock.advance(RECHECK_SECONDS)
    for _ in range(3):
        assert qbo.company_info()["CompanyName"]  # the token it holds, still valid
    assert refusal.refused > 1, "the check was not tried (botocore retries it before giving up)"
    tried = refusal.refused
    clock.advance(RECHECK_SECONDS / 2)
    assert qbo.company_info()["CompanyName"]
    assert refusal.refused == tried, "a failed check was tried again at once"

    refusal.stop()
    stack.http.post(intuit.REVOCATION_URL, status=200)
    runtime.services().admin.reset(CONNECTION_ID, actor="test")
    clock.advance(RECHECK_SECONDS / 2)
    with pytest.raises(QboConnectError) as raised:
        qbo.company_info()
    assert raised.value.code is ErrorCode.NOT_CONNECTED  # the check is back, and sees the reset


def test_a_consent_whose_tokens_aws_refuses_to_store_says_so_not_that_intuit_did_not_answer(stack, monkeypatch):
    # Intuit answered the code exchange; it is Secrets Manager that kept refusing the new tokens' write. A page
    # blaming Intuit sends the person (and whoever they ask) to Intuit's status page instead of AWS's.
    stack.create_connection()
    callback = stack.consent_given()
    session = boto3.Session(region_name=REGION)
    throttled = AwsRefusals(session).refuse("secrets-manager.PutSecretValue", "ThrottlingException", "Rate exceeded")
    # The vault's write deadline passes on a clock its pauses advance, not in real seconds.
    clock = FakeClock(time.time())
    monkeypatch.setattr(runtime, "_services", build_services(session=session, clock=clock))
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda _self, _context: 0.0)

    answer = invoke(_Route(lambda: stack.callback(*callback)), {})

    assert throttled.refused > 1, "botocore did not retry the write before giving up"
    assert "errorType" not in answer, f"Lambda's unhandled error (API Gateway shows a bare 500): {answer}"
    assert answer["statusCode"] == 503
    page = answer["body"]
    assert "Intuit did not answer" not in page and "Intuit could not be reached" not in page, page
    assert "storage" in page.lower() and "nothing was stored" in page.lower(), page
    assert "fresh authorize link" in page.lower(), page
    assert not [value for value in stack.secret_values() if value in json.dumps(answer)], "a token or secret leaked"
    # What the page says is so: no token in the vault, the connection not connected.
    assert runtime.services().vault.read(CONNECTION_ID).token_set is None
    assert runtime.services().store.get(CONNECTION_ID).status.value == "not_connected"

    # And what it tells the person to do works: Secrets Manager takes writes again, a minute later a fresh link.
    throttled.stop()
    clock.advance(60)
    retried = stack.connect()
    assert retried["statusCode"] == 200 and "Connected" in retried["body"], retried["body"]
    assert runtime.services().store.get(CONNECTION_ID).status.value == "connected"


def saved_as_connected(body: dict[str, Any]) -> bool:
    return body.get("TableName") == TABLE and json.dumps("connected") in json.dumps(
        body.get("ExpressionAttributeValues")
    )


class OnceTheTokensAreSaved:
    """Picks every UpdateItem of the connections table after the one that saves the consent's connected state
    (the company name's write, the lease's release), for a refusal: the table throttling from then on."""

    def __init__(self) -> None:
        self.saved = False

    def __call__(self, body: dict[str, Any]) -> bool:
        if self.saved:
            return body.get("TableName") == TABLE
        self.saved = saved_as_connected(body)
        return False


def test_a_stored_consent_stands_when_the_table_throttles_every_write_after_its_tokens(stack, monkeypatch):
    # The tokens and the connected state are saved; then the table throttles past botocore's retries, as a table
    # does: not one write, but the company name's and the lease's release after it too. The consent is stored; the
    # person must see it connected, and Connection Authorized must go out, not a page saying to start again.
    stack.create_connection()
    callback = stack.consent_given()
    session = boto3.Session(region_name=REGION)
    throttled = AwsRefusals(session).refuse(
        "dynamodb.UpdateItem",
        DYNAMODB_ERRORS + "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded.",
        when=OnceTheTokensAreSaved(),
    )
    monkeypatch.setattr(runtime, "_services", build_services(session=session))
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda _self, _context: 0.0)

    answer = invoke(_Route(lambda: stack.callback(*callback)), {})

    assert throttled.refused > 1, "the table never throttled after the tokens were saved"
    assert "errorType" not in answer, f"Lambda's unhandled error (API Gateway shows a bare 500): {answer}"
    assert answer["statusCode"] == 200 and "Connected" in answer["body"], answer["body"]
    assert runtime.services().store.get(CONNECTION_ID).status.value == "connected"
    published = [e.detail_type for e in runtime.services().admin.events(CONNECTION_ID).events]
    assert "Connection Authorized" in published, published


def test_a_person_cognito_cannot_confirm_as_an_administrator_gets_a_503_saying_to_retry_and_is_not_let_in(
    stack, monkeypatch
):
    # The once-a-minute question to the pool (domain/administrators.py) meets Cognito's throttling past botocore's
    # retries: the person is neither let in on an unconfirmed token nor shown a bare 500.
    stack.create_connection()
    session = boto3.Session(region_name=REGION)
    throttled = AwsRefusals(session).refuse(
        "cognito-identity-provider.AdminGetUser", "TooManyRequestsException", "Too many requests"
    )
    monkeypatch.setattr(runtime, "_services", build_services(session=session))
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda _self, _context: 0.0)

    answer = invoke(admin_function, admin_event("DELETE", f"/connections/{CONNECTION_ID}"))

    assert throttled.refused > 1, "botocore did not retry the call before giving up"
    assert "errorType" not in answer, f"Lambda's unhandled-error payload: {answer}"
    assert answer["statusCode"] == 503
    error = json.loads(answer["body"])["error"]
    assert error["code"] == "vault_unavailable" and "try again" in error["message"], error
    assert "TooManyRequestsException" in error["message"]
    assert runtime.services().store.get(CONNECTION_ID) is not None  # not deleted on an unconfirmed token


def transaction_cancelled(*reasons: str):
    """DynamoDB's answer to a TransactWriteItems it cancelled for reasons other than a condition (throttling on an
    item, another transaction on the same items): TransactionCanceledException with a reason per item. It wrote
    nothing, and botocore does not retry it."""
    message = f"Transaction cancelled, please refer cancellation reasons [{', '.join(reasons)}]"
    answer = {
        "__type": DYNAMODB_ERRORS + "TransactionCanceledException",
        "Message": message,
        "CancellationReasons": [{"Code": code} for code in reasons],
    }
    return lambda _body: (400, answer)


@pytest.mark.parametrize("reasons", [("ThrottlingError", "None"), ("None", "TransactionConflict")])
def test_a_create_dynamodb_cancels_for_throttling_is_told_to_try_again_not_that_the_name_is_taken(
    stack, monkeypatch, reasons
):
    # Creating a connection writes its item and its name claim in one transaction. DynamoDB cancels a transaction for
    # throttling or a conflicting transaction with the same error as for a failed condition; only its reasons tell
    # them apart. "Already exists: choose another name" would send the administrator after a name nobody holds.
    session = boto3.Session(region_name=REGION)
    cancelled = AwsRefusals(session).answer("dynamodb.TransactWriteItems", transaction_cancelled(*reasons))
    monkeypatch.setattr(runtime, "_services", build_services(session=session))
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda _self, _context: 0.0)
    event = admin_event("POST", "/connections", {"name": "Fresh Books", "client_id": "ABfreshclient0123456789"})

    answer = invoke(admin_function, event)

    assert "errorType" not in answer, f"Lambda's unhandled-error payload: {answer}"
    error = json.loads(answer["body"])["error"]
    assert answer["statusCode"] == 503 and error["code"] == "vault_unavailable", (answer["statusCode"], error)
    assert "try again" in error["message"] and "already exists" not in error["message"], error
    assert cancelled.refused >= 1 and runtime.services().store.find_by_name("Fresh Books") is None
