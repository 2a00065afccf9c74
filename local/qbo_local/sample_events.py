"""The sample events in events/, shaped into one request: what API Gateway's HTTP API hands a function for it
(payload format 2.0), for tests and benchmarks that call a handler without the local router."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from urllib.parse import urlencode

EVENTS = Path(__file__).resolve().parents[2] / "events"


def http_event(sample: str, path: str, query: dict[str, str], cookies: list[str] | None = None) -> dict:
    """events/<sample> with this path, query and cookies (the API's domain is the sample's)."""
    event = json.loads((EVENTS / sample).read_text(encoding="utf-8"))
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["rawQueryString"] = urlencode(query)
    event["queryStringParameters"] = dict(query) or None
    event["requestContext"]["requestId"] = secrets.token_urlsafe(10)
    event.pop("cookies", None)
    if cookies:
        event["cookies"] = cookies
    if "pathParameters" in event:
        event["pathParameters"] = {"connection_id": path.split("/")[2]}
    return event
