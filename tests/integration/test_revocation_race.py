"""A revocation racing another connection's new grant of the same app on the same company, on moto and the strict
emulator, whose revocation disconnects the app from the company: every grant of it there ends, whichever consent
issued it (docs/intuit.md, "Revocation").

A reset revokes only if no other connection holds the app on the company. A connection whose consent Intuit has
answered but whose callback has not stored the tokens yet holds a grant nobody can see; so does one whose code is
exchanged while a revocation is still on its way to Intuit. Each interleaving is forced with events, never with
timing: a party that must wait for the other does so in its clock's sleep (WaitingClock), the one place a bounded
wait for a lease sleeps, so the test knows it is waiting and lets the other one go on.
"""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from qbo_connect.domain.admin_operations import ImportedTokens
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.authorization import LinkRejected
from qbo_connect.domain.connection import ConnectionStatus
from qbo_connect.domain.lifecycle import RefreshOutcome
from qbo_connect.errors import IntuitUnavailable
from qbo_connect.intuit import REQUEST_TIME_LIMIT_SECONDS
from qbo_local.consent import ConsentGiven, connect_pressed_in_emulator, consent_in_emulator
from refresh_support import (
    ACCESS_TOKEN_SECONDS,
    API_BASE_URL,
    COMPANY_NAME,
    LEASE_SECONDS,
    MARGIN_SECONDS,
    REALM_ID,
    SKEW_SECONDS,
    Stack,
    manual_clock,
)

# A revocation Intuit did not answer may have happened (a read timeout after Intuit acted on it): not "not revoked".
UNANSWERED_REVOCATION = "unknown: Intuit did not answer (intuit_unavailable), and may have revoked"

CLIENT_ID = "ABtestclientsharedbytwo"  # one app (client ID) for both connections


class WaitingClock:
    """The stack's clock, but a sleep first says so (`waiting`) and holds until `go` is set; then sleeps go through."""

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self.waiting = threading.Event()
        self.go = threading.Event()

    def now(self) -> float:
        return self._clock.now()

    def sleep(self, seconds: float) -> None:
        self.waiting.set()
        assert self.go.wait(30), "never let go on"
        self._clock.sleep(seconds)


class Racer(threading.Thread):
    """Runs `act` once; `finished` is set when it returns or raises (a racer that never waits still lets the
    test go on), and result() gives what it returned or raises what it raised."""

    def __init__(self, act: Callable[[], Any], finished: threading.Event) -> None:
        super().__init__(daemon=True)
        self._act = act
        self._finished = finished
        self._outcome: tuple[bool, Any] = (False, None)

    def run(self) -> None:
        try:
            self._outcome = (True, self._act())
        except BaseException as error:
            self._outcome = (False, error)
        finally:
            self._finished.set()

    def result(self) -> Any:
        self.join(60)
        assert not self.is_alive(), "the racer never finished"
        ok, value = self._outcome
        if not ok:
            raise value
        return value


def replacing(**methods: Callable[..., Any]) -> Callable[[Any], Any]:
    """An identity_wrapper: the real Intuit client, with these methods replaced by ones that get it first."""

    class Replaced:
        def __init__(self, real: Any) -> None:
            self._real = real

        def __getattr__(self, name: str) -> Any:
            method = methods.get(name)
            return functools.partial(method, self._real) if method else getattr(self._real, name)

    return Replaced


def two_connections_of_one_app(stack: Stack) -> tuple[str, str]:
    """'Acme books' connected to the company; 'Acme reports', the same app, created and not connected yet."""
    services = stack.services()
    secret = "cs-" + uuid.uuid4().hex
    books = services.administration.create(NewConnection(name="Acme books", client_id=CLIENT_ID, client_secret=secret))
    consent_in_emulator(
        services,
        connection_id=books.connection_id,
        api_base_url=API_BASE_URL,
        emulator_url=stack.emulator_url,
        realm_id=REALM_ID,
    )
    reports = services.administration.create(
        NewConnection(name="Acme reports", client_id=CLIENT_ID, client_secret=secret)
    )
    return books.connection_id, reports.connection_id


def connect_pressed(stack: Stack, connection_id: str) -> ConsentGiven:
    """A company administrator clicked Connect: the browser is on its way back to the callback."""
    return connect_pressed_in_emulator(
        stack.services(),
        connection_id=connection_id,
        api_base_url=API_BASE_URL,
        emulator_url=stack.emulator_url,
        realm_id=REALM_ID,
    )


def complete(services: Any, given: ConsentGiven) -> Any:
    return services.consent.complete(given.callback, state_cookie=given.state_cookie)


def assert_grant_works(stack: Stack, connection_id: str) -> None:
    """The connection's stored grant is alive at Intuit: its access token reads the company, and it refreshes."""
    assert stack.connection(connection_id).status is ConnectionStatus.CONNECTED
    assert stack.company_name(stack.token_set(connection_id).access_token) == COMPANY_NAME, "Intuit ended the grant"
    stack.clock.advance(ACCESS_TOKEN_SECONDS - MARGIN_SECONDS + 1)
    assert stack.services().lifecycle.refresh(connection_id).outcome is RefreshOutcome.REFRESHED


class ResetMeanwhile:
    """A reset of `connection_id`, in services of its own, started once Intuit has answered another party's call
    (`right_after("exchange_code")` wraps that party's Intuit client); the call returns once the reset has decided,
    or waits its turn for the app-company lease. `result()` lets it go on and gives the reset connection."""

    def __init__(self, stack: Stack, connection_id: str) -> None:
        self._clock = WaitingClock(stack.clock)
        resetter = stack.services(clock=self._clock)
        self._reset = Racer(lambda: resetter.administration.reset(connection_id), self._clock.waiting)

    def right_after(self, method: str) -> Callable[[Any], Any]:
        def answered_then_reset(intuit: Any, *args: Any, **kwargs: Any) -> Any:
            answer = getattr(intuit, method)(*args, **kwargs)  # Intuit has issued the grant; it is not stored yet
            self._reset.start()
            assert self._clock.waiting.wait(30)
            return answer

        return replacing(**{method: answered_then_reset})

    def result(self) -> Any:
        self._clock.go.set()
        return self._reset.result()


def test_a_reset_while_another_connections_consent_is_being_stored_leaves_that_grant_working(make_stack) -> None:
    stack = make_stack(manual_clock())
    books, reports = two_connections_of_one_app(stack)
    given = connect_pressed(stack, reports)
    reset = ResetMeanwhile(stack, books)

    connected = complete(stack.services(identity_wrapper=reset.right_after("exchange_code")), given)
    after_reset = reset.result()

    assert connected.connection.status is ConnectionStatus.CONNECTED
    assert_grant_works(stack, reports)
    assert after_reset.status is ConnectionStatus.NOT_CONNECTED
    assert after_reset.last_revocation == "not revoked: connection 'Acme reports' uses this app on the same company"


def test_a_reset_while_an_import_into_another_connection_is_being_stored_leaves_that_grant_working(make_stack) -> None:
    """An import takes over another tool's grant of the same app: its refresh rotates the token at Intuit, and until
    the answer is stored the connection still looks not connected."""
    stack = make_stack(manual_clock())
    books, reports = two_connections_of_one_app(stack)
    [(_, other_tools)] = stack.emulator.seed_grants(CLIENT_ID, REALM_ID, ("com.intuit.quickbooks.accounting",), 1)
    reset = ResetMeanwhile(stack, books)

    importer = stack.services(identity_wrapper=reset.right_after("refresh"))
    imported = importer.admin.import_tokens(
        reports, ImportedTokens(refresh_token=other_tools.refresh_token, realm_id=REALM_ID), actor="test"
    )
    after_reset = reset.result()

    assert imported.status is ConnectionStatus.CONNECTED
    assert_grant_works(stack, reports)
    assert after_reset.last_revocation == "not revoked: connection 'Acme reports' uses this app on the same company"


def test_a_consent_while_a_revocation_is_on_its_way_to_intuit_is_stored_after_it_and_keeps_its_grant(
    make_stack,
) -> None:
    stack = make_stack(manual_clock())
    books, reports = two_connections_of_one_app(stack)
    given = connect_pressed(stack, reports)
    callback_clock = WaitingClock(stack.clock)
    callback = stack.services(clock=callback_clock)
    consent = Racer(lambda: complete(callback, given), callback_clock.waiting)

    def consent_meanwhile_then_revoke(intuit: Any, credentials: Any, *, token: str) -> None:
        # The check found no other holder; before the revocation reaches Intuit, the other callback runs.
        consent.start()
        assert callback_clock.waiting.wait(30)  # it stored its grant, or waits its turn
        intuit.revoke(credentials, token=token)

    resetter = stack.services(identity_wrapper=replacing(revoke=consent_meanwhile_then_revoke))
    books_tokens = stack.token_set(books)

    after_reset = resetter.administration.reset(books)
    callback_clock.go.set()
    connected = consent.result()

    assert after_reset.last_revocation == "revoked"
    assert stack.company_name(books_tokens.access_token) is None  # the grant the reset ended
    assert connected.connection.status is ConnectionStatus.CONNECTED
    assert_grant_works(stack, reports)


def test_a_reset_right_after_a_connection_without_a_company_id_connected_finds_it_while_the_realm_index_lags(
    make_stack,
) -> None:
    """DynamoDB's by-realm index is eventually consistent: a connection that learned its company in the consent a
    moment ago may not be listed yet (moto's index never lags: the reset's store is given the lagging answer)."""
    stack = make_stack(manual_clock())
    books, reports = two_connections_of_one_app(stack)
    resetter = stack.services()
    listed_before = resetter.store.find_by_realm(REALM_ID, client_id=CLIENT_ID)
    resetter.store.find_by_realm = lambda realm_id, *, client_id=None: listed_before

    complete(stack.services(), connect_pressed(stack, reports))
    after_reset = resetter.administration.reset(books)

    assert_grant_works(stack, reports)
    assert after_reset.last_revocation == "not revoked: connection 'Acme reports' uses this app on the same company"


def test_a_consent_stalled_past_its_lease_stores_nothing_and_leaves_the_reset_that_took_over_in_charge(
    make_stack,
) -> None:
    """The callback freezes after Intuit answered (a paused process) for longer than its lease and the skew
    allowance; a reset takes over and is about to revoke when the callback wakes. Its grant is about to end, so it
    must not store it, and what it gives back on its way out must not free the reset's hold on the company."""
    stack = make_stack(manual_clock())
    books, reports = two_connections_of_one_app(stack)
    frozen, thawed = threading.Event(), threading.Event()

    def exchange_then_freeze(intuit: Any, *args: Any, **kwargs: Any) -> Any:
        token_set = intuit.exchange_code(*args, **kwargs)
        frozen.set()
        assert thawed.wait(30)
        return token_set

    callback = stack.services(identity_wrapper=replacing(exchange_code=exchange_then_freeze))
    late = Racer(lambda: complete(callback, connect_pressed(stack, reports)), threading.Event())
    late.start()
    assert frozen.wait(30)
    stack.clock.advance(LEASE_SECONDS + SKEW_SECONDS + 1)  # longer than any lease a consent holds, by anyone's clock

    at_revocation, revoke_now = threading.Event(), threading.Event()

    def revoke_when_told(intuit: Any, credentials: Any, *, token: str) -> None:
        at_revocation.set()
        assert revoke_now.wait(30)
        intuit.revoke(credentials, token=token)

    resetter = stack.services(identity_wrapper=replacing(revoke=revoke_when_told))
    reset = Racer(lambda: resetter.administration.reset(books), threading.Event())
    reset.start()
    assert at_revocation.wait(30)

    thawed.set()
    with pytest.raises(LinkRejected) as refused:
        late.result()
    assert refused.value.reason.value == "company_busy"
    assert stack.connection(reports).status is ConnectionStatus.NOT_CONNECTED  # nothing stored

    # The late holder's way out left the reset in charge: a consent arriving now still waits for the revocation.
    with pytest.raises(LinkRejected) as waiting:
        complete(stack.services(), connect_pressed(stack, reports))
    assert waiting.value.reason.value == "company_busy"

    revoke_now.set()
    assert reset.result().last_revocation == "revoked"
    complete(stack.services(), connect_pressed(stack, reports))
    assert_grant_works(stack, reports)


def test_a_revocation_whose_answer_was_lost_holds_consents_back_until_intuit_is_certainly_done_with_it(
    make_stack,
) -> None:
    """The revocation reached Intuit, but its answer did not come back (a read timeout): Intuit may act on it up to
    its request time limit later. A consent stored in that time would be ended by it; it has to wait."""
    stack = make_stack(manual_clock())
    books, reports = two_connections_of_one_app(stack)
    in_flight: list[Callable[[], None]] = []

    def revoke_answer_lost(intuit: Any, credentials: Any, *, token: str) -> None:
        in_flight.append(lambda: intuit.revoke(credentials, token=token))  # on its way: Intuit acts on it later
        raise IntuitUnavailable("Intuit's revocation endpoint did not answer (ReadTimeout)")

    resetter = stack.services(identity_wrapper=replacing(revoke=revoke_answer_lost))
    assert resetter.administration.reset(books).last_revocation == UNANSWERED_REVOCATION

    with pytest.raises(LinkRejected) as refused:
        complete(stack.services(), connect_pressed(stack, reports))
    assert refused.value.reason.value == "company_busy"
    assert stack.connection(reports).status is ConnectionStatus.NOT_CONNECTED

    stack.clock.advance(60)
    in_flight.pop()()  # Intuit acts on the revocation, within its request time limit
    stack.clock.advance(REQUEST_TIME_LIMIT_SECONDS + LEASE_SECONDS + SKEW_SECONDS)  # certainly done, by anyone's clock
    complete(stack.services(), connect_pressed(stack, reports))
    assert_grant_works(stack, reports)


def test_resets_of_the_last_two_connections_of_an_app_at_once_leave_no_grant_of_it_alive(make_stack) -> None:
    """Each reset sees the other connection still connected, so neither would revoke, and the grants the
    administrator meant to end live on at Intuit. One of the two must see the other one done."""
    stack = make_stack(manual_clock())
    books, reports = two_connections_of_one_app(stack)
    complete(stack.services(), connect_pressed(stack, reports))
    grants = [stack.token_set(books).access_token, stack.token_set(reports).access_token]
    second_clock = WaitingClock(stack.clock)
    second = stack.services(clock=second_clock)
    second_reset = Racer(lambda: second.administration.reset(reports), second_clock.waiting)
    first = stack.services()
    read = first.store.get

    def read_then_reset_the_other_meanwhile(connection_id: str) -> Any:
        found = read(connection_id)
        if connection_id == reports and not second_reset.is_alive() and not second_clock.waiting.is_set():
            second_reset.start()  # the first reset has just found the other connected
            assert second_clock.waiting.wait(30)  # the second one decided, or waits its turn
        return found

    first.store.get = read_then_reset_the_other_meanwhile
    first_reset = first.administration.reset(books)
    second_clock.go.set()
    outcomes = {first_reset.last_revocation, second_reset.result().last_revocation}

    assert [stack.company_name(token) for token in grants] == [None, None], "a grant the resets meant to end lives on"
    assert outcomes == {"revoked", "not revoked: connection 'Acme reports' uses this app on the same company"}
