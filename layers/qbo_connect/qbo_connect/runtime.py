"""Wiring: build the domain services on AWS and HTTP adapters, once per process (Lambda container, CLI).

Clients are created on first use, not at import, so a cold start pays only for what it uses. For the
same reason the adapters and services are imported where they are first built: a handler's import
(its cold start) does not load botocore, requests-oauthlib or Powertools' batch utility until a request
needs them, and a function that never needs one (authorize never touches SQS) never loads it.
"First use" means the first call: building a service wires every adapter it might need (the test
function's lifecycle holds an SQS queue, an event bus and a KMS sealer it calls only when something
fails), so each AWS client is created when the adapter first calls it, one per AWS service, shared.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol

from qbo_connect.aws_services import AWS_SERVICES
from qbo_connect.settings import AWS_ATTEMPTS, Settings

if TYPE_CHECKING:
    from qbo_connect.adapters.dynamodb_store import DynamoDbConnectionStore
    from qbo_connect.adapters.dynamodb_usage import DynamoDbUsageLedger
    from qbo_connect.adapters.eventbridge import EventBridgePublisher
    from qbo_connect.adapters.lambda_handoff import LambdaRefreshHandoff
    from qbo_connect.adapters.secrets_vault import SecretsManagerSigningKeys, SecretsManagerVault
    from qbo_connect.adapters.sqs_queue import SqsRefreshQueue
    from qbo_connect.adapters.webhook_queue import SqsWebhookQueue
    from qbo_connect.adapters.webhook_verifiers import SecretsManagerWebhookVerifiers
    from qbo_connect.domain.admin_operations import AdminOperations
    from qbo_connect.domain.administration import Administration
    from qbo_connect.domain.administrators import StillAdministrators
    from qbo_connect.domain.authorization import AuthorizeLinks, ConsentFlow
    from qbo_connect.domain.connection_test import ConnectionTests
    from qbo_connect.domain.event_history import RecordingPublisher
    from qbo_connect.domain.leases import Leases
    from qbo_connect.domain.lifecycle import TokenLifecycle
    from qbo_connect.domain.metering import MeteringReport, UsageMeter
    from qbo_connect.domain.revocation import Revocations
    from qbo_connect.domain.webhooks import WebhookRouting
    from qbo_connect.ports import Clock, CompanyApi, EventPublisher, IdentityProvider, TokenSealer
    from qbo_connect.refresh_runs import RefreshRuns


def _aws_config(connections: int = 10):
    from botocore.config import Config

    # Standard mode retries throttling and transient errors with backoff, a bounded number of times: few enough
    # that a throttled call fits the time budgets (settings.AWS_ATTEMPTS; botocore's `max_attempts` would count
    # retries only). A pool as large as the threads that share a client (a refresh batch's), so none opens and
    # drops connections of its own (botocore keeps 10).
    return Config(
        retries={"mode": "standard", "total_max_attempts": AWS_ATTEMPTS},
        connect_timeout=5,
        read_timeout=20,
        max_pool_connections=max(10, connections),
    )


class AwsClients(Protocol):
    """Where clients come from: botocore's session here, or a boto3 session (the CLI's, tests')."""

    def client(self, service_name: str, config: Any = None) -> Any: ...


class BotocoreSession:
    """AWS clients from botocore's own session. boto3's `Session.client` makes the same client with boto3's
    import in front of it (s3transfer, multiprocessing): about 75 million instructions of each cold start
    for nothing the functions use (docs/performance.md)."""

    def __init__(self) -> None:
        from botocore.session import get_session

        self._session = get_session()

    def client(self, service_name: str, config: Any = None) -> Any:
        return self._session.create_client(service_name, config=config)

    @property
    def events(self) -> Any:
        """The session's event hooks, as boto3's session has them: clients created afterwards copy them."""
        return self._session.get_component("event_emitter")


class ClientOnFirstUse:
    """An AWS client, created when an adapter first calls it. Creating one loads the service's model and
    endpoint rules: milliseconds a cold start should not spend on a client it never calls."""

    def __init__(self, create: Callable[[], Any], lock: threading.RLock) -> None:
        self._create = create
        self._lock = lock  # the session's: a session must not create clients in two threads at once
        self._client: Any = None

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._create()
                client = self._client
        return getattr(client, name)


class Services:
    """One process's domain services, each built on its first use. A plain class: nothing compares or copies
    the wiring, and a dataclass's generated methods would cost every cold start their compilation."""

    def __init__(
        self,
        settings: Settings,
        session: AwsClients,
        clock: Clock,
        identity_override: IdentityProvider | None = None,
        company_api_override: CompanyApi | None = None,
    ) -> None:
        self.settings = settings
        self.session = session
        self.clock = clock
        self.identity_override = identity_override
        self.company_api_override = company_api_override
        self._clients: dict[str, ClientOnFirstUse] = {}
        self._session_lock = threading.RLock()

    def _client(self, name: str) -> Any:
        """The service's one client (one DynamoDB client for both tables), created on its first call."""
        with self._session_lock:
            if name not in self._clients:
                config = _aws_config(self.settings.refresh_batch_size)
                self._clients[name] = ClientOnFirstUse(lambda: self._new_client(name, config), self._session_lock)
            return self._clients[name]

    def _new_client(self, name: str, config: Any) -> Any:
        # AwsSdkLayer's botocore has the models of AWS_SERVICES only: a client of another would work here and
        # fail in Lambda, so it fails here too.
        if name not in AWS_SERVICES:
            raise ValueError(f"no AWS client for {name!r}: add it to qbo_connect.aws_services.AWS_SERVICES")
        return self.session.client(name, config=config)

    @cached_property
    def table(self):
        from qbo_connect.adapters.dynamodb_table import DynamoDbTable

        return DynamoDbTable(self._client("dynamodb"), self.settings.table_name)

    @cached_property
    def store(self) -> DynamoDbConnectionStore:
        from qbo_connect.adapters.dynamodb_store import DynamoDbConnectionStore

        return DynamoDbConnectionStore(self.table)

    @cached_property
    def vault(self) -> SecretsManagerVault:
        from qbo_connect.adapters.secrets_vault import SecretsManagerVault

        return SecretsManagerVault(self._client("secretsmanager"), self.settings, clock=self.clock)

    @cached_property
    def signing_keys(self) -> SecretsManagerSigningKeys:
        from qbo_connect.adapters.secrets_vault import SecretsManagerSigningKeys

        return SecretsManagerSigningKeys(self._client("secretsmanager"), self.settings)

    @cached_property
    def event_bus(self) -> EventBridgePublisher:
        from qbo_connect.adapters.eventbridge import EventBridgePublisher

        return EventBridgePublisher(self._client("events"), self.settings.event_bus_name)

    @cached_property
    def event_history(self) -> RecordingPublisher | None:
        """Connection events recorded in their history as they are published (domain/event_history.py)."""
        if not self.settings.events_table_name:
            return None
        from qbo_connect.adapters.dynamodb_event_history import DynamoDbEventHistory
        from qbo_connect.adapters.dynamodb_table import DynamoDbTable
        from qbo_connect.domain.event_history import RecordingPublisher

        return RecordingPublisher(
            DynamoDbEventHistory(DynamoDbTable(self._client("dynamodb"), self.settings.events_table_name)),
            self.event_bus,
            self.clock,
            retention_days=self.settings.event_history_days,
        )

    @cached_property
    def events(self) -> EventPublisher:
        """Where connection events go: the history and EventBridge, or EventBridge alone without a history."""
        return self.event_history or self.event_bus

    @cached_property
    def identity(self) -> IdentityProvider:
        if self.identity_override is not None:
            return self.identity_override
        from qbo_connect.adapters.intuit_oauth import IntuitOAuth

        return IntuitOAuth(self.settings, self.clock)

    @cached_property
    def company_api(self) -> CompanyApi:
        if self.company_api_override is not None:
            return self.company_api_override
        from qbo_connect.adapters.quickbooks_api import QuickBooksApi

        return QuickBooksApi(self.settings, meter=self.meter)

    @cached_property
    def usage_ledger(self) -> DynamoDbUsageLedger:
        from qbo_connect.adapters.dynamodb_usage import DynamoDbUsageLedger

        return DynamoDbUsageLedger(self.table)

    @cached_property
    def metering_report(self) -> MeteringReport:
        from qbo_connect.domain.metering import MeteringReport

        return MeteringReport(
            self.usage_ledger,
            self.store,
            self.settings.metering_allowances,
            self.clock,
            alarm_percent=self.settings.metering_alarm_percent,
        )

    @cached_property
    def meter(self) -> UsageMeter:
        """This process's count of accounting API calls (domain/metering.py)."""
        from qbo_connect.domain.metering import UsageMeter
        from qbo_connect.metering import report_unrecorded

        return UsageMeter(
            self.usage_ledger,
            self.clock,
            flush_seconds=self.settings.metering_flush_seconds,
            on_unrecorded=report_unrecorded,
        )

    @cached_property
    def leases(self) -> Leases:
        from qbo_connect.domain.leases import Leases

        return Leases(
            self.store,
            self.vault,
            self.clock,
            lease_seconds=self.settings.lease_seconds,
            skew_seconds=self.settings.clock_skew_seconds,
            sealer=self.sealer,
        )

    @cached_property
    def revocations(self) -> Revocations:
        """Revoking at Intuit, and the app-company lease that keeps it apart from a new grant being stored."""
        from qbo_connect.domain.app_company_leases import AppCompanyLeases
        from qbo_connect.domain.revocation import Revocations

        leases = AppCompanyLeases(
            self.store,
            self.clock,
            skew_seconds=self.settings.clock_skew_seconds,
            # What the Intuit client gives a revocation call (adapters/intuit_oauth.py).
            revocation_call_seconds=self.settings.consent_call_deadline_seconds,
        )
        return Revocations(self.identity, self.store, leases, self.clock)

    @cached_property
    def sealer(self) -> TokenSealer | None:
        if not self.settings.rotation_key_id:
            return None
        from qbo_connect.adapters.kms_sealer import KmsTokenSealer

        return KmsTokenSealer(self._client("kms"), self.settings.rotation_key_id)

    @cached_property
    def refresh_queue(self) -> SqsRefreshQueue | None:
        if not self.settings.refresh_queue_url:
            return None
        from qbo_connect.adapters.sqs_queue import SqsRefreshQueue

        return SqsRefreshQueue(self._client("sqs"), self.settings.refresh_queue_url)

    @cached_property
    def refresh_handoff(self) -> LambdaRefreshHandoff | None:
        if not self.settings.refresh_function_name:
            return None
        from botocore.config import Config

        from qbo_connect.adapters.lambda_handoff import CONNECT_TIMEOUT_SECONDS, LambdaRefreshHandoff

        def client_with_read_timeout(seconds: float) -> Any:
            config = Config(
                retries={"total_max_attempts": 1}, connect_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=seconds
            )
            with self._session_lock:
                return self._new_client("lambda", config)

        return LambdaRefreshHandoff(client_with_read_timeout, self.settings.refresh_function_name)

    @cached_property
    def lifecycle(self) -> TokenLifecycle:
        from qbo_connect.domain.lifecycle import RefreshTimings, TokenLifecycle

        timings = RefreshTimings(
            margin_seconds=self.settings.refresh_margin_seconds,
            keepalive_seconds=self.settings.on_demand_keepalive_seconds,
            keepalives_per_sweep=int(
                self.settings.secrets_write_budget_per_second * self.settings.refresh_period_seconds
            ),
            call_deadline_seconds=self.settings.refresh_call_deadline_seconds,
            persist_seconds=self.settings.persist_seconds,
        )
        return TokenLifecycle(
            self.store,
            self.vault,
            self.identity,
            self.events,
            self.clock,
            self.leases,
            timings,
            recheck=self.refresh_queue,
            handoff=self.refresh_handoff,
        )

    @cached_property
    def refresh_runs(self) -> RefreshRuns:
        from qbo_connect.metering import publish_metering_gauge
        from qbo_connect.refresh_runs import RefreshRuns
        from qbo_connect.status_gauge import publish_status_gauge

        def gauges(sweep_at: float) -> dict[str, int]:
            publish_metering_gauge(self.usage_ledger, self.settings.metering_allowances, self.clock)
            return publish_status_gauge(
                self.store, sweep_at=sweep_at, period_seconds=self.settings.refresh_period_seconds
            )

        return RefreshRuns(
            self.lifecycle,
            self.refresh_queue,
            self.clock,
            status_gauge=gauges,
            redeliver_events=self.event_history.redeliver if self.event_history else None,
            workers=self.settings.refresh_workers,
        )

    @cached_property
    def authorize_links(self) -> AuthorizeLinks:
        from qbo_connect.domain.authorization import AuthorizeLinks

        return AuthorizeLinks(self.signing_keys, self.clock, lifetime_seconds=self.settings.authorize_link_seconds)

    @cached_property
    def consent(self) -> ConsentFlow:
        from qbo_connect.domain.authorization import ConsentFlow

        return ConsentFlow(
            self.store,
            self.leases,
            self.identity,
            self.company_api,
            self.events,
            self.authorize_links,
            self.clock,
            self.revocations,
            state_seconds=self.settings.oauth_state_seconds,
            exchange_call_seconds=self.settings.consent_call_deadline_seconds,
            persist_seconds=self.settings.persist_seconds,
        )

    @cached_property
    def connection_tests(self) -> ConnectionTests:
        from qbo_connect.domain.connection_test import ConnectionTests

        return ConnectionTests(self.store, self.lifecycle, self.company_api, self.events, self.clock)

    @cached_property
    def webhook_verifiers(self) -> SecretsManagerWebhookVerifiers:
        from qbo_connect.adapters.webhook_verifiers import SecretsManagerWebhookVerifiers

        return SecretsManagerWebhookVerifiers(self._client("secretsmanager"), self.settings, self.clock)

    @cached_property
    def webhook_queue(self) -> SqsWebhookQueue:
        from qbo_connect.adapters.webhook_queue import SqsWebhookQueue
        from qbo_connect.settings import SettingsError

        if not self.settings.webhook_queue_url:
            raise SettingsError("QBO_WEBHOOK_QUEUE_URL is not set: deploy with template.yaml or start the local stack")
        return SqsWebhookQueue(self._client("sqs"), self.settings.webhook_queue_url)

    @cached_property
    def webhook_routing(self) -> WebhookRouting:
        from qbo_connect.adapters.webhook_ledger import DynamoDbDeliveryLedger
        from qbo_connect.domain.webhooks import WebhookRouting

        ledger = DynamoDbDeliveryLedger(self.table)
        # Entity changes go to EventBridge only: they are not events about a connection's state.
        return WebhookRouting(
            self.store,
            ledger,
            self.event_bus,
            self.clock,
            dedup_seconds=self.settings.webhook_dedup_seconds,
            stale_claim_seconds=self.settings.webhook_claim_stale_seconds,
        )

    @cached_property
    def administration(self) -> Administration:
        from qbo_connect.domain.administration import Administration

        return Administration(
            self.store, self.vault, self.leases, self.revocations, self.events, self.clock, self.settings
        )

    @cached_property
    def administrators(self) -> StillAdministrators | None:
        """Whether a signed-in person is still an administrator; None without a pool to ask (QBO_ADMIN_USER_POOL_ID)."""
        if not self.settings.admin_user_pool_id:
            return None
        from qbo_connect.adapters.cognito_administrators import CognitoAdministrators
        from qbo_connect.domain.administrators import StillAdministrators

        directory = CognitoAdministrators(
            self._client("cognito-idp"), user_pool_id=self.settings.admin_user_pool_id, group=self.settings.admin_group
        )
        return StillAdministrators(directory, self.clock)

    @cached_property
    def admin(self) -> AdminOperations:
        """What the CLI, the admin API and the console do to connections (one layer for all three)."""
        from qbo_connect.domain.admin_operations import AdminOperations

        return AdminOperations(
            self.administration,
            self.store,
            self.leases,
            self.lifecycle,
            self.connection_tests,
            self.authorize_links,
            self.identity,
            self.events,
            self.clock,
            self.settings,
            self.revocations.leases,
            history=self.event_history,
        )


def build_services(
    settings: Settings | None = None, *, session: AwsClients | None = None, clock: Clock | None = None
) -> Services:
    from qbo_connect.adapters.clock import SystemClock

    return Services(
        settings=settings or Settings.from_environment(),
        session=session or BotocoreSession(),
        clock=clock or SystemClock(),
    )


_lock = threading.Lock()
_services: Services | None = None


# One function's own services while its handler runs: the local stack runs every function in one process, and a
# function whose template gives it settings of its own (the admin function's deadlines) must run with them, as
# it does in its own Lambda container. Never set in Lambda.
_function_services: ContextVar[Services | None] = ContextVar("qbo_function_services", default=None)


def services() -> Services:
    """The process-wide services, built from the environment on first use (or the running function's own)."""
    own = _function_services.get()
    if own is not None:
        return own
    global _services
    with _lock:
        if _services is None:
            _services = build_services()
        return _services


def reset_services() -> None:
    """Forget the process-wide services (the local stack and tests change the environment)."""
    global _services
    with _lock:
        _services = None


@contextmanager
def function_services(own: Services) -> Iterator[None]:
    """Code run under this (and the threads it starts with its context) gets `own` from services()."""
    token = _function_services.set(own)
    try:
        yield
    finally:
        _function_services.reset(token)
