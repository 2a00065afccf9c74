"""Invoked by workflows in any language with {"connection_id": "...", "min_valid_seconds": 300}: an access token
valid at least that long and where to use it, refreshed under the connection's lease when the stored one cannot
serve (an on-demand connection's usual case). README: "The token function"; docs/schemas/token-function.*."""

from qbo_connect.cold_start import resume_collection_after_first_invocation

from qbo_connect.invocation import invocation_end, token_payload
from qbo_connect.observability import logger, metrics, tracer
from qbo_connect.token_access import default_token_access


@resume_collection_after_first_invocation
@logger.inject_lambda_context
# The answer holds an access token: never recorded in a trace.
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict, context) -> dict:
    not_after = invocation_end(context)
    return token_payload(
        event,
        lambda connection_id, min_valid_seconds: default_token_access().answer(
            connection_id, min_valid_seconds=min_valid_seconds, not_after=not_after
        ),
    )
