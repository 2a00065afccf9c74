"""python -m qbo_local.emulator [--port 8181] [--client ID:SECRET ...] [--closed-registration]"""

from __future__ import annotations

import argparse
import sys

from .config import EmulatorConfig
from .server import EmulatorServer


def _client(value: str) -> tuple[str, str]:
    client_id, sep, secret = value.partition(":")
    if not sep or not client_id or not secret:
        raise argparse.ArgumentTypeError("expected CLIENT_ID:CLIENT_SECRET")
    return client_id, secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m qbo_local.emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8181)
    parser.add_argument("--client", type=_client, action="append", default=[], metavar="ID:SECRET")
    parser.add_argument("--closed-registration", action="store_true", help="accept only registered clients")
    parser.add_argument("--no-rate-limits", action="store_true")
    parser.add_argument("--access-token-seconds", type=int, default=3600)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    config = EmulatorConfig(
        clients=dict(args.client),
        open_registration=not args.closed_registration,
        rate_limits=not args.no_rate_limits,
        access_token_seconds=args.access_token_seconds,
    )
    server = EmulatorServer(config, host=args.host, port=args.port, quiet=not args.verbose)
    print(f"Intuit emulator listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
