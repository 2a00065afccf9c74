"""From the webhook queue: publish each entity change once to EventBridge, for every connection of its company."""

from qbo_connect.cold_start import resume_collection_after_first_invocation

from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.runtime import services
from qbo_connect.webhook_runs import publish_batch


@resume_collection_after_first_invocation
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    return publish_batch(event, context, services())
