"""`connections update`, `connections import` and `connections events`: the same operations the admin API and
the console run (qbo_connect.domain.admin_operations), so the CLI and the console never drift apart."""

from __future__ import annotations

import click
from qbo_connect import intuit
from qbo_connect.domain.admin_operations import ConnectionUpdate, ImportedTokens
from qbo_connect.domain.connection import RefreshPolicy
from qbo_connect.domain.event_history import DEFAULT_PAGE, MAX_PAGE

from qbo_connect_cli import output
from qbo_connect_cli.main import (
    Invocation,
    connections,
    next_step,
    pass_invocation,
    read_hidden,
)


@connections.command()
@click.argument("name_or_id")
@click.option("--name", help="A new name (unique in the deployment).")
@click.option("--client-id", help="The app's client ID; only while not connected (reset first).")
@click.option(
    "--environment",
    type=click.Choice([e.value for e in intuit.Environment]),
    help="sandbox or production; only while not connected.",
)
@click.option("--base-url", metavar="URL", help="API base URL instead of the environment's (only allowed hosts).")
@click.option("--company-id", "realm_id", metavar="REALM_ID", help="Pin the company (realm ID).")
@click.option("--no-company-id", "unpin", is_flag=True, help="Remove the company pin; the next consent sets it.")
@click.option("--scope", "scopes", multiple=True, metavar="SCOPE", help="OAuth scope; repeat for several.")
@click.option(
    "--refresh-policy",
    type=click.Choice([p.value for p in RefreshPolicy]),
    help="eager: the secret always holds a valid access token (one Secrets Manager write per hour); on_demand: "
    "refreshed when a workflow asks through the service, and once a day (one write a day).",
)
@pass_invocation
def update(
    invocation: Invocation,
    name_or_id: str,
    name: str | None,
    client_id: str | None,
    environment: str | None,
    base_url: str | None,
    realm_id: str | None,
    unpin: bool,
    scopes: tuple[str, ...],
    refresh_policy: str | None,
) -> None:
    """Change a connection's name, client ID, environment or base URL, company pin, scopes or refresh policy."""
    if realm_id and unpin:
        raise click.UsageError("--company-id and --no-company-id exclude each other")
    given = (name, client_id, environment, base_url, realm_id, refresh_policy)
    if all(value is None for value in given) and not (unpin or scopes):
        raise click.UsageError(
            "Nothing to change: give at least one of --name, --client-id, --environment, --base-url, "
            "--company-id, --no-company-id, --scope, --refresh-policy"
        )
    change = ConnectionUpdate(
        name=name,
        client_id=client_id,
        environment=environment,
        base_url=base_url,
        realm_id="" if unpin else realm_id,
        scopes=scopes or None,
        refresh_policy=refresh_policy,
    )
    saved = invocation.services.admin.update(name_or_id, change, actor=invocation.actor)
    if invocation.wants_json:
        invocation.emit_json(saved.summary())
        return
    click.echo(f'Updated "{saved.name}" ({saved.connection_id}).\n')
    click.echo(output.connection_fields(saved.summary(), invocation.now()))


@connections.command(name="import")
@click.argument("name_or_id")
@click.option("--company-id", "realm_id", metavar="REALM_ID", help="The company the tokens belong to.")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the refresh token from stdin.")
@pass_invocation
def import_tokens(invocation: Invocation, name_or_id: str, realm_id: str | None, from_stdin: bool) -> None:
    """Take over a refresh token from another tool: one refresh proves it, then the connection is connected.

    The token comes from a hidden prompt or stdin, never an argument. The other tool must stop using the
    grant: after the verifying refresh its refresh token no longer works.
    """
    admin = invocation.services.admin
    connection = admin.find(name_or_id)
    token = read_hidden(
        "refresh token",
        from_stdin=from_stdin,
        confirm=False,
        # Refused whatever the token (connected, no client secret, no company)? Then before anyone pastes one.
        before_prompt=lambda: admin.check_import(connection.connection_id, realm_id=realm_id),
    )
    saved = admin.import_tokens(
        connection.connection_id, ImportedTokens(token, realm_id=realm_id), actor=invocation.actor
    )
    if invocation.wants_json:
        invocation.emit_json(saved.summary())
        return
    click.echo(f'Imported: "{saved.name}" ({saved.connection_id}) is {saved.status.value} to company {saved.realm_id}.')
    step = next_step(invocation, saved)
    if step:
        click.echo(f"Next step: {step}")


@connections.command(name="events")
@click.argument("name_or_id")
@click.option(
    "--limit", type=click.IntRange(1, MAX_PAGE), default=DEFAULT_PAGE, show_default=True, help="Events per page."
)
@click.option("--before", metavar="EVENT_ID", help="Only events older than this one (to page back).")
@pass_invocation
def events(invocation: Invocation, name_or_id: str, limit: int, before: str | None) -> None:
    """What happened to a connection, newest first: who changed what (CLI, admin API, console), consents,
    refresh failures and recoveries, tests that failed, resets, warnings ahead of the grant's end.

    A deleted connection's events stay readable by its ID until the retention ends.
    """
    page = invocation.services.admin.events(name_or_id, limit=limit, before=before)
    if invocation.wants_json:
        invocation.emit_json(page.as_json())
        return
    shown = page.as_json()["events"]
    if not shown:
        click.echo("No events." if before is None else "No older events.")
        return
    click.echo(output.events_table(shown))
    if page.next_before:
        paging = ["--limit", str(limit)] if limit != DEFAULT_PAGE else []
        older = invocation.command("connections", "events", name_or_id, *paging, "--before", page.next_before)
        click.echo(f"\nOlder events: {older}", err=True)
