"""The two error families Intuit answers with: OAuth errors (token endpoints) and Faults (accounting API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .facts import THROTTLE_RETRY_AFTER_SECONDS, FaultCode, FaultType, OAuthError
from .responses import intuit_time, oauth_error_body


class OAuthFailure(Exception):
    """An RFC 6749 error from the token or revocation endpoint."""

    def __init__(self, error: OAuthError, *, status: int = 400, description: str | None = None) -> None:
        super().__init__(error.value)
        self.error = error
        self.status = status
        self.description = description

    def body(self) -> dict[str, str]:
        return oauth_error_body(self.error.value, self.description)


def invalid_grant(description: str | None = None) -> OAuthFailure:
    return OAuthFailure(OAuthError.INVALID_GRANT, description=description)


def invalid_scope(description: str) -> OAuthFailure:
    return OAuthFailure(OAuthError.INVALID_SCOPE, description=description)


def invalid_client() -> OAuthFailure:
    return OAuthFailure(OAuthError.INVALID_CLIENT, status=401)


def invalid_request(description: str) -> OAuthFailure:
    return OAuthFailure(OAuthError.INVALID_REQUEST, description=description)


class AccessRejected(Exception):
    """A bearer token that cannot be used; the message becomes the Fault Detail (never the token)."""


@dataclass(eq=False)  # identity equality keeps the exception hashable
class ApiFault(Exception):
    """An accounting API Fault: {"Fault": {"Error": [...], "type": ...}, "time": ...}."""

    status: int
    fault_type: FaultType
    code: FaultCode
    message: str
    detail: str
    element: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self, now: float) -> dict[str, Any]:
        error: dict[str, str] = {"Message": self.message, "Detail": self.detail, "code": self.code.value}
        if self.element is not None:
            error["element"] = self.element
        return {"Fault": {"Error": [error], "type": self.fault_type.value}, "time": intuit_time(now)}

    @classmethod
    def authentication(cls, reason: str) -> ApiFault:
        return cls(
            401,
            FaultType.AUTHENTICATION,
            FaultCode.AUTHENTICATION,
            "message=AuthenticationFailed; errorCode=003200; statusCode=401",
            f"Token expired: {reason}",
        )

    @classmethod
    def authorization(cls, detail: str) -> ApiFault:
        return cls(
            403,
            FaultType.AUTHORIZATION,
            FaultCode.AUTHORIZATION,
            "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
            detail,
        )

    @classmethod
    def throttle(cls, retry_after: int = THROTTLE_RETRY_AFTER_SECONDS) -> ApiFault:
        return cls(
            429,
            FaultType.SERVICE,
            FaultCode.THROTTLE,
            "message=ThrottleExceeded; errorCode=003001; statusCode=429",
            f"The request limit for this company and app was exceeded; retry after {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )

    @classmethod
    def system(cls) -> ApiFault:
        return cls(
            500,
            FaultType.SYSTEM,
            FaultCode.SYSTEM,
            "An application error has occurred while processing your request",
            "System Failure Error: an injected fault of the Intuit emulator",
        )

    @classmethod
    def validation(cls, code: FaultCode, message: str, detail: str, element: str = "") -> ApiFault:
        # Intuit answers validation problems, including "not found", with HTTP 400.
        return cls(400, FaultType.VALIDATION, code, message, detail, element)

    @classmethod
    def not_found(cls, entity: str, entity_id: str) -> ApiFault:
        return cls.validation(
            FaultCode.NOT_FOUND,
            "Object Not Found",
            f"Object Not Found : Something you're trying to use has been made inactive or deleted "
            f"({entity} {entity_id}). Check the fields with accounts, customers, items, vendors or employees.",
        )

    @classmethod
    def required(cls, name: str) -> ApiFault:
        return cls.validation(
            FaultCode.REQUIRED_PARAM,
            "Required param missing, need to supply the required value for the API",
            f"Required parameter {name} is missing in the request",
            name,
        )

    @classmethod
    def stale_object(cls) -> ApiFault:
        return cls.validation(
            FaultCode.STALE_OBJECT,
            "Stale Object Error",
            "Stale Object Error : You and another user were working on this at the same time. "
            "The other user finished before you did, so your work was not saved.",
        )

    @classmethod
    def read_only_company(cls, status: str) -> ApiFault:
        # What Intuit answers a write to a company whose subscription ended (its "top errors" list, 6190).
        return cls.validation(
            FaultCode.INVALID_COMPANY_STATUS,
            "Invalid Company Status",
            "Subscription period has ended or canceled or there was a billing problem : You can't add data to "
            f"QuickBooks Online because your trial or subscription period ended, you canceled your subscription, "
            f"or there was a billing problem (subscription status {status}).",
        )

    @classmethod
    def bad_request(cls, detail: str) -> ApiFault:
        return cls.validation(FaultCode.BAD_REQUEST, "Request has invalid or unsupported property", detail)

    @classmethod
    def query_error(cls, detail: str) -> ApiFault:
        return cls.validation(FaultCode.QUERY_PARSE, "Error parsing query", f"QueryParserError: {detail}")

    @classmethod
    def unsupported(cls, what: str) -> ApiFault:
        return cls.validation(FaultCode.UNSUPPORTED, "Unsupported Operation", f"Operation {what} is not supported.")
