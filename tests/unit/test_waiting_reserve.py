"""What a caller keeps after waiting for another holder, from an adversarial review of the hand-off. _wait_for_lease
now waits until `not_after - AFTER_A_HANDOFF_SECONDS`, a reserve sized for "reading the item and the new token (one
throttled AWS call each), and answering". But when the holder is still at it at the end of the wait, valid_token
does not just read and answer: it loops on (its attempts 1 and 2), reading the item and the vault again, trying
the hand-off (another item read), waiting again (another), and reads the item once more before raising Busy: about
nine AWS calls in a reserve for two. While DynamoDB throttles (every call taking AWS_THROTTLED_CALL_SECONDS, the
figure the reserve itself is built on), the console's Test or a workflow answers well after its Lambda was
stopped: API Gateway's bare 503 and nothing recorded."""

from __future__ import annotations

import contextlib
from typing import Any

from fakes import FakeWorld
from qbo_connect.domain.admin_operations import ConnectionUpdate
from qbo_connect.errors import QboConnectError
from qbo_connect.settings import AWS_THROTTLED_CALL_SECONDS
from qbo_connect.token_access import TokenAccess

ADMIN_SECONDS = 30.0


class BusyRefreshFunction:
    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def refresh(self, payload: dict[str, Any], *, wait_seconds: float) -> dict[str, Any] | None:
        self.payloads.append(payload)
        return {"connection_id": payload["connection_id"], "outcome": "busy", "message": "the lease is held"}


def throttled_container(world: FakeWorld) -> TokenAccess:
    """A short caller's container whose hand-offs find the refresh function busy, every read of the item throttled
    (each attempt refused, as the budget assumes)."""
    read = world.store.get

    def throttled_get(connection_id: str):
        world.clock.advance(AWS_THROTTLED_CALL_SECONDS)
        return read(connection_id)

    world.store.get = throttled_get  # type: ignore[method-assign]
    return world.container(handoff=BusyRefreshFunction())


def test_a_caller_that_waited_out_another_holder_answers_within_its_invocation_while_aws_throttles(world: FakeWorld):
    connection = world.connected()
    cid = connection.connection_id
    world.admin.update(cid, ConnectionUpdate(refresh_policy="on_demand"), actor="test")
    world.clock.advance(3600 + 60)  # the access token has expired
    # The sweep (or another caller's hand-off) holds the lease, waiting out Intuit's slow tail.
    assert world.store.acquire_lease(cid, owner="sweep", now=world.clock.now(), seconds=200) is not None

    access = throttled_container(world)
    not_after = world.clock.now() + ADMIN_SECONDS

    with contextlib.suppress(QboConnectError):  # busy is the right answer: the holder is still at it
        access.access(cid, not_after=not_after)

    assert world.clock.now() <= not_after, (
        f"answered {world.clock.now() - not_after:.1f} s after not_after: Lambda had already stopped the invocation"
    )


def test_a_caller_whose_token_was_refused_answers_within_its_invocation_while_another_holder_refreshes(
    world: FakeWorld,
):
    """The same reserve on the 401 path (token_after_rejection): a workflow or the console's Test hears 401 while the
    sweep holds the lease; its wait ends at the reserve with the lease still held, and it must answer then, not
    look at the token, force another refresh and wait again, each read throttled, past its invocation's end."""
    connection = world.connected()
    cid = connection.connection_id
    refused = world.vault.read(cid).token_set.access_token
    assert world.store.acquire_lease(cid, owner="sweep", now=world.clock.now(), seconds=200) is not None
    access = throttled_container(world)
    not_after = world.clock.now() + ADMIN_SECONDS

    with contextlib.suppress(QboConnectError):
        access.token_rejected(cid, refused, not_after=not_after)

    assert world.clock.now() <= not_after, (
        f"answered {world.clock.now() - not_after:.1f} s after not_after: Lambda had already stopped the invocation"
    )
