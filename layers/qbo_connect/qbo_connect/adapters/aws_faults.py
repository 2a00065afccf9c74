"""AWS failures that pass by themselves, and what to tell a caller about them.

Throttling and request limits (Secrets Manager's per-second quotas, DynamoDB's table throughput and the
account's request limit, which moto does not enforce), AWS's own server errors, and calls that got no
answer. botocore retries these (standard mode, runtime._aws_config); one still failing after its retries
is reported as something to try again shortly. Anything else (access denied, a missing table or secret)
is a deployment fault and is left to fail loudly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as NoAnswer

from qbo_connect.errors import VaultUnavailable

# Everything a botocore client's call raises.
AWS_ERRORS = (ClientError, BotoCoreError)

THROTTLING_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
    }
)
# Not LimitExceededException: Secrets Manager's version quota does not pass within a call's deadline.
SERVER_CODES = frozenset(
    {
        "InternalServiceError",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
TRANSIENT_CODES = THROTTLING_CODES | SERVER_CODES


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


# Why DynamoDB cancels a transaction's item that pass by themselves (a refused condition does not).
TRANSIENT_CANCELLATIONS = frozenset({"ThrottlingError", "TransactionConflict", "ProvisionedThroughputExceeded"})


def cancellation_reasons(error: ClientError) -> set[str]:
    """The per-item reasons of a TransactionCanceledException ("None" for the items that were fine)."""
    return {reason.get("Code", "") for reason in error.response.get("CancellationReasons") or []}


def is_transient(error: BaseException) -> bool:
    """Whether the same call may well succeed a few seconds later."""
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        if error_code(error) == "TransactionCanceledException":
            reasons = cancellation_reasons(error)
            return bool(reasons & TRANSIENT_CANCELLATIONS) and "ConditionalCheckFailed" not in reasons
        return error_code(error) in TRANSIENT_CODES or status >= 500
    return isinstance(error, NoAnswer | HTTPClientError)  # connect or read timeouts, resets


def refusal(error: BaseException) -> str:
    """For the caller and the logs: the call and AWS's code, never AWS's own text (it names resources)."""
    if isinstance(error, ClientError):
        what = f"AWS refused the service's {error.operation_name} call ({error_code(error)})"
    else:
        what = f"AWS did not answer the service's call ({type(error).__name__})"
    return f"{what}, also when botocore retried it"


def try_again_message(error: BaseException) -> str:
    """For a read-only answer (the token and test functions): nothing was changed."""
    return f"{refusal(error)}: nothing was changed; try again in a few seconds"


@contextmanager
def raised_as_vault_unavailable() -> Iterator[None]:
    """AWS still failing after botocore's retries becomes the service's VaultUnavailable (try again shortly),
    for callers that catch the service's errors; anything else AWS raises passes as it is."""
    try:
        yield
    except AWS_ERRORS as error:
        if not is_transient(error):
            raise
        raise VaultUnavailable(try_again_message(error)) from None
