"""Where a running local stack says how to reach it, so the CLI and `invoke` can find it.

The file holds URLs, names and settings, and the local pool's administrator's password and authenticator key
(a fake pool in moto that ends with the stack: what the banner prints and `qbo-connect-local totp` reads); no
connection's secret or token. It is written 0600 in a 0700 folder.

    {"pid": 1234, "started_at": "2025-11-28T14:41:12Z", "api_url": "http://localhost:3000",
     "callback_url": "http://localhost:3000/oauth/callback", "aws_endpoint_url": "http://127.0.0.1:4566",
     "lambda_endpoint_url": "http://127.0.0.1:40123", "region": "us-east-1",
     "emulator_url": "http://127.0.0.1:8181" | null,
     "refresh_dead_letter_queue_url": "...", "environment": {"QBO_TABLE_NAME": ..., "AWS_ENDPOINT_URL": ...,
     "AWS_ENDPOINT_URL_LAMBDA": ...}}
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from qbo_local.config import STATE_ENV

# API Gateway tags every answer with this header; the local router does too, which tells it apart
# from whatever else might answer on a reused port.
REQUEST_ID_HEADER = "apigw-requestid"
# The router leaves this liveness probe out of its request log.
PROBE_USER_AGENT = "qbo-connect-local-discovery"


def state_path(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    override = env.get(STATE_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "qbo-connect" / "local-stack.json"


def write_json_private(path: Path, document: dict[str, Any]) -> None:
    """Write atomically, readable by this user only: a reader never sees half a file."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # created 0600
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def read_state(path: Path | None = None) -> dict[str, Any] | None:
    try:
        document = json.loads((path or state_path()).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return document if isinstance(document, dict) else None


def remove_state(path: Path, *, pid: int | None = None) -> None:
    """Remove the file, but only the one this process wrote when `pid` is given."""
    if pid is not None:
        document = read_state(path)
        if document is None or document.get("pid") != pid:
            return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def router_answers(api_url: str, timeout: float = 2.0) -> bool:
    """Any answer carrying the router's request-id header counts: unmatched paths answer 404."""
    request = urllib.request.Request(  # noqa: S310 - our own URL
        api_url.rstrip("/") + "/", method="GET", headers={"User-Agent": PROBE_USER_AGENT}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return REQUEST_ID_HEADER in {name.lower() for name in response.headers}
    except urllib.error.HTTPError as error:
        return REQUEST_ID_HEADER in {name.lower() for name in error.headers}
    except (OSError, ValueError):
        return False


def find_running_stack(path: Path | None = None) -> dict[str, Any] | None:
    """The running local stack's discovery document, or None when none runs (or its file is stale)."""
    document = read_state(path)
    if document is None or not pid_alive(document.get("pid")):
        return None
    api_url = document.get("api_url")
    if not isinstance(api_url, str) or not router_answers(api_url):
        return None
    return document
