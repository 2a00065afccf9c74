"""CompanyApi on the QuickBooks Online accounting API, and the one place that reads Intuit's faults.

requests is imported at the first call, not with the module: the authorize function wires the consent
flow, which holds this adapter, but never calls Intuit's API.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from qbo_connect import intuit
from qbo_connect.adapters.deadline import DeadlineExceeded, call_with_deadline
from qbo_connect.domain.metering import UsageKey, UsageMeter
from qbo_connect.errors import (
    Busy,
    Forbidden,
    IntuitUnavailable,
    ObjectNotFound,
    QboConnectError,
    StaleObject,
    Throttled,
    Unauthorized,
    ValidationFailed,
)
from qbo_connect.ports import CompanyInfo
from qbo_connect.settings import Settings

if TYPE_CHECKING:
    import requests

# Intuit's ValidationFault codes with a meaning of their own (HTTP 400; "Fix common errors" page).
OBJECT_NOT_FOUND_FAULT = "610"
STALE_OBJECT_FAULT = "5010"
CUSTOMER_COUNT_QUERY = "select count(*) from Customer"


def certainly_not_sent(error: requests.RequestException) -> bool:
    """Connect failures (refused, DNS, connect timeout) and TLS failures happen before the request is sent;
    anything else (a read timeout, a reset) may have been processed, and counted, by Intuit."""
    import requests
    from urllib3.exceptions import NewConnectionError

    if isinstance(error, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(error, requests.ConnectionError) and isinstance(reason, NewConnectionError)


def fault_of(body: Any) -> dict[str, str]:
    """The first error of Intuit's fault body (`Fault` or lowercase `fault`), as code/message/detail."""
    if not isinstance(body, dict):
        return {}
    fault = body.get("Fault") or body.get("fault") or {}
    errors = fault.get("Error") or fault.get("error") or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    return {
        "type": str(fault.get("type", "")),
        "code": str(first.get("code", "")),
        "message": str(first.get("Message") or first.get("message") or ""),
        "detail": str(first.get("Detail") or first.get("detail") or ""),
    }


def error_for_response(response: requests.Response) -> QboConnectError | None:
    """Classify an accounting API answer; None when it succeeded."""
    if response.status_code < 400:
        return None
    tid = response.headers.get(intuit.SUPPORT_ID_HEADER)
    try:
        fault = fault_of(response.json())
    except ValueError:
        fault = {}
    retry_after = response.headers.get("Retry-After", "")
    return error_for_fault(response.status_code, fault, tid, retry_after=retry_after)


def error_for_fault(status: int, fault: dict[str, str], tid: str | None, *, retry_after: str = "") -> QboConnectError:
    """The error for an accounting API fault that means HTTP `status` (a batch item's fault has no status of its own)."""
    said = f" ({fault['code']}: {fault['message']})" if fault.get("code") else ""
    # Intuit's own fault code and detail travel with every error; they never hold tokens.
    about = {"intuit_tid": tid, "fault_code": fault.get("code") or None, "detail": fault.get("detail") or None}
    if status == 401:
        return Unauthorized(f"Intuit refused the access token{said}", **about)
    if status == 403:
        return Forbidden(f"Intuit refused access to this company's accounting data{said}", **about)
    if status == 429:
        return Throttled(
            f"Intuit is rate limiting this company{said}",
            retry_after=float(retry_after) if retry_after.isdigit() else 60.0,
            **about,
        )
    if status == 400:
        if fault.get("code") == intuit.INVALID_COMPANY_STATUS_FAULT:
            # The same cause as a 403 of a lapsed subscription, in the shape a read-only company answers writes.
            return Forbidden(
                f"QuickBooks refuses writes to this company{said}: its subscription was canceled, expired, suspended "
                "or restricted, and it is read only until a company administrator renews it",
                **about,
            )
        if fault.get("code") == OBJECT_NOT_FOUND_FAULT:
            return ObjectNotFound(
                f"QuickBooks has no such object{said}: it does not exist, was deleted or was made inactive", **about
            )
        if fault.get("code") == STALE_OBJECT_FAULT:
            return StaleObject(
                f"The object was changed by someone else first{said}: read it again for its current SyncToken, "
                "reapply the change and retry",
                **about,
            )
        return ValidationFailed(f"QuickBooks refused the request{said}: fix the request, a retry won't help", **about)
    return IntuitUnavailable(f"Intuit's API answered HTTP {status}{said}", **about)


def _name_value(entity: dict[str, Any], name: str) -> str | None:
    """The Value of `name` in an entity's NameValue list (Intuit's extension pairs); None when it is absent or
    the list is not in Intuit's shape."""
    pairs = entity.get(intuit.COMPANY_INFO_NAME_VALUES_FIELD)
    for pair in pairs if isinstance(pairs, list) else ():
        if isinstance(pair, dict) and pair.get("Name") == name and isinstance(pair.get("Value"), str):
            return pair["Value"]
    return None


class QuickBooksApi:
    def __init__(
        self, settings: Settings, session: requests.Session | None = None, *, meter: UsageMeter | None = None
    ) -> None:
        self._settings = settings
        self._given_session = session
        self._meter = meter

    @cached_property
    def _session(self) -> requests.Session:
        import requests

        return self._given_session or requests.Session()

    def company_info(
        self,
        *,
        base_url: str,
        realm_id: str,
        access_token: str,
        usage: UsageKey,
        deadline_seconds: float | None = None,
    ) -> CompanyInfo:
        response = self._get(
            base_url, intuit.company_info_path(realm_id), access_token, usage=usage, deadline_seconds=deadline_seconds
        )
        info = response.json().get("CompanyInfo", {})
        return CompanyInfo(
            company_name=info.get("CompanyName", ""),
            realm_id=realm_id,
            intuit_tid=response.headers.get(intuit.SUPPORT_ID_HEADER),
            legal_name=info.get("LegalName"),
            country=info.get("Country"),
            subscription_status=_name_value(info, intuit.SUBSCRIPTION_STATUS_NAME),
        )

    def customer_count(
        self,
        *,
        base_url: str,
        realm_id: str,
        access_token: str,
        usage: UsageKey,
        deadline_seconds: float | None = None,
    ) -> int:
        """How many customers the company has: a cheap query that only the accounting scope allows."""
        response = self._get(
            base_url,
            intuit.company_path(realm_id) + "/query",
            access_token,
            {"query": CUSTOMER_COUNT_QUERY},
            usage=usage,
            deadline_seconds=deadline_seconds,
        )
        return int((response.json().get("QueryResponse") or {}).get("totalCount", 0))

    def _get(
        self,
        base_url: str,
        path: str,
        access_token: str,
        params: dict[str, str] | None = None,
        *,
        usage: UsageKey,
        deadline_seconds: float | None = None,
    ) -> requests.Response:
        import requests

        if not self._settings.is_allowed_api_base_url(base_url):
            # The token must never travel to a host the deployment did not allow.
            raise Forbidden(f"The base URL {base_url!r} is not an allowed QuickBooks API host: fix the connection")

        if deadline_seconds is not None and deadline_seconds <= 0:
            # Nobody would wait for the answer: the token is not sent, and nothing is metered.
            raise Busy("No time was left to wait for Intuit's answer: nothing was sent; try again")

        def get() -> requests.Response:
            return self._session.get(
                base_url.rstrip("/") + path,
                params={**(params or {}), "minorversion": self._settings.minor_version},
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                timeout=self._settings.http_timeout,
            )

        try:
            # The socket timeouts bound each read, not the call: a caller with an end of its own gives a deadline.
            response = get() if deadline_seconds is None else call_with_deadline(get, deadline_seconds)
        except DeadlineExceeded:
            self._count(usage)  # sent: Intuit may have answered (and metered) it after we stopped waiting
            raise IntuitUnavailable(
                f"Intuit's API did not answer within {deadline_seconds:.0f} s: try again shortly"
            ) from None
        except requests.RequestException as error:
            if not certainly_not_sent(error):
                self._count(usage)  # sent: Intuit may have processed (and metered) it
            raise IntuitUnavailable(
                f"Intuit's API did not answer ({type(error).__name__}): try again shortly"
            ) from None
        self._count(usage)  # answered: a read Intuit meters (CorePlus), whatever the status
        error = error_for_response(response)
        if error is not None:
            raise error
        return response

    def _count(self, usage: UsageKey) -> None:
        if self._meter is not None:
            self._meter.count(usage, reads=1)
