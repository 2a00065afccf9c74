"""Invoked by workflows with {"connection_id": "..."}: sign in, read CompanyInfo, answer JSON (README: "The test function")."""

from qbo_connect.invocation import connection_id_from
from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.runtime import services


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    return connection_id_from(event, lambda connection_id: services().connection_tests.run(connection_id).as_json())
