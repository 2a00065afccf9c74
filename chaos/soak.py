"""The randomized soak behind `make chaos` (issue 9): many refreshers, real faults, strict rotation.

One coordinator process runs AWS (moto, one request at a time as DynamoDB's conditional writes are
atomic), the strict-rotation Intuit emulator and a socket-level fault proxy in front of its token
endpoint. Refreshers are separate processes with their own boto3 clients, Secrets Manager made as strict
as AWS (failures, throttling, the version quota), and clocks of their own: two run a minute ahead and a
minute behind. Time is virtual (real time plus an offset all processes share), so a day of refreshes
takes minutes.

Each round makes every connection due, plans random faults (an answer delayed, trickled past the whole-
call deadline, dropped or reset after Intuit processed it; Secrets Manager failing, throttling or over
quota; the lease expiring mid-call) and sends three refreshers at each connection at once. Then every
check the service queued after an unknown outcome (SQS DelaySeconds in AWS) runs when it asked for it,
in the soak's time. Then the round is judged from the emulator's grants and the table's items.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

REGION = "us-east-1"
ACCESS_TOKEN_SECONDS = 3600
# What the soak's processes need to reach its own moto server (the endpoint is added when it starts).
AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
}
REALM_ID = "9341453050000001"
CLOCK_OFFSETS = (60.0, -60.0)  # two refreshers' clocks are two minutes apart (the first two processes)
CALL_DEADLINE_SECONDS = 2.0  # real seconds: a trickled answer outlives it
RACERS = 3  # refreshers sent at each connection at once in a round
MAX_CHECK_DELIVERIES = 100  # per round: checks that keep queueing checks are a bug, not a wait
PROXY_FAULTS = ("delay", "trickle", "drop_after_forward", "reset_after_forward")
VAULT_FAULTS = ("InternalServiceError", "ThrottlingException", "LimitExceededException")


@dataclass(frozen=True)
class Profile:
    rounds: int
    connections: int
    refreshers: int
    seed: int = 7

    @property
    def cycles(self) -> int:
        return self.rounds * self.connections


FULL = Profile(rounds=100, connections=20, refreshers=8)
QUICK = Profile(rounds=6, connections=20, refreshers=8)


class SharedClock:
    """Real time plus the soak's offset (shared by every process) plus this process's own skew."""

    def __init__(self, offset: Any, skew: float = 0.0) -> None:
        self._offset = offset
        self._skew = skew

    def now(self) -> float:
        return self.soak_time() + self._skew

    def soak_time(self) -> float:
        """The time every process shares, without this one's skew: what the soak judges by."""
        return time.time() + self._offset.value

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def advance(self, seconds: float) -> None:
        with self._offset.get_lock():
            self._offset.value += seconds


@dataclass
class Tally:
    """What one scenario did over the soak."""

    runs: int = 0
    grants_lost: int = 0
    avoidable: int = 0
    report_seconds: list[float] = field(default_factory=list)


@dataclass
class SoakResult:
    profile: Profile
    seconds: float
    refreshes: int
    intuit_refresh_calls: int
    scenarios: dict[str, Tally]
    connected_while_dead: int
    resends_without_unknown_outcome: int
    outcomes: Counter
    # One line per avoidable loss or unexplained resend: what each refresher saw for that connection.
    incidents: list[str] = field(default_factory=list)

    @property
    def grants_lost(self) -> int:
        return sum(t.grants_lost for t in self.scenarios.values())

    @property
    def avoidable(self) -> int:
        return sum(t.avoidable for t in self.scenarios.values()) + self.connected_while_dead

    @property
    def worst_report_seconds(self) -> float:
        return max((s for t in self.scenarios.values() for s in t.report_seconds), default=0.0)

    @property
    def ok(self) -> bool:
        return self.avoidable == 0 and self.resends_without_unknown_outcome == 0 and self.worst_report_seconds <= 300


# One refresh as a refresher reports it: connection, outcome, soak time after it returned, injected fault.
Row = tuple[str, str, float, str | None]
Check = tuple[float, str]  # when a queued check is due (soak time), and for which connection


class DelayedChecks:
    """The service's recheck queue in the soak (SQS with DelaySeconds in AWS): each check is due `delay`
    seconds after it was queued, in the soak's time, whatever the queueing refresher's own clock says."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self._queued: list[Check] = []

    def enqueue(self, connection_ids: list[str], *, delay_seconds: int = 0) -> int:
        due = self._now() + delay_seconds
        self._queued += [(due, connection_id) for connection_id in connection_ids]
        return len(connection_ids)

    def take(self) -> list[Check]:
        taken, self._queued = self._queued, []
        return taken


class AdvancingClock(Protocol):
    def now(self) -> float: ...
    def advance(self, seconds: float) -> None: ...


def deliver_checks(
    queued: list[Check], clock: AdvancingClock, check: Callable[[list[str]], tuple[list[Row], list[Check]]]
) -> list[Row]:
    """Run each queued check when it is due, as SQS delivers a delayed message: time moves forward to it,
    never back (a check that fell due while the soak jumped time runs at once). A check may queue more."""
    rows: list[Row] = []
    pending = sorted(queued)
    for _ in range(MAX_CHECK_DELIVERIES):
        if not pending:
            return rows
        if pending[0][0] > clock.now():
            clock.advance(pending[0][0] - clock.now())
        now = clock.now()
        due = list(dict.fromkeys(connection_id for at, connection_id in pending if at <= now))
        ran, more = check(due)
        rows += ran
        pending = sorted([c for c in pending if c[0] > now] + more)
    raise RuntimeError(f"checks still queued after {MAX_CHECK_DELIVERIES} deliveries: {pending}")


def time_to_report(rows: list[Row], connection_id: str, unknown_at: float) -> float:
    """From the lost answer to the refresh that marked the connection needs_reauthorization, both in the
    soak's time: the item's updated_at is the writer's own clock, a minute off for the skewed refreshers."""
    reported = (at for c, outcome, at, _ in rows if c == connection_id and outcome == "needs_reauthorization")
    return min(reported, default=float("inf")) - unknown_at


# --- the refreshers -------------------------------------------------------------------------------------
def _refresher(index: int, settings: Any, offset: Any, commands: Any, results: Any, seed: int) -> None:
    import boto3
    from qbo_connect.adapters.secrets_vault import SecretsManagerVault
    from qbo_connect.runtime import build_services
    from qbo_local.faults import StrictSecretsManager

    rng = random.Random(seed * 1000 + index)  # noqa: S311 - fault injection, not security
    skew = CLOCK_OFFSETS[index] if index < len(CLOCK_OFFSETS) else 0.0
    clock = SharedClock(offset, skew)
    services = build_services(settings, session=boto3.Session(region_name=REGION), clock=clock)
    secrets = StrictSecretsManager(services.session.client("secretsmanager"), clock=clock.now)
    services.vault = SecretsManagerVault(secrets, settings, clock=clock)
    checks = services.refresh_queue = DelayedChecks(now=clock.soak_time)  # sent back with each report
    while (command := commands.get()) is not None:
        report = []
        for connection_id in command:
            injected = None
            if rng.random() < 0.06:
                injected = rng.choice(VAULT_FAULTS)
                secrets.fail_next_puts(1 if injected == "LimitExceededException" else rng.randint(1, 3), injected)
            result = services.refresh_runs.refresh_one(connection_id)  # as the refresh function's worker
            secrets.clear_failures()
            wrote = result.outcome.value in {"refreshed", "recovered"}  # only these met the injected failure
            report.append((connection_id, result.outcome.value, clock.soak_time(), injected if wrote else None))
        results.put((report, checks.take()))


# --- the coordinator ------------------------------------------------------------------------------------
class Soak:
    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.rng = random.Random(profile.seed)  # noqa: S311 - fault injection, not security

    def run(self) -> SoakResult:
        from qbo_local.serialized_moto import SerializedMotoServer

        started = time.monotonic()
        moto = SerializedMotoServer()
        # The refreshers (spawned processes) inherit this environment; this process gets its own back after.
        with _environment(AWS_ENVIRONMENT | {"AWS_ENDPOINT_URL": moto.url}):
            try:
                return self._run_on_moto(started)
            finally:
                moto.stop()

    def _run_on_moto(self, started: float) -> SoakResult:
        from qbo_local.emulator import EmulatorConfig, EmulatorServer
        from qbo_local.faults import FaultProxy

        context = multiprocessing.get_context("spawn")  # the coordinator runs server threads: no fork
        self.offset = context.Value("d", 0.0)
        self.clock = SharedClock(self.offset)
        emulator = EmulatorServer(
            EmulatorConfig(clock=self.clock.now, access_token_seconds=ACCESS_TOKEN_SECONDS, rate_limits=False), port=0
        ).start()
        upstream = urlsplit(emulator.url)
        proxy = FaultProxy(upstream.hostname or "127.0.0.1", upstream.port or 80).start()
        try:
            self.emulator = emulator.emulator
            self.emulator_url = emulator.url
            self.proxy = proxy
            self.settings = self._settings(emulator.url, proxy.url)
            return self._soak(context, started)
        finally:
            proxy.stop()
            emulator.stop()

    def _settings(self, emulator_url: str, proxy_url: str) -> Any:
        import boto3
        from qbo_connect import intuit
        from qbo_connect.adapters.dynamodb_store import create_table
        from qbo_connect.settings import Settings

        suffix = uuid.uuid4().hex[:8]
        key = boto3.client("kms").create_key(Description="chaos: seals refused rotations")["KeyMetadata"]["Arn"]
        settings = Settings(
            table_name=f"chaos-{suffix}",
            secret_prefix=f"chaos-{suffix}/",
            public_base_url="https://api.chaos.test",
            authorization_url=emulator_url + urlsplit(intuit.AUTHORIZATION_URL).path,
            token_url=proxy_url + urlsplit(intuit.TOKEN_URL).path,
            revocation_url=emulator_url + urlsplit(intuit.REVOCATION_URL).path,
            sandbox_api_base_url=emulator_url,
            allowed_api_hosts=frozenset({urlsplit(emulator_url).netloc}),
            refresh_call_deadline_seconds=CALL_DEADLINE_SECONDS,
            rotation_key_id=key,
        )
        create_table(boto3.client("dynamodb"), settings.table_name)
        return settings

    def _services(self) -> Any:
        import boto3
        from qbo_connect.runtime import build_services

        return build_services(self.settings, session=boto3.Session(region_name=REGION), clock=self.clock)

    def _soak(self, context: Any, started: float) -> SoakResult:
        services = self._services()
        connection_ids = [self._connect(services) for _ in range(self.profile.connections)]
        commands = [context.Queue() for _ in range(self.profile.refreshers)]
        results = context.Queue()
        workers = [
            context.Process(
                target=_refresher,
                args=(index, self.settings, self.offset, commands[index], results, self.profile.seed),
                daemon=True,
            )
            for index in range(self.profile.refreshers)
        ]
        for worker in workers:
            worker.start()
        scenarios = {name: Tally() for name in (*PROXY_FAULTS, *VAULT_FAULTS, "lease expired mid-call", "none")}
        outcomes: Counter = Counter()
        connected_while_dead = resends = refreshes = 0
        incidents: list[str] = []

        def check(connection_ids: list[str]) -> tuple[list[Row], list[Check]]:
            commands[-1].put(connection_ids)  # one refresher runs the checks, as one Lambda would
            return results.get(timeout=600)

        try:
            for _ in range(self.profile.rounds):
                self.clock.advance(ACCESS_TOKEN_SECONDS - self.settings.refresh_margin_seconds + 10)  # all due
                tokens = self._refresh_tokens(services, connection_ids)
                self.proxy.faulted_requests.clear()
                self.proxy.plan(*self._proxy_faults())
                for queue, share in zip(commands, self._shares(connection_ids), strict=True):
                    queue.put(share)
                jumped = self.rng.random() < 0.25
                if jumped:  # the lease runs out while calls are in flight
                    time.sleep(0.3)
                    self.clock.advance(services.leases.lease_seconds + self.settings.clock_skew_seconds + 1)
                    scenarios["lease expired mid-call"].runs += 1
                reports: list[Row] = []
                queued: list[Check] = []
                for _ in commands:
                    rows, checks = results.get(timeout=600)
                    reports += rows
                    queued += checks
                self.proxy.clear()
                # The checks the service queued after unknown outcomes (and after finding a mark unexpired).
                reports += deliver_checks(queued, self.clock, check)

                hit = self._faults_by_connection(tokens)
                unknown_at: dict[str, float] = {}
                for connection_id, outcome, at, injected in reports:
                    outcomes[outcome] += 1
                    refreshes += outcome in {"refreshed", "recovered"}
                    if outcome == "outcome_unknown":
                        unknown_at.setdefault(connection_id, at)
                    if injected:
                        scenarios[injected].runs += 1
                for kinds in hit.values():
                    for kind in kinds:
                        scenarios[kind].runs += 1
                scenarios["none"].runs += sum(1 for cid in connection_ids if cid not in hit)
                grants = self._grants_by_client(services, connection_ids)
                for connection_id in connection_ids:
                    connection = services.store.get(connection_id)
                    grant = grants[connection_id]
                    tally = scenarios[(hit.get(connection_id) or ["none"])[0]]
                    reused = grant["revoked_reason"] == "consumed refresh token presented again"
                    seen = [(o, round(at - self.clock.now()), i) for c, o, at, i in reports if c == connection_id]
                    seen = [row for row in seen if row[0] not in {"not_due", "busy"}]
                    if reused and connection_id not in unknown_at:
                        resends += 1
                        incidents.append(f"resent {connection_id}: faults {hit.get(connection_id)} saw {seen}")
                    if connection.status.value == "connected":
                        connected_while_dead += grant["revoked"]
                        continue
                    tally.grants_lost += 1
                    if connection_id in unknown_at:
                        tally.report_seconds.append(time_to_report(reports, connection_id, unknown_at[connection_id]))
                    else:
                        tally.avoidable += 1
                        incidents.append(
                            f"lost {connection_id} ({grant['revoked_reason']}): faults {hit.get(connection_id)} saw {seen}"
                        )
                    self._connect(services, connection_id)  # a person reconnects; the soak goes on
        finally:
            for queue in commands:
                queue.put(None)
            for worker in workers:
                worker.join(30)
        return SoakResult(
            profile=self.profile,
            seconds=time.monotonic() - started,
            refreshes=refreshes,
            intuit_refresh_calls=self.emulator.stats.grant_type("refresh_token"),
            scenarios=scenarios,
            connected_while_dead=connected_while_dead,
            resends_without_unknown_outcome=resends,
            outcomes=outcomes,
            incidents=incidents,
        )

    def _shares(self, connection_ids: list[str]) -> list[list[str]]:
        """Each connection to RACERS refreshers at once (random ones), each refresher's list shuffled."""
        shares: list[list[str]] = [[] for _ in range(self.profile.refreshers)]
        for connection_id in connection_ids:
            for index in self.rng.sample(range(self.profile.refreshers), RACERS):
                shares[index].append(connection_id)
        for share in shares:
            self.rng.shuffle(share)
        return shares

    def _proxy_faults(self) -> list[Any]:
        from qbo_local.faults import ProxyFault

        faults = []
        for _ in range(self.rng.randint(0, 4)):
            kind = self.rng.choice(PROXY_FAULTS)
            if kind == "delay":
                faults.append(ProxyFault("delay", seconds=self.rng.uniform(0.1, 1.0)))
            elif kind == "trickle":  # about as long as the 2 s whole-call deadline: some finish, some are cut
                faults.append(ProxyFault("trickle", chunk_bytes=16, interval=0.05))
            else:
                faults.append(ProxyFault(kind))
        return faults

    def _refresh_tokens(self, services: Any, connection_ids: list[str]) -> dict[str, str]:
        """Which connection each refresh token belongs to, to tell which one a fault hit (never printed)."""
        tokens = {}
        for connection_id in connection_ids:
            secret = services.leases.current_secret(services.store.get(connection_id))
            if secret is not None and secret.token_set is not None:
                tokens[secret.token_set.refresh_token] = connection_id
        return tokens

    def _faults_by_connection(self, tokens: dict[str, str]) -> dict[str, list[str]]:
        hit: dict[str, list[str]] = defaultdict(list)
        for kind, request in self.proxy.faulted_requests:
            body = request.partition(b"\r\n\r\n")[2].decode(errors="replace")
            token = dict(parse_qsl(body)).get("refresh_token", "")
            if token in tokens:
                hit[tokens[token]].append(kind)
        return hit

    def _grants_by_client(self, services: Any, connection_ids: list[str]) -> dict[str, dict[str, Any]]:
        latest: dict[str, dict[str, Any]] = {}
        for grant in self.emulator.grants():  # in issue order: the last one per client is the live one
            latest[grant["client_id"]] = grant
        return {cid: latest[services.store.get(cid).client_id] for cid in connection_ids}

    def _connect(self, services: Any, connection_id: str | None = None) -> str:
        """Create (or reuse) a connection and run the consent flow the way a browser does."""
        from qbo_connect.domain.administration import NewConnection
        from qbo_local.consent import consent_in_emulator

        if connection_id is None:
            connection_id = services.administration.create(
                NewConnection(
                    name=f"Chaos {uuid.uuid4().hex[:8]}",
                    client_id=f"ABchaos{uuid.uuid4().hex[:12]}",
                    client_secret="cs-" + uuid.uuid4().hex,
                )
            ).connection_id
        consent_in_emulator(
            services,
            connection_id=connection_id,
            api_base_url=self.settings.public_base_url,
            emulator_url=self.emulator_url,
            realm_id=REALM_ID,
        )
        return connection_id


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """These variables set for the block (and the processes it starts), then put back as they were."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(profile: Profile) -> SoakResult:
    return Soak(profile).run()


def with_rounds(profile: Profile, rounds: int) -> Profile:
    return replace(profile, rounds=rounds)
