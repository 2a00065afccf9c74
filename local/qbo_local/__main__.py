"""qbo-connect-local: the whole service on this machine, no AWS account and no Intuit keys needed.

    qbo-connect-local up [--port 3000] [--aws-port 4566] [--intuit-port 8181] [--refresh-interval 60]
                         [--access-token-seconds N] [--refresh-concurrency N] [--function-logs] [--root DIR]
                         [--ready-file PATH]
    qbo-connect-local invoke FUNCTION EVENT_FILE      (e.g. invoke test events/test.json)
    qbo-connect-local totp [--secret KEY]             (the console's sign-in code for the local administrator)

`make dev` runs `up`. With QBO_INTUIT_CLIENT_ID and QBO_INTUIT_CLIENT_SECRET set, `up` talks to
Intuit's sandbox instead of the emulator.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from qbo_local import config, discovery
from qbo_local.config import OptionError, UpOptions
from qbo_local.functions import FunctionNotFound

log = logging.getLogger("qbo_local")
FUNCTION_LOG_NAME = "function-logs.jsonl"  # beside the discovery file


def _setup_logging() -> None:
    """One readable line per event: information on stdout, next to the banner; problems on stderr."""
    if log.handlers:
        return
    formatter = logging.Formatter("%(asctime)s  %(message)s", "%H:%M:%S")
    info = logging.StreamHandler(sys.stdout)
    info.setLevel(logging.INFO)
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    problems = logging.StreamHandler(sys.stderr)
    problems.setLevel(logging.WARNING)
    for handler in (info, problems):
        handler.setFormatter(formatter)
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    # moto's and werkzeug's per-request lines would drown everything (and show query strings).
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qbo-connect-local",
        description="Run qbo-connect on this machine: embedded AWS, an Intuit emulator, the API and the schedule.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the whole service (what `make dev` runs); Ctrl+C stops it")
    up.add_argument("--port", help=f"API port on localhost (default {config.DEFAULT_PORT}; 0: a free one)")
    up.add_argument("--aws-port", help=f"embedded AWS port (default {config.DEFAULT_AWS_PORT}; 0: a free one)")
    up.add_argument("--intuit-port", help=f"Intuit emulator port (default {config.DEFAULT_INTUIT_PORT}; 0: a free one)")
    up.add_argument(
        "--refresh-interval",
        help=f"seconds between refresh sweeps (default {config.DEFAULT_REFRESH_INTERVAL:g})",
    )
    up.add_argument(
        "--access-token-seconds",
        type=int,
        help="lifetime of the emulator's access tokens, to watch refreshes happen quickly (default 3600)",
    )
    up.add_argument(
        "--refresh-concurrency",
        help="refresh function instances consuming the refresh queue at once "
        "(default: the template's RefreshMaxConcurrency, 5)",
    )
    up.add_argument(
        "--function-logs",
        action="store_true",
        help="print the functions' JSON log lines and metrics here too (default: only into the function log file "
        "the banner names)",
    )
    up.add_argument("--root", type=Path, help="the repository (default: the checkout this package is in)")
    up.add_argument("--ready-file", type=Path, help="write the discovery JSON here once everything listens (tests, CI)")

    invoke = commands.add_parser(
        "invoke", help="run one event through a function, against the running local stack (no Docker)"
    )
    invoke.add_argument("function", help="test, refresh, authorize, callback, admin or console (or a logical ID)")
    invoke.add_argument("event_file", help="a JSON event, e.g. events/test.json (- reads stdin)")
    invoke.add_argument("--root", type=Path, help="the repository (default: the checkout this package is in)")

    code = commands.add_parser(
        "totp",
        help="print the current authenticator code for the console's sign-in: the running stack's administrator's, "
        "or one of a key the console showed you",
    )
    code.add_argument(
        "--secret",
        help="an authenticator key (base32, as the console shows it when it sets one up; default: the running "
        "stack's administrator's)",
    )
    return parser


def _up_options(args: argparse.Namespace) -> UpOptions:
    def port(value: str | None, option: str, env: str, default: int) -> int:
        return config.parse_port(value, option) if value is not None else config.env_port(env, default)

    interval = (
        config.parse_interval(args.refresh_interval) if args.refresh_interval is not None else config.env_interval()
    )
    if args.access_token_seconds is not None and args.access_token_seconds <= 0:
        raise OptionError("--access-token-seconds must be greater than zero")
    state_file = discovery.state_path()
    return UpOptions(
        root=config.repository_root(args.root),
        port=port(args.port, "--port", config.PORT_ENV, config.DEFAULT_PORT),
        aws_port=port(args.aws_port, "--aws-port", config.AWS_PORT_ENV, config.DEFAULT_AWS_PORT),
        intuit_port=port(args.intuit_port, "--intuit-port", config.INTUIT_PORT_ENV, config.DEFAULT_INTUIT_PORT),
        refresh_interval=interval,
        access_token_seconds=args.access_token_seconds,
        refresh_concurrency=(
            config.parse_concurrency(args.refresh_concurrency)
            if args.refresh_concurrency is not None
            else config.env_concurrency()
        ),
        ready_file=args.ready_file,
        state_file=state_file,
        function_log=None if args.function_logs else state_file.with_name(FUNCTION_LOG_NAME),
    )


def _up(args: argparse.Namespace) -> int:
    from qbo_local.stack import LocalStack, StackError

    options = _up_options(args)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stack = LocalStack(options)
    try:
        stack.start()
    except (StackError, OptionError) as error:
        stack.stop()
        print(f"qbo-connect-local: {error}", file=sys.stderr)
        return 1
    except Exception:
        log.exception("The local stack failed to start")
        stack.stop()
        return 1
    print(stack.banner(), flush=True)
    try:
        stack.announce_ready()
        while not stop.wait(1.0):
            pass
    finally:
        log.info("Stopping: refresh schedule, API, Lambda Invoke, Intuit, embedded AWS")
        stack.stop()
        log.info("Stopped")
    return 0


def _read_event(name: str) -> Any:
    text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    return json.loads(text)


def _invoke(args: argparse.Namespace) -> int:
    from qbo_local.functions import LocalFunction, find_spec, function_specs, put_layer_first
    from qbo_local.stack import use_local_aws

    running = discovery.find_running_stack()
    if running is None:
        print(
            "qbo-connect-local: no local stack is running: start one with `make dev` "
            "(or `qbo-connect-local up`) in another terminal, then try again",
            file=sys.stderr,
        )
        return 1
    try:
        event = _read_event(args.event_file)
    except (OSError, ValueError) as error:
        print(f"qbo-connect-local: cannot read the event {args.event_file}: {error}", file=sys.stderr)
        return 2
    root = config.repository_root(args.root)
    spec = find_spec(function_specs(root), args.function)
    # As in the stack's own process: its settings, its AWS, before qbo_connect is first imported.
    put_layer_first(root)
    use_local_aws(running["aws_endpoint_url"])
    os.environ.update(running.get("environment") or {})
    try:
        result = LocalFunction(spec).invoke(event)
    except Exception:
        traceback.print_exc()
        print(f"qbo-connect-local: {spec.logical_id} raised an exception (traceback above)", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, default=str))
    return 0


def _totp(args: argparse.Namespace) -> int:
    """The code on stdout alone (for a script or a copy), what it is for on stderr."""
    from qbo_local import totp

    secret, whose = args.secret, "the key given"
    if secret is None:
        running = discovery.find_running_stack()
        secret = (running or {}).get("admin_authenticator_secret")
        if not secret:
            print(
                "qbo-connect-local: no local stack is running (or it has no administrator): start one with `make dev`, "
                "or give the key the console showed you with --secret KEY",
                file=sys.stderr,
            )
            return 1
        whose = f"user {running.get('admin_username')} at {running.get('console_url')}"
    now = time.time()
    try:
        current = totp.code_at(secret, now)
    except ValueError:
        print("qbo-connect-local: the key is not base32 (letters A-Z and digits 2-7): copy it again", file=sys.stderr)
        return 2
    print(current, flush=True)
    print(f"(the code for {whose}; good for {totp.seconds_left(now)} s more, then the next one)", file=sys.stderr)
    return 0


COMMANDS = {"up": _up, "invoke": _invoke, "totp": _totp}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _setup_logging()
    try:
        return COMMANDS[args.command](args)
    except (OptionError, FunctionNotFound) as error:
        print(f"qbo-connect-local: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
