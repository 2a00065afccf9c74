"""Shared pieces of the token-lifecycle integration tests: real AWS APIs (moto in server mode), the real
Intuit emulator over HTTP, connections set up through the real consent flow, and adapter wrappers that
record calls or crash on cue.

`race_process` is one racer of the multi-process race, run in a process of its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.session
import pytest
from fakes import FakeClock
from qbo_connect import intuit
from qbo_connect.adapters.dynamodb_store import create_table
from qbo_connect.adapters.intuit_oauth import IntuitOAuth
from qbo_connect.adapters.quickbooks_api import QuickBooksApi
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.connection import Connection
from qbo_connect.domain.metering import Allowances, UsageKey
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.errors import QboConnectError
from qbo_connect.ports import ConnectionEvent
from qbo_connect.runtime import Services, build_services
from qbo_connect.settings import Settings
from qbo_local.consent import consent_in_emulator
from qbo_local.serialized_moto import SerializedMotoServer

REGION = "us-east-1"
API_BASE_URL = "https://api.qbo-connect.test"  # where the authorize and callback routes would live
REALM_ID = "9341453050000001"  # one of the emulator's seeded companies
COMPANY_NAME = "Sandbox Company_US_1"
ACCESS_TOKEN_SECONDS = 3600
MARGIN_SECONDS = 900
# Short deadlines keep the arithmetic visible: lease 60 > call 20 + vault write 10 + skew 5.
LEASE_SECONDS = 60
CALL_DEADLINE_SECONDS = 20.0
VAULT_WRITE_DEADLINE_SECONDS = 10.0
SKEW_SECONDS = 5.0
# When a refresher that died holding the lease is certainly done at Intuit, by anyone's clock: the mark it
# wrote carries its own skew allowance, and readers add theirs.
FENCE_SECONDS = LEASE_SECONDS + intuit.REQUEST_TIME_LIMIT_SECONDS + 2 * SKEW_SECONDS + 1


# --- clocks -----------------------------------------------------------------------------------------
class OffsetClock:
    """Real time plus an offset that only grows: shared by threads, and by processes given the offset.

    Real sleeps: leases taken in other threads and processes must expire in the same time as here.
    """

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def manual_clock() -> FakeClock:
    """Time moves only when told to, or when someone sleeps, starting now (the emulator checks real
    expiries at start): the emulator and the services share it."""
    return FakeClock(float(int(time.time())))


# --- AWS: moto in server mode ------------------------------------------------------------------------
MotoEndpoint = SerializedMotoServer


_moto: list[MotoEndpoint] = []
_moto_lock = threading.Lock()


def shared_moto() -> MotoEndpoint:
    """One moto server for the whole test process (a daemon thread); tests keep apart by names."""
    with _moto_lock:
        if not _moto:
            _moto.append(MotoEndpoint())
        return _moto[0]


def aws_environment(endpoint_url: str) -> dict[str, str]:
    """What boto3 needs to talk to moto: also handed to the racing processes."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


_shared_loader: list[Any] = []


def new_session() -> boto3.Session:
    """A session per thread (boto3 sessions and resources are not thread-safe), sharing one loader of
    service models, so that a new session does not parse the same JSON files again."""
    core = botocore.session.get_session()
    if _shared_loader:
        core.register_component("data_loader", _shared_loader[0])
    else:
        _shared_loader.append(core.get_component("data_loader"))
    return boto3.Session(
        botocore_session=core, aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


# --- adapter wrappers ---------------------------------------------------------------------------------
class Crash(BaseException):
    """The process dies here. A BaseException, so no `except Exception` in the code under test catches it."""


class CallLog:
    """The ordered adapter calls of one services instance (`name` on the way in, `name ->` on the way
    out; tests may note AWS operations in between), with an optional crash point.

    `crash_at=("vault.write", "before")` makes that call die before it reaches the adapter; "after"
    lets it complete and dies as it returns. After the crash every call dies too: a dead process sends
    nothing more, not even the lease release in a `finally`.
    """

    def __init__(self, crash_at: tuple[str, str] | None = None) -> None:
        self.entries: list[str] = []
        self.crash_at = crash_at
        self.crashed = False
        self._lock = threading.Lock()

    def note(self, entry: str) -> None:
        with self._lock:
            self.entries.append(entry)

    def call(self, name: str, method: Callable, *args: Any, **kwargs: Any) -> Any:
        if self.crashed:
            raise Crash(f"already dead, {name} not sent")
        self.note(name)
        if self.crash_at == (name, "before"):
            self.crashed = True
            raise Crash(f"crashed before {name}")
        result = method(*args, **kwargs)
        self.note(f"{name} ->")
        if self.crash_at == (name, "after"):
            self.crashed = True
            raise Crash(f"crashed after {name}")
        return result

    def names(self, prefix: str = "") -> list[str]:
        with self._lock:
            return [e for e in self.entries if e.startswith(prefix)]


class Recorded:
    """Wraps an adapter: every public method call goes through the CallLog under `<label>.<method>`."""

    def __init__(self, target: Any, label: str, log: CallLog) -> None:
        self._target = target
        self._label = label
        self._log = log

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if name.startswith("_") or not callable(attribute):
            return attribute
        return lambda *args, **kwargs: self._log.call(f"{self._label}.{name}", attribute, *args, **kwargs)


class RecordingEvents:
    """Keeps what was published, and still publishes to EventBridge (moto) through the real adapter."""

    def __init__(self, target: Any) -> None:
        self._target = target
        self.published: list[ConnectionEvent] = []
        self._lock = threading.Lock()

    def publish(self, events: list[ConnectionEvent]) -> None:
        with self._lock:
            self.published.extend(events)
        self._target.publish(events)

    def of_type(self, detail_type: str) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e.detail) for e in self.published if e.detail_type == detail_type]

    @property
    def detail_types(self) -> list[str]:
        with self._lock:
            return [e.detail_type for e in self.published]


# --- the stack under test -----------------------------------------------------------------------------
@dataclass
class Stack:
    """One isolated deployment on the shared moto server (its own table and secret prefix) with its own
    Intuit emulator, and a clock the services and the emulator share."""

    settings: Settings
    clock: Any
    emulator_server: Any

    @property
    def emulator(self) -> Any:
        return self.emulator_server.emulator

    @property
    def emulator_url(self) -> str:
        return self.emulator_server.url

    def services(
        self,
        *,
        log: CallLog | None = None,
        identity_wrapper: Callable[[Any], Any] | None = None,
        session: boto3.Session | None = None,
        settings: Settings | None = None,
        clock: Any = None,
    ) -> Services:
        """Fresh services, as a new Lambda container or CLI process builds them.

        With `log`, the store, the vault, the events and the Intuit client go through it (recording, crashing).
        `identity_wrapper` wraps the real Intuit client (slow holders, lenient providers). `clock` stands in for
        the stack's (one that tells when its holder waits).
        """
        session = session or new_session()
        settings = settings or self.settings
        clock = clock or self.clock
        services = build_services(settings, session=session, clock=clock)
        services.events = RecordingEvents(services.events)
        identity: Any = IntuitOAuth(settings, clock)
        if identity_wrapper is not None:
            identity = identity_wrapper(identity)
        if log is not None:
            services.store = Recorded(services.store, "store", log)
            services.vault = Recorded(services.vault, "vault", log)
            services.events = Recorded(services.events, "events", log)
            identity = Recorded(identity, "identity", log)
        services.identity_override = identity
        return services

    # --- setting a connection up the way a person does --------------------------------------------------
    def connect(self, services: Services | None = None, *, name: str | None = None) -> Connection:
        """Create a connection and run the consent flow: signed link, Intuit's consent page, Connect, callback."""
        services = services or self.services()
        created = services.administration.create(
            NewConnection(
                name=name or f"Acme {uuid.uuid4().hex[:8]}",
                client_id=f"ABtestclient{uuid.uuid4().hex[:12]}",
                client_secret="cs-" + uuid.uuid4().hex,
            )
        )
        # The browser: the signed link, Intuit's consent page, the Connect button, the callback.
        result = consent_in_emulator(
            services,
            connection_id=created.connection_id,
            api_base_url=API_BASE_URL,
            emulator_url=self.emulator_url,
            realm_id=REALM_ID,
        )
        return result.connection

    # --- looking at the outcome -------------------------------------------------------------------------
    def connection(self, connection_id: str) -> Connection:
        connection = self.services().store.get(connection_id)
        assert connection is not None
        return connection

    def token_set(self, connection_id: str) -> TokenSet:
        secret = self.services().vault.read(connection_id)
        assert secret is not None and secret.token_set is not None
        return secret.token_set

    def secret_generation(self, connection_id: str) -> int:
        secret = self.services().vault.read(connection_id)
        assert secret is not None
        return secret.generation

    def company_name(self, access_token: str) -> str | None:
        """CompanyInfo from the emulator with this access token; None if Intuit refuses it."""
        try:
            info = QuickBooksApi(self.settings).company_info(
                base_url=self.emulator_url,
                realm_id=REALM_ID,
                access_token=access_token,
                usage=UsageKey("workflow", "acme", intuit.Environment.SANDBOX),
            )
        except QboConnectError:
            return None
        return info.company_name

    def refresh_calls(self) -> int:
        return self.emulator.stats.grant_type("refresh_token")

    def grant(self) -> dict[str, Any]:
        grants = self.emulator.grants()
        assert len(grants) == 1, grants
        return grants[0]

    def assert_no_lease(self, connection_id: str) -> None:
        connection = self.connection(connection_id)
        assert connection.lease_owner is None, "a lease was left behind"

    def assert_token_works_and_refreshes(self, connection_id: str) -> None:
        """The stored token set is the newest Intuit issued: its access token reads CompanyInfo and its
        refresh token refreshes once more (strict rotation refuses any older one)."""
        before = self.token_set(connection_id)
        assert self.company_name(before.access_token) == COMPANY_NAME
        calls = self.refresh_calls()
        self.clock.advance(before.expires_at - self.clock.now() - MARGIN_SECONDS + 1)
        result = self.services().lifecycle.refresh(connection_id)
        assert result.outcome.value == "refreshed", result
        assert self.refresh_calls() == calls + 1
        after = self.token_set(connection_id)
        assert after.refresh_token != before.refresh_token
        assert self.company_name(after.access_token) == COMPANY_NAME
        assert not self.grant()["revoked"]


def emulator_settings(emulator_url: str, suffix: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "table_name": f"qbo-test-{suffix}",
        "secret_prefix": f"qbo-test-{suffix}/",
        "public_base_url": API_BASE_URL,
        "authorization_url": emulator_url + urlsplit(intuit.AUTHORIZATION_URL).path,
        "token_url": emulator_url + urlsplit(intuit.TOKEN_URL).path,
        "revocation_url": emulator_url + urlsplit(intuit.REVOCATION_URL).path,
        "sandbox_api_base_url": emulator_url,
        "allowed_api_hosts": frozenset({urlsplit(emulator_url).netloc}),
        "refresh_margin_seconds": MARGIN_SECONDS,
        "lease_seconds": LEASE_SECONDS,
        "refresh_call_deadline_seconds": CALL_DEADLINE_SECONDS,
        "vault_write_deadline_seconds": VAULT_WRITE_DEADLINE_SECONDS,
        "clock_skew_seconds": SKEW_SECONDS,
        "connect_timeout_seconds": 2.0,
        "read_timeout_seconds": 10.0,
    }
    values.update(overrides)
    return Settings(**values)


def stack_factory(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Stack]]:
    """The body of each module's `make_stack` fixture:
    make_stack(clock, emulator_sleep=None, **settings) -> a Stack on its own table, secrets and emulator."""
    from qbo_local.emulator import EmulatorConfig, EmulatorServer

    for key, value in aws_environment(shared_moto().url).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    servers: list[Any] = []

    def make(clock: Any, *, emulator_sleep: Callable[[float], None] | None = None, **overrides: Any) -> Stack:
        config = EmulatorConfig(
            clock=clock.now,
            sleep=emulator_sleep or clock.sleep,
            access_token_seconds=ACCESS_TOKEN_SECONDS,
            rate_limits=False,
        )
        server = EmulatorServer(config, port=0).start()
        servers.append(server)
        suffix = uuid.uuid4().hex[:12]
        settings = emulator_settings(server.url, suffix, **overrides)
        create_table(new_session().client("dynamodb"), settings.table_name)
        return Stack(settings=settings, clock=clock, emulator_server=server)

    yield make
    for server in servers:
        server.stop()


def token_digest(token: str) -> str:
    """What racers report instead of a token: enough to compare, nothing to leak."""
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# --- one racer of the multi-process race ------------------------------------------------------------------
# Set in the environment of the racers' fork server, which imports this module once before forking them.
WARM_MODELS_VARIABLE = "QBO_TEST_WARM_AWS_MODELS"


def warm_service_models() -> None:
    """Parse the AWS service models the services use into the shared loader (each racer still builds
    its own sessions, clients and connections)."""
    session = new_session()
    for service in ("dynamodb", "secretsmanager", "events"):
        session.client(service, endpoint_url="http://127.0.0.1:9")
    session.resource("dynamodb", endpoint_url="http://127.0.0.1:9")


def race_process(
    role: str,
    connection_id: str,
    endpoint_url: str,
    settings_document: str,
    clock_offset: float,
    ready: Any,
    start: Any,
    reports: Any,
) -> None:
    """One racer in a process of its own: builds its services as a cold Lambda container does, says it is
    ready, waits for the start, then refreshes (role "refresh") or asks for a token ("token") once."""
    os.environ.update(aws_environment(endpoint_url))
    values = json.loads(settings_document)
    values["allowed_api_hosts"] = frozenset(values["allowed_api_hosts"])
    values["metering_allowances"] = Allowances(**values["metering_allowances"])
    services = build_services(Settings(**values), session=new_session(), clock=OffsetClock(clock_offset))
    # Warm up what a cold start pays for (clients, connections), so the racers really start together.
    lifecycle = services.lifecycle
    services.store.get(connection_id)
    services.vault.read(connection_id)
    ready.put(os.getpid())
    report: dict[str, Any] = {"role": role, "pid": os.getpid()}
    if not start.wait(60):
        report["error"] = "never started"
    else:
        report |= race_once(role, lifecycle, connection_id, services.clock)
    reports.put(report)


def race_once(role: str, lifecycle: Any, connection_id: str, clock: Any) -> dict[str, Any]:
    """One racer's turn: a refresh, or a workflow asking for a token; what it saw, never the token itself."""
    try:
        if role == "refresh":
            return {"outcome": lifecycle.refresh(connection_id).outcome.value}
        _, token_set = lifecycle.valid_token(connection_id)
        return {"token": token_digest(token_set.access_token), "valid_for": token_set.expires_at - clock.now()}
    except Exception as error:
        return {"error": repr(error)}


def settings_json(settings: Settings) -> str:
    values = {name: getattr(settings, name) for name in settings.__dataclass_fields__}
    values["allowed_api_hosts"] = sorted(settings.allowed_api_hosts)
    values["metering_allowances"] = dataclasses.asdict(settings.metering_allowances)
    return json.dumps(values)


@contextlib.contextmanager
def botocore_hook(session: boto3.Session, event: str, handler: Callable[..., Any]) -> Iterator[None]:
    """Register a botocore event handler on a session (clients made afterwards see it)."""
    session.events.register(event, handler)
    try:
        yield
    finally:
        session.events.unregister(event, handler)


if os.environ.get(WARM_MODELS_VARIABLE) == "1":
    warm_service_models()


def run_queued_checks(stack: Stack, checks: Any, clock: Any) -> list[str]:
    """The refresh function taking the checks the service queued (`checks`, chaos.soak.DelayedChecks: SQS delivering
    each when due, re-queued ones too); returns the detail types of the events they published."""
    from chaos.soak import deliver_checks

    reported: list[str] = []

    def refresh_function(connection_ids: list[str]) -> tuple[list, list]:
        services = stack.services()
        services.refresh_queue = checks
        rows = [
            (cid, services.lifecycle.refresh(cid, requeue_if_in_flight=True).outcome.value, clock.now(), None)
            for cid in connection_ids
        ]
        reported.extend(services.events.detail_types)
        return rows, checks.take()

    deliver_checks(checks.take(), clock, refresh_function)
    return reported
