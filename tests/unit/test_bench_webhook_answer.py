"""The webhook benchmark sends what the receiver accepts: signed CloudEvents deliveries of N fresh changes."""

from __future__ import annotations

from qbo_connect import intuit
from qbo_connect.domain.webhooks import read_delivery, signature_of, signing_app
from qbo_connect.webhook_runs import MAX_WEBHOOK_BODY_BYTES

from bench.webhook_answer import LARGEST, LIMIT_MS, SizeResult, delivery


def test_a_delivery_is_n_readable_changes_with_fresh_ids_and_its_signature_verifies():
    first, second = delivery(1000), delivery(1000)

    changes, skipped = read_delivery(first)

    assert (len(changes), skipped) == (1000, 0)
    assert len({c.event_id for c in changes} | {c.event_id for c in read_delivery(second)[0]}) == 2000
    assert signing_app(first, signature_of(first, "token"), {"app": "token"}) == "app"
    assert len(first) < MAX_WEBHOOK_BODY_BYTES  # under the receiver's size limit


def test_the_largest_delivery_measured_is_the_most_the_receiver_reads() -> None:
    assert len(delivery(LARGEST)) <= MAX_WEBHOOK_BODY_BYTES < len(delivery(LARGEST + 1000))


def test_the_floor_is_intuit_s_limit_and_a_failed_delivery_breaks_it():
    assert LIMIT_MS == intuit.WEBHOOK_RESPONSE_SECONDS * 1000
    fast = SizeResult(changes=1, body_bytes=300, deliveries=100, p50_ms=20, p99_ms=40, max_ms=50, failures=0)
    assert fast.holds and fast.row()["holds"] is True
    assert not SizeResult(1, 300, 100, 20, 40, 50, failures=1).holds
    assert not SizeResult(1000, 3e5, 100, 900, 3100, 3500, failures=0).holds
