"""Webhook answer time: what Intuit waits for, from sending a signed delivery to the receiver's answer.

Intuit gives an endpoint 3 seconds to answer a delivery and retries it otherwise (intuit.py). This runs
the local stack as `make dev` runs it (a subprocess: moto, the router, the functions, the emulator), with
the benchmarks' changes to moto (bench/patched_stack.py: its SQS counted the whole queue for every message
sent, received and deleted, which grew each answer with every delivery before it),
and, over real HTTP to the router, POSTs signed CloudEvents deliveries of 1, 100, 1,000, 5,000 and 19,000
changes to POST /intuit/webhooks, timing each whole request at the client: the router building API Gateway's
event, the signature check over the raw body, parsing, the SQS hand-off to moto, the answer. Each
size is sent many times (fresh event IDs every time, so nothing is a duplicate) after a warm-up; the
figures are the median and the 99th percentile. The changes name a company no connection holds, so
the publishing consumer that runs beside the receiver in the local stack only counts them
(unmatched) instead of competing for the two cores as it never does in AWS (another Lambda there).

    .venv/bin/python -m bench.webhook_answer            # 200, 200, 100, 50 and 30 deliveries
    .venv/bin/python -m bench.webhook_answer --quick    # 20 of each: to try it, not for the figures

The last line of stdout is the JSON result; each of its `rows` has metric, result, floor and holds.
The floor is Intuit's: the 99th percentile under 3,000 ms for every size.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from qbo_connect import intuit
from qbo_local.background import background_stack

from bench.percentiles import percentile

LARGEST = 19_000  # changes: the most that fit the receiver's 6 MiB in this shape (20,000 do not)
SIZES = (1, 100, 1000, 5000, LARGEST)
DELIVERIES = {1: 200, 100: 200, 1000: 100, 5000: 50, LARGEST: 30}
QUICK_DELIVERIES = 20
WARM_UP = 5
BENCH_APP = "bench-webhook-app"
UNHELD_REALM = "4620816365000001"  # no connection holds it: the consumer only counts the changes
LIMIT_MS = intuit.WEBHOOK_RESPONSE_SECONDS * 1000.0  # Intuit's answer limit


@dataclass
class SizeResult:
    changes: int
    body_bytes: int
    deliveries: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    failures: int

    @property
    def holds(self) -> bool:
        return self.failures == 0 and self.p99_ms < LIMIT_MS

    def row(self) -> dict[str, Any]:
        return {
            "metric": f"webhook answer, {self.changes:,} change(s) ({self.body_bytes / 1024:,.1f} kB signed)",
            "result": f"p50 {self.p50_ms:,.0f} ms, p99 {self.p99_ms:,.0f} ms, max {self.max_ms:,.0f} ms"
            + (f", {self.failures} failed" if self.failures else ""),
            "floor": f"p99 < {LIMIT_MS:,.0f} ms (Intuit's limit), none failed",
            "holds": self.holds,
        }


def delivery(changes: int) -> bytes:
    """A CloudEvents delivery as Intuit sends it, with fresh event IDs."""
    now = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    events = [
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
            "type": "qbo.invoice.updated.v1",
            "datacontenttype": "application/json",
            "time": now,
            "intuitentityid": str(1000 + n),
            "intuitaccountid": UNHELD_REALM,
            "data": {},
        }
        for n in range(changes)
    ]
    return json.dumps(events).encode()


def measure(url: str, token: str, changes: int, deliveries: int) -> SizeResult:
    from qbo_connect.domain.webhooks import signature_of

    session = requests.Session()
    times, failures, size = [], 0, 0
    for index in range(WARM_UP + deliveries):
        body = delivery(changes)
        headers = {"intuit-signature": signature_of(body, token), "content-type": "application/json"}
        started = time.perf_counter()
        try:
            answer = session.post(url, data=body, headers=headers, timeout=60)
            ok = answer.status_code == 200 and answer.json().get("accepted") == changes
        except (requests.RequestException, ValueError):
            ok = False
        elapsed_ms = (time.perf_counter() - started) * 1000
        if index < WARM_UP:
            continue
        times.append(elapsed_ms)
        failures += 0 if ok else 1
        size = len(body)
    return SizeResult(
        changes=changes,
        body_bytes=size,
        deliveries=deliveries,
        p50_ms=round(statistics.median(times), 1),
        p99_ms=round(percentile(times, 0.99), 1),
        max_ms=round(max(times), 1),
        failures=failures,
    )


def run(*, quick: bool = False) -> dict[str, Any]:
    token = secrets.token_urlsafe(32)
    with (
        tempfile.TemporaryDirectory(prefix="qbo-bench-webhooks-") as folder,
        background_stack(Path(folder), module="bench.patched_stack") as stack,
    ):
        verifier = stack.cli("webhooks", "set-verifier", BENCH_APP, "--stdin", input=token)
        if verifier.returncode != 0:
            raise RuntimeError(f"qbo-connect webhooks set-verifier failed: {verifier.stderr.strip()}")
        url = stack.discovery["api_url"] + "/intuit/webhooks"
        results = [
            measure(url, token, changes, QUICK_DELIVERIES if quick else DELIVERIES[changes]) for changes in SIZES
        ]
    return {
        "rows": [result.row() for result in results],
        "sizes": [asdict(result) | {"holds": result.holds} for result in results],
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.webhook_answer", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 deliveries of each size: to try it")
    arguments = parser.parse_args()
    outcome = run(quick=arguments.quick)
    print(json.dumps(outcome))
    sys.exit(0)
