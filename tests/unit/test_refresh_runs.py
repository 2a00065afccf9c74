"""What the refresh function does with each kind of payload: sweep, one connection, queue batches, and
payloads it must refuse or drop rather than retry forever or mistake for a sweep."""

from __future__ import annotations

import contextlib
import threading

import pytest
from fakes import FakeWorld
from qbo_connect.refresh_runs import RefreshRuns
from test_refresh_batch_concurrency import sqs_event

UNTIL_DUE = 3600 - 900


@pytest.fixture
def world() -> FakeWorld:
    return FakeWorld()


@pytest.fixture
def runs(world: FakeWorld) -> RefreshRuns:
    return RefreshRuns(world.lifecycle, None, world.clock)


@pytest.mark.parametrize(
    "payload",
    [{}, {"action": "sweeep"}, {"connections": ["qbc-1"]}, [], "sweep", None, {"action": "sweep", "force": True}],
)
def test_an_unknown_payload_is_refused_and_sweeps_nothing(world, runs, payload):
    connection = world.connected()
    world.clock.advance(UNTIL_DUE)

    answer = runs.handle(payload)

    assert answer["ok"] is False and answer["error"]["code"] == "invalid_input"
    assert '{"action": "sweep"}' in answer["error"]["message"]
    assert world.identity.refresh_calls == 0
    assert world.connection(connection.connection_id).lease_owner is None


def test_the_schedule_s_event_sweeps(world, runs):
    world.connected()
    world.clock.advance(UNTIL_DUE)

    assert runs.handle({"action": "sweep"}) == {"due": 1, "outcomes": {"refreshed": 1}}


@pytest.mark.parametrize("scheduled_time", ["<aws.scheduler.scheduled-time>", "2026-12-07T01:00:00", 1796605200, ""])
def test_a_sweep_with_a_scheduled_time_that_is_not_a_utc_time_is_refused_and_sweeps_nothing(
    world, runs, scheduled_time
):
    world.connected()
    world.clock.advance(UNTIL_DUE)

    answer = runs.handle({"action": "sweep", "scheduled_time": scheduled_time})

    assert answer["ok"] is False and answer["error"]["code"] == "invalid_input"
    assert "2026-12-07T01:00:00Z" in answer["error"]["message"]
    assert world.identity.refresh_calls == 0


def test_the_scheduler_s_event_with_its_scheduled_time_sweeps(world, runs):
    world.connected()
    world.clock.advance(UNTIL_DUE)

    assert runs.handle({"action": "sweep", "scheduled_time": "2026-12-07T01:00:00Z"}) == {
        "due": 1,
        "outcomes": {"refreshed": 1},
    }


def test_a_direct_invoke_with_a_bad_connection_id_is_refused_with_what_to_send(world, runs):
    answer = runs.handle({"connection_id": "../etc/passwd"})

    assert answer["ok"] is False and answer["error"]["code"] == "invalid_input"
    assert "lowercase letters" in answer["error"]["message"]


@pytest.mark.parametrize(
    "body", ['{"connection_id": "Not An ID!"}', '{"connection_id": 42}', "not json", '{"id": "qbc-1"}']
)
def test_a_queue_message_that_can_never_succeed_is_dropped_not_retried_into_the_dead_letter_queue(world, runs, body):
    connection = world.connected()
    world.clock.advance(UNTIL_DUE)
    event = sqs_event([connection.connection_id])
    event["Records"].append({**event["Records"][0], "messageId": "m-bad", "body": body})

    answer = runs.handle(event)

    assert answer == {"batchItemFailures": []}  # nothing for SQS to retry
    assert world.identity.refresh_calls == 1  # the good message in the same batch was refreshed


def test_a_refresh_is_not_started_when_the_invocation_would_end_before_it_is_persisted(world, runs):
    connection = world.connected()
    world.clock.advance(UNTIL_DUE)

    class EndingSoon:
        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 20_000  # less than a call plus its persist time

    answer = runs.handle({"connection_id": connection.connection_id}, EndingSoon())

    assert answer["outcome"] == "busy" and "too little time" in answer["message"]
    assert world.identity.refresh_calls == 0
    assert world.connection(connection.connection_id).lease_owner is None


def test_a_refresh_is_sent_only_with_intuits_whole_time_limit_and_persisting_left(world, runs):
    """Intuit rotates the refresh token when it processes the call: a call cut short at what the invocation leaves
    drops an answer that may still come, and the grant with it. Too little left: nothing is sent."""
    connection = world.connected()
    world.clock.advance(UNTIL_DUE)

    def invocation(seconds_left: float):
        class Invocation:
            @staticmethod
            def get_remaining_time_in_millis() -> int:
                return int(seconds_left * 1000)

        return Invocation()

    # 2 s of the invocation are kept to answer (work_deadline); the call and persisting must fit in the rest.
    enough = world.timings.call_deadline_seconds + world.timings.persist_seconds + 2
    short = runs.handle({"connection_id": connection.connection_id}, invocation(enough - 1))
    assert (short["outcome"], world.identity.deadlines) == ("busy", [])
    assert runs.handle({"connection_id": connection.connection_id}, invocation(enough))["outcome"] == "refreshed"
    assert world.identity.deadlines == [world.timings.call_deadline_seconds]


def test_two_refreshes_of_a_batch_failing_for_good_at_the_same_moment_are_both_counted(
    world, runs, emitted, monkeypatch
):
    """A batch's refreshes run in threads sharing one Powertools metric set. Powertools reads a metric's
    values, appends, and stores them back: a thread switch in between (the interpreter may switch there; a
    debug log call sits in it) made two threads' first datapoints of RefreshPermanentFailure overwrite each
    other, and the count an operator's alarm and dashboard read was one short. The switch is forced here."""
    from aws_lambda_powertools.metrics.provider.cloudwatch_emf import cloudwatch

    both_inside = threading.Barrier(2, timeout=1)

    def debug(message, *args, **kwargs):
        if isinstance(message, str) and message.startswith("Adding metric: RefreshPermanentFailure"):
            # The first waits here for the second to come as far; with adds taken one at a time it cannot.
            with contextlib.suppress(threading.BrokenBarrierError):
                both_inside.wait()

    monkeypatch.setattr(cloudwatch.logger, "debug", debug)
    first = world.connected(name="First", realm_id="9341453050000001")
    second = world.connected(name="Second", realm_id="9341453050000002")
    world.identity.revoke_grant("9341453050000001")
    world.identity.revoke_grant("9341453050000002")
    world.clock.advance(UNTIL_DUE + 1)

    assert runs.handle(sqs_event([first.connection_id, second.connection_id])) == {"batchItemFailures": []}

    assert {world.connection(c.connection_id).status.value for c in (first, second)} == {"needs_reauthorization"}
    assert sum(value for _, value in emitted()["RefreshPermanentFailure"]) == 2
