"""Errors a user can hit: a stable code, and a message that says what to do next.

Messages never carry tokens, codes, states or secrets: they are shown on pages, in CLI output,
in test results and in logs.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_INPUT = "invalid_input"
    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    NOT_CONNECTED = "not_connected"
    NEEDS_REAUTHORIZATION = "needs_reauthorization"
    INVALID_CLIENT = "invalid_client"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    THROTTLED = "throttled"
    INTUIT_UNAVAILABLE = "intuit_unavailable"
    # The refresh request was sent but no answer came back: Intuit may have rotated the token.
    OUTCOME_UNKNOWN = "outcome_unknown"
    REVOCATION_REFUSED = "revocation_refused"
    VAULT_UNAVAILABLE = "vault_unavailable"
    BUSY = "busy"
    CONFLICT = "conflict"
    # The accounting API refused a request itself (HTTP 400 ValidationFault): QuickBooksClient raises these.
    VALIDATION_FAILED = "validation_failed"
    OBJECT_NOT_FOUND = "object_not_found"
    STALE_OBJECT = "stale_object"


class QboConnectError(Exception):
    """Base class: `code` is stable for scripts, `str(error)` is for people.

    Errors from Intuit's accounting API also carry Intuit's own `fault_code` (e.g. "5010") and
    `detail`, and `intuit_tid` (the support id to quote to Intuit).
    """

    code: ErrorCode = ErrorCode.INVALID_INPUT

    def __init__(
        self,
        message: str,
        *,
        intuit_tid: str | None = None,
        fault_code: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.intuit_tid = intuit_tid
        self.fault_code = fault_code
        self.detail = detail


class InvalidInput(QboConnectError):
    code = ErrorCode.INVALID_INPUT


class ConnectionNotFound(QboConnectError):
    code = ErrorCode.NOT_FOUND


class ConnectionAlreadyExists(QboConnectError):
    code = ErrorCode.ALREADY_EXISTS


class NotConnected(QboConnectError):
    code = ErrorCode.NOT_CONNECTED


class NeedsReauthorization(QboConnectError):
    code = ErrorCode.NEEDS_REAUTHORIZATION


class InvalidClient(QboConnectError):
    code = ErrorCode.INVALID_CLIENT


class Unauthorized(QboConnectError):
    """The API refused the access token (Intuit fault 3200)."""

    code = ErrorCode.UNAUTHORIZED


class Forbidden(QboConnectError):
    """Intuit refused access (403, fault 3100): the company's subscription lapsed, or the grant lacks the scope; or
    refused a write (400, fault 6190): the subscription ended and the company is read only."""

    code = ErrorCode.FORBIDDEN


class Throttled(QboConnectError):
    code = ErrorCode.THROTTLED

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        intuit_tid: str | None = None,
        fault_code: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, intuit_tid=intuit_tid, fault_code=fault_code, detail=detail)
        self.retry_after = retry_after


class IntuitUnavailable(QboConnectError):
    """5xx, timeouts, connection errors: transient."""

    code = ErrorCode.INTUIT_UNAVAILABLE


class OutcomeUnknown(IntuitUnavailable):
    """The request reached Intuit but its answer was lost (read timeout, reset, 502/504, deadline).

    Never re-send the same refresh token at once: Intuit may have rotated it (see docs/reliability.md).
    """

    code = ErrorCode.OUTCOME_UNKNOWN


class RevocationRefused(QboConnectError):
    """The revocation endpoint answered with a 4xx other than invalid_client: the token was not revoked."""

    code = ErrorCode.REVOCATION_REFUSED


class VaultUnavailable(QboConnectError):
    """Secrets Manager refused or failed a write until its deadline (throttling, quota, outage)."""

    code = ErrorCode.VAULT_UNAVAILABLE


class Busy(QboConnectError):
    """Another refresher holds the connection's lease."""

    code = ErrorCode.BUSY


class InFlight(Busy):
    """A refresh call whose answer was lost may still be in flight at Intuit until `until`."""

    def __init__(self, message: str, *, until: float) -> None:
        super().__init__(message)
        self.until = until


class CompanyBusy(Busy):
    """Another connection of the same app holds the app-company lease (domain/app_company_leases.py): it is storing
    a new grant on the company (`purpose` consent or import) or deciding to revoke (revocation), until `until`."""

    def __init__(self, message: str, *, holder_connection_id: str | None, purpose: str | None, until: float | None):
        super().__init__(message)
        self.holder_connection_id = holder_connection_id
        self.purpose = purpose
        self.until = until


class LeaseRanOut(Busy):
    """An app-company lease ran out before its holder's next step, and someone else took it meanwhile: the step
    is not taken (the other holder may have acted on what this one had not stored yet)."""


class Conflict(QboConnectError):
    """A conditional write lost a race: someone else changed the connection first."""

    code = ErrorCode.CONFLICT


class ValidationFailed(QboConnectError):
    """The accounting API refused the request as invalid (HTTP 400): fix the request, a retry won't help."""

    code = ErrorCode.VALIDATION_FAILED


class ObjectNotFound(ValidationFailed):
    """Intuit fault 610: the object does not exist, was deleted, or was made inactive."""

    code = ErrorCode.OBJECT_NOT_FOUND


class StaleObject(ValidationFailed):
    """Intuit fault 5010: the SyncToken sent is not the object's current one (someone changed it first)."""

    code = ErrorCode.STALE_OBJECT
