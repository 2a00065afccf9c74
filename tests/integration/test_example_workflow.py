"""The example workflow end to end on the local stack: `make dev` in a subprocess, the demo company connected
through the emulator's consent page over HTTP, then examples/list_customers/app.py run as a user runs it
(`make invoke FUNCTION=list_customers EVENT=events/example-list-customers.json`) lists its customers,
more than one page of them."""

from __future__ import annotations

import json
from pathlib import Path

import requests
from qbo_local.background import background_stack
from test_local_stack import ROOT, connect_demo_company, printed_authorize_link, qbo_local

REALM = "9341453050000001"
SEEDED_NAMES = {"Amy's Bird Sanctuary", "Bill's Windsurf Shop", "Cool Cars"}


def test_the_example_workflow_lists_the_connected_companys_customers_on_the_local_stack(tmp_path: Path) -> None:
    with background_stack(tmp_path) as stack:
        landing, flow, _ = connect_demo_company(stack, printed_authorize_link(stack))
        assert landing.status_code == 200, landing.text
        assert flow["realm_id"] == REALM
        emulator = stack.discovery["emulator_url"]
        # 1,200 customers: more than one of Intuit's 1,000-object pages.
        seeded = requests.post(f"{emulator}/_emulator/companies/{REALM}/customers", json={"count": 1197}, timeout=30)
        assert seeded.json()["total"] == 1200
        requests.delete(f"{emulator}/_emulator/stats", timeout=10)

        invoked = qbo_local(
            "invoke", "list_customers", str(ROOT / "events/example-list-customers.json"), env=stack.env()
        )

        assert invoked.returncode == 0, invoked.stderr[-3000:]
        result = json.loads(invoked.stdout)  # stdout is the answer alone: the handler's logs go to stderr
        assert result["connection_id"] == "demo"
        assert result["count"] == 1200 == len(result["customers"])
        assert len({c["id"] for c in result["customers"]}) == 1200
        assert {c["name"] for c in result["customers"]} >= SEEDED_NAMES
        stats = requests.get(f"{emulator}/_emulator/stats", timeout=10).json()
        assert stats["api_resources"] == {"query": 2}  # two pages, and no refresh was needed
        assert stats["grant_types"].get("refresh_token", 0) == 0
        assert '"Listed customers"' in invoked.stderr  # the example's Powertools log line, as in CloudWatch
        assert stack.stop() == 0

    tokens = [v for v in flow.values() if v != REALM]
    assert not [v for v in tokens if v in stack.log() or v in invoked.stdout + invoked.stderr]
