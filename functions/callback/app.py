"""GET /oauth/callback: check the state, exchange the code, store the tokens, show the result page."""

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.runtime import services
from qbo_connect.web import CALLBACK_PATH, finish_consent

app = APIGatewayHttpResolver()


@app.get(CALLBACK_PATH)
def callback() -> Response:
    return finish_consent(app.current_event, services())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    return app.resolve(event, context)
