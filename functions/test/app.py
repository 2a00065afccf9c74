"""Invoked by workflows with {"connection_id": "...", "deep": false}: sign in, read CompanyInfo (deep: also check
the accounting scope with one query), answer JSON (README: "The test function"; docs/schemas/test-function.*)."""

from qbo_connect.cold_start import resume_collection_after_first_invocation

from qbo_connect.invocation import connection_test_payload, work_deadline
from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.runtime import services


@resume_collection_after_first_invocation
@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    runtime = services()
    not_after = work_deadline(context, runtime.clock.now())
    return connection_test_payload(
        event,
        lambda connection_id, deep: runtime.connection_tests.run(
            connection_id, deep=deep, not_after=not_after
        ).as_json(),
    )
