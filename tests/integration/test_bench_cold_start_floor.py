"""The cold-start floor replays a recording exactly: a floor process, itself recorded, makes the same AWS calls
(operation and parameters, bytes included) and the same HTTP requests, and reports its answers where the
function did (bench/cold_child.py, bench/cold_start.py)."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from bench.cold_start import FLOOR, first_difference, floor_spec, launch

REGION = "us-east-1"


@pytest.fixture
def intuit() -> Iterator[str]:
    class Token(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps({"access_token": "a", "refresh_token": "r", "expires_in": 3600}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Token)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


def test_a_floor_process_makes_exactly_the_recorded_calls(plain_moto, intuit, tmp_path):
    session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name=REGION)
    session.client("dynamodb", endpoint_url=plain_moto).create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    item = {"pk": {"S": "connection#c1"}, "sealed": {"B": {"__bytes__": "AP9jaXBoZXI="}}, "version": {"N": "3"}}
    recorded = [
        {"kind": "aws", "service": "dynamodb", "operation": "PutItem", "params": {"TableName": "t", "Item": item}},
        {
            "kind": "aws",
            "service": "secretsmanager",
            "operation": "CreateSecret",
            # As recorded: after botocore's handlers, so with the idempotency token it generated.
            "params": {
                "Name": "qbo/connections/c1",
                "SecretString": '{"generation": 1}',
                "ClientRequestToken": "0f0e7a4c-54b1-4a6e-9c67-2b7f0d3b9a11",
            },
        },
        {
            "kind": "http",
            "method": "POST",
            "url": f"{intuit}/oauth2/v1/tokens/bearer",
            "headers": {"Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded"},
            "body": "grant_type=refresh_token&refresh_token=rt-spent",
            "status": 200,
        },
        {
            "kind": "aws",
            "service": "dynamodb",
            "operation": "GetItem",
            "params": {"TableName": "t", "Key": {"pk": {"S": "connection#c1"}}, "ConsistentRead": True},
        },
    ]
    spec = floor_spec(recorded, [2, 4], {"refresh_token": "rt-spent"}, {"refresh_token": "rt-fresh"})
    environment = {
        "PATH": os.environ.get("PATH", ""),
        "AWS_ENDPOINT_URL": plain_moto,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "k",
        "AWS_SECRET_ACCESS_KEY": "s",
    }

    log = tmp_path / "floor.log"
    run = launch(FLOOR, "test", spec | {"record_to": str(tmp_path / "made.json")}, environment, log=log)

    made = json.loads(Path(tmp_path / "made.json").read_text())
    assert first_difference(spec["calls"], made) is None
    assert "rt-fresh" in made[2]["body"] and "rt-spent" not in json.dumps(made)
    assert [report["calls"] for report in run.reports] == [2, 4]
    stored = session.client("dynamodb", endpoint_url=plain_moto).get_item(
        TableName="t", Key={"pk": {"S": "connection#c1"}}
    )
    assert stored["Item"]["sealed"]["B"] == b"\x00\xffcipher"
