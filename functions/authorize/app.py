"""GET /connections/{connection_id}/authorize: check the signed link, record the state, send the browser to Intuit."""

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.runtime import services
from qbo_connect.web import start_consent

app = APIGatewayHttpResolver()


@app.get("/connections/<connection_id>/authorize")
def authorize(connection_id: str) -> Response:
    return start_consent(app.current_event, connection_id, services())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    return app.resolve(event, context)
