"""Example workflow: list the customers of a connected QuickBooks Online company.

Invoke with {"connection_id": "qbc-..."}. Any Lambda with the qbo_connect layer, QBO_TABLE_NAME and
QBO_SECRET_PREFIX in its environment, and the IAM in docs/workflows.md can run this file as it is.
On the local stack: make invoke FUNCTION=list_customers EVENT=events/example-list-customers.json
"""

from aws_lambda_powertools import Logger
from qbo_connect.client import QuickBooksClient
from qbo_connect.errors import QboConnectError
from qbo_connect.metering import flush_usage

logger = Logger(service="list-customers-example")


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    connection_id = event["connection_id"]
    # The context tells the client when Lambda stops this invocation: it sends no refresh it could not see through.
    qbo = QuickBooksClient.for_connection(connection_id, lambda_context=context)
    try:
        # query() pages through every result (1000 a page); the token, retries and limits are handled.
        customers = [
            {"id": customer["Id"], "name": customer["DisplayName"], "balance": customer.get("Balance", 0)}
            for customer in qbo.query("select * from Customer")
        ]
    except QboConnectError as error:
        # error.code is stable (needs_reauthorization, throttled, ...); the message says what to do next.
        logger.error(
            error.message,
            extra={"connection_id": connection_id, "error_code": error.code.value, "intuit_tid": error.intuit_tid},
        )
        raise
    finally:
        # The API calls this invocation made, written before Lambda may freeze the container (metering),
        # and the service's metrics (a refresh that failed for good) published for its alarms.
        flush_usage()
    logger.info("Listed customers", extra={"connection_id": connection_id, "count": len(customers)})
    return {"connection_id": connection_id, "count": len(customers), "customers": customers}
