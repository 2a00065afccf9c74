"""Every alarm of template.yaml on the service's own metrics fires when its condition happens.

CloudWatch matches an alarm to a metric by namespace, name and the exact set of dimensions (names and
values): an alarm on a metric nobody emits, or with a dimension set the code never uses, stays quiet for
ever. So each condition is brought about in the real functions as Lambda calls them (the handlers of
functions/*/app.py, the real adapters on moto, Intuit's answers in their real shape), with the
environment the template's Globals give every function; the Embedded Metric Format documents Powertools
prints are read back as CloudWatch would, and each alarm's definition, parsed from template.yaml, is
evaluated against them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
import responses
from fakes import FakeClock
from qbo_connect import intuit, runtime
from qbo_connect.runtime import build_services
from qbo_local.faults import AwsRefusals
from qbo_local.faults.aws_refusals import Refusal, every_entry_failed
from qbo_local.template import Tag, load_template
from test_handlers import (
    CONNECTION_ID,
    EVENTS_TABLE,
    FIXTURES,
    REALM,
    REGION,
    LambdaContext,
    refresh_function,
    stack,
    test_function,
)
from test_webhook_handlers import Deployment, cloudevent, deployment

if TYPE_CHECKING:
    from conftest import LogScan

__all__ = ["deployment", "stack"]  # the fixtures

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = load_template(ROOT / "template.yaml")
ALARMS = {
    name: resource["Properties"]
    for name, resource in TEMPLATE["Resources"].items()
    if resource["Type"] == "AWS::CloudWatch::Alarm"
}
GLOBALS = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
SERVICE_NAMESPACE = GLOBALS["POWERTOOLS_METRICS_NAMESPACE"]


# --- what CloudWatch makes of the printed EMF documents ---------------------------------------------
@dataclass(frozen=True)
class Datapoints:
    namespace: str
    name: str
    dimensions: frozenset[tuple[str, str]]
    unit: str
    values: tuple[float, ...]


def emitted(printed: str) -> list[Datapoints]:
    """Each metric of each EMF document, once per dimension set it declares (as CloudWatch extracts them)."""
    found = []
    for line in printed.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for definition in directive["Metrics"]:
                name = definition["Name"]
                values = document[name] if isinstance(document[name], list) else [document[name]]
                for dimension_set in directive["Dimensions"]:
                    found.append(
                        Datapoints(
                            directive["Namespace"],
                            name,
                            frozenset((key, str(document[key])) for key in dimension_set),
                            definition.get("Unit", "None"),
                            tuple(float(value) for value in values),
                        )
                    )
    return found


STATISTICS: dict[str, Callable[[list[float]], float]] = {
    "Sum": sum,
    "Maximum": max,
    "Minimum": min,
    "SampleCount": len,
    "Average": lambda values: sum(values) / len(values),
}
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}


def parameter_default(value: Any) -> Any:
    """A literal, or the default of the parameter a !Ref names (what a deploy with the defaults gets)."""
    if isinstance(value, Tag) and value.name == "Ref":
        return TEMPLATE["Parameters"][value.value]["Default"]
    return value


def watched_metrics(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The alarm's metrics by query id ("m" for a single-metric alarm): namespace, name, dimensions, stat."""
    if "MetricName" in alarm:
        return {
            "m": {
                "namespace": alarm["Namespace"],
                "name": alarm["MetricName"],
                "dimensions": {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])},
                "stat": alarm["Statistic"],
                "unit": alarm.get("Unit"),
            }
        }
    return {
        query["Id"]: {
            "namespace": query["MetricStat"]["Metric"]["Namespace"],
            "name": query["MetricStat"]["Metric"]["MetricName"],
            "dimensions": {d["Name"]: d["Value"] for d in query["MetricStat"]["Metric"].get("Dimensions", [])},
            "stat": query["MetricStat"]["Stat"],
            "unit": query["MetricStat"].get("Unit"),
        }
        for query in alarm["Metrics"]
        if "MetricStat" in query
    }


def on_service_metrics(alarm: dict[str, Any]) -> bool:
    return any(metric["namespace"] == SERVICE_NAMESPACE for metric in watched_metrics(alarm).values())


def alarm_value(alarm: dict[str, Any], datapoints: list[Datapoints]) -> float | None:
    """What the alarm evaluates for one period holding these datapoints; None when it has no data."""
    values: dict[str, float | None] = {}
    for query_id, metric in watched_metrics(alarm).items():
        identity = frozenset(metric["dimensions"].items())
        matching = [
            value
            for point in datapoints
            if (point.namespace, point.name, point.dimensions) == (metric["namespace"], metric["name"], identity)
            and metric["unit"] in (None, point.unit)
            for value in point.values
        ]
        values[query_id] = STATISTICS[metric["stat"]](matching) if matching else None
    if "MetricName" in alarm:
        return values["m"]
    (expression,) = [q["Expression"] for q in alarm["Metrics"] if "Expression" in q and q.get("ReturnData", True)]
    if all(value is None for value in values.values()):
        return None
    # The metric math the alarms use: FILL(id, constant) and +.
    python = re.sub(r"FILL\((\w+), *([\d.]+)\)", r"fill(\1, \2)", expression)

    def fill(value: float | None, constant: float) -> float:
        return constant if value is None else value

    return eval(python, {"__builtins__": {}, "fill": fill}, values)  # noqa: S307 - the template's own expression


def fires(alarm: dict[str, Any], datapoints: list[Datapoints]) -> bool:
    value = alarm_value(alarm, datapoints)
    if value is None:
        return alarm["TreatMissingData"] == "breaching"
    return COMPARISONS[alarm["ComparisonOperator"]](value, float(parameter_default(alarm["Threshold"])))


# --- the conditions, brought about in the real functions --------------------------------------------
class Printed:
    """What the functions printed during the test (Powertools writes EMF to stdout), read through the log
    scan, so that the stack fixture's check for leaked tokens and secrets still reads all of it."""

    def __init__(self, log_scan: LogScan) -> None:
        self._log_scan = log_scan

    def datapoints(self) -> list[Datapoints]:
        return emitted(self._log_scan.text())


def intuit_answers_token_requests_with(stack, status: int, body: dict[str, Any]) -> None:
    stack.http.remove(responses.POST, intuit.TOKEN_URL)
    stack.http.add(responses.POST, intuit.TOKEN_URL, status=status, json=body, headers={"intuit_tid": "1-tid-x"})


def connected_and_due(stack) -> None:
    """A connected connection whose access token (Intuit gave it 10 minutes) is within the refresh margin."""
    stack.token_endpoint.expires_in = 600
    stack.create_connection()
    assert stack.connect()["statusCode"] == 200


def refresh(connection_id: str = CONNECTION_ID) -> dict[str, Any]:
    return refresh_function.handler({"connection_id": connection_id}, LambdaContext())


def sweep() -> dict[str, Any]:
    return refresh_function.handler({"action": "sweep", "scheduled_time": "2026-12-07T01:05:00Z"}, LambdaContext())


def aws_refusing(monkeypatch) -> AwsRefusals:
    """The functions' AWS from now on, refusing what the condition adds. Neither botocore's backoff nor the
    service's own pauses (on a clock they advance) are slept."""
    session = boto3.Session(region_name=REGION)
    refusals = AwsRefusals(session)
    monkeypatch.setattr(runtime, "_services", build_services(session=session, clock=FakeClock(time.time())))
    monkeypatch.setattr("botocore.retries.standard.ExponentialBackoff.delay_amount", lambda _self, _context: 0.0)
    return refusals


def grant_revoked(request, monkeypatch) -> None:
    stack = request.getfixturevalue("stack")
    connected_and_due(stack)
    intuit_answers_token_requests_with(
        stack, 400, {"error": "invalid_grant", "error_description": "Incorrect or invalid refresh token"}
    )
    assert refresh()["outcome"] == "needs_reauthorization"


def intuit_keeps_failing(name: str, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
    """Intuit answers every refresh of the connection so (all the run's retries too), sweep after sweep."""

    def condition(request, monkeypatch) -> None:
        stack = request.getfixturevalue("stack")
        connected_and_due(stack)
        stack.http.remove(responses.POST, intuit.TOKEN_URL)
        stack.http.add(responses.POST, intuit.TOKEN_URL, status=status, json=body, headers=headers or {})
        monkeypatch.setattr("qbo_connect.domain.lifecycle.random.uniform", lambda low, high: 0.0)  # no backoff
        for _ in range(2):
            assert refresh()["outcome"] == "transient_failure"

    condition.__name__ = name
    return condition


intuit_unavailable = intuit_keeps_failing(
    "intuit_unavailable", 503, {"Fault": {"Error": [{"Message": "Service Unavailable"}]}}
)
intuit_throttles = intuit_keeps_failing("intuit_throttles", 429, {"error": "Too Many Requests"}, {"Retry-After": "0"})


def grant_ends_within_30_days(request, monkeypatch) -> None:
    # Intuit's five-year hard expiry 20 days ahead: each refresh answer says so (and caps the rolling expiry).
    stack = request.getfixturevalue("stack")
    connected_and_due(stack)
    token_endpoint = stack.token_endpoint

    def near_the_end(http_request):
        status, headers, body = token_endpoint(http_request)
        answer = {**json.loads(body), "x_refresh_token_expires_in": 20 * 86400}
        return status, headers, json.dumps({**answer, "x_refresh_token_hard_expires_in": 20 * 86400})

    stack.http.remove(responses.POST, intuit.TOKEN_URL)
    stack.http.add_callback(responses.POST, intuit.TOKEN_URL, callback=near_the_end)
    assert refresh()["outcome"] == "refreshed"


def grant_nobody_refreshes_ends_within_30_days(request, monkeypatch) -> None:
    # Consented with 20 days left of the refresh token's life, then the app's client secret was regenerated at
    # Intuit: the refresh is refused (invalid_client) and nothing refreshes the connection; the sweep must warn.
    stack = request.getfixturevalue("stack")
    token_endpoint = stack.token_endpoint

    def twenty_days_left(http_request):
        status, headers, body = token_endpoint(http_request)
        return status, headers, json.dumps({**json.loads(body), "x_refresh_token_expires_in": 20 * 86400})

    stack.http.remove(responses.POST, intuit.TOKEN_URL)
    stack.http.add_callback(responses.POST, intuit.TOKEN_URL, callback=twenty_days_left)
    connected_and_due(stack)
    intuit_answers_token_requests_with(stack, 401, {"error": "invalid_client"})
    assert refresh()["outcome"] == "invalid_client"
    sweep()


def company_subscription_lapsed(request, monkeypatch) -> None:
    # Intuit refuses the company's data (403, fault 3100) as it does once its QuickBooks subscription lapsed.
    stack = request.getfixturevalue("stack")
    stack.create_connection()
    assert stack.connect()["statusCode"] == 200
    url = intuit.SANDBOX_API_BASE_URL + intuit.company_info_path(REALM)
    stack.http.remove(responses.GET, url)
    fault = {
        "Message": "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
        "Detail": "The company's QuickBooks subscription is not active.",
        "code": "3100",
    }
    stack.http.get(url, status=403, json={"Fault": {"Error": [fault], "type": "AUTHORIZATION"}, "time": "x"})
    answer = test_function.handler({"connection_id": CONNECTION_ID}, LambdaContext())
    assert answer["ok"] is False and answer["error"]["code"] == "forbidden"


def company_read_only_in_company_info(request, monkeypatch) -> None:
    # Intuit's other shape of a lapsed subscription: CompanyInfo answers, and its SubscriptionStatus says SUSPENDED.
    stack = request.getfixturevalue("stack")
    stack.create_connection()
    assert stack.connect()["statusCode"] == 200
    url = intuit.SANDBOX_API_BASE_URL + intuit.company_info_path(REALM)
    body = json.loads((FIXTURES / "companyinfo.json").read_text())
    for pair in body["CompanyInfo"]["NameValue"]:
        if pair["Name"] == "SubscriptionStatus":
            pair["Value"] = "SUSPENDED"
    stack.http.remove(responses.GET, url)
    stack.http.get(url, json=body, headers={"intuit_tid": "1-tid-company"})
    answer = test_function.handler({"connection_id": CONNECTION_ID}, LambdaContext())
    assert answer["ok"] is True


def grant_revoked_then_a_sweep(request, monkeypatch) -> None:
    grant_revoked(request, monkeypatch)
    sweep()


def vault_refuses_the_rotated_token_set(request, monkeypatch) -> Refusal:
    # Secrets Manager throttles the rotated token set's write past every retry: it is sealed onto the item.
    stack = request.getfixturevalue("stack")
    key = stack.aws.client("kms").create_key(Description="rotation key")["KeyMetadata"]["Arn"]
    monkeypatch.setenv("QBO_ROTATION_KEY_ID", key)
    connected_and_due(stack)
    consented = runtime.services().vault.read(CONNECTION_ID)
    throttled = aws_refusing(monkeypatch).refuse(
        "secrets-manager.PutSecretValue", "ThrottlingException", "Rate exceeded"
    )

    assert refresh()["outcome"] == "refreshed"

    assert throttled.refused > 1, "botocore did not retry the write"
    vault = runtime.services().vault.read(CONNECTION_ID)
    assert vault.generation == consented.generation, "the refused write changed the vault"
    assert runtime.services().store.get(CONNECTION_ID).pending_rotation is not None, "the rotation was not sealed"
    return throttled


def event_history_refuses_a_record(request, monkeypatch) -> None:
    stack = request.getfixturevalue("stack")
    connected_and_due(stack)
    refusals = aws_refusing(monkeypatch)
    for operation in ("dynamodb.PutItem", "dynamodb.BatchWriteItem"):
        refusals.refuse(
            operation,
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded.",
            when=lambda body: body.get("TableName") == EVENTS_TABLE or EVENTS_TABLE in body.get("RequestItems", {}),
        )
    intuit_answers_token_requests_with(stack, 400, {"error": "invalid_grant"})
    assert refresh()["outcome"] == "needs_reauthorization"
    recorded = [e.detail_type for e in runtime.services().admin.events(CONNECTION_ID).events]
    assert "Connection Needs Reauthorization" not in recorded, "the refused record is in the history"


def eventbridge_refuses_an_event(request, monkeypatch) -> None:
    # PutEvents answers 200 and says in its body which entries it refused (and did not publish): moto never refuses.
    stack = request.getfixturevalue("stack")
    connected_and_due(stack)
    aws_refusing(monkeypatch).answer(
        "eventbridge.PutEvents", every_entry_failed("ThrottlingException", "Rate exceeded")
    )
    intuit_answers_token_requests_with(stack, 400, {"error": "invalid_grant"})
    assert refresh()["outcome"] == "needs_reauthorization"


def webhook_for_a_company_nobody_holds(request, monkeypatch) -> None:
    deployment: Deployment = request.getfixturevalue("deployment")
    deployment.post([cloudevent("1", realm="5550001")])
    assert deployment.consume(deployment.handed_off()) == {"batchItemFailures": []}


def signed_webhook_delivery_unreadable(request, monkeypatch) -> None:
    deployment: Deployment = request.getfixturevalue("deployment")
    assert deployment.post({"not": "a delivery"})["statusCode"] == 200


def signed_webhook_entries_unreadable(request, monkeypatch) -> None:
    deployment: Deployment = request.getfixturevalue("deployment")
    readable, unreadable = cloudevent("145"), {**cloudevent("146"), "intuitaccountid": None}
    assert deployment.post([readable, unreadable])["statusCode"] == 200


def usage_over_the_alarm_share(request, monkeypatch) -> None:
    stack = request.getfixturevalue("stack")
    monkeypatch.setenv("QBO_METERING_MONTHLY_ALLOWANCE", "10")
    runtime.reset_services()
    from qbo_connect.domain.metering import Flush, Tally, UsageKey, month_of

    services = runtime.services()
    key = UsageKey("ABproductionapp0123456", "qbc-prod", intuit.Environment.PRODUCTION)
    services.usage_ledger.add(Flush({(month_of(services.clock.now()), key): Tally(9, 0)}))
    assert stack.aws is not None  # the deployment the sweep reads
    sweep()


def usage_counts_refused(request, monkeypatch) -> None:
    stack = request.getfixturevalue("stack")
    stack.create_connection()
    assert stack.connect()["statusCode"] == 200
    aws_refusing(monkeypatch).refuse(
        "dynamodb.TransactWriteItems",
        "com.amazonaws.dynamodb.v20120810#AccessDeniedException",
        "User is not authorized to perform: dynamodb:UpdateItem",
    )
    answer = test_function.handler({"connection_id": CONNECTION_ID}, LambdaContext())
    assert answer["ok"] is True


CONDITIONS: dict[str, Callable[[Any, Any], Any]] = {
    "RefreshPermanentFailureAlarm": grant_revoked,
    "ConnectionsNeedingReauthorizationAlarm": grant_revoked_then_a_sweep,
    "RotationPendingAlarm": vault_refuses_the_rotated_token_set,
    "RefreshFailingRepeatedlyAlarm": intuit_unavailable,
    "ReauthorizationDueAlarm": grant_ends_within_30_days,
    "GrantsEndingSoonAlarm": grant_ends_within_30_days,
    "CompanyDataRefusedAlarm": company_subscription_lapsed,
    "EventsNotRecordedAlarm": event_history_refuses_a_record,
    "EventsNotPublishedAlarm": eventbridge_refuses_an_event,
    "WebhookEventsUnmatchedAlarm": webhook_for_a_company_nobody_holds,
    "WebhookEntriesDroppedAlarm": signed_webhook_delivery_unreadable,
    "MeteringAllowanceAlarm": usage_over_the_alarm_share,
    "MeteringFlushFailedAlarm": usage_counts_refused,
}
# Conditions a second way: each one alone must raise the alarm.
MORE_CONDITIONS = [
    ("WebhookEntriesDroppedAlarm", signed_webhook_entries_unreadable),
    ("RefreshFailingRepeatedlyAlarm", intuit_throttles),
    ("CompanyDataRefusedAlarm", company_read_only_in_company_info),
    ("GrantsEndingSoonAlarm", grant_nobody_refreshes_ends_within_30_days),
    ("ReauthorizationDueAlarm", grant_nobody_refreshes_ends_within_30_days),
]


@pytest.fixture
def template_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Powertools' variables exactly as the template's Globals give them to every function."""
    for name, value in GLOBALS.items():
        if name.startswith("POWERTOOLS_") and isinstance(value, str):
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # importing the CLI turns them off process-wide
    from qbo_connect.observability import metrics

    metrics.clear_metrics()
    yield
    metrics.clear_metrics()


# Alarms on something that stops happening: the condition is silence, no metric at all.
SILENCE = {"RefreshScheduleSilentAlarm"}


def test_every_alarm_on_the_services_metrics_has_a_condition_shown_to_raise_it():
    assert {name for name, alarm in ALARMS.items() if on_service_metrics(alarm)} == set(CONDITIONS) | SILENCE


@pytest.mark.parametrize(
    ("alarm_name", "condition"),
    [*sorted(CONDITIONS.items()), *MORE_CONDITIONS],
    ids=[*sorted(CONDITIONS), *(f"{name}-{c.__name__}" for name, c in MORE_CONDITIONS)],
)
def test_the_alarm_fires_on_what_the_functions_print_when_its_condition_happens(
    alarm_name, condition, request, monkeypatch, log_scan, template_environment
):
    printed = Printed(log_scan)
    alarm = ALARMS[alarm_name]

    condition(request, monkeypatch)

    datapoints = printed.datapoints()
    assert alarm_value(alarm, datapoints) is not None, (
        f"{alarm_name} watches {watched_metrics(alarm)}, but nothing printed matches it: "
        f"{sorted({(p.namespace, p.name, tuple(sorted(p.dimensions))) for p in datapoints})}"
    )
    assert fires(alarm, datapoints)


def test_the_rotation_behind_rotation_pending_reaches_the_vault_with_the_next_sweep(
    stack, request, monkeypatch, log_scan, template_environment
):
    # What the alarm tells whoever watches it: the rotated token set is safe on the item, not lost, and the next
    # refresh once Secrets Manager takes writes again puts it in the vault and refreshes with it.
    throttled = vault_refuses_the_rotated_token_set(request, monkeypatch)
    rotated = stack.token_endpoint.issued[-1]["refresh_token"]
    throttled.stop()

    sweep()

    sent_the_rotated_token = stack.token_endpoint.forms[-1].get("refresh_token") == rotated
    assert sent_the_rotated_token, "the sweep refreshed with another refresh token than the sealed rotation's"
    connection = runtime.services().store.get(CONNECTION_ID)
    assert connection.pending_rotation is None and connection.status.value == "connected"
    vault = runtime.services().vault.read(CONNECTION_ID)
    vault_has_the_newest = vault.token_set.refresh_token == stack.token_endpoint.issued[-1]["refresh_token"]
    assert vault_has_the_newest and vault.generation == connection.secret_generation


def test_nothing_happening_raises_none_of_them(stack, log_scan, template_environment, monkeypatch):
    # The healthy path prints metrics too (a refresh, a sweep): none of them may raise an alarm.
    printed = Printed(log_scan)
    connected_and_due(stack)
    assert refresh()["outcome"] == "refreshed"
    sweep()

    datapoints = printed.datapoints()
    assert datapoints, "the functions printed no metric at all"
    raised = [name for name, alarm in ALARMS.items() if on_service_metrics(alarm) and fires(alarm, datapoints)]
    assert raised == []


def test_an_alarm_fires_when_the_refresh_schedule_stops_and_each_sweep_keeps_it_quiet(
    stack, log_scan, template_environment
):
    # Scheduler disabled, the schedule deleted, invocations throttled for hours: no sweep prints anything,
    # tokens stop being refreshed, and no alarm that counts failures can see it.
    printed = Printed(log_scan)
    stack.create_connection()
    sweep()
    one_sweep = printed.datapoints()

    silent = [name for name, alarm in ALARMS.items() if on_service_metrics(alarm) and fires(alarm, [])]
    assert silent == sorted(SILENCE)
    assert not [name for name in silent if fires(ALARMS[name], one_sweep)]
    assert all(ALARMS[name].get("AlarmActions") for name in silent)


def test_one_transient_refresh_failure_that_the_next_sweep_repairs_raises_no_alarm(
    stack, log_scan, template_environment, monkeypatch
):
    # Intuit's blips are routine: one failed run, then a refresh, needs nobody.
    printed = Printed(log_scan)
    connected_and_due(stack)
    monkeypatch.setattr("qbo_connect.domain.lifecycle.random.uniform", lambda low, high: 0.0)
    token_endpoint = stack.token_endpoint
    intuit_answers_token_requests_with(stack, 503, {"Fault": {"Error": [{"Message": "Service Unavailable"}]}})
    assert refresh()["outcome"] == "transient_failure"
    stack.http.remove(responses.POST, intuit.TOKEN_URL)
    stack.http.add_callback(responses.POST, intuit.TOKEN_URL, callback=token_endpoint)
    assert refresh()["outcome"] == "recovered"
    sweep()

    datapoints = printed.datapoints()
    raised = [name for name, alarm in ALARMS.items() if on_service_metrics(alarm) and fires(alarm, datapoints)]
    assert raised == []
