"""The cold-start benchmark's own logic: what the floor replays, what is put back between samples, how the
table rows judge the floor (bench/cold_start.py, bench/report.py)."""

from __future__ import annotations

import base64
import os
import sysconfig

import pytest

from bench import cold_child, report
from bench.cold_start import (
    FLOOR,
    FLOOR_ON_LAYER_SDK,
    FUNCTION,
    NO_BYTECODE,
    TRACED,
    Run,
    _python_path,
    first_difference,
    floor_spec,
    layer_packages,
    services_in_order,
    summarize,
    touched_keys,
)

CODE = "emu-code-the-recorded-one"


def aws(service: str, operation: str, **params) -> dict:
    return {"kind": "aws", "service": service, "operation": operation, "params": params}


RECORDED = [
    {**aws("dynamodb", "GetItem", TableName="t", Key={"pk": {"S": "state#abc"}})},
    {**aws("secretsmanager", "GetSecretValue", SecretId="qbo/connections/c1")},
    {
        "kind": "http",
        "method": "POST",
        "url": "http://127.0.0.1:8181/oauth2/v1/tokens/bearer",
        "headers": {"Authorization": "Basic Y2xpZW50OnNlY3JldA=="},
        "body": f"grant_type=authorization_code&code={CODE}&redirect_uri=https%3A%2F%2Fapi%2Fcb",
        "status": 200,
    },
    {**aws("dynamodb", "UpdateItem", TableName="t", Key={"pk": {"S": "connection#c1"}})},
    {**aws("events", "PutEvents", Entries=[{"Source": "qbo-connect"}])},
]


def test_the_floor_makes_the_recorded_calls_with_each_spent_single_use_value_replaced_by_a_fresh_one():
    spec = floor_spec(RECORDED, [5], {"code": CODE}, {"code": "emu-code-fresh"})

    assert spec["services"] == ["dynamodb", "secretsmanager", "events"]
    assert spec["answers_after"] == [5]
    assert (
        spec["calls"][2]["body"]
        == "grant_type=authorization_code&code=emu-code-fresh&redirect_uri=https%3A%2F%2Fapi%2Fcb"
    )
    assert [c for i, c in enumerate(spec["calls"]) if i != 2] == [c for i, c in enumerate(RECORDED) if i != 2]


def test_a_single_use_value_the_recording_never_sent_is_refused_rather_than_replayed_spent():
    with pytest.raises(ValueError, match="never send the refresh_token"):
        floor_spec(RECORDED, [5], {"refresh_token": "rt-spent"}, {"refresh_token": "rt-fresh"})


def test_services_are_created_in_the_order_the_function_first_used_them():
    assert services_in_order(list(reversed(RECORDED))) == ["events", "dynamodb", "secretsmanager"]


def test_the_items_put_back_are_those_the_recorded_dynamodb_calls_name():
    calls = [
        *RECORDED,
        aws("dynamodb", "PutItem", TableName="t", Item={"pk": {"S": "state#new"}, "connection_id": {"S": "c1"}}),
        aws("dynamodb", "Query", TableName="t", KeyConditionExpression="#n0 = :v0"),
        aws(
            "dynamodb",
            "TransactWriteItems",
            TransactItems=[{"Put": {"TableName": "t", "Item": {"pk": {"S": "name#acme"}}}}],
        ),
        aws("secretsmanager", "PutSecretValue", SecretId="x", SecretString='{"pk": {"S": "not a table key"}}'),
    ]

    assert touched_keys(calls) == {"state#abc", "connection#c1", "state#new", "name#acme"}


def test_call_lists_part_where_an_operation_a_parameter_or_a_request_differs():
    assert first_difference(RECORDED, [dict(c) for c in RECORDED]) is None

    changed = [dict(c) for c in RECORDED]
    changed[3] = aws("dynamodb", "UpdateItem", TableName="t", Key={"pk": {"S": "connection#c2"}})
    assert first_difference(RECORDED, changed) == "call 4: params differs"

    changed = [dict(c) for c in RECORDED]
    changed[2] = {**changed[2], "headers": {}}
    assert first_difference(RECORDED, changed) == "call 3: headers differs"

    assert first_difference(RECORDED, RECORDED[:4]) == "5 calls expected, 4 made"


def test_recorded_parameters_keep_their_bytes_through_json():
    params = {"Item": {"sealed": {"B": b"\x00\xffciphertext"}}, "Tags": [{"Key": "k", "Value": "v"}], "N": 3}

    encoded = cold_child._encode(params)

    assert encoded["Item"]["sealed"]["B"] == {"__bytes__": base64.b64encode(b"\x00\xffciphertext").decode()}
    assert cold_child._decode(encoded) == params


def _run(first_request_ms: float, imported_ms: float = 100.0, cpu_ms: float = 300.0) -> Run:
    return Run(imported_ms=imported_ms, answered_ms=[first_request_ms], reports=[{}], cpu_ms=cpu_ms)


def test_figures_are_medians_of_each_kind_of_process():
    runs = {
        FUNCTION: [_run(500), _run(400), _run(900)],
        FLOOR: [_run(450, imported_ms=300), _run(420, imported_ms=280), _run(430, imported_ms=290)],
        TRACED: [_run(600)],
        NO_BYTECODE: [_run(700), _run(800)],
    }

    cold = summarize("test", runs, rounds=3)

    assert (cold.first_request_ms, cold.floor_ms, cold.floor_import_ms) == (500, 430, 290)
    assert (cold.detailed_tracing_ms, cold.without_bytecode_ms) == (600, 750)
    assert (cold.cpu_ms, cold.detailed_tracing_cpu_ms) == (300, 300)
    assert cold.ratio == pytest.approx(500 / 430) and cold.holds is False


def _cold(function: str, first_request_ms: float, floor_ms: float) -> dict:
    runs = {
        FUNCTION: [_run(first_request_ms, cpu_ms=300)],
        FLOOR: [_run(floor_ms)],
        TRACED: [_run(first_request_ms + 100, cpu_ms=340)],
        NO_BYTECODE: [_run(first_request_ms + 250, cpu_ms=520)],
    }
    return summarize(function, runs, rounds=1).as_json()


def test_a_first_request_holds_only_within_one_times_its_floor_and_the_variants_say_what_they_add():
    rows = report.cold_start_rows({"cold_start": [_cold("authorize", 400, 400), _cold("test", 451, 450)]})

    judged = {row.metric: (row.result, row.floor, row.holds) for row in rows}
    assert judged["Cold start: authorize, import and first request"] == (
        "400 ms = 1.00 x floor (400 ms)",
        "<= 1.0 x floor",
        True,
    )
    assert judged["Cold start: test, import and first request"][2] is False
    assert judged["Cold start: test, import only"][2] is None
    assert judged["Cold start: first request with DetailedTracing=true, added CPU"][0] == (
        "authorize +40 ms (wall +100 ms), test +40 ms (wall +100 ms)"
    )
    assert judged["Cold start: first request without layer bytecode, added CPU"][0] == (
        "authorize +220 ms (wall +250 ms), test +220 ms (wall +250 ms)"
    )


def test_instructions_are_reported_against_both_floors_when_counted_and_judge_nothing():
    instructions = {FUNCTION: 1283.0, FLOOR: 1236.0, FLOOR_ON_LAYER_SDK: 1046.0}
    counted = summarize("test", {FUNCTION: [_run(400)], FLOOR: [_run(450)]}, rounds=1, instructions=instructions)
    runs_with_the_layers_sdk = {FUNCTION: [_run(400)], FLOOR: [_run(450)], FLOOR_ON_LAYER_SDK: [_run(300, cpu_ms=250)]}

    rows = report.cold_start_rows({"cold_start": [counted.as_json(), _cold("authorize", 400, 400)]})

    judged = {row.metric: (row.result, row.holds) for row in rows}
    assert judged["Cold start: test, instructions (callgrind)"] == (
        "1,283 M = 1.04 x floor (1,236 M); the floor on the layer's SDK 1,046 M",
        None,
    )
    assert "Cold start: authorize, instructions (callgrind)" not in judged  # not counted: no row
    cold = summarize("test", runs_with_the_layers_sdk, rounds=1)
    assert (cold.floor_on_layer_sdk_ms, cold.floor_on_layer_sdk_cpu_ms) == (300, 250)
    assert cold.instruction_ratio is None


def test_each_function_is_invoked_with_the_timeout_the_template_gives_it():
    # A first request's context says how much of its invocation is left (the whole timeout): a function that
    # plans by it (the callback exchanges a code only with time to store the answer) behaves as in Lambda only
    # if that is the template's timeout, not a copy that went stale.
    from qbo_local.template import function_properties, load_template

    from bench.cold_world import ROOT, TIMEOUT_SECONDS

    template = load_template(ROOT / "template.yaml")
    for function, seconds in TIMEOUT_SECONDS.items():
        assert seconds == function_properties(template, f"{function.capitalize()}Function")["Timeout"], function


def test_a_function_process_imports_what_its_layers_ship_and_nothing_of_the_virtual_environment(tmp_path):
    """Lambda has no moto, Flask or blinker beside the layers: oauthlib loads blinker when it finds it."""
    packages = layer_packages(tmp_path / "layer-packages")
    shipped = {path.name for path in packages.iterdir()}
    site_packages = sysconfig.get_paths()["purelib"]

    assert {"requests_oauthlib", "oauthlib", "aws_lambda_powertools", "requests"} <= shipped
    assert not {"blinker", "moto", "flask", "boto3", "botocore"} & shipped  # boto3: AwsSdkLayer's
    assert site_packages not in _python_path("test", tmp_path / "sdk", packages).split(os.pathsep)
    assert site_packages in _python_path("test").split(os.pathsep)  # the floor: the runtime's SDK
