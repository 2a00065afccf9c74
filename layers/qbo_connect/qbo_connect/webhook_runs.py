"""Intuit's webhooks, in two steps that each fit their limit.

Receive (POST /intuit/webhooks, public): check the size, then the signature against each app's
verifier token, and only then read the body; hand the changes to SQS and answer. Intuit wants a 200
within 3 seconds and retries otherwise, so nothing slow happens here: no DynamoDB, no EventBridge.

Publish (the webhook queue's batches): route each message's changes to the connections that hold
their realm and publish them once each (domain/webhooks.py), reporting failed messages so SQS retries
only those.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError

from qbo_connect import intuit
from qbo_connect.adapters.webhook_queue import HandOffFailed
from qbo_connect.domain.app_links import WEBHOOK_PATH
from qbo_connect.domain.webhooks import EntityChange, UnreadablePayload, read_delivery, signing_app
from qbo_connect.observability import MetricUnit, logger, metrics
from qbo_connect.runtime import Services

__all__ = ["WEBHOOK_PATH", "publish_batch", "receive"]

# Intuit sets no limit on a delivery's size or count (it aggregates a company's changes for up to 5
# minutes: a bulk import arrives as one delivery of megabytes), and answers anything but a 200 by
# retrying the delivery for ever while holding back every later one. So every body that can reach the
# function is read: Lambda takes at most 6 MB of event per synchronous invocation (API Gateway's 10 MB
# never gets this far).
MAX_WEBHOOK_BODY_BYTES = 6 * 1024 * 1024
# Signed by Intuit and dropped unread (a whole delivery, or some of its entries): changes Intuit will not
# send again, each an alarm (template.yaml, WebhookEntriesDroppedAlarm).
PAYLOAD_UNREADABLE_METRIC = "WebhookPayloadUnreadable"
ENTRIES_SKIPPED_METRIC = "WebhookEventsSkipped"
DROPPED_ENTRY_METRICS = (PAYLOAD_UNREADABLE_METRIC, ENTRIES_SKIPPED_METRIC)
# A signature that matches no cached token re-reads the tokens if the copy is older than this, so a
# token set a moment ago works at once, yet a flood of bad signatures costs one read per interval.
VERIFIER_REFETCH_SECONDS = 10.0


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body),
        headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )


def _raw_body(event: APIGatewayProxyEventV2) -> bytes | None:
    body = event.get("body") or ""
    if not isinstance(body, str):
        return None
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            return None
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate cannot have been what Intuit signed
        return None


def receive(event: APIGatewayProxyEventV2, services: Services) -> Response:
    raw = _raw_body(event)
    if raw is None or len(raw) > MAX_WEBHOOK_BODY_BYTES:
        return _json(413 if raw is not None else 400, {"message": "The body is too large or not readable."})
    signature = (event.headers or {}).get(intuit.WEBHOOK_SIGNATURE_HEADER)
    if not isinstance(signature, str) or len(signature) > 512:
        signature = None
    verifiers = services.webhook_verifiers
    client_id = signing_app(raw, signature, verifiers.tokens()) if signature else None
    if client_id is None and signature and verifiers.cache_age > VERIFIER_REFETCH_SECONDS:
        client_id = signing_app(raw, signature, verifiers.tokens(fresher_than=0))
    if client_id is None:
        metrics.add_metric(name="WebhookSignatureRejected", unit=MetricUnit.Count, value=1)
        logger.warning("Webhook refused: missing or wrong intuit-signature", extra={"has_signature": bool(signature)})
        return _json(401, {"message": "Missing or invalid intuit-signature."})

    try:
        changes, skipped = read_delivery(raw)
    except UnreadablePayload as unreadable:
        # Signed by Intuit but in no shape we know: answering an error would only make Intuit retry it
        # (and hold back the deliveries behind it). Count it loudly instead.
        metrics.add_metric(name=PAYLOAD_UNREADABLE_METRIC, unit=MetricUnit.Count, value=1)
        logger.error("Signed webhook delivery not readable", extra={"client_id": client_id, "reason": str(unreadable)})
        return _json(200, {"accepted": 0, "skipped": 0})
    if skipped:
        metrics.add_metric(name=ENTRIES_SKIPPED_METRIC, unit=MetricUnit.Count, value=skipped)
        logger.error("Webhook entries not readable were skipped", extra={"client_id": client_id, "skipped": skipped})
    if changes:
        try:
            services.webhook_queue.hand_off(client_id, changes)
        except (HandOffFailed, BotoCoreError, ClientError) as error:
            # Intuit retries the whole delivery; whatever did get through is deduplicated then.
            logger.error(
                "Webhook hand-off to SQS failed", extra={"client_id": client_id, "error": type(error).__name__}
            )
            return _json(503, {"message": "Could not accept the delivery now; Intuit will retry it."})
    metrics.add_metric(name="WebhookEventsReceived", unit=MetricUnit.Count, value=len(changes))
    logger.info("Webhook delivery accepted", extra={"client_id": client_id, "changes": len(changes)})
    return _json(200, {"accepted": len(changes), "skipped": skipped})


# --- publish ----------------------------------------------------------------------------------------


def publish_batch(event: dict[str, Any], context: Any, services: Services) -> dict[str, Any]:
    processor = BatchProcessor(event_type=EventType.SQS)
    return process_partial_response(
        event=event,
        record_handler=lambda record: _publish_record(record, services),
        processor=processor,
        context=context,
    )


def _publish_record(record: SQSRecord, services: Services) -> dict[str, Any]:
    try:
        message = json.loads(record.body)
        client_id = str(message["client_id"])
        changes = [EntityChange.from_json(change) for change in message["changes"]]
    except (ValueError, KeyError, TypeError):
        # Only the receiver writes this queue; a malformed message would fail forever, so drop it loudly.
        logger.error("Dropping a malformed webhook message", extra={"message_id": record.message_id})
        return {"dropped": record.message_id}
    result, unmatched = services.webhook_routing.route(client_id, changes)
    metrics.add_metric(name="WebhookEventsPublished", unit=MetricUnit.Count, value=result.published)
    metrics.add_metric(name="WebhookEventsDuplicate", unit=MetricUnit.Count, value=result.duplicates)
    if unmatched:
        metrics.add_metric(name="WebhookEventsUnmatched", unit=MetricUnit.Count, value=len(unmatched))
        logger.warning(
            "Webhook changes for a company no connection of this app holds",
            extra={
                "client_id": client_id,
                "realm_ids": sorted({change.realm_id for change in unmatched}),
                "count": len(unmatched),
            },
        )
    return result.as_json()
