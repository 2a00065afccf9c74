"""`qbo-connect doctor`: is everything a connection needs in place? One line per check; a failing line says
what to do. Exit 1 if any check failed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import click
import requests
from botocore.exceptions import BotoCoreError, ClientError
from qbo_connect.domain.connection import ConnectionStatus

from qbo_connect_cli import clock_skew, targets
from qbo_connect_cli.main import Invocation, cli, pass_invocation


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_json(self) -> dict:
        return {"check": self.name, "ok": self.ok, "detail": self.detail}


def _stack(invocation: Invocation) -> Check:
    try:
        target = invocation.target
    except targets.TargetError as error:
        return Check("stack", False, str(error))
    return Check("stack", True, target.description)


def _aws(invocation: Invocation) -> Check:
    session = invocation.target.session
    try:
        identity = session.client("sts").get_caller_identity()
    except (BotoCoreError, ClientError) as error:
        return Check("aws credentials", False, f"{targets.describe_aws_error(error)}")
    return Check("aws credentials", True, f"account {identity['Account']}, region {session.region_name}")


def _clock(invocation: Invocation) -> Check:
    allowance = invocation.target.settings.clock_skew_seconds
    ahead = clock_skew.seconds_ahead_of_aws(invocation.target.session)
    if ahead is None:
        return Check("clock", True, "AWS gave no Date header to compare with")
    if abs(ahead) > allowance + 1:
        return Check(
            "clock",
            False,
            f"{abs(ahead):.0f} s {'ahead of' if ahead > 0 else 'behind'} AWS, more than the {allowance:.0f} s allowed: "
            "synchronise it (timedatectl set-ntp true); until then refresh, test, reset and delete refuse to run",
        )
    return Check("clock", True, f"within {abs(ahead):.0f} s of AWS (allowance {allowance:.0f} s)")


def _callback(invocation: Invocation) -> Check:
    return Check("callback url", True, f"{invocation.target.callback_url} (register it as a redirect URI at Intuit)")


def _intuit(invocation: Invocation) -> Check:
    settings = invocation.target.settings
    unreachable = []
    for url in (settings.token_url, settings.authorization_url):
        try:
            requests.head(url, timeout=5, allow_redirects=False)
        except requests.RequestException as error:
            unreachable.append(f"{urlsplit(url).netloc} ({type(error).__name__})")
    if unreachable:
        return Check(
            "intuit", False, f"cannot reach {', '.join(unreachable)}: check this machine's network and proxy settings"
        )
    return Check("intuit", True, "token and consent endpoints answer")


def _connections(invocation: Invocation) -> list[Check]:
    try:
        connections = invocation.services.store.list()
    except (BotoCoreError, ClientError) as error:
        return [Check("connections", False, targets.describe_aws_error(error))]
    if not connections:
        return [Check("connections", True, f"none yet: {invocation.command('connections', 'create', 'NAME')}")]
    checks = []
    for connection in connections:
        ok = connection.status is ConnectionStatus.CONNECTED
        fix = {
            ConnectionStatus.NOT_CONNECTED: f"connect it: {invocation.command('connections', 'authorize-link', connection.name)}",
            ConnectionStatus.NEEDS_REAUTHORIZATION: "a company administrator must reconnect: "
            + invocation.command("connections", "authorize-link", connection.name),
            ConnectionStatus.INVALID_CLIENT: f"set the current secret: {invocation.command('connections', 'set-secret', connection.name)}",
        }.get(connection.status)
        detail = connection.status.value + (
            f" ({connection.last_refresh_error})" if connection.last_refresh_error else ""
        )
        checks.append(Check(f"connection {connection.name}", ok, detail if ok else f"{detail}: {fix}"))
    return checks


CHECKS: tuple[Callable[[Invocation], Check], ...] = (_aws, _clock, _callback, _intuit)


@cli.command()
@pass_invocation
@click.pass_context
def doctor(ctx: click.Context, invocation: Invocation) -> None:
    """Check the stack, AWS credentials, this clock against AWS's, the callback URL, Intuit's endpoints and
    each connection; every failing line says what to do. Exit 1 if any check failed."""
    checks = [_stack(invocation)]
    if checks[0].ok:
        checks += [check(invocation) for check in CHECKS]
        checks += _connections(invocation)
    if invocation.wants_json:
        invocation.emit_json([c.as_json() for c in checks])
    else:
        for check in checks:
            mark = "ok  " if check.ok else "FAIL"
            click.echo(f"{mark} {check.name}: {check.detail}")
    ctx.exit(0 if all(c.ok for c in checks) else 1)
