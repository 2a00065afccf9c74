"""The local stack's fixed names and its options: ports, schedule, paths, and where they come from.

Names mirror what template.yaml deploys (stack name qbo-connect-local), so the handlers see the same
kind of environment on this machine as on AWS.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

STACK_NAME = "qbo-connect-local"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"

TABLE_NAME = STACK_NAME
REFRESH_QUEUE_NAME = f"{STACK_NAME}-refresh"
REFRESH_DLQ_NAME = f"{STACK_NAME}-refresh-dlq"
WEBHOOK_QUEUE_NAME = f"{STACK_NAME}-webhooks"
WEBHOOK_DLQ_NAME = f"{STACK_NAME}-webhooks-dlq"
# As template.yaml's EventLogGroup and EventLogRule: every qbo-connect event, kept for `events tail`.
EVENT_LOG_GROUP = f"/aws/events/qbo-connect/{STACK_NAME}"
EVENT_LOG_RULE = f"{STACK_NAME}-event-log"

# moto accepts any credentials; fixed fake ones keep boto3 from looking for a real profile.
FAKE_AWS_ACCESS_KEY_ID = "testing"
FAKE_AWS_SECRET_ACCESS_KEY = "testing"

DEFAULT_PORT = 3000
DEFAULT_AWS_PORT = 4566
DEFAULT_INTUIT_PORT = 8181
DEFAULT_REFRESH_INTERVAL = 60.0

DEMO_CONNECTION_ID = "demo"
DEMO_NAME = "demo"
DEMO_CLIENT_ID = "demo-client-id"
DEMO_ENVIRONMENT = "sandbox"
# The one administrator of the local user pool (its password is generated each start).
ADMIN_USERNAME = "admin"

# Environment variables read by the local stack itself (never passed on to the handlers' discovery record).
PORT_ENV = "QBO_LOCAL_PORT"
AWS_PORT_ENV = "QBO_LOCAL_AWS_PORT"
INTUIT_PORT_ENV = "QBO_LOCAL_INTUIT_PORT"
REFRESH_INTERVAL_ENV = "QBO_LOCAL_REFRESH_INTERVAL"
REFRESH_CONCURRENCY_ENV = "QBO_LOCAL_REFRESH_CONCURRENCY"
STATE_ENV = "QBO_CONNECT_LOCAL_STATE"
INTUIT_CLIENT_ID_ENV = "QBO_INTUIT_CLIENT_ID"
INTUIT_CLIENT_SECRET_ENV = "QBO_INTUIT_CLIENT_SECRET"
LOCAL_ONLY_VARIABLES = frozenset(
    {
        PORT_ENV,
        AWS_PORT_ENV,
        INTUIT_PORT_ENV,
        REFRESH_INTERVAL_ENV,
        REFRESH_CONCURRENCY_ENV,
        STATE_ENV,
        INTUIT_CLIENT_ID_ENV,
        INTUIT_CLIENT_SECRET_ENV,
    }
)

# What every handler process gets besides the QBO_* settings (Powertools, fake AWS credentials).
BASE_ENVIRONMENT: Mapping[str, str] = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": FAKE_AWS_ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": FAKE_AWS_SECRET_ACCESS_KEY,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "qbo-connect",
    "POWERTOOLS_METRICS_NAMESPACE": "QboConnect",
}


class OptionError(ValueError):
    """An option or environment variable has a value the local stack cannot use."""


@dataclass(frozen=True)
class IntuitKeys:
    client_id: str
    client_secret: str

    def __repr__(self) -> str:  # the secret must never reach a log line or a traceback
        return f"IntuitKeys(client_id={self.client_id!r}, client_secret=<hidden>)"


@dataclass(frozen=True)
class UpOptions:
    root: Path
    port: int = DEFAULT_PORT
    aws_port: int = DEFAULT_AWS_PORT
    intuit_port: int = DEFAULT_INTUIT_PORT
    refresh_interval: float = DEFAULT_REFRESH_INTERVAL
    access_token_seconds: int | None = None
    # Refresh function instances consuming the queue at once; None: the template's RefreshMaxConcurrency.
    refresh_concurrency: int | None = None
    ready_file: Path | None = None
    state_file: Path | None = None
    # The functions' JSON log lines and metrics (what CloudWatch Logs would hold); None: on the terminal.
    function_log: Path | None = None


def env_port(name: str, default: int, environ: Mapping[str, str] | None = None) -> int:
    raw = (os.environ if environ is None else environ).get(name, "").strip()
    if not raw:
        return default
    return parse_port(raw, name)


def parse_port(raw: str, source: str = "port") -> int:
    try:
        port = int(raw)
    except ValueError:
        raise OptionError(f"{source} must be a port number (0 picks a free one), got {raw!r}") from None
    if not 0 <= port <= 65535:
        raise OptionError(f"{source} must be between 0 and 65535, got {port}")
    return port


def env_interval(environ: Mapping[str, str] | None = None) -> float:
    raw = (os.environ if environ is None else environ).get(REFRESH_INTERVAL_ENV, "").strip()
    return parse_interval(raw, REFRESH_INTERVAL_ENV) if raw else DEFAULT_REFRESH_INTERVAL


def parse_interval(raw: str, source: str = "--refresh-interval") -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise OptionError(f"{source} must be a number of seconds, got {raw!r}") from None
    if not seconds > 0:
        raise OptionError(f"{source} must be greater than zero, got {raw!r}")
    return seconds


def parse_concurrency(raw: str, source: str = "--refresh-concurrency") -> int:
    try:
        count = int(raw)
    except ValueError:
        raise OptionError(f"{source} must be a whole number of instances, got {raw!r}") from None
    if not 1 <= count <= 1000:
        raise OptionError(f"{source} must be between 1 and 1000, got {count}")
    return count


def env_concurrency(environ: Mapping[str, str] | None = None) -> int | None:
    raw = (os.environ if environ is None else environ).get(REFRESH_CONCURRENCY_ENV, "").strip()
    return parse_concurrency(raw, REFRESH_CONCURRENCY_ENV) if raw else None


def intuit_keys(environ: Mapping[str, str] | None = None) -> IntuitKeys | None:
    """Intuit sandbox keys from the environment, if both are there (then the stack talks to Intuit)."""
    env = os.environ if environ is None else environ
    client_id = env.get(INTUIT_CLIENT_ID_ENV, "").strip()
    client_secret = env.get(INTUIT_CLIENT_SECRET_ENV, "").strip()
    if bool(client_id) != bool(client_secret):
        raise OptionError(
            f"Set both {INTUIT_CLIENT_ID_ENV} and {INTUIT_CLIENT_SECRET_ENV} to use Intuit's sandbox, "
            "or neither to use the Intuit emulator"
        )
    return IntuitKeys(client_id, client_secret) if client_id else None


def repository_root(explicit: Path | None = None) -> Path:
    """The checkout holding template.yaml and functions/: --root, else the one this package lives in."""
    candidates = [explicit] if explicit else [Path(__file__).resolve().parents[2], Path.cwd(), *Path.cwd().parents]
    for candidate in candidates:
        if candidate and (candidate / "template.yaml").is_file() and (candidate / "functions").is_dir():
            return candidate.resolve()
    if explicit:
        raise OptionError(f"{explicit} has no template.yaml and functions/: pass the repository's folder as --root")
    raise OptionError("Cannot find the repository (template.yaml, functions/): run from the checkout or pass --root")
