"""Tracing: off by default (Lambda's active tracing records the invocation, nothing in the function pays for
the X-Ray SDK); with QBO_DETAILED_TRACING=true the handler's subsegment and one per Intuit request reach the
X-Ray daemon. Each case runs in a fresh interpreter, as a Lambda container does: whether the SDK is loaded
and what it patched are process-wide."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from qbo_connect.settings import SettingsError, detailed_tracing

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "1-67891233-abcdef012345678912345678"

# A handler decorated as functions/*/app.py decorate theirs, calling an HTTP server of its own.
HANDLER = """
import http.server, json, sys, threading
sys.path.insert(0, {layer!r})
from qbo_connect.observability import logger, metrics, tracer

class Intuit(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"{{}}")
    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Intuit)
threading.Thread(target=server.serve_forever, daemon=True).start()

def handler(event, context):
    import requests
    return requests.get(f"http://127.0.0.1:{{server.server_port}}/v3/company/1/companyinfo/1", timeout=5).status_code

def token_handler(event, context):
    return {{"access_token": "eyJ-the-access-token"}}

traced = tracer.capture_lambda_handler(handler)
# As the token function decorates its handler: its answer holds a token.
token_traced = tracer.capture_lambda_handler(capture_response=False)(token_handler)
print(json.dumps({{
    "untouched": traced is handler and token_traced is token_handler,
    "answer": traced({{}}, None),
    "token_answer": token_traced({{}}, None)["access_token"] == "eyJ-the-access-token",
    "xray_sdk_loaded": "aws_xray_sdk" in sys.modules,
}}))
"""


def _run_handler(environment: dict[str, str]) -> tuple[dict, list[dict]]:
    """Run HANDLER with Lambda's variables; its report, and the trace documents the X-Ray daemon received."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        daemon.settimeout(0.5)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "LAMBDA_TASK_ROOT": str(ROOT),
            "AWS_LAMBDA_FUNCTION_NAME": "qbo-connect-TestFunction",
            "AWS_REGION": "us-east-1",
            "_X_AMZN_TRACE_ID": f"Root={TRACE_ID};Parent=53995c3f42cd8ad8;Sampled=1",
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
            "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
            "POWERTOOLS_SERVICE_NAME": "qbo-connect",
            "POWERTOOLS_METRICS_DISABLED": "true",
            **environment,
        }
        code = HANDLER.format(layer=str(ROOT / "layers" / "qbo_connect"))
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        documents = []
        try:
            while True:
                header, _, body = daemon.recv(65536).decode().partition("\n")
                assert json.loads(header) == {"format": "json", "version": 1}
                documents.append(json.loads(body))
        except TimeoutError:
            pass
    return json.loads(done.stdout.strip().splitlines()[-1]), documents


def test_without_detailed_tracing_the_handler_runs_as_written_and_the_xray_sdk_is_never_loaded():
    report, documents = _run_handler({})

    assert report == {"untouched": True, "answer": 200, "token_answer": True, "xray_sdk_loaded": False}
    assert documents == []  # Lambda's own segment for the invocation is all X-Ray gets


def test_detailed_tracing_sends_the_handlers_subsegment_and_one_per_intuit_request():
    report, documents = _run_handler({"QBO_DETAILED_TRACING": "true"})

    assert report == {"untouched": False, "answer": 200, "token_answer": True, "xray_sdk_loaded": True}
    assert "eyJ-the-access-token" not in json.dumps(documents)  # capture_response=False: no answer in a trace
    assert "## token_handler" in {document["name"] for document in documents}
    by_name = {document["name"]: document for document in documents}
    handler = by_name["## handler"]
    assert handler["trace_id"] == TRACE_ID
    assert handler["annotations"] == {"ColdStart": True, "Service": "qbo-connect"}
    (intuit,) = [d for d in documents if "http" in d]
    assert intuit["http"]["request"]["url"].endswith("/v3/company/1/companyinfo/1")
    assert intuit["http"]["response"]["status"] == 200
    assert intuit["parent_id"] == handler["id"]


@pytest.mark.parametrize("value", ["yes", "1", "on"])
def test_a_detailed_tracing_value_other_than_true_or_false_is_refused_with_the_fix(value):
    with pytest.raises(SettingsError, match="QBO_DETAILED_TRACING must be true or false"):
        detailed_tracing({"QBO_DETAILED_TRACING": value})


@pytest.mark.parametrize(("value", "expected"), [("", False), ("false", False), ("true", True), (" TRUE ", True)])
def test_detailed_tracing_is_off_unless_set_to_true(value, expected):
    assert detailed_tracing({"QBO_DETAILED_TRACING": value}) is expected
    assert detailed_tracing({}) is False


def test_an_invocation_that_adds_no_metric_logs_no_warning_about_it():
    # The consent routes add no metric of their own: Powertools would warn on every invocation.
    script = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'layers' / 'qbo_connect')!r})\n"
        "from qbo_connect.observability import metrics\n"
        "@metrics.log_metrics(capture_cold_start_metric=True)\n"
        "def handler(event, context):\n"
        "    return 'ok'\n"
        "import types\n"
        "print(handler({}, types.SimpleNamespace(function_name='qbo-connect-CallbackFunction')))\n"
    )
    env = {"PATH": os.environ.get("PATH", ""), "POWERTOOLS_METRICS_NAMESPACE": "QboConnect"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr
    assert "Warning" not in done.stderr and "No application metrics" not in done.stderr


def _printed_metrics(capsys) -> list[tuple[str, str, float]]:
    """What Powertools printed since the last read, as CloudWatch extracts EMF: (namespace, metric, value)."""
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    return [
        (d["Namespace"], m["Name"], sum(line[m["Name"]]) if isinstance(line[m["Name"]], list) else line[m["Name"]])
        for line in lines
        for d in line["_aws"]["CloudWatchMetrics"]
        for m in d["Metrics"]
    ]


def _refresh_failing_for_good(world, monkeypatch) -> None:
    """A connection whose grant Intuit refuses (invalid_grant), refreshed once in this process, with metrics on
    and the service's store emptied of what earlier tests in this process left unflushed."""
    from qbo_connect.domain.lifecycle import RefreshOutcome
    from qbo_connect.errors import NeedsReauthorization
    from qbo_connect.observability import metrics

    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")  # importing the CLI turns them off process-wide
    metrics.clear_metrics()
    connection = world.connected()
    world.clock.advance(3600)
    world.identity.fail_next(1, NeedsReauthorization("Intuit answered invalid_grant"))
    assert world.lifecycle.refresh(connection.connection_id).outcome is RefreshOutcome.NEEDS_REAUTHORIZATION


def test_a_workflow_with_metrics_of_its_own_never_publishes_the_services_under_its_namespace(
    world, capsys, monkeypatch
):
    """Powertools' Metrics instances share one store unless given a provider of their own: a workflow whose
    handler flushes `Metrics(namespace="AcmeWorkflow")` would publish the service's refresh metrics in its
    namespace (where no alarm of the service looks), and take them from the service's own flush."""
    from aws_lambda_powertools import Metrics
    from aws_lambda_powertools.metrics import MetricUnit
    from qbo_connect.observability import metrics

    workflow_metrics = Metrics(namespace="AcmeWorkflow", service="invoicing")
    workflow_metrics.clear_metrics()
    workflow_metrics.add_metric(name="InvoicesSent", unit=MetricUnit.Count, value=3)
    _refresh_failing_for_good(world, monkeypatch)
    capsys.readouterr()

    workflow_metrics.flush_metrics()
    workflow_printed = _printed_metrics(capsys)
    metrics.flush_metrics()
    service_printed = _printed_metrics(capsys)

    assert {(namespace, name) for namespace, name, _ in workflow_printed} == {("AcmeWorkflow", "InvoicesSent")}
    assert {(namespace, name) for namespace, name, _ in service_printed} == {("QboConnect", "RefreshPermanentFailure")}


def test_a_workflow_publishes_the_services_metrics_it_gathered_when_its_handler_flushes_usage(
    world, capsys, monkeypatch
):
    """A workflow refreshes in its own process (an on-demand connection's usual case) and no handler of the
    service flushes its metrics there: the `flush_usage()` its handler calls last (docs/workflows.md) publishes
    them, so RefreshPermanentFailureAlarm and RotationPendingAlarm hear of what happened in workflows too."""
    from types import SimpleNamespace

    from qbo_connect import metering, runtime

    monkeypatch.setattr(runtime, "services", lambda: SimpleNamespace(meter=SimpleNamespace(flush=lambda: True)))
    _refresh_failing_for_good(world, monkeypatch)
    capsys.readouterr()

    assert metering.flush_usage() is True

    assert _printed_metrics(capsys) == [("QboConnect", "RefreshPermanentFailure", 1.0)]
