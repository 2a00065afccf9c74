"""/admin/... (Cognito JWT) and /iam/admin/... (SigV4): the admin API; README "The admin API"."""

from qbo_connect.cold_start import resume_collection_after_first_invocation

from aws_lambda_powertools.logging import correlation_paths
from qbo_connect.admin_api import build_app, handle
from qbo_connect.observability import logger, metrics, tracer

app = build_app()


@resume_collection_after_first_invocation
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    return handle(app, event, context)
