"""What a user of the deployed stack would notice if template.yaml broke it.

Read with the same loader the local stack routes requests with (qbo_local.template).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from qbo_connect.adapters.dynamodb_store import TABLE_SCHEMA
from qbo_connect.domain.app_company_leases import WAIT_SECONDS as APP_COMPANY_WAIT_SECONDS
from qbo_connect.domain.authorization import CONNECTION_LEASE_WAIT_SECONDS
from qbo_connect.domain.lifecycle import RefreshTimings
from qbo_connect.invocation import ANSWER_SECONDS
from qbo_connect.settings import AFTER_VAULT_DEADLINE_SECONDS, Settings
from qbo_local.template import Tag, function_properties, functions, http_api_authorizers, http_routes, load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"

FUNCTIONS = {
    "AuthorizeFunction": "functions/authorize/",
    "CallbackFunction": "functions/callback/",
    "RefreshFunction": "functions/refresh/",
    "TestFunction": "functions/test/",
    "TokenFunction": "functions/token/",
    "AdminFunction": "functions/admin/",
    "ConsoleFunction": "functions/console/",
}
# What Intuit calls or sends people to: webhooks (receiver and publisher) and the app's pages.
INTUIT_APP_FUNCTIONS = {
    "WebhookFunction": "functions/webhooks/",
    "WebhookEventsFunction": "functions/webhook_events/",
    "AppPagesFunction": "functions/app_pages/",
}
# Deployed only with DeployExamples=true (tests/unit/test_client_examples.py checks them).
EXAMPLE_FUNCTIONS = {"ListCustomersExampleFunction": "examples/list_customers/"}

# Every QBO_ variable the code reads: settings.py is the one place that names them.
SETTINGS_SOURCE = (ROOT / "layers/qbo_connect/qbo_connect/settings.py").read_text()
QBO_VARIABLES = set(re.findall(r'"(QBO_[A-Z_]+)"', SETTINGS_SOURCE))

# The table's keys, exactly; the Python code creates the identical table locally.
EXPECTED_ATTRIBUTES = {
    "pk": "S",
    "refresh_index": "S",
    "access_token_expires_at": "N",
    "listing": "S",
    "name": "S",
    "status": "S",
    "realm_id": "S",
    "client_id": "S",
}
EXPECTED_INDEXES = {
    "refresh-due": ([("refresh_index", "HASH"), ("access_token_expires_at", "RANGE")], "KEYS_ONLY"),
    "by-name": ([("listing", "HASH"), ("name", "RANGE")], "ALL"),
    "by-status": ([("status", "HASH")], "KEYS_ONLY"),
    "by-realm": ([("realm_id", "HASH"), ("client_id", "RANGE")], "ALL"),
}

# The only SAM policy templates the functions may use: each is scoped to one resource.
ALLOWED_POLICY_TEMPLATES = {
    "AWSSecretsManagerGetSecretValuePolicy",
    "SQSSendMessagePolicy",
    "EventBridgePutEventsPolicy",
}
CONNECTION_SECRETS_ARN = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:qbo-connect/${AWS::StackName}/connections/*"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


def _events(template: dict[str, Any], function: str) -> dict[str, dict[str, Any]]:
    return function_properties(template, function).get("Events") or {}


def _walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, Tag):
        yield from _walk(value.value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def _statements(policies: Any) -> Iterator[dict[str, Any]]:
    for node in _walk(policies):
        if isinstance(node, dict) and "Effect" in node and "Action" in node:
            yield node


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- functions ------------------------------------------------------------------------------------
def test_the_functions_exist_with_their_code(template):
    assert set(functions(template)) == set(FUNCTIONS) | set(INTUIT_APP_FUNCTIONS) | set(EXAMPLE_FUNCTIONS)
    for name, code_uri in (FUNCTIONS | INTUIT_APP_FUNCTIONS | EXAMPLE_FUNCTIONS).items():
        properties = function_properties(template, name)
        assert properties["CodeUri"] == code_uri
        assert properties["Handler"] == "app.handler"
        assert (ROOT / code_uri / "app.py").is_file()


@pytest.mark.parametrize("name", sorted(FUNCTIONS | INTUIT_APP_FUNCTIONS))
def test_functions_run_python_3_12_or_newer_on_arm64_with_the_shared_layer(template, name):
    properties = function_properties(template, name)
    runtime = properties["Runtime"]
    assert runtime.startswith("python3.")
    assert int(runtime.removeprefix("python3.")) >= 12
    assert properties["Architectures"] == ["arm64"]
    assert properties["Layers"] == [Tag("Ref", "SharedLayer"), Tag("Ref", "AwsSdkLayer")]


@pytest.mark.parametrize(
    ("name", "requirements"), [("SharedLayer", "requirements.txt"), ("AwsSdkLayer", "requirements-sdk.txt")]
)
def test_the_layers_are_built_for_the_functions_runtime_and_architecture(template, name, requirements):
    layer = template["Resources"][name]
    runtime = template["Globals"]["Function"]["Runtime"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/qbo_connect/"
    assert layer["Properties"]["CompatibleRuntimes"] == [runtime]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    # Built by layers/qbo_connect/Makefile's build-<name> target from pinned arm64 wheels, for the runtime's Python.
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    layer_makefile = (ROOT / "layers/qbo_connect/Makefile").read_text()
    assert f"LAMBDA_PYTHON ?= {runtime.removeprefix('python')}" in layer_makefile
    target = layer_makefile.split(f"\nbuild-{name}:\n", 1)[1].split("\n\n", 1)[0]
    assert f"-r {requirements}" in target
    assert ("sdk-data" in target) == (name == "AwsSdkLayer")  # only the service's own SDK layer is trimmed


def test_the_layer_for_workflows_leaves_them_the_runtimes_whole_sdk(template):
    # Workflows attach SharedLayerArn alone: a botocore trimmed to the service's AWS services would break
    # their calls to any other service.
    shared = (ROOT / "layers/qbo_connect/requirements.txt").read_text()
    assert "boto3==" not in shared and "botocore==" not in shared
    assert "AwsSdkLayer" not in str(template["Outputs"]["SharedLayerArn"]["Value"])


def test_timeouts_fit_the_worst_case_of_each_function(template):
    settings = Settings(table_name="t")
    one_refresh = settings.refresh_call_deadline_seconds + settings.persist_seconds
    api_call = settings.connect_timeout_seconds + settings.read_timeout_seconds
    timeouts = {name: function_properties(template, name)["Timeout"] for name in FUNCTIONS}
    assert timeouts["AuthorizeFunction"] == 10  # no call to Intuit
    assert timeouts["RefreshFunction"] >= 2 * one_refresh  # a batch of ten is two rounds of worker threads
    assert timeouts["TestFunction"] >= one_refresh + api_call
    # The callback waits for the connection's lease and the app-company lease, exchanges the code only with its
    # exchange and persisting left (ConsentFlow.company_lease_seconds), then looks up the company name and who
    # consented: all of it within its timeout, so Lambda never stops it between the exchange and the store. That
    # is more than API Gateway's 30 s: the browser may get API Gateway's 503 while the grant is still stored.
    callback = function_properties(template, "CallbackFunction")
    env = callback["Environment"]["Variables"]
    lookup = settings.connect_timeout_seconds + float(env["QBO_READ_TIMEOUT_SECONDS"])
    steps = (
        CONNECTION_LEASE_WAIT_SECONDS
        + APP_COMPANY_WAIT_SECONDS
        + float(env["QBO_CONSENT_CALL_DEADLINE_SECONDS"])
        + float(env["QBO_VAULT_WRITE_DEADLINE_SECONDS"])
        + AFTER_VAULT_DEADLINE_SECONDS
        + 2 * lookup
        + ANSWER_SECONDS
    )
    assert steps < timeouts["CallbackFunction"] <= steps + 10, (steps, timeouts["CallbackFunction"])
    assert timeouts["ConsoleFunction"] == 5  # serves files
    # The admin API and the disconnect page answer through API Gateway (30 s): too short to see a refresh through
    # (Intuit's whole 120 s and persisting), so they hand every refresh to the refresh function, which has the time.
    to_see_a_refresh_through = RefreshTimings(
        call_deadline_seconds=settings.refresh_call_deadline_seconds, persist_seconds=settings.persist_seconds
    ).to_see_a_refresh_through
    for name in ("AdminFunction", "AppPagesFunction"):
        properties = function_properties(template, name)
        env = properties["Environment"]["Variables"]
        assert "QBO_REFRESH_CALL_DEADLINE_SECONDS" not in env, f"{name} would cut Intuit's time limit short"
        assert env["QBO_REFRESH_FUNCTION_NAME"] == Tag("Ref", "RefreshFunction"), name
        assert properties["Timeout"] == 30 < to_see_a_refresh_through, name
    # So do the test and token functions when waiting for another holder left them too little: the hand-off
    # target itself never needs one.
    for name in ("TestFunction", "TokenFunction"):
        env = function_properties(template, name)["Environment"]["Variables"]
        assert env["QBO_REFRESH_FUNCTION_NAME"] == Tag("Ref", "RefreshFunction"), name
    assert (
        "QBO_REFRESH_FUNCTION_NAME" not in function_properties(template, "RefreshFunction")["Environment"]["Variables"]
    )
    # A reset or delete from the console revokes at Intuit only while the revocation and storing its outcome fit in
    # what is left, so they must fit with time to spare for the reads and the lease before them.
    admin = function_properties(template, "AdminFunction")["Environment"]["Variables"]
    revocation_steps = float(admin["QBO_CONSENT_CALL_DEADLINE_SECONDS"]) + float(
        admin["QBO_VAULT_WRITE_DEADLINE_SECONDS"]
    )
    assert revocation_steps + AFTER_VAULT_DEADLINE_SECONDS + ANSWER_SECONDS + 2 < timeouts["AdminFunction"]


# --- the public API -------------------------------------------------------------------------------
def test_only_the_oauth_routes_intuits_webhook_the_apps_pages_and_the_console_files_are_public(template):
    routes = [(route.method, route.path, route.function) for route in http_routes(template) if not route.authorizer]
    assert routes == [
        ("GET", "/", "ConsoleFunction"),
        ("GET", "/connections/{connection_id}/authorize", "AuthorizeFunction"),
        ("GET", "/console/{file}", "ConsoleFunction"),
        ("GET", "/intuit/disconnect", "AppPagesFunction"),
        ("GET", "/intuit/launch", "AppPagesFunction"),
        ("GET", "/intuit/reconnect", "AppPagesFunction"),
        ("POST", "/intuit/webhooks", "WebhookFunction"),
        ("GET", "/oauth/callback", "CallbackFunction"),
    ]


def test_every_admin_route_needs_a_cognito_token_or_a_sigv4_signature(template):
    routes = [
        (r.method, r.path, r.function, r.authorizer) for r in http_routes(template) if r.function == "AdminFunction"
    ]
    assert routes == [
        ("ANY", "/admin/{proxy+}", "AdminFunction", "AdminJwt"),
        ("ANY", "/iam/admin/{proxy+}", "AdminFunction", "AWS_IAM"),
    ]
    assert not [r for r in http_routes(template) if "/admin" in r.path and r.function != "AdminFunction"]
    authorizers = http_api_authorizers(template)
    assert "AWS_IAM" in authorizers
    jwt = authorizers["AdminJwt"]
    assert jwt["IdentitySource"] == "$request.header.Authorization"
    # Only ID tokens of this deployment's pool, issued to the console's app client: not another pool's, not
    # another app client's of the same pool.
    issuer = jwt["JwtConfiguration"]["issuer"]
    assert issuer.name == "Sub" and issuer.value[0] == "https://cognito-idp.${AWS::Region}.amazonaws.com/${PoolId}"
    assert jwt["JwtConfiguration"]["audience"] == [Tag("Ref", "AdminConsoleClient")]


def test_the_public_webhook_function_can_read_only_the_verifier_tokens_and_send_to_its_queue(template):
    policies = function_properties(template, "WebhookFunction")["Policies"]
    statements = [s for p in policies if isinstance(p, dict) and "Statement" in p for s in p["Statement"]]
    assert [(s["Action"], s["Resource"].value) for s in statements] == [
        (
            "secretsmanager:GetSecretValue",
            "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
            "qbo-connect/${AWS::StackName}/webhook-verifiers-??????",
        )
    ]
    assert {"SQSSendMessagePolicy": {"QueueName": Tag("GetAtt", "WebhookQueue.QueueName")}} in policies
    assert not [
        p for p in policies if isinstance(p, dict) and {"EventBridgePutEventsPolicy", "DynamoDBCrudPolicy"} & set(p)
    ]


def test_no_other_way_in_over_http(template):
    for name in FUNCTIONS | INTUIT_APP_FUNCTIONS:
        properties = function_properties(template, name)
        assert "FunctionUrlConfig" not in properties
        for event in (properties.get("Events") or {}).values():
            assert event["Type"] in {"HttpApi", "ScheduleV2", "SQS"}
    api_types = {"AWS::Serverless::Api", "AWS::ApiGateway::RestApi", "AWS::Lambda::Url"}
    assert not [r for r in template["Resources"].values() if r["Type"] in api_types]


def test_nothing_in_the_template_may_invoke_the_admin_function_but_its_api_routes(template):
    # A direct invocation can forge API Gateway's event (any actor, the admin group): only the HTTP API may call it.
    text = TEMPLATE_PATH.read_text()
    granted = [
        policy["LambdaInvokePolicy"]["FunctionName"]
        for resource in template["Resources"].values()
        for policy in (resource.get("Properties", {}).get("Policies") or [])
        if isinstance(policy, dict) and "LambdaInvokePolicy" in policy
    ]
    assert {"Ref": "AdminFunction"} not in granted
    assert "AWS::Lambda::Permission" not in text
    # The one invocation the template grants: a refresh handed to the refresh function.
    invoked = [
        statement["Resource"]
        for resource in template["Resources"].values()
        for statement in _statements(resource.get("Properties", {}))
        if "lambda:InvokeFunction" in _as_list(statement.get("Action"))
    ]
    assert invoked == [Tag("GetAtt", "RefreshFunction.Arn")]
    assert text.count("lambda:InvokeFunction") == 1


def test_routes_give_the_local_stack_what_it_needs(template):
    for route in http_routes(template):
        assert (ROOT / route.code_uri / (route.handler.split(".")[0] + ".py")).is_file()


def test_access_log_keeps_oauth_codes_and_state_out(template):
    settings = template["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]
    fields = json.loads(settings["Format"])
    assert {"requestId", "ip", "routeKey", "status"} <= set(fields)
    values = " ".join(fields.values()).lower()
    for leak in ("querystring", "rawquery", "cookie", "header", "authorizer"):
        assert leak not in values


def test_api_is_throttled_and_fails_on_warnings(template):
    properties = template["Resources"]["HttpApi"]["Properties"]
    assert properties["FailOnWarnings"] is True
    assert properties["DefaultRouteSettings"] == {
        "ThrottlingBurstLimit": Tag("Ref", "ApiThrottleBurst"),
        "ThrottlingRateLimit": Tag("Ref", "ApiThrottleRate"),
    }


# --- refresh --------------------------------------------------------------------------------------
def test_schedule_sends_a_sweep(template):
    schedules = [e for e in _events(template, "RefreshFunction").values() if e["Type"] == "ScheduleV2"]
    assert len(schedules) == 1
    properties = schedules[0]["Properties"]
    # The Scheduler replaces its context attribute with the run's scheduled time (ISO 8601, UTC).
    assert json.loads(properties["Input"]) == {"action": "sweep", "scheduled_time": "<aws.scheduler.scheduled-time>"}
    assert properties["ScheduleExpression"] == Tag("Ref", "RefreshSchedule")
    assert "RetryPolicy" in properties and "DeadLetterConfig" in properties
    assert json.loads((ROOT / "events/refresh-sweep.json").read_text()).keys() == {"action", "scheduled_time"}


def test_refresh_queue_reports_batch_item_failures(template):
    queues = [e for e in _events(template, "RefreshFunction").values() if e["Type"] == "SQS"]
    assert len(queues) == 1
    properties = queues[0]["Properties"]
    assert properties["Queue"] == Tag("GetAtt", "RefreshQueue.Arn")
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["BatchSize"] == Tag("Ref", "RefreshBatchSize")
    # Lambda takes more than 10 records per batch from a standard queue only with a batching window.
    assert (
        template["Parameters"]["RefreshBatchSize"]["MaxValue"] <= 10
        or properties["MaximumBatchingWindowInSeconds"] >= 1
    )
    assert properties["ScalingConfig"] == {"MaximumConcurrency": Tag("Ref", "RefreshMaxConcurrency")}


def test_refresh_queue_outlasts_a_slow_batch_and_has_a_dead_letter_queue(template):
    queue = template["Resources"]["RefreshQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * function_properties(template, "RefreshFunction")["Timeout"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": Tag("GetAtt", "RefreshDeadLetterQueue.Arn"),
        "maxReceiveCount": 5,
    }


# --- storage --------------------------------------------------------------------------------------
def test_table_keys_and_indexes_are_exactly_the_contract(template):
    table = template["Resources"]["ConnectionsTable"]
    properties = table["Properties"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    attributes = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}
    assert attributes == EXPECTED_ATTRIBUTES
    assert len(properties["AttributeDefinitions"]) == len(EXPECTED_ATTRIBUTES)
    assert properties["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    indexes = {
        index["IndexName"]: (
            [(key["AttributeName"], key["KeyType"]) for key in index["KeySchema"]],
            index["Projection"]["ProjectionType"],
        )
        for index in properties["GlobalSecondaryIndexes"]
    }
    assert indexes == EXPECTED_INDEXES
    assert "LocalSecondaryIndexes" not in properties


def test_the_table_the_code_creates_locally_is_the_one_the_template_deploys(template):
    properties = template["Resources"]["ConnectionsTable"]["Properties"]
    assert sorted(map(str, TABLE_SCHEMA["AttributeDefinitions"])) == sorted(
        map(str, properties["AttributeDefinitions"])
    )
    assert TABLE_SCHEMA["KeySchema"] == properties["KeySchema"]
    assert TABLE_SCHEMA["BillingMode"] == properties["BillingMode"]
    deployed = {index["IndexName"]: index for index in properties["GlobalSecondaryIndexes"]}
    created = {index["IndexName"]: index for index in TABLE_SCHEMA["GlobalSecondaryIndexes"]}
    assert created == deployed


def test_the_event_history_table_is_the_one_the_code_creates_and_expires_its_records(template):
    from qbo_connect.adapters.dynamodb_event_history import EVENTS_TABLE_SCHEMA, TTL_ATTRIBUTE

    table = template["Resources"]["ConnectionEventsTable"]
    properties = table["Properties"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    for key in ("AttributeDefinitions", "KeySchema", "BillingMode"):
        assert properties[key] == EVENTS_TABLE_SCHEMA[key], key
    [index] = properties["GlobalSecondaryIndexes"]
    assert index == EVENTS_TABLE_SCHEMA["GlobalSecondaryIndexes"][0]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    # The connections table keeps its indexes: the history needs none there.
    assert len(template["Resources"]["ConnectionsTable"]["Properties"]["GlobalSecondaryIndexes"]) == len(
        EXPECTED_INDEXES
    )


def test_every_function_that_publishes_connection_events_may_record_them(template):
    for name in sorted(FUNCTIONS | INTUIT_APP_FUNCTIONS | EXAMPLE_FUNCTIONS):
        policies = function_properties(template, name).get("Policies") or []
        publishes = any(isinstance(p, dict) and "EventBridgePutEventsPolicy" in p for p in policies)
        records = Tag("Ref", "ConnectionEventsRecordPolicy") in policies
        # The webhook events function publishes entity changes only, which are not connection events.
        assert records == (publishes and name != "WebhookEventsFunction"), name
    readers = {
        name
        for name in FUNCTIONS | INTUIT_APP_FUNCTIONS
        if Tag("Ref", "ConnectionEventsReadPolicy") in (function_properties(template, name).get("Policies") or [])
    }
    assert readers == {"AdminFunction", "RefreshFunction"}  # the admin API lists; the sweep redelivers
    for policy in ("ConnectionEventsRecordPolicy", "ConnectionEventsReadPolicy"):
        for statement in _statements(template["Resources"][policy]["Properties"]["PolicyDocument"]):
            assert all("ConnectionEventsTable" in str(r) for r in _as_list(statement["Resource"]))


def test_only_the_administrators_group_may_sign_in_and_the_stack_creates_it_with_its_pool(template):
    from qbo_connect.settings import DEFAULT_ADMIN_GROUP

    assert template["Parameters"]["AdminGroupName"]["Default"] == DEFAULT_ADMIN_GROUP
    group = template["Resources"]["AdminGroup"]
    assert group["Type"] == "AWS::Cognito::UserPoolGroup" and group["Condition"] == "CreateAdminUserPool"
    assert group["Properties"]["UserPoolId"] == Tag("Ref", "AdminUserPool")
    assert group["Properties"]["GroupName"] == Tag("Ref", "AdminGroupName")
    variables = function_properties(template, "AdminFunction")["Environment"]["Variables"]
    assert variables["QBO_ADMIN_GROUP"] == Tag("Ref", "AdminGroupName")


def test_the_admin_function_asks_its_own_pool_about_people_and_may_only_read_them(template):
    # A token outlives its holder's removal: the admin API asks the pool (domain/administrators.py). Reading who
    # is enabled and in which group is all it needs of Cognito; it may change no one.
    properties = function_properties(template, "AdminFunction")
    pool = Tag("If", ["CreateAdminUserPool", Tag("Ref", "AdminUserPool"), Tag("Ref", "AdminUserPoolId")])
    assert properties["Environment"]["Variables"]["QBO_ADMIN_USER_POOL_ID"] == pool
    granted = [s for s in _statements(properties["Policies"]) if any("cognito" in a for a in _as_list(s["Action"]))]
    assert [sorted(_as_list(s["Action"])) for s in granted] == [
        ["cognito-idp:AdminGetUser", "cognito-idp:AdminListGroupsForUser"]
    ]
    (resource,) = _as_list(granted[0]["Resource"])
    assert resource.name == "Sub" and resource.value[0].endswith(":userpool/${PoolId}")
    assert resource.value[1] == {"PoolId": pool}


def test_administrators_sign_in_with_a_password_and_an_authenticator_apps_code_every_time(template):
    pool = template["Resources"]["AdminUserPool"]["Properties"]
    assert pool["MfaConfiguration"] == "ON"  # required, not OPTIONAL: a password alone never signs in
    assert pool["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]  # TOTP only: no SMS
    assert "SmsConfiguration" not in pool
    assert pool["AdminCreateUserConfig"] == {"AllowAdminCreateUserOnly": True}
    # The console tells the person each step's session lasts 3 minutes.
    assert template["Resources"]["AdminConsoleClient"]["Properties"]["AuthSessionValidity"] == 3


def test_the_console_signs_in_by_srp_only_so_the_password_never_leaves_the_browser(template):
    client = template["Resources"]["AdminConsoleClient"]["Properties"]
    assert client["ExplicitAuthFlows"] == ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
    assert client["GenerateSecret"] is False  # a page cannot keep a client secret


def test_table_expires_oauth_state_and_can_be_recovered(template):
    properties = template["Resources"]["ConnectionsTable"]["Properties"]
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "purge_at", "Enabled": True}
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert template["Parameters"]["TableDeletionProtection"]["Default"] == "true"


def test_signing_key_secret_is_generated_with_a_key_id(template):
    secret = template["Resources"]["SigningKeySecret"]["Properties"]
    assert secret["Name"] == Tag("Sub", "qbo-connect/${AWS::StackName}/signing-key")
    generate = secret["GenerateSecretString"]
    assert json.loads(generate["SecretStringTemplate"]) == {"kid": "k1"}
    assert generate["GenerateStringKey"] == "key"
    assert generate["PasswordLength"] >= 64


# --- least privilege ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(FUNCTIONS | INTUIT_APP_FUNCTIONS))
def test_function_permissions_are_scoped(template, name):
    policies = function_properties(template, name).get("Policies") or []
    for policy in policies:
        if isinstance(policy, str):
            pytest.fail(f"{name} attaches the managed policy {policy}: use scoped statements")
        if isinstance(policy, dict) and "Statement" not in policy:
            assert set(policy) <= ALLOWED_POLICY_TEMPLATES, f"{name}: unexpected policy template {policy}"
    for statement in _statements(policies):
        actions = [a.lower() for a in _as_list(statement["Action"])]
        resources = _as_list(statement.get("Resource"))
        assert statement["Effect"] == "Allow"
        for action in actions:
            service, _, verb = action.partition(":")
            assert "*" not in verb or service == "sqs", f"{name}: wildcard action {action}"
            assert verb not in {"scan", "deletetable"}, f"{name}: {action}"
            if name != "AdminFunction":  # creating and deleting connections is the admin API's job alone
                assert verb not in {"createsecret", "deletesecret"}, f"{name}: {action}"
        if any(a.startswith(("secretsmanager:", "dynamodb:", "kms:")) for a in actions):
            assert "*" not in resources, f"{name}: {actions} on every resource"
            assert all(isinstance(r, Tag) for r in resources), f"{name}: unscoped resource {resources}"


def _table_actions(template: dict[str, Any], name: str) -> dict[Any, set[str]]:
    """The DynamoDB actions a function may take, by resource."""
    granted: dict[Any, set[str]] = {}
    for statement in _statements(function_properties(template, name).get("Policies") or []):
        for action in _as_list(statement["Action"]):
            if action.startswith("dynamodb:"):
                for resource in _as_list(statement["Resource"]):
                    granted.setdefault(resource, set()).add(action)
    return granted


# The functions whose code takes the app-company lease (domain/app_company_leases.py): the callback (a consent), the
# admin API (a reset, a delete, an import). Taking, renewing and giving it back are conditional UpdateItems.
APP_COMPANY_LEASE_TAKERS = {
    "CallbackFunction": lambda services: services.consent.company_lease_seconds,
    "AdminFunction": lambda services: services.admin.import_lease_seconds,
}


@pytest.mark.parametrize("name", sorted(APP_COMPANY_LEASE_TAKERS))
def test_the_functions_that_store_a_grant_may_take_the_app_company_lease_and_hold_it_no_longer_than_they_run(
    template, name
):
    """A consent's or an import's lease ends within its function's timeout: an invocation Lambda stops frees it
    soon after (a revoker's outlasts it by Intuit's request time limit, by design: docs/intuit.md)."""
    from qbo_connect.runtime import build_services

    properties = function_properties(template, name)
    variables = (properties.get("Environment") or {}).get("Variables", {})
    # The function's own values; those the stack fills in (!Ref) are names and URLs, not timings.
    settings = Settings.from_environment(
        {"QBO_TABLE_NAME": "t"} | {k: v for k, v in variables.items() if isinstance(v, str)}
    )
    services = build_services(settings, session=boto3.Session(region_name="us-east-1"))

    assert APP_COMPANY_LEASE_TAKERS[name](services) <= properties["Timeout"]
    assert "dynamodb:UpdateItem" in _table_actions(template, name)[Tag("GetAtt", "ConnectionsTable.Arn")]


def test_the_callback_reaches_the_table_only_to_read_consume_its_state_update_connections_and_take_the_lease(template):
    assert _table_actions(template, "CallbackFunction") == {
        Tag("GetAtt", "ConnectionsTable.Arn"): {"dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:UpdateItem"},
        # A consent for the wrong company looks for the company's other connections before it revokes.
        Tag("Sub", "${ConnectionsTable.Arn}/index/by-realm"): {"dynamodb:Query"},
    }


def test_connection_secrets_are_reachable_only_under_this_stacks_prefix(template):
    access = {}
    for name in FUNCTIONS:
        for statement in _statements(function_properties(template, name).get("Policies") or []):
            actions = _as_list(statement["Action"])
            if any(a.startswith("secretsmanager:") for a in actions):
                assert _as_list(statement["Resource"]) == [Tag("Sub", CONNECTION_SECRETS_ARN)]
                access[name] = set(actions)
    assert "AuthorizeFunction" not in access  # it reads only the signing key
    assert access["CallbackFunction"] == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
    }
    assert access["RefreshFunction"] == access["CallbackFunction"]
    assert access["AdminFunction"] == access["CallbackFunction"] | {
        "secretsmanager:CreateSecret",
        "secretsmanager:DeleteSecret",
    }
    assert "ConsoleFunction" not in access


def test_authorize_reads_only_the_signing_key(template):
    policies = function_properties(template, "AuthorizeFunction")["Policies"]
    templates = [p for p in policies if isinstance(p, dict) and "AWSSecretsManagerGetSecretValuePolicy" in p]
    assert templates == [{"AWSSecretsManagerGetSecretValuePolicy": {"SecretArn": Tag("Ref", "SigningKeySecret")}}]


def test_kms_permissions_only_on_the_given_key(template):
    policy = template["Resources"]["KmsKeyUsePolicy"]
    assert policy["Condition"] == "HasKmsKey"
    for statement in _statements(policy["Properties"]["PolicyDocument"]):
        assert statement["Resource"] == Tag("Ref", "KmsKeyArn")
        assert set(_as_list(statement["Action"])) <= {"kms:Decrypt", "kms:GenerateDataKey"}


# --- configuration and outputs --------------------------------------------------------------------
def _environment_names(template: dict[str, Any]) -> set[str]:
    names = set()
    for node in _walk(template):
        if isinstance(node, dict) and isinstance(node.get("Environment"), dict):
            names |= set((node["Environment"].get("Variables") or {}).keys())
    return names


def test_every_qbo_variable_is_one_the_code_knows(template):
    qbo_names = {name for name in _environment_names(template) if name.startswith("QBO_")}
    assert qbo_names <= QBO_VARIABLES, qbo_names - QBO_VARIABLES
    assert "QBO_TABLE_NAME" in qbo_names


def test_only_the_functions_that_may_refresh_know_the_refresh_queue(template):
    # They queue the check after a refresh answer lost in flight (the sweep is the refresh function's own).
    may_refresh = {"RefreshFunction", "TestFunction", "TokenFunction", "AdminFunction"}
    for name in FUNCTIONS:
        variables = (function_properties(template, name).get("Environment") or {}).get("Variables") or {}
        assert ("QBO_REFRESH_QUEUE_URL" in variables) == (name in may_refresh), name


def test_functions_do_not_reference_the_api(template):
    # The API references the functions; a reference back would be a circular dependency.
    for name in FUNCTIONS:
        for node in _walk(function_properties(template, name)["Environment"]):
            assert not (isinstance(node, Tag) and "HttpApi" in str(node.value)), f"{name}: {node}"


def test_tokens_stay_out_of_traces_and_logs(template):
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"
    assert variables["POWERTOOLS_LOGGER_LOG_EVENT"] == "false"


def test_outputs_tell_users_where_to_point_intuit(template):
    outputs = template["Outputs"]
    assert {"ApiUrl", "CallbackUrl", "TableName", "SecretPrefix", "TestFunctionArn"} <= set(outputs)
    callback = outputs["CallbackUrl"]["Value"]
    assert isinstance(callback, Tag) and callback.name == "If"
    assert all(branch.value.endswith("/oauth/callback") for branch in callback.value[1:])


def test_signed_webhook_entries_the_receiver_drops_raise_an_alarm(template):
    # Intuit signed them, so they are changes Intuit will not send again: each one dropped is a change lost.
    from qbo_connect.webhook_runs import DROPPED_ENTRY_METRICS

    alarm = template["Resources"]["WebhookEntriesDroppedAlarm"]["Properties"]
    watched = {
        query["MetricStat"]["Metric"]["MetricName"]
        for query in alarm["Metrics"]
        if "MetricStat" in query and query["MetricStat"]["Metric"]["Namespace"] == "QboConnect"
    }
    assert watched == set(DROPPED_ENTRY_METRICS) and len(watched) == 2
    (expression,) = [query for query in alarm["Metrics"] if query.get("ReturnData", True) and "Expression" in query]
    assert all(query["Id"] in expression["Expression"] for query in alarm["Metrics"] if "MetricStat" in query)
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert alarm["TreatMissingData"] == "notBreaching"


def test_the_public_api_answering_server_errors_raises_an_alarm(template):
    # Intuit's webhook deliveries and the consent routes reach the functions through the HTTP API. A body
    # larger than Lambda takes (6 MB of event), a function's crash or timeout is answered 5xx by API Gateway
    # before or without any of the service's own metrics, and Intuit retries a failed delivery for ever
    # while holding back the app's later ones: only the API's own 5xx metric shows it.
    watching = [
        resource["Properties"]
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"].get("Namespace") == "AWS/ApiGateway"
        and resource["Properties"].get("MetricName") == "5xx"
    ]
    assert len(watching) == 1, "no alarm on the HTTP API's 5xx answers"
    (alarm,) = watching
    dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert dimensions["ApiId"] == Tag("Ref", "HttpApi")
    assert (alarm["Statistic"], alarm["Threshold"], alarm["ComparisonOperator"]) == (
        "Sum",
        1,
        "GreaterThanOrEqualToThreshold",
    )
    assert alarm["AlarmActions"] == Tag(
        "If", ["HasAlarmTopic", [Tag("Ref", "AlarmTopicArn")], Tag("Ref", "AWS::NoValue")]
    )


def test_the_metering_alarms_watch_the_metrics_the_code_emits_at_the_chosen_share(template):
    from qbo_connect.metering import ALLOWANCE_USED_METRIC, FLUSH_FAILED_METRIC

    resources = template["Resources"]
    allowance = resources["MeteringAllowanceAlarm"]["Properties"]
    flush = resources["MeteringFlushFailedAlarm"]["Properties"]
    assert (allowance["Namespace"], allowance["MetricName"]) == ("QboConnect", ALLOWANCE_USED_METRIC)
    assert allowance["Threshold"] == Tag("Ref", "MeteringAlarmPercent")
    assert allowance["Statistic"] == "Maximum" and allowance["TreatMissingData"] == "ignore"
    assert flush["MetricName"] == FLUSH_FAILED_METRIC
    for alarm in (allowance, flush):
        assert alarm["Dimensions"] == [{"Name": "service", "Value": "qbo-connect"}]
    parameters = template["Parameters"]
    assert parameters["MeteringMonthlyAllowance"]["Default"] == 500_000  # Intuit's Builder tier
    assert parameters["MeteringAlarmPercent"]["Default"] == 80
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["QBO_METERING_ALARM_PERCENT"] == Tag("Ref", "MeteringAlarmPercent")
    assert variables["QBO_METERING_FLUSH_SECONDS"] == "0"  # the service's own functions: each call at once
    example = function_properties(template, "ListCustomersExampleFunction")["Environment"]["Variables"]
    assert example["QBO_METERING_FLUSH_SECONDS"] == "60"  # a workflow: once a minute, and flush_usage()


def test_intuit_urls_are_not_repeated_in_the_template():
    # Intuit's real endpoints live in the Python code, in one place.
    assert "intuit.com" not in TEMPLATE_PATH.read_text(encoding="utf-8")


# --- sample events --------------------------------------------------------------------------------
@pytest.mark.parametrize("event_file", ["authorize.json", "callback.json", "webhooks.json"])
def test_sample_http_events_match_a_template_route(template, event_file):
    event = json.loads((ROOT / "events" / event_file).read_text())
    routes = {f"{route.method} {route.path}" for route in http_routes(template)}
    assert event["version"] == "2.0"
    assert event["routeKey"] in routes
    assert event["requestContext"]["routeKey"] == event["routeKey"]
    assert event["requestContext"]["stage"] == "$default"


def test_sample_queue_event_comes_from_sqs():
    event = json.loads((ROOT / "events/refresh-queue.json").read_text())
    assert len(event["Records"]) == 2
    for record in event["Records"]:
        assert record["eventSource"] == "aws:sqs"
        assert json.loads(record["body"]) == {"connection_id": "demo"}


def test_the_local_stack_creates_its_queues_with_the_templates_timings(template):
    from qbo_local.template import queue_attributes

    refresh = queue_attributes(template, "RefreshQueue")

    # A batch slower than SQS's default 30 s visibility would otherwise be handed to a second instance.
    assert int(refresh["VisibilityTimeout"]) >= 6 * function_properties(template, "RefreshFunction")["Timeout"]
    assert refresh["maxReceiveCount"] == str(
        template["Resources"]["RefreshQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"]
    )
    webhook_visibility = template["Resources"]["WebhookQueue"]["Properties"]["VisibilityTimeout"]
    assert queue_attributes(template, "WebhookQueue")["VisibilityTimeout"] == str(webhook_visibility)


def test_a_webhook_claim_outlives_its_publisher_and_goes_stale_before_sqs_hands_the_message_back(template):
    """A consumer stopped between claiming a change and publishing it leaves its claim pending. SQS hands
    its message to a consumer again a visibility timeout after it received it; a claim still fresh then
    counts the change as a duplicate, the message is deleted and the change is never published."""
    consumer = function_properties(template, "WebhookEventsFunction")
    source = next(iter(consumer["Events"].values()))["Properties"]
    visibility = template["Resources"]["WebhookQueue"]["Properties"]["VisibilityTimeout"]
    stale = Settings(table_name="connections").webhook_claim_stale_seconds
    latest_claim = consumer["Timeout"] + source["MaximumBatchingWindowInSeconds"]  # after SQS's receive
    assert consumer["Timeout"] < stale < visibility - latest_claim


def test_a_webhook_message_redriven_at_the_end_of_its_dead_letter_retention_publishes_nothing_twice(template):
    """A message the consumer failed five times (EventBridge took some of its changes, refused others) is
    parked in the dead-letter queue, whose retention counts from its first enqueue. The alarm's runbook
    says to redrive it and that duplicates are skipped: the claims of the changes it did publish must
    still be there when it comes back, on the last day of that retention plus a day to act."""
    dead_letters = template["Resources"]["WebhookDeadLetterQueue"]["Properties"]
    remembered = Settings(table_name="connections").webhook_dedup_seconds
    assert remembered >= int(dead_letters["MessageRetentionPeriod"]) + 86400


def test_only_the_refresh_function_divides_the_write_budget_among_its_instances(template):
    # A token, test or admin request writes at most once: holding it to 1/50 of the budget (0.8/s) made
    # a second cold request on a warm instance wait more than a second for nothing.
    dividing = [
        name
        for name in functions(template)
        if "QBO_WRITE_BUDGET_SHARES"
        in ((function_properties(template, name).get("Environment") or {}).get("Variables") or {})
    ]

    assert dividing == ["RefreshFunction"]
    assert "QBO_WRITE_BUDGET_SHARES" not in template["Globals"]["Function"]["Environment"]["Variables"]


# --- alarms against the schedule -------------------------------------------------------------------
def _resolved(template: dict[str, Any], value: Any, parameters: dict[str, Any]) -> Any:
    """`value` as CloudFormation would deploy it with these parameters (else their defaults): the
    intrinsics the alarms use (Ref, If, Equals, Or, Not, Select, Split)."""

    def parameter(name: str) -> Any:
        return parameters[name] if name in parameters else template["Parameters"][name].get("Default")

    def resolve(node: Any) -> Any:
        if isinstance(node, list):
            return [resolve(item) for item in node]
        if isinstance(node, dict):
            return {key: resolve(item) for key, item in node.items()}
        if not isinstance(node, Tag):
            return node
        if node.name == "Ref":
            return parameter(node.value) if node.value in template["Parameters"] else node
        if node.name == "If":
            condition, when_true, when_false = node.value
            return resolve(when_true if resolve(template["Conditions"][condition]) else when_false)
        if node.name == "Equals":
            left, right = resolve(node.value)
            return str(left) == str(right)
        if node.name == "Or":
            return any(resolve(node.value))
        if node.name == "Not":
            return not resolve(node.value)[0]
        if node.name == "Select":
            index, items = resolve(node.value)
            return items[int(index)]
        if node.name == "Split":
            separator, text = resolve(node.value)
            return str(text).split(separator)
        return node

    return resolve(value)


@pytest.mark.parametrize(
    ("schedule", "period_parameter", "sweep_seconds"),
    [
        ("rate(5 minutes)", 0, 300),
        ("rate(1 minute)", 0, 60),
        ("rate(12 minutes)", 0, 720),
        ("rate(1 hour)", 0, 3600),
        ("rate(5 minutes)", 300, 300),
        ("cron(0/15 * * * ? *)", 900, 900),
    ],
)
def test_the_alarm_on_a_silent_schedule_waits_two_sweep_periods_whatever_the_schedule(
    template, schedule, period_parameter, sweep_seconds
):
    # Shorter, and a sweep a little late raises it; much longer, and tokens the stopped schedule left
    # behind expire before anyone hears of it.
    parameters = {"RefreshSchedule": schedule, "RefreshPeriodSeconds": period_parameter}
    alarm = _resolved(template, template["Resources"]["RefreshScheduleSilentAlarm"]["Properties"], parameters)

    period, evaluated, to_alarm = (int(alarm[key]) for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"))
    assert to_alarm == evaluated, "every period of the window must be silent"
    assert period * evaluated == 2 * sweep_seconds
    assert period % 60 == 0 and period * evaluated <= (86_400 if period < 3600 else 604_800)  # what CloudWatch takes
    assert (alarm["Namespace"], alarm["MetricName"]) == ("QboConnect", "ConnectionsDue")  # printed by every sweep
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "SampleCount",
        "LessThanThreshold",
        1,
    )
    assert alarm["TreatMissingData"] == "breaching"


def test_the_alarm_on_a_silent_schedule_fires_before_the_tokens_it_left_due_expire(template):
    # A token not yet due at the last sweep expires more than a margin later: say so before that.
    alarm = _resolved(template, template["Resources"]["RefreshScheduleSilentAlarm"]["Properties"], {})
    margin = template["Parameters"]["RefreshMarginSeconds"]["Default"]

    assert int(alarm["Period"]) * int(alarm["DatapointsToAlarm"]) < margin


@pytest.mark.parametrize(
    ("schedule", "period_parameter", "sweep_seconds"),
    [("rate(5 minutes)", 0, 300), ("rate(20 minutes)", 0, 1200), ("cron(0/15 * * * ? *)", 900, 900)],
)
def test_the_alarm_on_repeated_refresh_failures_holds_between_sweeps_whatever_the_schedule(
    template, schedule, period_parameter, sweep_seconds
):
    # A connection failing every sweep adds one datapoint a sweep: a window shorter than two sweeps would
    # let the alarm clear and raise again between them, a notification pair each time.
    parameters = {"RefreshSchedule": schedule, "RefreshPeriodSeconds": period_parameter}
    alarm = _resolved(template, template["Resources"]["RefreshFailingRepeatedlyAlarm"]["Properties"], parameters)

    period, evaluated = int(alarm["Period"]), int(alarm["EvaluationPeriods"])
    assert period * evaluated == 2 * sweep_seconds
    assert int(alarm["DatapointsToAlarm"]) == 1
    assert (alarm["Statistic"], alarm["Threshold"], alarm["TreatMissingData"]) == ("Sum", 1, "notBreaching")


def _states(alarm: dict[str, Any], datapoints: dict[int, float], periods: int) -> list[str]:
    """The alarm's state after each of `periods` periods (single-metric alarm, one evaluation period), as
    CloudWatch judges a period: its datapoint against the threshold, or TreatMissingData when it has none."""
    compare = {
        "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
        "GreaterThanThreshold": lambda v, t: v > t,
        "LessThanThreshold": lambda v, t: v < t,
    }[alarm["ComparisonOperator"]]
    threshold = float(alarm["Threshold"])
    state, states = "INSUFFICIENT_DATA", []
    for index in range(periods):
        if index in datapoints:
            state = "ALARM" if compare(datapoints[index], threshold) else "OK"
        else:
            state = {"breaching": "ALARM", "notBreaching": "OK", "missing": "INSUFFICIENT_DATA"}.get(
                alarm["TreatMissingData"], state
            )
        states.append(state)
    return states


@pytest.mark.parametrize("schedule_minutes", [5, 20, 30])
@pytest.mark.parametrize("alarm_name", ["ConnectionsNeedingReauthorizationAlarm", "MeteringAllowanceAlarm"])
def test_a_level_every_sweep_reports_raises_its_alarm_once_and_a_stopped_schedule_does_not_clear_it(
    template, alarm_name, schedule_minutes
):
    # The sweep reports the level (connections a person must fix, the allowance used) every period: a
    # schedule slower than the alarm's period leaves periods without a datapoint in between, and a stopped
    # schedule leaves nothing. Neither is the level going down: no OK notification may say so.
    alarm = _resolved(template, template["Resources"][alarm_name]["Properties"], {})
    assert int(alarm["EvaluationPeriods"]) == 1 and alarm.get("DatapointsToAlarm", 1) == 1
    period = int(alarm["Period"])
    sweeps = range(0, 6 * 3600, schedule_minutes * 60)
    raised = {sweep_at // period: 100.0 for sweep_at in sweeps}  # far over any threshold
    states = _states(alarm, raised, max(raised) + 1 + 4 * 3600 // period)  # then the schedule stops for hours

    notifications = [
        state for before, state in zip(["INSUFFICIENT_DATA", *states], states, strict=False) if state != before
    ]
    assert notifications == ["ALARM"]
