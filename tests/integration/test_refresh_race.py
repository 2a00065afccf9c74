"""Many refreshers of one due connection at once, against the strict emulator: exactly one Intuit refresh.

Racers are threads (each with its own boto3 session, as Lambda containers have) and separate Python
processes; refresh runs are mixed with workflows asking for a token. DynamoDB is moto in server mode
with DynamoDB's per-item atomicity (refresh_support.SerializedApp); Intuit is the emulator over HTTP,
whose refresh tokens are single-use: a second refresh with the same token would revoke the grant.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
from collections import Counter
from pathlib import Path
from typing import Any

from refresh_support import (
    ACCESS_TOKEN_SECONDS,
    WARM_MODELS_VARIABLE,
    OffsetClock,
    Stack,
    race_once,
    race_process,
    settings_json,
    shared_moto,
    token_digest,
)

THREAD_RACERS = 24
PROCESS_RACERS = 20
# Workflows ask for 5 minutes of validity; with 3 minutes left they must go through the lease too.
LEFT_WHEN_RACE_STARTS = 180


def make_due(stack: Stack, connection_id: str) -> None:
    """Move time (the services' and the emulator's) to 3 minutes before the access token expires."""
    expires_at = stack.token_set(connection_id).expires_at
    stack.clock.advance(expires_at - stack.clock.now() - LEFT_WHEN_RACE_STARTS)
    assert stack.services().lifecycle.due_connection_ids() == [connection_id]


def assert_one_refresh(stack: Stack, connection_id: str, before: Any, reports: list[dict[str, Any]]) -> None:
    errors = [r for r in reports if "error" in r]
    assert not errors, errors
    assert stack.refresh_calls() == 1, "Intuit saw more than one refresh"
    grant = stack.grant()
    assert grant["refresh_count"] == 1 and not grant["revoked"]

    connection = stack.connection(connection_id)
    assert connection.status.value == "connected"
    assert connection.consecutive_refresh_failures == 0
    assert connection.lease_owner is None, "a lease was left behind"
    stored = stack.token_set(connection_id)
    assert stored.refresh_token != before.refresh_token
    assert int(connection.access_token_expires_at or 0) == stored.expires_at  # the secret keeps whole seconds
    assert stack.secret_generation(connection_id) == connection.secret_generation == 2  # consent, one refresh

    outcomes = Counter(r["outcome"] for r in reports if r["role"] == "refresh")
    assert set(outcomes) <= {"refreshed", "busy", "not_due"}, outcomes
    assert outcomes["refreshed"] <= 1
    # Every workflow got the one new token, with plenty of life left.
    tokens = [r for r in reports if r["role"] == "token"]
    assert tokens and {r["token"] for r in tokens} == {token_digest(stored.access_token)}
    assert min(r["valid_for"] for r in tokens) > ACCESS_TOKEN_SECONDS - 120

    # The stored set is the one Intuit issued last: the access token works, the refresh token refreshes.
    stack.assert_token_works_and_refreshes(connection_id)


def test_threads_refresh_one_due_connection_once(make_stack) -> None:
    stack = make_stack(OffsetClock())
    connection_id = stack.connect().connection_id
    before = stack.token_set(connection_id)
    make_due(stack, connection_id)

    # One services instance per racer, warmed up (clients made, connections open) before the start.
    racers = []
    for index in range(THREAD_RACERS):
        services = stack.services()
        services.store.get(connection_id)
        services.vault.read(connection_id)
        racers.append(("refresh" if index % 2 else "token", services.lifecycle))

    start = threading.Barrier(THREAD_RACERS)
    reports: list[dict[str, Any]] = []
    lock = threading.Lock()

    def race(role: str, lifecycle: Any) -> None:
        start.wait()
        report = {"role": role, **race_once(role, lifecycle, connection_id, stack.clock)}
        with lock:
            reports.append(report)

    threads = [threading.Thread(target=race, args=racer) for racer in racers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(reports) == THREAD_RACERS

    assert_one_refresh(stack, connection_id, before, reports)


def test_processes_refresh_one_due_connection_once(make_stack, monkeypatch) -> None:
    stack = make_stack(OffsetClock())
    connection_id = stack.connect().connection_id
    before = stack.token_set(connection_id)
    make_due(stack, connection_id)

    # Processes forked from a clean server process that has imported the code once (no threads, no
    # state from this one); each builds its own services, clients and connections. The fork server
    # starts with the first racer and keeps the environment it started with.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["refresh_support"])
    here = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv(WARM_MODELS_VARIABLE, "1")  # the fork server parses the AWS models once for all
    ready, start, reports = context.Queue(), context.Event(), context.Queue()
    processes = [
        context.Process(
            target=race_process,
            args=(
                "refresh" if index % 2 else "token",
                connection_id,
                shared_moto().url,
                settings_json(stack.settings),
                stack.clock.offset,
                ready,
                start,
                reports,
            ),
        )
        for index in range(PROCESS_RACERS)
    ]
    try:
        for process in processes:
            process.start()
        pids: set[int] = set()
        while len(pids) < PROCESS_RACERS:
            try:
                pids.add(ready.get(timeout=0.5))
            except queue.Empty:
                crashed = [p.exitcode for p in processes if p.exitcode is not None]
                assert not crashed, f"racers died before the start: exit codes {crashed}"
        start.set()
        results = [reports.get(timeout=60) for _ in processes]
    finally:
        start.set()
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    assert len(pids) == PROCESS_RACERS and os.getpid() not in pids

    assert_one_refresh(stack, connection_id, before, results)
