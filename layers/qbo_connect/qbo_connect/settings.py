"""Every environment variable the service reads, read once, with defaults.

An empty value counts as unset, so a SAM parameter left at "" falls back to the default here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import field
from urllib.parse import urlsplit

from qbo_connect import intuit
from qbo_connect.domain.metering import Allowances
from qbo_connect.records import record

# The template's AdminGroupName default (tests/unit/test_template.py keeps the two equal).
DEFAULT_ADMIN_GROUP = "qbo-connect-admins"
WEBHOOK_DEDUP_SECONDS = 15 * 86400
# Every AWS client's attempts at a call, the first included (runtime._aws_config: botocore's standard mode, and its
# own default). The time budgets count on it: more attempts outlast them while AWS throttles.
AWS_ATTEMPTS = 3
# The longest one AWS call takes while AWS throttles every attempt: botocore backs off rand(0, 1) x 1, 2, ... s
# before each retry (throttling's scale), and each refusal takes a moment to come back.
AWS_THROTTLED_CALL_SECONDS = sum(2.0**retry for retry in range(AWS_ATTEMPTS - 1)) + AWS_ATTEMPTS * 0.1
# What persisting an answer may take after the vault write's deadline: the vault's last attempt, sealing the token
# set (KMS) when the vault refused it, and the connection item's conditional write, each throttled.
AFTER_VAULT_DEADLINE_SECONDS = 3 * AWS_THROTTLED_CALL_SECONDS


class SettingsError(ValueError):
    """A configuration value is missing or malformed."""


@record
class Settings:
    table_name: str
    secret_prefix: str = "qbo-connect/"
    signing_key_secret_id: str = ""
    public_base_url: str = ""
    event_bus_name: str = "default"
    refresh_queue_url: str = ""
    # Where a caller with too little time left to see a refresh through hands it (TokenLifecycle's hand-off).
    refresh_function_name: str = ""
    webhook_queue_url: str = ""
    kms_key_id: str = ""
    # The KMS key that seals a rotated token set onto the connection item while the vault refuses it.
    rotation_key_id: str = ""

    authorization_url: str = intuit.AUTHORIZATION_URL
    token_url: str = intuit.TOKEN_URL
    revocation_url: str = intuit.REVOCATION_URL
    # Empty: Intuit's userinfo endpoint of the connection's environment (intuit.USERINFO_URLS).
    userinfo_url: str = ""
    production_api_base_url: str = intuit.PRODUCTION_API_BASE_URL
    sandbox_api_base_url: str = intuit.SANDBOX_API_BASE_URL
    # host[:port] values besides Intuit's two API hosts that a connection may use (the emulator).
    allowed_api_hosts: frozenset[str] = field(default_factory=frozenset)

    refresh_margin_seconds: int = 900
    refresh_period_seconds: int = 300
    # An on-demand connection's keep-alive refresh comes this long after its last refresh.
    on_demand_keepalive_seconds: int = 86_400
    # Lease > refresh call deadline + vault write deadline + clock skew allowance (checked below).
    lease_seconds: int = 200
    refresh_call_deadline_seconds: float = float(intuit.REQUEST_TIME_LIMIT_SECONDS)
    # The callback answers through API Gateway, which gives up after 29 s: the code exchange gets less.
    consent_call_deadline_seconds: float = 15.0
    # An import's one verifying refresh (admin_operations.import_tokens): no stored grant exists yet to hand to the
    # refresh function, so the admin API sends it itself, within its own 30 s.
    import_call_deadline_seconds: float = 15.0
    vault_write_deadline_seconds: float = 30.0
    # How far two machines' clocks may disagree: nobody takes over a lease before expiry + this.
    clock_skew_seconds: float = 30.0
    secrets_write_budget_per_second: float = 40.0
    # How many processes share the budget: the refresh function's instances (the refresh queue's maximum
    # concurrency); 1 elsewhere, where a request writes at most once.
    write_budget_shares: int = 1
    # Refresh messages per invocation (the refresh function's; it also sizes the AWS clients' pools).
    refresh_batch_size: int = 20
    authorize_link_seconds: int = 1800
    oauth_state_seconds: int = 600
    connect_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 30.0
    minor_version: int = intuit.MINOR_VERSION
    # The administrators' Cognito user pool and the console's app client (console sign-in).
    admin_user_pool_id: str = ""
    admin_console_client_id: str = ""
    # Where the console sends its sign-in: Cognito's regional endpoint unless set (the local stack's moto).
    cognito_endpoint_url: str = ""
    # The Cognito group whose members may use the console and the admin API (the token's cognito:groups).
    admin_group: str = DEFAULT_ADMIN_GROUP

    @property
    def cognito_sign_in_url(self) -> str:
        if self.cognito_endpoint_url:
            return self.cognito_endpoint_url.rstrip("/") + "/"
        region = self.admin_user_pool_id.partition("_")[0]
        return f"https://cognito-idp.{region}.amazonaws.com/"

    # How long a webhook event ID is remembered: longer than the webhook dead-letter queue keeps a message
    # (template.yaml, 14 days from its first enqueue) plus a day to act, so that a message redriven on its
    # last day still finds the claims of the changes it published (and Intuit's retries, every 6 hours).
    webhook_dedup_seconds: int = WEBHOOK_DEDUP_SECONDS
    # How long a webhook change's claim protects a publisher that has not finished it. Longer than the
    # webhook events function runs (template.yaml, 30 s), so a live publisher is never overtaken; shorter
    # than the webhook queue's visibility timeout less that run (180 - 30 s), so SQS's redelivery of a
    # message whose consumer was stopped takes its claims over instead of deleting it as a duplicate.
    webhook_claim_stale_seconds: int = 60
    # Each connection's event history (domain/event_history.py); empty: events are only published.
    events_table_name: str = ""
    event_history_days: int = 90

    # Metering (domain/metering.py): how often a process writes its API call counts (0: after every call,
    # for the service's own low-volume functions), each app's monthly CorePlus allowance (Intuit's Builder
    # tier by default; "CLIENT_ID=N,..." per app) and the share of it at which the alarm fires.
    metering_flush_seconds: float = 60.0
    metering_allowances: Allowances = field(default_factory=Allowances)
    metering_alarm_percent: float = 80.0

    @property
    def http_timeout(self) -> tuple[float, float]:
        return (self.connect_timeout_seconds, self.read_timeout_seconds)

    @property
    def persist_seconds(self) -> float:
        """What persisting Intuit's answer may take: the vault write's deadline, and what may follow it."""
        return self.vault_write_deadline_seconds + AFTER_VAULT_DEADLINE_SECONDS

    def __post_init__(self) -> None:
        if self.on_demand_keepalive_seconds > MAX_KEEPALIVE_SECONDS:
            raise SettingsError(
                f"QBO_ON_DEMAND_KEEPALIVE_SECONDS ({self.on_demand_keepalive_seconds}) is longer than a week: an "
                "unused on-demand connection would go that long without a refresh, and its grant's end or a "
                "revocation unseen; lower it"
            )
        needed = self.refresh_call_deadline_seconds + self.vault_write_deadline_seconds + self.clock_skew_seconds
        if self.lease_seconds <= needed:
            raise SettingsError(
                f"QBO_LEASE_SECONDS ({self.lease_seconds}) must exceed the refresh call deadline, the vault write "
                f"deadline and the clock skew allowance together ({needed:.0f} s): raise it or lower those"
            )

    @property
    def secrets_writes_per_second_here(self) -> float:
        return self.secrets_write_budget_per_second / self.write_budget_shares

    @property
    def refresh_workers(self) -> int:
        """How many of a batch's refreshes run at once. A rotated token set waits in memory for this process's
        share of the write budget; no more run together than that share writes within the vault write
        deadline, so none waits longer (a low budget or many instances: the batch runs in waves)."""
        within_deadline = math.floor(self.vault_write_deadline_seconds * self.secrets_writes_per_second_here)
        return max(1, min(self.refresh_batch_size, within_deadline))

    @property
    def signing_key_name(self) -> str:
        return self.signing_key_secret_id or f"{self.secret_prefix}signing-key"

    @property
    def webhook_verifiers_secret_name(self) -> str:
        return f"{self.secret_prefix}webhook-verifiers"

    def connection_secret_name(self, connection_id: str) -> str:
        return f"{self.secret_prefix}connections/{connection_id}"

    def userinfo_url_for(self, environment: intuit.Environment) -> str:
        return self.userinfo_url or intuit.USERINFO_URLS[environment]

    def api_base_url(self, environment: intuit.Environment) -> str:
        if environment is intuit.Environment.PRODUCTION:
            return self.production_api_base_url
        return self.sandbox_api_base_url

    def is_allowed_api_base_url(self, base_url: str) -> bool:
        """Only Intuit's API hosts over https, or a host the deployment names explicitly."""
        parts = urlsplit(base_url)
        intuit_hosts = {urlsplit(url).netloc for url in (intuit.PRODUCTION_API_BASE_URL, intuit.SANDBOX_API_BASE_URL)}
        configured = {urlsplit(url).netloc for url in (self.production_api_base_url, self.sandbox_api_base_url)}
        if parts.scheme == "https" and parts.netloc in intuit_hosts | configured:
            return True
        return parts.scheme in {"http", "https"} and parts.netloc in self.allowed_api_hosts

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def text(name: str, default: str = "") -> str:
            return env.get(name, "").strip() or default

        def number(name: str, default: float, kind: type = int, *, zero_allowed: bool = False):
            raw = text(name)
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise SettingsError(f"{name} must be a number, got {raw!r}: fix the setting") from None
            if not math.isfinite(value) or value < 0 or (value == 0 and not zero_allowed):
                least = "zero or more" if zero_allowed else "greater than zero"
                raise SettingsError(f"{name} must be a finite number {least}, got {raw!r}: fix the setting")
            return value

        table_name = text("QBO_TABLE_NAME")
        if not table_name:
            raise SettingsError("QBO_TABLE_NAME is not set: deploy with template.yaml or start the local stack")
        prefix = text("QBO_SECRET_PREFIX", "qbo-connect/")
        if not prefix.endswith("/"):
            prefix += "/"
        return cls(
            table_name=table_name,
            secret_prefix=prefix,
            signing_key_secret_id=text("QBO_SIGNING_KEY_SECRET_ID"),
            public_base_url=text("QBO_PUBLIC_BASE_URL").rstrip("/"),
            event_bus_name=text("QBO_EVENT_BUS_NAME", "default"),
            refresh_queue_url=text("QBO_REFRESH_QUEUE_URL"),
            refresh_function_name=text("QBO_REFRESH_FUNCTION_NAME"),
            webhook_queue_url=text("QBO_WEBHOOK_QUEUE_URL"),
            kms_key_id=text("QBO_KMS_KEY_ID"),
            rotation_key_id=text("QBO_ROTATION_KEY_ID"),
            authorization_url=text("QBO_INTUIT_AUTHORIZATION_URL", intuit.AUTHORIZATION_URL),
            token_url=text("QBO_INTUIT_TOKEN_URL", intuit.TOKEN_URL),
            revocation_url=text("QBO_INTUIT_REVOCATION_URL", intuit.REVOCATION_URL),
            userinfo_url=text("QBO_INTUIT_USERINFO_URL"),
            production_api_base_url=text("QBO_PRODUCTION_API_BASE_URL", intuit.PRODUCTION_API_BASE_URL).rstrip("/"),
            sandbox_api_base_url=text("QBO_SANDBOX_API_BASE_URL", intuit.SANDBOX_API_BASE_URL).rstrip("/"),
            allowed_api_hosts=frozenset(h.strip() for h in text("QBO_ALLOWED_API_HOSTS").split(",") if h.strip()),
            refresh_margin_seconds=number("QBO_REFRESH_MARGIN_SECONDS", 900),
            refresh_period_seconds=refresh_period(
                text("QBO_REFRESH_SCHEDULE"), number("QBO_REFRESH_PERIOD_SECONDS", 0)
            ),
            on_demand_keepalive_seconds=number("QBO_ON_DEMAND_KEEPALIVE_SECONDS", 86_400),
            lease_seconds=number("QBO_LEASE_SECONDS", 200),
            refresh_call_deadline_seconds=number(
                "QBO_REFRESH_CALL_DEADLINE_SECONDS", float(intuit.REQUEST_TIME_LIMIT_SECONDS), float
            ),
            consent_call_deadline_seconds=number("QBO_CONSENT_CALL_DEADLINE_SECONDS", 15.0, float),
            import_call_deadline_seconds=number("QBO_IMPORT_CALL_DEADLINE_SECONDS", 15.0, float),
            vault_write_deadline_seconds=number("QBO_VAULT_WRITE_DEADLINE_SECONDS", 30.0, float),
            clock_skew_seconds=number("QBO_CLOCK_SKEW_SECONDS", 30.0, float),
            secrets_write_budget_per_second=number("QBO_SECRETS_WRITE_BUDGET", 40.0, float),
            write_budget_shares=number("QBO_WRITE_BUDGET_SHARES", 1),
            refresh_batch_size=number("QBO_REFRESH_BATCH_SIZE", 20),
            authorize_link_seconds=number("QBO_AUTHORIZE_LINK_SECONDS", 1800),
            oauth_state_seconds=number("QBO_OAUTH_STATE_SECONDS", 600),
            connect_timeout_seconds=number("QBO_CONNECT_TIMEOUT_SECONDS", 5.0, float),
            read_timeout_seconds=number("QBO_READ_TIMEOUT_SECONDS", 30.0, float),
            minor_version=number("QBO_MINOR_VERSION", intuit.MINOR_VERSION),
            admin_user_pool_id=text("QBO_ADMIN_USER_POOL_ID"),
            admin_console_client_id=text("QBO_ADMIN_CONSOLE_CLIENT_ID"),
            cognito_endpoint_url=text("QBO_COGNITO_ENDPOINT_URL"),
            admin_group=text("QBO_ADMIN_GROUP", DEFAULT_ADMIN_GROUP),
            webhook_dedup_seconds=number("QBO_WEBHOOK_DEDUP_SECONDS", WEBHOOK_DEDUP_SECONDS),
            webhook_claim_stale_seconds=number("QBO_WEBHOOK_CLAIM_STALE_SECONDS", 60),
            metering_flush_seconds=number("QBO_METERING_FLUSH_SECONDS", 60.0, float, zero_allowed=True),
            metering_allowances=allowances(
                number("QBO_METERING_MONTHLY_ALLOWANCE", 500_000), text("QBO_METERING_ALLOWANCES")
            ),
            metering_alarm_percent=number("QBO_METERING_ALARM_PERCENT", 80.0, float),
            events_table_name=text("QBO_EVENTS_TABLE_NAME"),
            event_history_days=number("QBO_EVENT_HISTORY_DAYS", 90),
        )


def allowances(monthly_allowance: int, overrides: str) -> Allowances:
    try:
        return Allowances.parse(monthly_allowance, overrides)
    except ValueError as error:
        raise SettingsError(f"QBO_METERING_ALLOWANCES: {error}: fix the setting") from None


# A refresh token lapses after about 100 unused days; a revocation should be found within days, not weeks.
MAX_KEEPALIVE_SECONDS = 7 * 86_400

_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_RATE_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
DEFAULT_REFRESH_PERIOD_SECONDS = 300


def refresh_period(schedule: str, period_seconds: int) -> int:
    """The sweep period: derived from a rate(...) schedule (QBO_REFRESH_SCHEDULE), or given for a cron one.
    One fact in one place: a period given beside a rate schedule must agree with it."""
    rate = _RATE.fullmatch(schedule.strip())
    if rate is None:
        if schedule.strip() and not period_seconds:
            raise SettingsError(
                f"QBO_REFRESH_SCHEDULE {schedule!r} is not a rate(...) expression, so the sweep period cannot be "
                "derived from it: set RefreshPeriodSeconds (QBO_REFRESH_PERIOD_SECONDS) to its longest gap"
            )
        return period_seconds or DEFAULT_REFRESH_PERIOD_SECONDS
    derived = int(rate.group(1)) * _RATE_UNIT_SECONDS[rate.group(2).rstrip("s")]
    if period_seconds and period_seconds != derived:
        raise SettingsError(
            f"RefreshPeriodSeconds (QBO_REFRESH_PERIOD_SECONDS={period_seconds}) disagrees with RefreshSchedule "
            f"{schedule!r} ({derived} s): leave RefreshPeriodSeconds at 0 to derive it from the schedule"
        )
    return derived


DETAILED_TRACING_ENV = "QBO_DETAILED_TRACING"


def detailed_tracing(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the functions trace each AWS call and Intuit request (observability.py says what it costs).
    Read on its own, not with Settings: the handlers decide it when their module is imported."""
    env = os.environ if environ is None else environ
    value = env.get(DETAILED_TRACING_ENV, "").strip().lower()
    if value not in {"", "true", "false"}:
        raise SettingsError(f"{DETAILED_TRACING_ENV} must be true or false, got {value!r}: fix the setting")
    return value == "true"
