"""The connection test: sign in with the connection and read the company's name.

Its JSON answer is a public contract (README, "The test function"; docs/schemas/test-function.*.json):
workflows branch on `ok` and `error.code`. A deep test also checks that the grant allows the accounting
API (the accounting scope, and one cheap accounting query) and reports each check under `checks`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from qbo_connect import intuit
from qbo_connect.domain.connection import Connection, TestResult
from qbo_connect.domain.events import EventType, connection_event
from qbo_connect.domain.lifecycle import TokenLifecycle
from qbo_connect.domain.metering import UsageKey
from qbo_connect.errors import Busy, ErrorCode, Forbidden, QboConnectError, Unauthorized
from qbo_connect.observability import MetricUnit, logger, metrics
from qbo_connect.ports import Clock, CompanyApi, ConnectionStore, EventPublisher
from qbo_connect.records import record
from qbo_connect.settings import AWS_THROTTLED_CALL_SECONDS

# What each error asks of the user, beside the error's own message.
NEXT_STEPS: dict[ErrorCode, str] = {
    ErrorCode.NOT_FOUND: "Check the connection ID: `qbo-connect connections list` shows them.",
    ErrorCode.NOT_CONNECTED: "Open the authorize link (`qbo-connect connections authorize-link ID`) and click Connect.",
    ErrorCode.NEEDS_REAUTHORIZATION: "A company administrator must reconnect through the authorize link.",
    ErrorCode.INVALID_CLIENT: "Set the app's current client secret: `qbo-connect connections set-secret ID`.",
    ErrorCode.UNAUTHORIZED: "Intuit refused the access token; if it persists, reconnect through the authorize link.",
    # Intuit's 403 (fault 3100) has several causes, and the one met once a connection has worked is a lapsed
    # subscription: a scope a grant holds does not go away.
    ErrorCode.FORBIDDEN: "Intuit refused this company's data: check with a company administrator that the "
    "company's QuickBooks subscription is active (a lapsed or cancelled one is refused until it is renewed); if "
    "the grant lacks com.intuit.quickbooks.accounting (a deep test says), add it and reconnect.",
    ErrorCode.THROTTLED: "Intuit is rate limiting this company: try again in a minute.",
    ErrorCode.INTUIT_UNAVAILABLE: "Intuit did not answer: try again shortly; the service keeps the connection.",
    ErrorCode.BUSY: "The connection is being refreshed: try again in a minute.",
    ErrorCode.INVALID_INPUT: 'Invoke with {"connection_id": "...", "deep": false}.',
    ErrorCode.OBJECT_NOT_FOUND: "QuickBooks does not know this company: check the connection's environment "
    "(sandbox or production) and company ID, then reconnect.",
    ErrorCode.VALIDATION_FAILED: "QuickBooks refused the test's request: if it persists, contact Intuit support "
    "with the intuit_tid.",
    ErrorCode.CONFLICT: "The connection changed while it was tested: try again.",
    ErrorCode.VAULT_UNAVAILABLE: "AWS (Secrets Manager or DynamoDB) throttled or failed the service's calls: try "
    "again shortly; if it persists, check the RotationPending alarm and the account's AWS quotas.",
}

# Checks a deep test reports, in the order it runs them.
COMPANY_INFO_CHECK = "company_info"
ACCOUNTING_SCOPE_CHECK = "accounting_scope"
ACCOUNTING_QUERY_CHECK = "accounting_query"
# After Intuit's answers: recording the result on the item and publishing its event (one throttled AWS call each),
# and a second to spare: the calls to Intuit get what the invocation leaves before that.
RECORD_SECONDS = 2 * AWS_THROTTLED_CALL_SECONDS + 1
# A call to Intuit given less than this is not sent.
MIN_CALL_SECONDS = 1.0


class AccountingProbe(Protocol):
    """What a deep test needs besides CompanyInfo (QuickBooksApi has it)."""

    def customer_count(
        self,
        *,
        base_url: str,
        realm_id: str,
        access_token: str,
        usage: UsageKey,
        deadline_seconds: float | None = None,
    ) -> int: ...


@record
class TestReport:
    """What a connection test found: its result, the connection as read, and a deep test's checks."""

    connection_id: str
    result: TestResult
    connection: Connection | None = None
    # Deep tests only: check name -> {"ok": bool, "message": str}.
    checks: dict[str, dict[str, Any]] | None = None

    def as_json(self) -> dict[str, Any]:
        r = self.result
        body: dict[str, Any] = {
            "ok": r.ok,
            "connection_id": self.connection_id,
            "tested_at": int(r.tested_at),
        }
        if self.connection is not None:
            body |= {
                "name": self.connection.name,
                "environment": self.connection.environment.value,
                "realm_id": self.connection.realm_id,
            }
        if r.ok:
            body |= {
                "company_name": r.company_name,
                "latency_ms": r.latency_ms,
                # Read only (canceled, expired, suspended, restricted): reads work, writes are refused (fault 6190).
                "subscription_status": r.subscription_status,
                "read_only": r.company_read_only,
            }
        else:
            code = ErrorCode(r.error_code)
            body["error"] = {
                "code": code.value,
                "message": r.message,
                "next_step": NEXT_STEPS.get(code),
                "intuit_tid": r.intuit_tid,
            }
        if self.checks is not None:
            body["checks"] = self.checks
        return body


class ConnectionTests:
    def __init__(
        self,
        store: ConnectionStore,
        lifecycle: TokenLifecycle,
        company_api: CompanyApi,
        events: EventPublisher,
        clock: Clock,
    ) -> None:
        self._store = store
        self._lifecycle = lifecycle
        self._company_api = company_api
        self._events = events
        self._clock = clock

    def run(
        self,
        connection_id: str,
        *,
        deep: bool = False,
        not_after: float | None = None,
        on_step: Callable[[str], None] | None = None,
    ) -> TestReport:
        """`on_step` hears what is being waited for (a CLI spinner names it)."""
        step = on_step or (lambda _what: None)
        connection = self._store.get(connection_id) if isinstance(connection_id, str) else None
        started = time.monotonic()
        checks: dict[str, dict[str, Any]] | None = {} if deep else None
        running = COMPANY_INFO_CHECK
        try:
            step("an access token (refreshed first if it is due)")
            connection, token_set = self._lifecycle.valid_token(
                connection_id, min_valid_seconds=60, not_after=not_after
            )
            try:
                step("the company's name (CompanyInfo)")
                info = self._call(connection, token_set.access_token, not_after)
            except Unauthorized:
                # The token may have been revoked early: one forced refresh (or another caller's), then one more try.
                step("a new access token after Intuit refused the old one")
                connection, token_set = self._lifecycle.token_after_rejection(
                    connection_id, token_set.access_token, min_valid_seconds=60, not_after=not_after
                )
                step("the company's name again, with the new token")
                info = self._call(connection, token_set.access_token, not_after)
            if checks is not None:
                checks[COMPANY_INFO_CHECK] = {"ok": True, "message": f"company {info.company_name!r}"}
                running = ACCOUNTING_SCOPE_CHECK
                if intuit.ACCOUNTING_SCOPE not in token_set.scopes:
                    raise Forbidden(
                        f"The grant does not include {intuit.ACCOUNTING_SCOPE} (granted: "
                        f"{' '.join(token_set.scopes) or 'none'}): add the scope to the connection and reconnect"
                    )
                checks[ACCOUNTING_SCOPE_CHECK] = {"ok": True, "message": f"{intuit.ACCOUNTING_SCOPE} granted"}
                running = ACCOUNTING_QUERY_CHECK
                step("one accounting query (deep test)")
                probe: AccountingProbe = self._company_api  # type: ignore[assignment]
                customers = probe.customer_count(
                    base_url=connection.base_url,
                    realm_id=connection.realm_id or "",
                    access_token=token_set.access_token,
                    usage=UsageKey.of(connection),
                    deadline_seconds=self._call_deadline(not_after),
                )
                checks[ACCOUNTING_QUERY_CHECK] = {"ok": True, "message": f"the company has {customers} customers"}
        except QboConnectError as error:
            if checks is not None:
                checks[running] = {"ok": False, "message": error.message}
            result = TestResult(
                ok=False,
                tested_at=self._clock.now(),
                error_code=error.code.value,
                message=error.message,
                intuit_tid=error.intuit_tid,
            )
            return self._record(connection_id, connection, result, checks)
        latency = int((time.monotonic() - started) * 1000)
        result = TestResult(
            ok=True,
            tested_at=self._clock.now(),
            latency_ms=latency,
            company_name=info.company_name,
            intuit_tid=info.intuit_tid,
            subscription_status=info.subscription_status,
        )
        return self._record(connection_id, connection, result, checks)

    def _call(self, connection: Connection, access_token: str, not_after: float | None):
        return self._company_api.company_info(
            base_url=connection.base_url,
            realm_id=connection.realm_id or "",
            access_token=access_token,
            usage=UsageKey.of(connection),
            deadline_seconds=self._call_deadline(not_after),
        )

    def _call_deadline(self, not_after: float | None) -> float | None:
        """What a call to Intuit may take for the result to be recorded and answered by `not_after`. Less than a
        second (what came before took the time: a slow CompanyInfo, a hand-off answered late): not sent at all,
        since nobody would wait for its answer."""
        if not_after is None:
            return None
        deadline = not_after - self._clock.now() - RECORD_SECONDS
        if deadline < MIN_CALL_SECONDS:
            raise Busy(
                "Too little of this invocation was left to ask Intuit (what came before took the time): nothing was "
                "sent; test again"
            )
        return deadline

    def _record(
        self,
        connection_id: str,
        connection: Connection | None,
        result: TestResult,
        checks: dict[str, dict[str, Any]] | None = None,
    ) -> TestReport:
        if connection is None:
            return TestReport(connection_id, result, checks=checks)
        self._store.record_test(connection_id, result)
        metrics.add_metric(
            name="ConnectionTestOk" if result.ok else "ConnectionTestFailed", unit=MetricUnit.Count, value=1
        )
        if result.error_code == ErrorCode.FORBIDDEN or result.company_read_only:
            # Unlike the test's other failures, only a person helps (a lapsed subscription, in either of the shapes
            # Intuit answers with: 403, or CompanyInfo's status with writes refused): CompanyDataRefusedAlarm.
            metrics.add_metric(name="CompanyDataRefused", unit=MetricUnit.Count, value=1)
        if result.company_read_only:
            logger.warning(
                "Company is read only: its QuickBooks subscription ended",
                extra={"connection_id": connection_id, "subscription_status": result.subscription_status},
            )
        if not result.ok:
            logger.warning(
                "Connection test failed",
                extra={
                    "connection_id": connection_id,
                    "error_code": result.error_code,
                    "intuit_tid": result.intuit_tid,
                },
            )
            self._events.publish(
                [
                    connection_event(
                        EventType.TEST_FAILED,
                        connection,
                        now=self._clock.now(),
                        reason=result.error_code,
                        intuit_tid=result.intuit_tid,
                    )
                ]
            )
        return TestReport(connection_id, result, connection, checks)
