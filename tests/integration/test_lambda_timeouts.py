"""Lambda stops an invocation at its timeout (template.yaml) with no cleanup: whatever is still running is cut
where it stands. The functions budget what they start against what their invocation has left; these tests
hold each budget to what AWS does when it throttles: botocore (standard mode, runtime._aws_config's clients)
retries a throttled call with backoff, rand(0, 1) x 1, 2, 4, 8, 16 s for `max_attempts: 5` (which botocore
counts as retries: six attempts), so one call can outlast a reserve of a few seconds many times over.

Time is fake and nothing sleeps: the invocation's clock drives its Lambda context's remaining time, botocore's
backoff sleeps on it (its own delays, its jitter pinned), and Lambda stopping the invocation is LambdaTimedOut,
raised the moment the clock passes the timeout.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.endpoint
import pytest
import responses
from botocore.retries.standard import ExponentialBackoff
from fakes import FakeClock
from qbo_connect import intuit, runtime
from qbo_connect.domain.connection import ConnectionStatus
from qbo_connect.domain.lifecycle import UNREFRESHED_LOOK_SECONDS, RefreshTimings
from qbo_connect.invocation import ANSWER_SECONDS
from qbo_connect.runtime import build_services
from qbo_connect.settings import AWS_ATTEMPTS
from qbo_local.faults import AwsRefusals
from qbo_local.faults.aws_refusals import Refusal
from qbo_local.template import function_properties, load_template
from test_admin_api import admin_event, admin_function
from test_admin_refresh_deadline import OTHER_HOLDER, LambdaTimedOut, lease_taken_by_another
from test_alarms_fire import connected_and_due, intuit_answers_token_requests_with, refresh
from test_handlers import CONNECTION_ID, REALM, REGION, ROOT, LambdaContext, refresh_function, stack
from test_invocation_aws_faults import THROUGHPUT_EXCEEDED
from test_workflow_refresh_deadline import example_workflow

__all__ = ["stack"]  # the fixture

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

BOTOCORE_MEAN_JITTER = 0.5  # rand(0, 1) at its mean
DAY = 86_400.0
TEMPLATE = load_template(ROOT / "template.yaml")


class Invocation(FakeClock):
    """One invocation's time: Lambda stops it once the clock passes `ends_at`."""

    def __init__(self, start: float, seconds: float) -> None:
        super().__init__(start)
        self.ends_at = start + seconds
        self._planned: list[tuple[float, Callable[[], object]]] = []

    def at(self, seconds_from_now: float, happening: Callable[[], object]) -> None:
        """Something another process does meanwhile, once the clock gets there."""
        self._planned.append((self.now() + seconds_from_now, happening))

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        self._time_passed()

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        self._time_passed()

    def _time_passed(self) -> None:
        due = [planned for planned in self._planned if planned[0] <= self.now()]
        for planned in due:
            self._planned.remove(planned)
            planned[1]()
        if self.now() > self.ends_at:
            raise LambdaTimedOut(f"Task timed out ({self.now() - self.ends_at:.1f} s past the invocation's end)")


class InvocationContext(LambdaContext):
    """The Lambda context of that invocation: its remaining time is what the clock leaves."""

    def __init__(self, clock: Invocation) -> None:
        super().__init__()
        self._clock = clock

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._clock.ends_at - self._clock.now()) * 1000))


def botocore_backoff_on(clock: Invocation, monkeypatch, *, jitter: float) -> None:
    """botocore's own retry delays, its rand(0, 1) pinned to `jitter`, slept on `clock` instead of waited."""
    delay_amount = ExponentialBackoff.delay_amount

    def pinned(backoff: ExponentialBackoff, context: Any) -> float:
        backoff._random = lambda: jitter
        return delay_amount(backoff, context)

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", pinned)
    monkeypatch.setattr(botocore.endpoint, "time", SimpleNamespace(sleep=clock.sleep))


def throttled_session() -> tuple[boto3.Session, AwsRefusals]:
    """A session whose clients AWS may refuse before acting (qbo_local.faults.AwsRefusals), botocore retrying."""
    session = boto3.Session(region_name=REGION)
    return session, AwsRefusals(session)


def throughput_exceeded(aws: AwsRefusals, *, times: int | None = None) -> Refusal:
    """DynamoDB refusing the look's GetItem for throughput, every time or the first `times`; then moto answers."""
    return aws.refuse(THROUGHPUT_EXCEEDED.operation, THROUGHPUT_EXCEEDED.code, THROUGHPUT_EXCEEDED.message, times=times)


def on_invocation(monkeypatch, clock: Invocation, session: boto3.Session | None = None) -> None:
    monkeypatch.setattr(runtime, "_services", build_services(session=session, clock=clock))


def sweep(clock: Invocation) -> dict[str, Any]:
    event = {"action": "sweep", "scheduled_time": "2026-12-07T01:05:00Z"}
    return refresh_function.handler(event, InvocationContext(clock))


# --- the sweep's look at grants nobody refreshes ------------------------------------------------------------------


@pytest.fixture
def grant_nobody_refreshes(stack):
    """Connected with 20 days left of the refresh token's life, then the app's client secret was regenerated at
    Intuit: the refresh is refused (invalid_client) and nothing refreshes the connection; the sweep looks at it."""
    token_endpoint = stack.token_endpoint

    def twenty_days_left(http_request):
        status, headers, body = token_endpoint(http_request)
        return status, headers, json.dumps({**json.loads(body), "x_refresh_token_expires_in": 20 * DAY})

    stack.http.remove(responses.POST, intuit.TOKEN_URL)
    stack.http.add_callback(responses.POST, intuit.TOKEN_URL, callback=twenty_days_left)
    connected_and_due(stack)
    intuit_answers_token_requests_with(stack, 401, {"error": "invalid_client"})
    assert refresh()["outcome"] == "invalid_client"
    return stack


def test_a_sweep_whose_look_at_a_grant_nobody_refreshes_meets_a_throttled_read_still_ends_before_its_timeout(
    grant_nobody_refreshes, monkeypatch
):
    """The sweep reaches the grants nobody refreshes (invalid_client) last, with 7.2 s of its invocation left (its
    fan-out, or the looks before under the same throttling, took the rest); it starts a look while 5 s + 2 s to
    answer are left. DynamoDB throttles the look's GetItem (ProvisionedThroughputExceededException) and botocore
    retries it five times, 15.5 s of backoff at its mean jitter (31 s at most): Lambda stops the sweep. What an operator sees: the
    sweep failed (RefreshFunctionErrorsAlarm), Lambda runs it twice more and then parks it in the sweep dead-letter
    queue ("Refresh sweeps did not run", SweepDeadLetterQueueAlarm), and its ConnectionsDue datapoint, which
    RefreshScheduleSilentAlarm counts, is never flushed (Lambda stops the process: no `finally` runs)."""
    clock = Invocation(time.time(), seconds=7.2)
    session, aws = throttled_session()
    throughput_exceeded(aws)
    on_invocation(monkeypatch, clock, session)
    botocore_backoff_on(clock, monkeypatch, jitter=BOTOCORE_MEAN_JITTER)

    try:
        answer = sweep(clock)
    except LambdaTimedOut as stopped:
        pytest.fail(f"Lambda stopped the sweep: {stopped}")

    assert "due" in answer, answer


def test_a_sweep_with_time_left_warns_a_grant_nobody_refreshes_while_dynamodb_throttles_it_for_a_while(
    grant_nobody_refreshes, monkeypatch
):
    """The same throttling for the look's first reads (botocore rides it out): a sweep with its whole invocation
    ahead of it still warns that the grant ends within 30 days (Reauthorization Due, marked sent)."""
    clock = Invocation(time.time(), seconds=timeout_of("RefreshFunction"))
    session, aws = throttled_session()
    throttled = throughput_exceeded(aws, times=AWS_ATTEMPTS - 1)
    on_invocation(monkeypatch, clock, session)
    botocore_backoff_on(clock, monkeypatch, jitter=BOTOCORE_MEAN_JITTER)

    sweep(clock)

    assert throttled.refused == AWS_ATTEMPTS - 1
    assert "30d" in runtime.services().store.get(CONNECTION_ID).expiry_warnings_sent


def test_a_look_started_with_its_reserve_left_ends_before_the_timeout_with_every_call_of_it_throttled(
    grant_nobody_refreshes, monkeypatch
):
    """The sweep reaches the grant nobody refreshes with just the look's reserve left (and 2 s to answer). From the
    look's read on, DynamoDB and EventBridge refuse the first two attempts of every call, botocore's backoff at its
    longest: the read, the lease, the write marking the 30-day warning sent, and the warning's record, publish and
    mark. The look still ends before Lambda's timeout, and the warning goes out."""
    clock = Invocation(time.time(), seconds=UNREFRESHED_LOOK_SECONDS + ANSWER_SECONDS + 0.1)
    session, aws = throttled_session()
    throttling = ThrottledFromTheLook(aws)
    on_invocation(monkeypatch, clock, session)
    botocore_backoff_on(clock, monkeypatch, jitter=1.0)

    try:
        sweep(clock)
    except LambdaTimedOut as stopped:
        pytest.fail(f"Lambda stopped the sweep mid-look: {stopped}")

    assert throttling.refused == 6 * (AWS_ATTEMPTS - 1)
    assert "30d" in runtime.services().store.get(CONNECTION_ID).expiry_warnings_sent


class ThrottledFromTheLook:
    """From the first GetItem (the look's read) on, every call's attempts but its last refused before acting on it."""

    def __init__(self, aws: AwsRefusals) -> None:
        self.looking = False
        self.attempts = 0
        self.refused = 0
        # Refuses nothing itself (the next, service-wide refusal counts the read): it marks where the look begins.
        aws.refuse("dynamodb.GetItem", THROUGHPUT_EXCEEDED.code, THROUGHPUT_EXCEEDED.message, when=self._look_begins)
        aws.refuse("dynamodb", THROUGHPUT_EXCEEDED.code, THROUGHPUT_EXCEEDED.message, when=self._refuses)
        aws.refuse("eventbridge.PutEvents", "ThrottlingException", "Rate exceeded", when=self._refuses)

    def _look_begins(self, _body: dict[str, Any]) -> bool:
        self.looking = True
        return False

    def _refuses(self, _body: dict[str, Any]) -> bool:
        if not self.looking:
            return False
        self.attempts += 1
        if self.attempts % AWS_ATTEMPTS == 0:
            return False  # botocore's last attempt: AWS takes it
        self.refused += 1
        return True


def timeout_of(function: str) -> float:
    return float(function_properties(TEMPLATE, function)["Timeout"])


# --- persisting a refresh answer ---------------------------------------------------------------------------------

HOUR = 3600.0


def newest_grant_is_kept(stack) -> bool:
    """Intuit's newest refresh token is where the next refresh takes it from: the vault, or sealed onto the
    connection item while the vault refused it. Compared, never printed."""
    services = runtime.services()
    secret = services.leases.current_secret(services.store.get(CONNECTION_ID))
    newest = stack.token_endpoint.issued[-1]["refresh_token"]
    return secret is not None and secret.token_set is not None and secret.token_set.refresh_token == newest


@pytest.mark.parametrize("jitter", [0.5, 0.75, 0.95, 1.0])
def test_a_workflow_refresh_persisted_while_secrets_manager_throttles_is_kept_whatever_botocores_backoff(
    stack, monkeypatch, jitter
):
    """A workflow Lambda (examples/list_customers) asks for a token with just enough of its invocation left to
    refresh itself (Intuit's 120 s, persisting's 40 s: the vault write's 30 s deadline and 10 s for the metadata,
    the lease's write and 2 s to answer); the stored one expired an hour ago. (It was 70 s, with the call cut to
    28 s, before a refresh had to have Intuit's whole time limit.) Intuit rotates and answers just inside its 120 s. Secrets Manager throttles every PutSecretValue (a burst of writes in the region, 50 a second
    shared): the vault retries until its deadline, then seals the token set onto the connection item instead.
    But each vault attempt is itself retried by botocore, five times, rand(0, 1) x 1, 2, 4, 8, 16 s: an attempt
    started before the deadline runs up to 31 s past it. Lambda stops the invocation before the seal: the rotated
    refresh token is nowhere, the next refresh sends the spent one, and the company must reconnect."""
    session, aws = throttled_session()
    throttled = refresh_in_a_workflow(stack, monkeypatch, jitter, session, aws)

    assert throttled.refused > 0 and len(stack.token_endpoint.issued) == 2  # the consent's grant, then the refresh
    kept = newest_grant_is_kept(stack)  # a bool: pytest would print the stack's values
    assert kept, "Lambda stopped the workflow after Intuit rotated and before the rotation was stored or sealed"


def test_a_refresh_whose_seal_meets_kms_and_dynamodb_throttling_too_is_kept_within_the_persisting_budget(
    stack, monkeypatch
):
    """The same refresh, botocore's backoff at its longest, and the seal throttled as well: KMS refuses the first
    two Encrypts, DynamoDB the first two writes of the sealed token set. Persisting keeps, after the vault's
    deadline, the vault's last attempt, the seal and the item's write, each throttled through botocore's retries
    (settings.AFTER_VAULT_DEADLINE_SECONDS): the grant is sealed before Lambda stops the invocation."""
    session, aws = throttled_session()
    kms = aws.refuse("kms.Encrypt", "ThrottlingException", "Rate exceeded", times=2)
    sealing = aws.refuse(
        "dynamodb.UpdateItem",
        THROUGHPUT_EXCEEDED.code,
        THROUGHPUT_EXCEEDED.message,
        times=2,
        when=lambda body: "pending_rotation" in json.dumps(body),
    )

    refresh_in_a_workflow(stack, monkeypatch, 1.0, session, aws)

    assert kms.refused == 2 and sealing.refused == 2
    kept = newest_grant_is_kept(stack)
    assert kept, "Lambda stopped the workflow after Intuit rotated and before the rotation was stored or sealed"


def refresh_in_a_workflow(stack, monkeypatch, jitter: float, session: boto3.Session, aws: AwsRefusals) -> Refusal:
    """The example workflow refreshing with just enough of its invocation left, Intuit answering late, Secrets
    Manager throttling every PutSecretValue (on `session`, with what else `aws` refuses); returns that refusal.
    Lambda stopping the invocation is not raised: what it left behind is for the caller to look at."""
    key = stack.aws.client("kms").create_key(Description="rotation key")["KeyMetadata"]["Arn"]
    monkeypatch.setenv("QBO_ROTATION_KEY_ID", key)
    stack.create_connection()
    stack.connect()
    stack.http.get(
        re.compile(re.escape(f"{intuit.SANDBOX_API_BASE_URL}/v3/company/{REALM}/query") + r".*"),
        json={"QueryResponse": {"Customer": [{"Id": "1", "DisplayName": "Amy's Bird Sanctuary"}]}},
    )
    clock = Invocation(time.time() + 2 * HOUR, seconds=math.ceil(RefreshTimings().to_see_a_refresh_through) + 2)
    throttled = aws.refuse("secrets-manager.PutSecretValue", "ThrottlingException", "Rate exceeded")
    on_invocation(monkeypatch, clock, session)
    botocore_backoff_on(clock, monkeypatch, jitter=jitter)

    def slow_token_endpoint(request):
        answer = stack.token_endpoint(request)  # Intuit has processed the call: the old refresh token is spent
        clock.advance(RefreshTimings().call_deadline_seconds - 0.5)
        return answer

    stack.http.remove(responses.POST, intuit.TOKEN_URL)
    stack.http.add_callback(responses.POST, intuit.TOKEN_URL, callback=slow_token_endpoint)

    with contextlib.suppress(LambdaTimedOut):
        example_workflow.handler({"connection_id": CONNECTION_ID}, InvocationContext(clock))
    return throttled


# --- revoking at Intuit from the admin API ---------------------------------------------------------------------


def on_function_deadlines(monkeypatch, function: str) -> None:
    """The deadlines template.yaml gives `function` (its QBO_*_SECONDS variables), as its own Lambda has them."""
    for name, value in function_properties(TEMPLATE, function)["Environment"]["Variables"].items():
        if name.startswith("QBO_") and name.endswith("_SECONDS") and isinstance(value, str):
            monkeypatch.setenv(name, value)


def lease_held_by_another_for(clock: Invocation, seconds: float) -> None:
    """A refresh elsewhere (Intuit slow to answer it) holds the connection's lease, and gives it back in `seconds`."""
    lease_taken_by_another(clock.now())
    clock.at(seconds, lambda: runtime.services().store.release_lease(CONNECTION_ID, owner=OTHER_HOLDER))


@pytest.fixture
def console_reset(stack, monkeypatch):
    """A connected connection; the admin function's deadlines and timeout on fake time; Intuit's revocation endpoint
    acts on a revocation at once and answers it `answer_after` seconds later. Returns (clock, revocations, reset)."""
    stack.create_connection()
    stack.connect()
    on_function_deadlines(monkeypatch, "AdminFunction")
    clock = Invocation(time.time(), seconds=timeout_of("AdminFunction"))
    on_invocation(monkeypatch, clock)
    revocations: list[float] = []

    def revocation_endpoint(request, answer_after: float = 9.0):
        revocations.append(clock.now())  # Intuit has acted on it: the app's access to the company is gone
        clock.advance(answer_after)
        return 200, {}, ""

    stack.http.add_callback(responses.POST, intuit.REVOCATION_URL, callback=revocation_endpoint)

    def reset() -> dict[str, Any] | None:
        event = admin_event("POST", f"/connections/{CONNECTION_ID}/reset", {})
        try:
            return admin_function.handler(event, InvocationContext(clock))
        except LambdaTimedOut:
            return None

    return clock, revocations, reset


def test_a_console_reset_that_waited_for_the_lease_never_revokes_a_grant_it_cannot_then_clear(console_reset):
    """An administrator resets a connection from the console while a refresh elsewhere holds its lease (Intuit is
    slow today) and gives it back 22 s later. The admin API (30 s in Lambda) waits for it, takes it, and revokes at
    Intuit; Intuit acts on the revocation and answers 9 s later, after Lambda stopped the invocation. The grant is
    gone at Intuit, but the reset was never stored: the connection still shows Connected with its tokens, the next
    refresh finds it revoked and raises Needs Reauthorization (and its alarm), and the console showed API Gateway's
    bare 503. The reset must instead say busy, try again, with nothing revoked."""
    clock, revocations, reset = console_reset
    lease_held_by_another_for(clock, 22)

    answer = reset()

    status = runtime.services().store.get(CONNECTION_ID).status
    assert not revocations or status is ConnectionStatus.NOT_CONNECTED, (
        f"Intuit revoked the grant and the reset was never stored: the connection still shows {status.value}"
    )
    assert answer is not None and answer["statusCode"] == 409, answer
    assert "try again" in json.loads(answer["body"])["error"]["message"]


def test_a_console_reset_with_its_invocation_ahead_revokes_and_clears_within_the_admin_functions_timeout(
    console_reset,
):
    """The same reset with nobody holding the lease: revoked at Intuit (answered after 9 s) and cleared, within the
    admin function's own deadlines and timeout (template.yaml)."""
    _, revocations, reset = console_reset

    answer = reset()

    assert answer is not None and answer["statusCode"] == 200, answer
    assert len(revocations) == 1
    connection = runtime.services().store.get(CONNECTION_ID)
    assert connection.status is ConnectionStatus.NOT_CONNECTED and connection.last_revocation == "revoked"
