"""`metering show`: the month's accounting API calls per Intuit app, against its allowance, and per connection.

The same figures as GET /admin/metering (qbo_connect.domain.metering.MeteringReport).
"""

from __future__ import annotations

from typing import Any

import click

from qbo_connect_cli import output
from qbo_connect_cli.main import Invocation, cli, pass_invocation


@cli.group()
def metering() -> None:
    """Accounting API calls per Intuit app and connection, per calendar month (UTC)."""


@metering.command(name="show")
@click.option("--month", metavar="YYYY-MM", help="A calendar month (UTC). Default: this month.")
@pass_invocation
def show(invocation: Invocation, month: str | None) -> None:
    """What Intuit meters (production reads: CorePlus) against each app's allowance, and every count behind it."""
    report = invocation.services.metering_report.month(month)
    if invocation.wants_json:
        invocation.emit_json(report)
        return
    click.echo(describe(report))


def describe(report: dict[str, Any]) -> str:
    lines = [f"{report['month']} (UTC); the alarm fires at {report['alarm_at_percent']:g}% of an app's allowance"]
    if not report["apps"]:
        return "\n".join([*lines, "No accounting API calls counted this month."])
    for app in report["apps"]:
        warning = "  <- over the alarm share" if app["over_alarm_share"] else ""
        lines += [
            "",
            f"App {app['client_id']}: {app['metered_calls']:,} metered calls (production reads) of "
            f"{app['allowance']:,} ({app['allowance_used_percent']:g}%){warning}",
            f"  not metered: {app['production_writes']:,} production writes, "
            f"{app['sandbox_reads']:,} sandbox reads, {app['sandbox_writes']:,} sandbox writes",
        ]
        rows = [
            (
                f"  {c['name'] or '(deleted)'}",
                c["connection_id"],
                c["environment"],
                f"{c['reads']:,}",
                f"{c['writes']:,}",
            )
            for c in app["connections"]
        ]
        lines.append(output.table(("  connection", "id", "environment", "reads", "writes"), rows))
    return "\n".join(lines)
