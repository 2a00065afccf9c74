"""Scheduled ({"action": "sweep"}): fan out the connections due for refresh; from SQS: refresh them."""

from qbo_connect.cold_start import resume_collection_after_first_invocation

from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.runtime import services


@resume_collection_after_first_invocation
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    return services().refresh_runs.handle(event, context)
