"""GET / and GET /console/{file}: the admin console's page, script, style sheet and configuration (public files;
every admin call they make carries the signed-in person's Cognito token)."""

from qbo_connect.cold_start import resume_collection_after_first_invocation

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from qbo_connect.console import asset, security_headers
from qbo_connect.observability import logger, tracer
from qbo_connect.runtime import services

app = APIGatewayHttpResolver()


@app.get("/")
@app.get("/console/<name>")
def console_file(name: str = "") -> Response:
    settings = services().settings
    found = asset(app.current_event.path, settings)
    headers = {**security_headers(settings), "Content-Type": found.content_type, "Cache-Control": found.cache_control}
    return Response(status_code=found.status, headers=headers, body=found.body)


@resume_collection_after_first_invocation
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def handler(event: dict, context) -> dict:
    return app.resolve(event, context)
