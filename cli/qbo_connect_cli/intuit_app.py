"""What the Intuit app needs from the deployment: the URLs for Intuit's portal and the webhook verifier tokens.

`app-urls` prints what to enter on the app's settings page. `webhooks set-verifier` stores an app's
verifier token (hidden prompt or stdin, never an argument), write-only like a client secret.
"""

from __future__ import annotations

import click
from qbo_connect.domain.app_links import app_urls as build_app_urls
from qbo_connect.domain.connection import validate_client_id

from qbo_connect_cli import output
from qbo_connect_cli.main import Failure, Invocation, cli, pass_invocation, read_hidden

_LABELS = (
    ("redirect_uri", "Redirect URI (Keys & credentials)"),
    ("launch", "Launch URL"),
    ("disconnect", "Disconnect URL"),
    ("reconnect", "Connect/Reconnect URL"),
    ("webhooks", "Webhook endpoint (Webhooks)"),
)


@cli.command(name="app-urls")
@pass_invocation
def app_urls(invocation: Invocation) -> None:
    """Print the URLs to enter in Intuit's developer portal for your app."""
    urls = build_app_urls(invocation.target.api_base_url, invocation.target.callback_url).as_json()
    if invocation.wants_json:
        invocation.emit_json(urls)
        return
    width = max(len(label) for _, label in _LABELS)
    for key, label in _LABELS:
        click.echo(f"{label:<{width}}  {urls[key]}")
    click.echo(
        "Enter them on your app's page in Intuit's developer portal (Development and Production each), "
        f"then set the webhook verifier token: {invocation.command('webhooks', 'set-verifier', 'CLIENT_ID')}",
        err=True,
    )


@cli.group()
def webhooks() -> None:
    """Verifier tokens of the Intuit apps whose webhooks this deployment receives."""


@webhooks.command(name="set-verifier")
@click.argument("client_id")
@click.option("--stdin", "from_stdin", is_flag=True, help="Read the verifier token from stdin.")
@pass_invocation
def set_verifier(invocation: Invocation, client_id: str, from_stdin: bool) -> None:
    """Set or replace the webhook verifier token of the app CLIENT_ID (hidden prompt, or stdin)."""
    validate_client_id(client_id)
    token = read_hidden("verifier token", from_stdin=from_stdin)
    if len(token) < 8 or any(ch.isspace() for ch in token):
        raise Failure(
            "a verifier token is at least 8 characters without spaces: copy it from the app's Webhooks page",
            code="invalid_input",
            as_json=invocation.wants_json,
            code_in_text=True,
        )
    invocation.services.webhook_verifiers.set(client_id, token)
    if invocation.wants_json:
        invocation.emit_json({"client_id": client_id, "verifier_token_set": True})
        return
    click.echo(f"Webhook verifier token set for app {client_id}. Deliveries it signs are accepted within a minute.")


@webhooks.command(name="list")
@pass_invocation
def list_verifiers(invocation: Invocation) -> None:
    """The apps whose webhooks are accepted (never their tokens)."""
    apps = invocation.services.webhook_verifiers.apps()
    if invocation.wants_json:
        invocation.emit_json([{"client_id": c, "updated_at": int(t)} for c, t in sorted(apps.items())])
        return
    if not apps:
        click.echo(f"No verifier token set: {invocation.command('webhooks', 'set-verifier', 'CLIENT_ID')}")
        return
    for client_id, updated_at in sorted(apps.items()):
        click.echo(f"{client_id}  set {output.relative(updated_at, invocation.now())}")


@webhooks.command(name="remove")
@click.argument("client_id")
@pass_invocation
def remove_verifier(invocation: Invocation, client_id: str) -> None:
    """Stop accepting the webhooks of the app CLIENT_ID."""
    if not invocation.services.webhook_verifiers.remove(client_id):
        raise Failure(
            f"no verifier token is set for app {client_id!r} (`qbo-connect webhooks list`)",
            code="not_found",
            as_json=invocation.wants_json,
            code_in_text=True,
        )
    click.echo(f"Webhooks of app {client_id} are refused from now on (within a minute for running functions).")
