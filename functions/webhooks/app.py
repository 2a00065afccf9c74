"""POST /intuit/webhooks: verify Intuit's signature, hand the changes to SQS, answer within Intuit's 3 seconds."""

from qbo_connect.cold_start import resume_collection_after_first_invocation

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.runtime import services
from qbo_connect.webhook_runs import WEBHOOK_PATH, receive

app = APIGatewayHttpResolver()


@app.post(WEBHOOK_PATH)
def webhooks() -> Response:
    return receive(app.current_event, services())


@resume_collection_after_first_invocation
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    return app.resolve(event, context)
