"""`qbo-connect`: create, inspect, test, reset, delete and refresh connections.

Works on a deployed stack (`--stack NAME`, with the usual AWS profile and region) or on the local
stack (`make dev`). The client secret is read from a hidden prompt or from stdin, never from an
argument: arguments end up in shell history and in process listings.
"""

from __future__ import annotations

import getpass
import math
import shlex
import socket
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError
from click.core import ParameterSource
from qbo_connect import intuit
from qbo_connect.domain.admin_operations import connection_view
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.connection import (
    Connection,
    ConnectionStatus,
    RefreshPolicy,
)
from qbo_connect.domain.lifecycle import RefreshOutcome, RefreshResult
from qbo_connect.errors import ConnectionNotFound, QboConnectError
from qbo_connect.observability import logger, metrics
from qbo_connect.runtime import Services, build_services
from qbo_connect.settings import SettingsError

from qbo_connect_cli import clock_skew, output, progress, targets

OUTPUT_FORMATS = ("table", "json")
LATE_OUTPUT = "late_output_format"  # --output given after the command's name
# Above this many connections, `refresh` shows a progress bar instead of a line per connection.
PROGRESS_THRESHOLD = 10
FAILED_OUTCOMES = frozenset(
    {
        RefreshOutcome.TRANSIENT_FAILURE,
        RefreshOutcome.NEEDS_REAUTHORIZATION,
        RefreshOutcome.INVALID_CLIENT,
        RefreshOutcome.NOT_FOUND,
    }
)


class Failure(click.ClickException):
    """An error a user can fix: one line on stderr, no traceback; with --output json, an object on stdout."""

    def __init__(
        self, message: str, *, code: str, exit_code: int = 1, as_json: bool = False, code_in_text: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = exit_code
        self.as_json = as_json
        self.code_in_text = code_in_text

    def show(self, file=None) -> None:
        if self.as_json:
            click.echo(output.to_json({"error": {"code": self.code, "message": self.message}}))
        else:
            click.echo(
                f"Error ({self.code}): {self.message}" if self.code_in_text else f"Error: {self.message}", err=True
            )


@dataclass
class Invocation:
    """The global options, and the target and services built from them on first use."""

    stack: str | None
    profile: str | None
    region: str | None
    local: bool
    output_format: str
    # Options to repeat in suggested commands, so that a hint runs against the same target.
    target_options: tuple[str, ...] = field(default_factory=tuple)

    @cached_property
    def target(self) -> targets.Target:
        return targets.resolve(stack=self.stack, profile=self.profile, region=self.region, local=self.local)

    @cached_property
    def services(self) -> Services:
        return build_services(self.target.settings, session=self.target.session)

    @property
    def wants_json(self) -> bool:
        return self.output_format == "json"

    def now(self) -> float:
        return self.services.clock.now()

    def require_clock_agreement(self) -> None:
        """For commands that take a connection's lease: refuse if this clock disagrees with AWS's."""
        try:
            clock_skew.require_agreement(self.target.session, self.target.settings.clock_skew_seconds)
        except clock_skew.ClockSkewTooLarge as error:
            raise Failure(str(error), code="clock_skew", as_json=self.wants_json, code_in_text=True) from None

    @cached_property
    def actor(self) -> str:
        """Who the recorded changes (`Connection Changed` events) name: this user on this machine."""
        return f"cli:{getpass.getuser()}@{socket.gethostname()}"

    def command(self, *words: str) -> str:
        return shlex.join(["qbo-connect", *self.target_options, *words])

    def emit_json(self, data: Any) -> None:
        click.echo(output.to_json(data))


def _wants_json(ctx: click.Context) -> bool:
    invocation = ctx.find_object(Invocation)
    if invocation is not None:
        return invocation.wants_json
    return ctx.params.get("output_format") == "json"  # an error before the group's callback ran


class QboConnectCli(click.Group):
    """Turns the errors a user can hit into one line that says what to do (or JSON), and an exit code.

    Its subgroups are of this class too, and every command also takes --output after its name."""

    group_class = type

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        takes_late_output = any(param.name == LATE_OUTPUT for param in getattr(command, "params", ()))
        if command is not None and not isinstance(command, click.Group) and not takes_late_output:
            command.params.append(_late_output_option())
        return command

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Failure:
            raise
        except click.UsageError as error:
            if not _wants_json(ctx):
                raise
            raise Failure(error.format_message(), code="usage", exit_code=error.exit_code, as_json=True) from None
        except click.Abort:
            raise Failure(
                "Not confirmed: nothing was changed (scripts without a terminal: pass --yes)",
                code="aborted",
                as_json=_wants_json(ctx),
            ) from None
        except QboConnectError as error:
            raise Failure(error.message, code=error.code.value, as_json=_wants_json(ctx), code_in_text=True) from None
        except targets.TargetError as error:
            raise Failure(str(error), code="target", exit_code=error.exit_code, as_json=_wants_json(ctx)) from None
        except SettingsError as error:
            raise Failure(
                f"the target's configuration is invalid: {error}",
                code="invalid_configuration",
                as_json=_wants_json(ctx),
            ) from None
        except (BotoCoreError, ClientError) as error:
            raise Failure(targets.describe_aws_error(error), code="aws_error", as_json=_wants_json(ctx)) from None


@click.group(cls=QboConnectCli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--stack",
    envvar=targets.STACK_VARIABLE,
    metavar="NAME",
    help=f"Deployed CloudFormation stack to administer (or ${targets.STACK_VARIABLE}). Default: the local stack.",
)
@click.option("--profile", metavar="P", help="AWS profile for --stack (default: the usual AWS credential chain).")
@click.option("--region", metavar="R", help="AWS region of --stack (default: the profile's or AWS_REGION).")
@click.option("--local", is_flag=True, help="Administer the local stack (`make dev`) even if a stack is set.")
@click.option(
    "--output",
    "output_format",
    type=click.Choice(OUTPUT_FORMATS),
    default="table",
    show_default=True,
    help="`json` prints machine-readable output on stdout, errors too (also accepted after the command).",
)
@click.version_option(package_name="qbo-connect")
@click.pass_context
def cli(ctx: click.Context, stack, profile, region, local, output_format) -> None:
    """Administer QuickBooks Online connections: create them, connect them, keep them healthy."""
    # The CLI reports outcomes itself, in words; the service's own log lines would only repeat them.
    # Set here, not at import, so importing the CLI changes nothing for anyone else in the process.
    logger.setLevel("ERROR")
    hint: list[str] = []
    if local:
        hint.append("--local")
    elif stack and ctx.get_parameter_source("stack") is ParameterSource.COMMANDLINE:
        hint += ["--stack", stack]
        hint += ["--profile", profile] if profile else []
        hint += ["--region", region] if region else []
    ctx.obj = Invocation(stack, profile, region, local, output_format, tuple(hint))


pass_invocation = click.make_pass_decorator(Invocation)


# --- the client secret ---------------------------------------------------------------------------


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def read_stdin(what: str) -> str:
    """What was piped in, stripped. Bytes that are not UTF-8 are refused in one line: the decoding error would be
    a traceback, and its exception object holds the bytes read (the secret)."""
    try:
        return sys.stdin.read().strip()
    except UnicodeDecodeError:
        raise click.UsageError(
            f"stdin is not UTF-8 text: pipe the {what} in as plain text (no byte order mark, not UTF-16)"
        ) from None


def read_hidden(
    what: str,
    *,
    from_stdin: bool,
    stdin_option: str = "--stdin",
    or_else: str = "",
    confirm: bool = True,
    before_prompt: Callable[[], object] | None = None,
) -> str:
    """A secret value (`what`: "client secret", "verifier token", ...) from stdin or a hidden prompt, never an
    argument; every message names the value asked for."""
    if from_stdin:
        value = read_stdin(what)
        if not value:
            raise click.UsageError(f"{stdin_option} was given but stdin is empty: pipe the {what} in")
        return value
    if not _stdin_is_terminal():
        raise click.UsageError(
            f"stdin is not a terminal, so the {what} cannot be asked for: pass {stdin_option} "
            f"and pipe the {what} in{or_else}"
        )
    if before_prompt is not None:
        before_prompt()
    return click.prompt(f"{what.capitalize()} (hidden)", hide_input=True, confirmation_prompt=confirm, err=True)


def check_before_prompt(services: Services, request: NewConnection) -> None:
    """Refuse what would be refused anyway before anyone types a secret; create() checks everything again."""
    services.admin.check_new(request)


# --- hints -------------------------------------------------------------------------------------


def next_step(invocation: Invocation, connection: Connection) -> str | None:
    ref = connection.name
    if not connection.has_client_secret:
        return f"Set the client secret: {invocation.command('connections', 'set-secret', ref)}"
    if connection.status is ConnectionStatus.INVALID_CLIENT:
        step = (
            "Intuit refused the client ID and secret: set the app's current secret: "
            f"{invocation.command('connections', 'set-secret', ref)}"
        )
        if connection.grant_ended(invocation.now()):
            # The refresh token expired meanwhile: the secret alone no longer brings the grant back.
            step += (
                "; the grant has ended too, so then send a company administrator the authorize link: "
                f"{invocation.command('connections', 'authorize-link', ref)}"
            )
        return step
    if connection.status in {ConnectionStatus.NOT_CONNECTED, ConnectionStatus.NEEDS_REAUTHORIZATION}:
        return (
            "Send a company administrator the authorize link: "
            f"{invocation.command('connections', 'authorize-link', ref)}"
        )
    return None


# --- connections -------------------------------------------------------------------------------


@cli.group()
def connections() -> None:
    """Create, inspect, connect, test, reset and delete connections."""


@connections.command()
@click.argument("name")
@click.option("--client-id", required=True, help="The app's client ID (Intuit developer portal, Keys & credentials).")
@click.option(
    "--environment",
    type=click.Choice([e.value for e in intuit.Environment]),
    default=intuit.Environment.SANDBOX.value,
    show_default=True,
    help="Which QuickBooks API the connection uses.",
)
@click.option(
    "--company-id",
    "realm_id",
    metavar="REALM_ID",
    help="Pin the company (realm ID): consent given for any other company is refused.",
)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    metavar="SCOPE",
    help=f"OAuth scope; repeat for several. Default: {intuit.ACCOUNTING_SCOPE}.",
)
@click.option("--base-url", metavar="URL", help="API base URL instead of the environment's (only allowed hosts).")
@click.option("--id", "connection_id", metavar="ID", help="Connection ID. Default: generated (qbc-...).")
@click.option(
    "--stdin",
    "--client-secret-stdin",
    "client_secret_stdin",
    is_flag=True,
    help="Read the client secret from stdin (as set-secret --stdin; --client-secret-stdin is the old spelling).",
)
@click.option("--no-secret", is_flag=True, help="Create without the client secret; set it later with set-secret.")
@click.option(
    "--refresh-policy",
    type=click.Choice([p.value for p in RefreshPolicy]),
    default=RefreshPolicy.EAGER.value,
    show_default=True,
    help="eager: the secret always holds a valid access token; on_demand: refreshed when a workflow asks "
    "through the service, and once a day (README, Refresh policies).",
)
@pass_invocation
def create(
    invocation: Invocation,
    name: str,
    client_id: str,
    environment: str,
    realm_id: str | None,
    scopes: tuple[str, ...],
    base_url: str | None,
    connection_id: str | None,
    client_secret_stdin: bool,
    no_secret: bool,
    refresh_policy: str,
) -> None:
    """Create the connection NAME. The client secret comes from a hidden prompt, or stdin."""
    if client_secret_stdin and no_secret:
        raise click.UsageError("--stdin and --no-secret exclude each other")
    request = NewConnection(
        name=name,
        client_id=client_id,
        environment=environment,
        realm_id=realm_id,
        scopes=scopes or intuit.DEFAULT_SCOPES,
        base_url=base_url,
        connection_id=connection_id,
        refresh_policy=refresh_policy,
    )
    services = invocation.services
    secret = None
    if not no_secret:
        if not client_secret_stdin:
            check_before_prompt(services, request)
        secret = read_hidden(
            "client secret",
            from_stdin=client_secret_stdin,
            stdin_option="--stdin",
            or_else=", or pass --no-secret and set it later",
        )
    connection = services.admin.create(replace(request, client_secret=secret), actor=invocation.actor)
    if invocation.wants_json:
        invocation.emit_json(connection.summary())
        return
    click.echo(f'Created connection "{connection.name}" ({connection.connection_id}).\n')
    click.echo(output.connection_fields(connection.summary(), invocation.now()))
    steps = []
    if not connection.has_client_secret:
        steps.append(f"Set the client secret: {invocation.command('connections', 'set-secret', connection.name)}")
    steps.append(
        "Register this redirect URI in Intuit's developer portal (Keys & credentials), if not done yet: "
        f"{invocation.target.callback_url}"
    )
    steps.append(
        "Create the authorize link and send it to a company administrator: "
        f"{invocation.command('connections', 'authorize-link', connection.name)}"
    )
    click.echo("\nNext steps:")
    for number, step in enumerate(steps, start=1):
        click.echo(f"  {number}. {step}")


@connections.command(name="list")
@pass_invocation
def list_connections(invocation: Invocation) -> None:
    """List connections with their status, token expiry times, and what needs a person."""
    views = invocation.services.admin.list()
    if invocation.wants_json:
        invocation.emit_json(views)
        return
    if not views:
        click.echo(
            "No connections yet: create one with "
            f"{invocation.command('connections', 'create', 'NAME', '--client-id', 'ID')}"
        )
        return
    click.echo(output.connections_table(views, invocation.now()))
    attention = output.needing_attention(views)
    if attention:
        click.echo(f"\nNeeding a person:\n{attention}")


@connections.command()
@click.argument("name_or_id")
@pass_invocation
def show(invocation: Invocation, name_or_id: str) -> None:
    """Show everything known about a connection (never its secrets), and what needs a person."""
    connection = invocation.services.admin.find(name_or_id)
    view = connection_view(connection, invocation.now())
    if invocation.wants_json:
        invocation.emit_json(view)
        return
    click.echo(output.connection_fields(view, invocation.now()))
    step = next_step(invocation, connection)
    if step:
        click.echo(f"\nNext step: {step}")


@connections.command(name="set-secret")
@click.argument("name_or_id")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the client secret from stdin.")
@pass_invocation
def set_secret(invocation: Invocation, name_or_id: str, from_stdin: bool) -> None:
    """Set or replace a connection's client secret (hidden prompt, or stdin)."""
    invocation.require_clock_agreement()
    admin = invocation.services.admin
    connection = admin.find(name_or_id)  # before the prompt: don't ask for a secret for nothing
    secret = read_hidden("client secret", from_stdin=from_stdin)
    saved = admin.set_client_secret(connection.connection_id, secret, actor=invocation.actor)
    if invocation.wants_json:
        invocation.emit_json(saved.summary())
        return
    click.echo(f'Client secret set for "{saved.name}" ({saved.connection_id}). Status: {saved.status.value}.')
    step = next_step(invocation, saved)
    if step:
        click.echo(f"Next step: {step}")


@connections.command(name="authorize-link")
@click.argument("name_or_id")
@click.option(
    "--valid-for",
    "lifetime",
    metavar="DURATION",
    help="How long the link works: e.g. 30m, 12h, 7d (at most 7 days, for a link you mail). Default: 30 minutes.",
)
@pass_invocation
def authorize_link(invocation: Invocation, name_or_id: str, lifetime: str | None) -> None:
    """Print a signed, expiring link that starts Intuit's consent flow for the connection."""
    services = invocation.services
    connection = services.admin.find(name_or_id)
    link = services.admin.authorize_link(
        connection.connection_id,
        api_base_url=invocation.target.api_base_url,
        callback_url=invocation.target.callback_url,
        lifetime_seconds=output.parse_duration(lifetime) if lifetime else None,
    )
    url = link.url
    if invocation.wants_json:
        invocation.emit_json(link.as_json())
        return
    # The URL alone on stdout, so that `$(qbo-connect connections authorize-link X)` is just the link.
    click.echo(url)
    click.echo(
        f"Valid for {output.duration(link.lifetime_seconds)}. A company administrator opens it, signs in to Intuit and "
        "clicks Connect.",
        err=True,
    )
    if not connection.has_client_secret:
        click.echo(
            "Warning: the connection has no client secret yet, so the link will fail until you set it: "
            f"{invocation.command('connections', 'set-secret', connection.name)}",
            err=True,
        )
    elif connection.status is ConnectionStatus.CONNECTED:
        click.echo("Note: the connection is already connected; consenting again replaces its tokens.", err=True)


@connections.command(name="callback-url")
@pass_invocation
def callback_url(invocation: Invocation) -> None:
    """Print the redirect URI to register in Intuit's developer portal."""
    url = invocation.target.callback_url
    if invocation.wants_json:
        invocation.emit_json({"callback_url": url})
        return
    click.echo(url)
    click.echo(
        "Register it as a redirect URI of your app in Intuit's developer portal (Keys & credentials), "
        "for the environment your connections use.",
        err=True,
    )


@connections.command(name="test")
@click.argument("name_or_id")
@click.option("--deep", is_flag=True, help="Also check that the grant allows the accounting API (one query).")
@pass_invocation
@click.pass_context
def test_connection(ctx: click.Context, invocation: Invocation, name_or_id: str, deep: bool) -> None:
    """Sign in with the connection and read the company's name. Exit code 1 if it fails."""
    invocation.require_clock_agreement()
    services = invocation.services
    connection = services.admin.find(name_or_id)
    # The test waits on Intuit (a token refresh if due, then CompanyInfo): the spinner names the step.
    spin = progress.is_terminal() and not invocation.wants_json
    with progress.waiting(f'Testing "{connection.name}"', enabled=spin) as step:

        def waiting_for(what: str) -> None:
            step.say(f'Testing "{connection.name}": waiting for Intuit: {what}')

        body = services.admin.test(connection.connection_id, deep=deep, on_step=waiting_for).as_json()
    if invocation.wants_json:
        invocation.emit_json(body)
    else:
        click.echo(output.test_report(body))
    ctx.exit(0 if body["ok"] else 1)


def _confirmed(connection: Connection, yes: bool, action: str, consequence: str) -> Connection:
    """Ask before an action that can't be taken back, unless --yes."""
    if not yes:
        click.confirm(f'{action} "{connection.name}" ({connection.connection_id})? {consequence}', abort=True, err=True)
    return connection


@connections.command()
@click.argument("name_or_id")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@pass_invocation
def reset(invocation: Invocation, name_or_id: str, yes: bool) -> None:
    """Clear the connection's tokens and revoke them at Intuit (unless another connection uses the same app on
    the same company); keeps the client secret."""
    invocation.require_clock_agreement()
    connection = _confirmed(
        invocation.services.admin.find(name_or_id),
        yes,
        "Reset",
        "Its tokens are cleared (and revoked at Intuit unless another connection uses this app on the same "
        "company) and workflows lose access until a company administrator connects it again",
    )
    saved = invocation.services.admin.reset(connection.connection_id, actor=invocation.actor)
    if invocation.wants_json:
        invocation.emit_json(saved.summary())
        return
    click.echo(f'Reset "{saved.name}" ({saved.connection_id}): status {saved.status.value}.')
    click.echo(f"Revocation at Intuit: {saved.last_revocation}.")
    step = next_step(invocation, saved)
    if step:
        click.echo(f"To connect it again: {step}")


@connections.command()
@click.argument("name_or_id")
@click.option("--yes", is_flag=True, help="Don't ask for confirmation.")
@pass_invocation
def delete(invocation: Invocation, name_or_id: str, yes: bool) -> None:
    """Revoke the connection's tokens (unless another connection uses the same app on the same company), then
    delete it and its secret."""
    invocation.require_clock_agreement()
    connection = _confirmed(
        invocation.services.admin.find(name_or_id),
        yes,
        "Delete",
        "Its tokens (revoked at Intuit unless another connection uses this app on the same company) and its "
        "client secret are deleted; this cannot be undone",
    )
    revocation = invocation.services.admin.delete(connection.connection_id, actor=invocation.actor)
    if invocation.wants_json:
        invocation.emit_json(
            {
                "connection_id": connection.connection_id,
                "name": connection.name,
                "deleted": True,
                "revocation": revocation,
            }
        )
        return
    click.echo(f'Deleted "{connection.name}" ({connection.connection_id}). Revocation at Intuit: {revocation}.')


# --- refresh -----------------------------------------------------------------------------------


@cli.command()
@click.argument("name_or_id", required=False)
@click.option("--due", is_flag=True, help="Every connection whose access token is due for refresh.")
@click.option("--all", "every_connected", is_flag=True, help="Every connected connection.")
@click.option(
    "--force",
    is_flag=True,
    help="Refresh even if the access token is not due yet. A token refreshed within the last ten minutes (the "
    "forced-refresh minimum age), or a connection whose forced-refresh budget is spent (3, one back every 30 "
    "minutes), is left alone: the answer is already_refreshed, exit code 0, with the time a forced refresh is "
    "allowed again.",
)
@pass_invocation
@click.pass_context
def refresh(
    ctx: click.Context, invocation: Invocation, name_or_id: str | None, due: bool, every_connected: bool, force: bool
) -> None:
    """Refresh access tokens now: one connection, the due ones (--due) or all connected ones (--all).

    Exit code 1 if any refresh failed.
    """
    if sum((bool(name_or_id), due, every_connected)) != 1:
        raise click.UsageError("Give exactly one of: a connection NAME_OR_ID, --due or --all")
    invocation.require_clock_agreement()
    services = invocation.services
    if name_or_id:
        connection = services.admin.find(name_or_id)
        names = {connection.connection_id: connection.name}
        connection_ids = [connection.connection_id]
    else:
        listed = services.admin.connections()
        names = {c.connection_id: c.name for c in listed}
        if due:
            connection_ids = services.admin.due_connection_ids()
        else:
            connection_ids = [c.connection_id for c in listed if c.status is ConnectionStatus.CONNECTED]

    def line(result: RefreshResult) -> str:
        text = f"{names.get(result.connection_id, '?')} ({result.connection_id}): {result.outcome.value}"
        text = f"{text}: {result.message}" if result.message else text
        allowed_at = forced_refresh_allowed_at(result) if force else None
        if allowed_at is not None:
            now = invocation.now()
            text += f"; a forced refresh is allowed again {output.relative(max(allowed_at, now), now)}"
            text += f" ({output.utc(allowed_at)})"
        return text

    def as_json(result: RefreshResult) -> dict:
        answer = result.as_json()
        allowed_at = forced_refresh_allowed_at(result) if force else None
        return answer if allowed_at is None else {**answer, "forced_refresh_allowed_at": allowed_at}

    many = len(connection_ids) > PROGRESS_THRESHOLD
    print_each = not (invocation.wants_json or many)
    results = refresh_each(
        services,
        connection_ids,
        force=force,
        actor=invocation.actor,
        on_result=_echo_line(line) if print_each else None,
    )

    if invocation.wants_json:
        invocation.emit_json([as_json(r) for r in results])
    elif not results:
        click.echo("No connections are due for refresh." if due else "No connected connections to refresh.")
    else:
        if many:
            for result in results:
                if result.outcome in FAILED_OUTCOMES:
                    click.echo(line(result))
        if len(results) > 1:
            counts = Counter(r.outcome.value for r in results)
            summary = ", ".join(f"{count} {outcome}" for outcome, count in counts.most_common())
            click.echo(f"{len(results)} connections: {summary}")
    ctx.exit(1 if any(r.outcome in FAILED_OUTCOMES for r in results) else 0)


def forced_refresh_allowed_at(result: RefreshResult) -> int | None:
    """When a forced refresh refused as too soon (already_refreshed) will be accepted, in epoch seconds."""
    if result.outcome is not RefreshOutcome.ALREADY_REFRESHED or result.retry_at is None:
        return None
    return math.ceil(result.retry_at)


def _echo_line(render: Callable[[RefreshResult], str]) -> Callable[[RefreshResult], None]:
    return lambda result: click.echo(render(result))


def refresh_each(
    services: Services,
    connection_ids: list[str],
    *,
    force: bool,
    actor: str,
    on_result: Callable[[RefreshResult], None] | None,
) -> list[RefreshResult]:
    def refresh_one(connection_id: str) -> RefreshResult:
        try:
            # Through the admin operations, as the admin API and the console refresh: recorded with the actor.
            result = services.admin.refresh(connection_id, actor=actor, force=force)
        except ConnectionNotFound:
            result = RefreshResult(connection_id, RefreshOutcome.NOT_FOUND, "deleted meanwhile")
        except QboConnectError as error:
            # One connection's trouble (a lost race, a busy lease) must not stop the others.
            result = RefreshResult(connection_id, RefreshOutcome.TRANSIENT_FAILURE, f"{error.code.value}: {error}")
        # Powertools prints a full metric set to stdout at 100 values even when metrics are disabled;
        # the CLI publishes none, so drop them as they come.
        metrics.clear_metrics()
        if on_result:
            on_result(result)
        return result

    if len(connection_ids) <= PROGRESS_THRESHOLD:
        return [refresh_one(connection_id) for connection_id in connection_ids]
    with click.progressbar(connection_ids, label="Refreshing", file=sys.stderr, show_pos=True) as bar:
        return [refresh_one(connection_id) for connection_id in bar]


def _set_output(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.find_object(Invocation).output_format = value


def _late_output_option() -> click.Option:
    return click.Option(
        ["--output", LATE_OUTPUT],
        type=click.Choice(OUTPUT_FORMATS),
        expose_value=False,
        is_eager=True,  # before the other options, so that their errors come out as JSON too
        callback=_set_output,
        help="As the global --output: `json` prints machine-readable output (errors too) on stdout.",
    )


def main() -> None:
    cli(prog_name="qbo-connect")


# Commands of their own modules register themselves on `cli` (they import it from here):
# `connections update` and `connections import`, `doctor`, the Intuit app's settings (app-urls, webhooks),
# `metering show` and `events tail`.
from qbo_connect_cli import (  # noqa: E402, F401
    admin_commands,
    doctor,
    events_tail,
    intuit_app,
    metering_commands,
)

if __name__ == "__main__":
    # `python -m qbo_connect_cli.main` runs this file as __main__, a second copy of the module: the command
    # modules above registered on the `cli` of qbo_connect_cli.main, so run that one.
    from qbo_connect_cli.main import main as registered_main

    registered_main()
