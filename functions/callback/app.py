"""GET /oauth/callback: check the state, exchange the code, store the tokens, show the result page."""

from qbo_connect.cold_start import resume_collection_after_first_invocation

from aws_lambda_powertools.logging import correlation_paths
from qbo_connect.invocation import invocation_end
from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.runtime import services
from qbo_connect.web import finish_consent


@resume_collection_after_first_invocation
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    # The HTTP API routes only GET /oauth/callback here: no router needed (web.py).
    return finish_consent(event, services(), not_after=invocation_end(context))
