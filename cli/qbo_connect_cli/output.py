"""What the CLI prints: aligned plain-text tables and fields for people, JSON for scripts.

Everything shown comes from `Connection.summary()` and the domain's JSON answers, which hold no
secrets; nothing here ever receives a token or a client secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click
from qbo_connect import intuit
from qbo_connect.public_json import whole_seconds

MISSING = "-"


def to_json(data: Any) -> str:
    return json.dumps(whole_seconds(data), indent=2, default=str)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[MISSING if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    pairs = [(label, MISSING if value is None else str(value)) for label, value in pairs]
    width = max((len(label) for label, _ in pairs), default=0) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in pairs)


# --- time ------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 10 * 3600:
        hours, minutes = divmod(seconds // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """`90s`, `30m`, `12h`, `7d`, or plain seconds."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in DURATION_UNITS else "s"
    number = value[:-1] if value[-1:] in DURATION_UNITS else value
    # ASCII digits only, and few: str.isdigit() also says yes to "²", and int() refuses over 4,300 digits.
    if not (number.isascii() and number.isdigit() and len(number) <= 12):
        raise click.BadParameter(f"{text!r} is not a duration: write e.g. 30m, 12h or 7d")
    return int(number) * DURATION_UNITS[unit]


def relative(timestamp: float | None, now: float) -> str:
    """`in 52 min`, `3 h ago`."""
    if timestamp is None:
        return MISSING
    delta = timestamp - now
    if abs(delta) < 1:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def expiry(timestamp: float | None, now: float) -> str:
    """Like `relative`, but a time in the past reads as expired."""
    if timestamp is not None and timestamp <= now:
        return f"expired {duration(now - timestamp)} ago"
    return relative(timestamp, now)


def access_token(summary: Mapping[str, Any], now: float) -> str:
    """When the stored access token expires; an on-demand connection's is expired most of the time, by design."""
    text = expiry(summary.get("access_token_expires_at"), now)
    expired = (summary.get("access_token_expires_at") or now + 1) <= now
    return f"{text} (refreshed on demand)" if expired and summary.get("refresh_policy") == "on_demand" else text


def days_left(timestamp: float | None, now: float) -> str:
    if timestamp is None:
        return MISSING
    if timestamp <= now:
        return "expired"
    return str(int((timestamp - now) // 86400))


def moment(timestamp: float | None, now: float) -> str:
    """An absolute UTC time with its relative reading: `2025-06-01 12:00:00 UTC (in 52 min)`."""
    if timestamp is None:
        return MISSING
    return f"{utc(timestamp)} ({relative(timestamp, now)})"


def utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- connections -------------------------------------------------------------------------------

LIST_HEADERS = (
    "NAME",
    "ID",
    "ENVIRONMENT",
    "STATUS",
    "REFRESH",
    "REALM ID",
    "COMPANY",
    "ACCESS TOKEN",
    "LAST REFRESH",
    "DAYS TO HARD EXPIRY",
)


def connections_table(summaries: Iterable[Mapping[str, Any]], now: float) -> str:
    rows = [
        (
            s["name"],
            s["connection_id"],
            s["environment"],
            s["status"],
            (s.get("refresh_policy") or "eager").replace("_", " "),
            s.get("realm_id"),
            s.get("company_name"),
            access_token(s, now),
            relative(s.get("last_refreshed_at"), now),
            days_left(s.get("refresh_token_hard_expires_at"), now),
        )
        for s in summaries
    ]
    return table(LIST_HEADERS, rows)


def needing_attention(views: Iterable[Mapping[str, Any]]) -> str:
    """One line per connection a person should look at, with why (the admin API's and the console's attention)."""
    return "\n".join(f"  {v['name']}: {v['attention']}" for v in views if v.get("attention"))


_LABELS = {
    "name": "Name",
    "connection_id": "ID",
    "environment": "Environment",
    "base_url": "Base URL",
    "realm_id": "Company ID (realm ID)",
    "company_name": "Company",
    "client_id": "Client ID",
    "client_secret_set": "Client secret",
    "scopes": "Scopes",
    "refresh_policy": "Refresh policy",
    "status": "Status",
    "created_at": "Created",
    "connected_at": "Connected",
    "access_token_expires_at": "Access token expires",
    "refresh_token_expires_at": "Refresh token expires",
    "refresh_token_hard_expires_at": "Hard expiry (reconnect by)",
    "last_refreshed_at": "Last refresh",
    "consecutive_refresh_failures": "Failed refreshes in a row",
    "last_refresh_error": "Last refresh error",
    "last_revocation": "Last revocation",
    "last_test": "Last test",
    "days_to_hard_expiry": "Days to hard expiry",
    "reauthorize_by": "Grant ends (reconnect by)",
}


def connection_fields(summary: Mapping[str, Any], now: float) -> str:
    """Every field of the summary, in the summary's order; fields added later show up too."""
    pairs = []
    for key, value in summary.items():
        label = _LABELS.get(key) or key.replace("_", " ").capitalize()
        pairs.append((label, _field_value(key, value, now, summary)))
    return fields(pairs)


def _field_value(key: str, value: Any, now: float, summary: Mapping[str, Any]) -> Any:
    if key == "client_secret_set":
        return "set" if value else "not set"
    if key == "access_token_expires_at" and value is not None and value <= now:
        return f"{moment(value, now)}, expired"
    if key.endswith("_at") or key == "reauthorize_by":
        return moment(value, now)
    if key == "scopes":
        return " ".join(value or ()) or None
    if key == "last_test":
        return last_test(value, now, connected_at=summary.get("connected_at"))
    if key == "consented_by":
        return consented_by(value)
    return value


def events_table(events: Iterable[Mapping[str, Any]]) -> str:
    """The connection's history, newest first: when, what kind, and the one-line summary."""
    rows = [
        (
            utc(event["occurred_at"]),
            str(event["detail_type"]).removeprefix("Connection "),
            event["summary"] + ("" if event["published"] else " (not yet on EventBridge)"),
        )
        for event in events
    ]
    return table(("when", "event", "what"), rows)


def consented_by(identity: Mapping[str, Any] | None) -> str | None:
    """Who gave the current consent (openid scopes), or why that is unknown."""
    if not identity:
        return None
    if not identity.get("sub"):
        return f"unknown ({identity.get('unknown_reason')})"
    email = identity.get("email") or "no email shared"
    verified = " (not verified)" if identity.get("email_verified") is False else ""
    return f"{email}{verified}, Intuit user {identity['sub']}"


def last_test(result: Mapping[str, Any] | None, now: float, *, connected_at: float | None = None) -> str | None:
    if not result:
        return None
    when = relative(result.get("tested_at"), now)
    if result.get("ok"):
        text = f'OK {when}: company "{result.get("company_name")}" in {result.get("latency_ms")} ms'
        if intuit.subscription_is_read_only(result.get("subscription_status")):
            text += f", read only (subscription {result['subscription_status']})"
    else:
        text = f"FAILED {when} ({result.get('error_code')}): {result.get('message')}"
        if result.get("intuit_tid"):
            text += f" [intuit_tid {result['intuit_tid']}]"
    tested_at = result.get("tested_at")
    if connected_at is not None and tested_at is not None and tested_at < connected_at:
        text = f"{text} (before the current connection: run `connections test` again)"
    return text


def test_report(body: Mapping[str, Any]) -> str:
    """A person's reading of the test function's JSON answer."""
    if body.get("ok"):
        text = (
            f'OK: connected to company "{body.get("company_name")}" (realm ID {body.get("realm_id")}) '
            f"in {body.get('latency_ms')} ms"
        )
        if body.get("read_only"):
            text += (
                f"\nBut its QuickBooks subscription is {body.get('subscription_status')}: the company is read only "
                "(writes are refused) until a company administrator renews it"
            )
        return text
    error = body.get("error") or {}
    lines = [f"FAILED ({error.get('code')}): {error.get('message')}"]
    if error.get("next_step"):
        lines.append(f"Next step: {error['next_step']}")
    if error.get("intuit_tid"):
        lines.append(f"intuit_tid: {error['intuit_tid']} (quote it to Intuit support)")
    return "\n".join(lines)
