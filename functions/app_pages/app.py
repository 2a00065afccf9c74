"""GET /intuit/launch, /intuit/disconnect, /intuit/reconnect: the URLs Intuit asks the app to publish."""

from qbo_connect.cold_start import resume_collection_after_first_invocation

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from qbo_connect import app_web
from qbo_connect.domain.app_links import DISCONNECT_PATH, LAUNCH_PATH, RECONNECT_PATH
from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.runtime import services

app = APIGatewayHttpResolver()


@app.get(LAUNCH_PATH)
def launch() -> Response:
    return app_web.launch(app.current_event, services())


@app.get(DISCONNECT_PATH)
def disconnect() -> Response:
    return app_web.disconnect(app.current_event, services(), app.lambda_context)


@app.get(RECONNECT_PATH)
def reconnect() -> Response:
    return app_web.reconnect(app.current_event, services())


@resume_collection_after_first_invocation
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    return app.resolve(event, context)
