"""GET /connections/{connection_id}/authorize: check the signed link, record the state, send the browser to Intuit."""

from qbo_connect.cold_start import resume_collection_after_first_invocation

from aws_lambda_powertools.logging import correlation_paths
from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.runtime import services
from qbo_connect.web import start_consent


@resume_collection_after_first_invocation
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    # The HTTP API routes only GET /connections/{connection_id}/authorize here: no router needed (web.py).
    return start_consent(event, services())
