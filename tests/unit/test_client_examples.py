"""The worked examples: the Step Functions definition (run through a small JSONPath-mode interpreter, to show
the secret never travels past its check), their opt-in, least-privilege template resources, and the docs'
copy-paste code being the example that runs."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.domain.token_set import TokenSet
from qbo_local.template import Tag, function_properties, load_template

ROOT = Path(__file__).resolve().parents[2]
ASL_PATH = ROOT / "examples/statemachines/test_connection.asl.json"
ASL = json.loads(ASL_PATH.read_text())
REQUEST_SCHEMA = json.loads((ROOT / "docs/schemas/test-function.request.schema.json").read_text())
EXAMPLE_RESOURCES = {
    "ListCustomersExampleFunction",
    "ListCustomersExampleFunctionLogGroup",
    "TestConnectionExampleStateMachine",
    "TestConnectionExampleStateMachineLogGroup",
}
ONE_SECRET_ARN = (
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
    "qbo-connect/${AWS::StackName}/connections/${ExampleConnectionId}-??????"
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(ROOT / "template.yaml")


# --- a small interpreter for the JSONPath subset the definition uses ---------------------------------
class Failed(Exception):
    def __init__(self, error: str, cause: str) -> None:
        super().__init__(error)
        self.error, self.cause = error, cause


class PathNotFound(Exception):
    pass


def read(data: Any, path: str) -> Any:
    assert re.fullmatch(r"\$(\.[A-Za-z_][A-Za-z0-9_]*)*", path), f"unsupported JSONPath {path}"
    for part in path.split(".")[1:]:
        if not isinstance(data, dict) or part not in data:
            raise PathNotFound(path)
        data = data[part]
    return data


def evaluate(expression: str, data: Any) -> Any:
    intrinsic = re.fullmatch(r"States\.StringToJson\((\$[^)]*)\)", expression)
    if intrinsic:
        return json.loads(read(data, intrinsic.group(1)))
    assert not expression.startswith("States."), f"unsupported intrinsic {expression}"
    return read(data, expression)


def shape(template: Any, data: Any) -> Any:
    """Parameters / ResultSelector: keys ending in .$ are paths or intrinsics, everything else is literal."""
    if isinstance(template, dict):
        return {
            (k[:-2] if k.endswith(".$") else k): (evaluate(v, data) if k.endswith(".$") else shape(v, data))
            for k, v in template.items()
        }
    return copy.deepcopy(template)


def place(data: Any, result_path: str, result: Any) -> Any:
    if result_path == "$":
        return result
    assert re.fullmatch(r"\$\.[A-Za-z_][A-Za-z0-9_]*", result_path), f"unsupported ResultPath {result_path}"
    return {**data, result_path[2:]: result}


def matches(rule: dict[str, Any], data: Any) -> bool:
    if "And" in rule:
        return all(matches(r, data) for r in rule["And"])
    variable = rule["Variable"]
    if "IsPresent" in rule:
        try:
            read(data, variable)
        except PathNotFound:
            return not rule["IsPresent"]
        return rule["IsPresent"]
    value = read(data, variable)
    if "IsNull" in rule:
        return (value is None) == rule["IsNull"]
    if "BooleanEquals" in rule:
        return value is rule["BooleanEquals"]
    raise AssertionError(f"unsupported Choice rule {rule}")


Task = Callable[[str, Any], Any]


def execute(
    definition: dict[str, Any], execution_input: Any, task: Task, trace: list[tuple[str, Any]] | None = None
) -> tuple[Any, list[tuple[str, Any]]]:
    """Run the definition; returns the execution's output and every state's output, in order (also kept in
    `trace` when given, so a failed execution's states can be looked at too)."""
    states, name, data = definition["States"], definition["StartAt"], execution_input
    trace = [] if trace is None else trace
    while True:
        state = states[name]
        kind = state["Type"]
        if kind == "Fail":
            error = read(data, state["ErrorPath"]) if "ErrorPath" in state else state["Error"]
            cause = read(data, state["CausePath"]) if "CausePath" in state else state["Cause"]
            raise Failed(error, cause)
        if kind == "Choice":
            trace.append((name, data))
            name = next((c["Next"] for c in state["Choices"] if matches(c, data)), state["Default"])
            continue
        if kind == "Task":
            arguments = shape(state.get("Parameters", {}), data)
            try:
                result = task(state["Resource"], arguments)
            except Failed as error:
                catcher = next(c for c in state.get("Catch", []) if {"States.ALL", error.error} & set(c["ErrorEquals"]))
                data = place(data, catcher.get("ResultPath", "$"), {"Error": error.error, "Cause": error.cause})
                trace.append((name, data))
                name = catcher["Next"]
                continue
            if "ResultSelector" in state:
                result = shape(state["ResultSelector"], result)
            data = place(data, state.get("ResultPath", "$"), result)
        elif kind == "Pass":
            data = shape(state["Parameters"], data) if "Parameters" in state else data
        else:
            raise AssertionError(f"unsupported state type {kind}")
        trace.append((name, data))
        if state.get("End"):
            return data, trace
        name = state["Next"]


# --- the state machine --------------------------------------------------------------------------------
def secret_document(*, connected: bool) -> tuple[str, set[str]]:
    token_set = TokenSet(
        access_token="eyJ-access-token-in-the-secret",
        refresh_token="AB11-refresh-token-in-the-secret",
        expires_at=1_795_880_000,
        refresh_token_expires_at=1_804_600_000,
        scopes=("com.intuit.quickbooks.accounting",),
        obtained_at=1_795_876_400,
    )
    secret = ConnectionSecret(
        connection_id="demo",
        client_id="ABclientid",
        base_url="https://sandbox-quickbooks.api.intuit.com",
        client_secret="client-secret-in-the-secret",
        token_set=token_set if connected else None,
        realm_id="9341453050000001",
        generation=7,
    )
    return secret.to_json(), {
        "eyJ-access-token-in-the-secret",
        "AB11-refresh-token-in-the-secret",
        "client-secret-in-the-secret",
    }


def fake_aws(secret_string: str | None, answer: dict[str, Any]) -> tuple[Task, list[Any]]:
    calls: list[Any] = []

    def task(resource: str, arguments: Any) -> Any:
        calls.append((resource, arguments))
        if resource == "arn:aws:states:::aws-sdk:secretsmanager:getSecretValue":
            assert arguments == {"SecretId": "${ConnectionSecretId}"}
            if secret_string is None:
                raise Failed("SecretsManager.ResourceNotFoundException", "Secrets Manager can't find the secret")
            return {"ARN": "arn:...", "Name": "qbo-connect/x/connections/demo", "SecretString": secret_string}
        if resource == "arn:aws:states:::lambda:invoke":
            assert arguments["FunctionName"] == "${TestFunctionArn}"
            return {"StatusCode": 200, "ExecutedVersion": "$LATEST", "Payload": answer}
        raise AssertionError(resource)

    return task, calls


OK_ANSWER = {
    "ok": True,
    "connection_id": "demo",
    "name": "demo",
    "environment": "sandbox",
    "realm_id": "9341453050000001",
    "company_name": "Sandbox Company_US_1",
    "latency_ms": 120,
    "tested_at": 1_795_876_500,
    "checks": {"company_info": {"ok": True, "message": "company 'Sandbox Company_US_1'"}},
}


def leaks(value: Any, secrets: set[str]) -> bool:
    text = json.dumps(value)
    return any(secret in text for secret in secrets)


def test_a_connected_connection_is_tested_deeply_and_no_secret_goes_past_the_check():
    secret_string, secrets = secret_document(connected=True)
    task, calls = fake_aws(secret_string, OK_ANSWER)
    output, trace = execute(ASL, {}, task)

    assert output == {
        "ok": True,
        "connection_id": "demo",
        "realm_id": "9341453050000001",
        "company_name": "Sandbox Company_US_1",
        "checks": OK_ANSWER["checks"],
        "access_token_expires_at": 1_795_880_000,
    }
    assert [name for name, _ in trace if leaks(_, secrets)] == ["ReadConnectionSecret", "HasTokenSet"]
    ((_, invoke),) = [c for c in calls if c[0].endswith("lambda:invoke")]
    assert invoke["Payload"] == {"connection_id": "demo", "deep": True}
    assert Draft202012Validator(REQUEST_SCHEMA).is_valid(invoke["Payload"])


def test_a_failed_test_fails_the_execution_with_the_documented_code_and_no_secret():
    secret_string, secrets = secret_document(connected=True)
    answer = {
        "ok": False,
        "connection_id": "demo",
        "tested_at": 1,
        "error": {"code": "needs_reauthorization", "message": "reconnect", "next_step": "...", "intuit_tid": None},
    }
    task, _ = fake_aws(secret_string, answer)
    trace: list[tuple[str, Any]] = []
    with pytest.raises(Failed) as failed:
        execute(ASL, {}, task, trace)
    assert (failed.value.error, failed.value.cause) == ("needs_reauthorization", "reconnect")
    assert [name for name, _ in trace][-1] == "TestPassed"
    assert not leaks(trace[-1], secrets)  # the failing state's input


def test_a_connection_without_a_token_set_fails_as_not_connected_without_invoking_the_test():
    secret_string, secrets = secret_document(connected=False)
    task, calls = fake_aws(secret_string, OK_ANSWER)
    trace: list[tuple[str, Any]] = []
    with pytest.raises(Failed) as failed:
        execute(ASL, {}, task, trace)
    assert failed.value.error == "not_connected" and "authorize-link" in failed.value.cause
    assert [c[0] for c in calls] == ["arn:aws:states:::aws-sdk:secretsmanager:getSecretValue"]
    assert [name for name, _ in trace] == ["ReadConnectionSecret", "HasTokenSet", "DropSecretNotConnected"]
    assert not leaks(trace[-1], secrets)


def test_an_unreadable_secret_fails_with_what_to_check():
    task, _ = fake_aws(None, OK_ANSWER)
    with pytest.raises(Failed) as failed:
        execute(ASL, {"connection_id": "demo"}, task)
    assert failed.value.error == "secret_unreadable" and "GetSecretValue" in failed.value.cause


def test_every_transition_leads_to_a_state_and_every_state_is_reachable():
    states = ASL["States"]
    targets = {ASL["StartAt"]}
    for state in states.values():
        targets |= {state[k] for k in ("Next", "Default") if k in state}
        targets |= {c["Next"] for c in state.get("Choices", []) + state.get("Catch", [])}
    assert targets == set(states)
    for name, state in states.items():
        ends = state["Type"] in {"Fail", "Succeed"} or state.get("End") is True
        assert ends != ("Next" in state or state["Type"] == "Choice"), name


# --- the template ----------------------------------------------------------------------------------------
def test_the_examples_are_deployed_only_when_asked(template):
    conditional = {name for name, r in template["Resources"].items() if r.get("Condition") == "ShouldDeployExamples"}
    assert conditional == EXAMPLE_RESOURCES
    outputs = {name for name, o in template["Outputs"].items() if o.get("Condition") == "ShouldDeployExamples"}
    assert outputs == {"ListCustomersExampleFunctionName", "TestConnectionExampleStateMachineArn"}
    assert template["Parameters"]["DeployExamples"]["Default"] == "false"


def test_the_state_machine_uses_the_definition_in_the_repository_and_fills_every_placeholder(template):
    properties = template["Resources"]["TestConnectionExampleStateMachine"]["Properties"]
    assert properties["DefinitionUri"] == "examples/statemachines/test_connection.asl.json"
    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL_PATH.read_text()))
    assert placeholders == set(properties["DefinitionSubstitutions"]) == {"ConnectionSecretId", "TestFunctionArn"}
    assert properties["DefinitionSubstitutions"]["TestFunctionArn"] == Tag("GetAtt", "TestFunction.Arn")
    # Express, and a log without execution data: the secret the first state reads is stored nowhere.
    assert properties["Type"] == "EXPRESS"
    assert properties["Logging"]["IncludeExecutionData"] is False


def _statements(policies: list[Any]) -> list[dict[str, Any]]:
    return [s for p in policies if isinstance(p, dict) for s in p.get("Statement", [])]


def test_the_examples_reach_one_connections_secret_and_item_only(template):
    function = function_properties(template, "ListCustomersExampleFunction")
    assert function["CodeUri"] == "examples/list_customers/" and function["Handler"] == "app.handler"
    assert Tag("Ref", "SharedLayer") in function["Layers"]
    statements = {s["Sid"]: s for s in _statements(function["Policies"])}
    assert statements["OneConnectionSecret"]["Resource"] == Tag("Sub", ONE_SECRET_ARN)
    assert set(statements["OneConnectionSecret"]["Action"]) == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
    }
    item = statements["OneConnectionItem"]
    assert set(item["Action"]) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert item["Condition"] == {
        "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [Tag("Sub", "connection#${ExampleConnectionId}")]}
    }
    # Its API call counts (metering): the app's month and this connection's items, nothing else.
    counts = statements["ApiCallCounts"]
    assert counts["Action"] == "dynamodb:UpdateItem"
    assert counts["Condition"] == {
        "ForAllValues:StringLike": {
            "dynamodb:LeadingKeys": ["usage#*#app#*", Tag("Sub", "usage#*#connection#${ExampleConnectionId}")]
        }
    }

    machine = template["Resources"]["TestConnectionExampleStateMachine"]["Properties"]["Policies"]
    secret = next(s for s in _statements(machine) if s["Sid"] == "OneConnectionSecret")
    assert (secret["Action"], secret["Resource"]) == ("secretsmanager:GetSecretValue", Tag("Sub", ONE_SECRET_ARN))
    assert {"LambdaInvokePolicy": {"FunctionName": Tag("Ref", "TestFunction")}} in machine


# --- the docs -------------------------------------------------------------------------------------------
def test_the_python_example_in_the_docs_is_the_example_that_runs():
    docs = (ROOT / "docs/workflows.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", docs, re.DOTALL)
    assert (ROOT / "examples/list_customers/app.py").read_text() in blocks


def test_the_state_machine_in_the_docs_is_the_one_deployed():
    docs = (ROOT / "docs/workflows.md").read_text()
    blocks = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", docs, re.DOTALL) if '"StartAt"' in block]
    assert blocks == [ASL]


def test_the_sample_event_names_a_connection():
    event = json.loads((ROOT / "events/example-list-customers.json").read_text())
    assert Draft202012Validator(REQUEST_SCHEMA).is_valid(event)


def test_a_workflow_set_up_as_documented_queues_the_check_after_a_refresh_answer_lost_in_flight(template):
    """README, the token lifecycle: after an unknown outcome the service "checks once and reports at once if
    the grant is gone", and the Refresh Failed event says so. The check is a delayed message on the refresh
    queue, sent by whoever refreshed. A Python workflow refreshes in its own process (an on-demand connection's
    usual case), but the deployed example and docs/workflows.md give it neither the queue's URL nor leave to
    send to it: the lifecycle queues nothing, and a grant that died with the lost answer is reported only at
    the next token request or the keep-alive, up to a day later."""
    function = function_properties(template, "ListCustomersExampleFunction")
    assert function["Environment"]["Variables"].get("QBO_REFRESH_QUEUE_URL") == Tag("Ref", "RefreshQueue")
    assert {"SQSSendMessagePolicy": {"QueueName": Tag("GetAtt", "RefreshQueue.QueueName")}} in function["Policies"]

    docs = (ROOT / "docs/workflows.md").read_text()
    assert "`QBO_REFRESH_QUEUE_URL` = stack output `RefreshQueueUrl`" in docs
    (policy,) = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", docs, re.DOTALL) if '"OneConnectionItem"' in b]
    queue = [s for s in policy["Statement"] if s.get("Action") == "sqs:SendMessage"]
    assert queue and queue[0]["Resource"] == "arn:aws:sqs:REGION:ACCOUNT:QUEUE", "no leave to queue the check"


def test_a_workflow_set_up_as_documented_can_keep_a_rotation_secrets_manager_refused_and_records_its_events(
    template,
):
    """README, the token lifecycle: "If Secrets Manager still refuses (outage, throttling, version quota), the
    token set is sealed with KMS onto the connection item"; README, Refresh policies: on-demand workflows that
    start together make Secrets Manager throttle, and then "the vault retries within its deadline, then seals the
    rotation onto the item". A Python workflow refreshes in its own process, so it must be able to seal: without
    the rotation key (QBO_ROTATION_KEY_ID and kms:Encrypt on it) the rotated token Intuit just issued exists only in
    its memory and the grant is lost. And every event it publishes is "also kept in its connection's history"
    only with the history table (QBO_EVENTS_TABLE_NAME and leave to write it). The deployed example has all four;
    docs/workflows.md, which says to copy it into a new Lambda, named none, and no stack output gave the key."""
    function = function_properties(template, "ListCustomersExampleFunction")
    variables = function["Environment"]["Variables"]
    rotation_key = Tag("If", ["HasKmsKey", Tag("Ref", "KmsKeyArn"), Tag("GetAtt", "RotationKey.Arn")])
    assert variables["QBO_ROTATION_KEY_ID"] == rotation_key
    assert variables["QBO_EVENTS_TABLE_NAME"] == Tag("Ref", "ConnectionEventsTable")
    assert Tag("Ref", "RotationKeyUsePolicy") in function["Policies"]
    assert Tag("Ref", "ConnectionEventsRecordPolicy") in function["Policies"]
    assert template["Outputs"]["RotationKeyArn"]["Value"] == rotation_key

    docs = (ROOT / "docs/workflows.md").read_text()
    assert "`QBO_ROTATION_KEY_ID` = stack output `RotationKeyArn`" in docs
    assert "`QBO_EVENTS_TABLE_NAME` = stack output `EventsTableName`" in docs
    (policy,) = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", docs, re.DOTALL) if '"OneConnectionItem"' in b]
    actions = {
        action: statement["Resource"]
        for statement in policy["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert actions.get("kms:Encrypt") == actions.get("kms:Decrypt") == "arn:aws:kms:REGION:ACCOUNT:key/ROTATION_KEY_ID"
    assert actions.get("dynamodb:PutItem") == "arn:aws:dynamodb:REGION:ACCOUNT:table/EVENTS_TABLE"
