"""Review of the refresh policies (issue 10): faults and races a policy change meets in production.

Each test states the promise it holds the service to (README "The connection secret", "Refresh
policies", "The token lifecycle") and breaks it with a fault of its real shape.
"""

from __future__ import annotations

import contextlib

from fakes import DAY, FakeClock, FakeWorld, StrictIdentityProvider
from qbo_connect.domain.admin_operations import ConnectionUpdate
from qbo_connect.domain.connection import RefreshPolicy
from qbo_connect.domain.events import EventType
from qbo_connect.errors import Busy, IntuitUnavailable, OutcomeUnknown
from qbo_connect.refresh_runs import RefreshRuns

REALM = "9341453050000001"
HOUR = 3600.0
ADMIN = "admin@example.com"


def on_demand(world: FakeWorld) -> str:
    connection_id = world.connected(realm_id=REALM).connection_id
    world.admin.update(connection_id, ConnectionUpdate(refresh_policy="on_demand"), actor=ADMIN)
    return connection_id


def sweep(world: FakeWorld) -> None:
    RefreshRuns(world.lifecycle, None, world.clock).sweep()


def eager_promise_kept(world: FakeWorld, connection_id: str) -> bool:
    """README: while connected, an eager secret's access token is valid for the margin minus one period."""
    secret = world.vault.read(connection_id)
    if secret.refresh_policy is not RefreshPolicy.EAGER or secret.token_set is None:
        return True
    promised = world.settings.refresh_margin_seconds - world.settings.refresh_period_seconds
    return secret.token_set.seconds_valid(world.clock.now()) >= promised


def test_switching_an_idle_on_demand_connection_to_eager_never_labels_an_expired_token_eager(world):
    """README: "changing a connection's policy rewrites this document at once, so a reader that checks
    refresh_policy is never misled". A Step Functions task that reads the secret right after an
    administrator switched a quiet on-demand connection to eager finds `eager` over an expired token."""
    connection_id = on_demand(world)
    world.clock.advance(3 * HOUR)  # nobody asked for a token: the stored one expired two hours ago

    world.admin.update(connection_id, ConnectionUpdate(refresh_policy="eager"), actor=ADMIN)

    assert eager_promise_kept(world, connection_id), (
        "the secret says eager, but its access token expired "
        f"{-world.token_set(connection_id).seconds_valid(world.clock.now()):.0f} s ago"
    )


def test_a_policy_change_cut_off_between_the_secret_and_the_item_is_healed_by_the_next_holder(world):
    """The lease protocol: "a crash between the two leaves the secret ahead of the metadata; whoever takes
    the lease next reconciles from the secret". The admin API's Lambda is killed (timeout) after
    PutSecretValue and before UpdateItem while switching an on-demand connection to eager: the secret
    says eager, the item on_demand, and reconciling does not bring the policy over. From then on the
    schedule treats it as on-demand while every secret reader is told it is eager."""
    connection_id = on_demand(world)
    world.store.fail_next_save(TimeoutError("Task timed out after 30.00 seconds"))
    with contextlib.suppress(TimeoutError):
        world.admin.update(connection_id, ConnectionUpdate(refresh_policy="eager"), actor=ADMIN)
    assert world.vault.read(connection_id).refresh_policy is RefreshPolicy.EAGER  # the secret was written

    # The next holder (a workflow's token request) takes the lease and reconciles from the secret.
    world.clock.advance(2 * HOUR)
    world.lifecycle.valid_token(connection_id)
    assert world.connection(connection_id).secret_generation == world.vault.read(connection_id).generation

    assert world.connection(connection_id).refresh_policy is world.vault.read(connection_id).refresh_policy
    # What a reader of the secret meets a few hours later, with the schedule running every period.
    for _ in range(int(3 * HOUR / world.settings.refresh_period_seconds)):
        world.clock.advance(world.settings.refresh_period_seconds)
        sweep(world)
    assert eager_promise_kept(world, connection_id)


def test_the_keepalive_finds_a_revoked_grant_a_day_after_the_last_refresh_plus_any_longer_token_lifetime():
    """Issue 10: the keep-alive "finds revoked grants within a day". The sweep finds it by access-token
    expiry minus Intuit's documented 3600 s lifetime (the index orders by expiry; a second index is not
    worth it); if Intuit answered a longer expires_in, the keep-alive moves by the difference: bounded,
    and documented (README, Refresh policies)."""
    clock = FakeClock()
    world = FakeWorld(clock, StrictIdentityProvider(clock, access_seconds=6 * HOUR))
    connection_id = on_demand(world)
    world.identity.revoke_grant(REALM)  # the company disconnects the app in QuickBooks

    # A day, the five extra hours the token lived, and one schedule period later.
    later = DAY + 5 * HOUR + world.settings.refresh_period_seconds
    for _ in range(int(later / world.settings.refresh_period_seconds)):
        world.clock.advance(world.settings.refresh_period_seconds)
        sweep(world)

    assert world.connection(connection_id).status.value == "needs_reauthorization"
    assert EventType.NEEDS_REAUTHORIZATION in world.events.detail_types


def test_an_on_demand_connection_is_warned_a_day_before_its_hard_expiry_not_minutes_before():
    """README: "the five-year hard expiry is warned about 30, 7 and 1 days ahead", for either policy. An
    on-demand connection is only looked at when it refreshes: once a day when unused, so the 1-day
    warning comes with whatever is left at the first keep-alive past the threshold, here 29 minutes."""
    clock = FakeClock()
    # The grant's five years end 9.02 days after this consent (keep-alives at 1, 2, ... 8 days leave
    # 8.02 ... 1.02 days; the 9th leaves 0.02 days).
    world = FakeWorld(clock, StrictIdentityProvider(clock, hard_seconds=9.02 * DAY))
    connection_id = on_demand(world)

    while world.clock.now() < world.connection(connection_id).refresh_token_hard_expires_at:
        world.clock.advance(world.settings.refresh_period_seconds)
        sweep(world)

    warnings = [e.detail for e in world.events.published if e.detail_type == EventType.REAUTHORIZATION_DUE]
    one_day = [w for w in warnings if w["threshold_days"] == 1]
    assert one_day, "no 1-day warning at all"
    assert one_day[0]["days_left"] >= 0.9, f"the 1-day warning came with {one_day[0]['days_left'] * 24:.1f} h left"


def test_a_policy_change_does_not_lift_the_fence_of_a_refresh_call_still_in_flight_at_intuit(world):
    """The lifecycle: after an unknown outcome "the in-flight mark stays until the call is certainly over"
    and nothing is sent with the refresh token before. An administrator who switches the policy meanwhile
    (say, to eager, because on-demand tokens just failed) takes and gives back the lease, and the release
    removes the in-flight mark it never set: the very next token request sends the same refresh token
    while the first call may still be processed by Intuit."""
    connection_id = on_demand(world)
    world.clock.advance(2 * HOUR)
    sent: list[tuple[str, float]] = []
    real_refresh = world.identity.refresh

    def recording_refresh(credentials, *, refresh_token, scopes, deadline_seconds=None):
        sent.append((refresh_token, world.clock.now()))
        return real_refresh(credentials, refresh_token=refresh_token, scopes=scopes, deadline_seconds=deadline_seconds)

    world.identity.refresh = recording_refresh
    # The first call reaches Intuit and its answer is lost (a read timeout): still in flight for all we know.
    world.identity.fail_next(1, OutcomeUnknown("Intuit's token endpoint's answer was lost (ReadTimeout)"))
    with contextlib.suppress(IntuitUnavailable):
        world.lifecycle.valid_token(connection_id)
    assert len(sent) == 1

    world.clock.advance(5)
    world.admin.update(connection_id, ConnectionUpdate(refresh_policy="eager"), actor=ADMIN)
    world.clock.advance(5)
    with contextlib.suppress(Busy, IntuitUnavailable):
        world.lifecycle.valid_token(connection_id)  # a workflow asks for a token

    first_token, first_at = sent[0]
    resent = [at for token, at in sent[1:] if token == first_token and at - first_at < 120]
    assert not resent, f"the refresh token was sent again {resent[0] - first_at:.0f} s after a call still in flight"


def test_every_function_that_may_refresh_can_queue_the_check_after_a_lost_answer():
    """README, the token lifecycle: after an unknown outcome "one check follows (a delayed queue message)".
    The lifecycle queues it on the refresh queue when the function has one: every function that may send
    a refresh token (the token and test functions, the admin API, the disconnect page) needs the queue's
    URL and leave to send to it, or an on-demand connection whose grant is gone stays `connected` until
    its keep-alive, a day later."""
    from pathlib import Path

    from qbo_local.template import function_properties, load_template

    template = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
    for name in ("RefreshFunction", "TestFunction", "TokenFunction", "AdminFunction", "AppPagesFunction"):
        properties = function_properties(template, name)
        assert "QBO_REFRESH_QUEUE_URL" in properties["Environment"]["Variables"], name
        assert any(
            isinstance(policy, dict) and "SQSSendMessagePolicy" in policy for policy in properties["Policies"]
        ), name
