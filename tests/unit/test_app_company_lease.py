"""The app-company lease (domain/app_company_leases.py) as people meet it: a reset that finds it held revokes
nothing and says who held it, a consent or an import that finds it held is told when to try again, and a holder
that ran past its lease goes on only if nobody took the lease meanwhile."""

from __future__ import annotations

import pytest
from fakes import CLIENT_ID, FakeWorld
from qbo_connect.domain.admin_operations import ImportedTokens
from qbo_connect.domain.app_company_leases import WAIT_SECONDS, LeasePurpose
from qbo_connect.domain.authorization import FlowError, LinkRejected
from qbo_connect.domain.connection import ConnectionStatus
from qbo_connect.domain.leases import utc_time
from qbo_connect.errors import Busy, IntuitUnavailable
from qbo_connect.ports import AppCompany

# A revocation Intuit did not answer may have happened (a read timeout after Intuit acted on it): not "not revoked".
UNANSWERED_REVOCATION = "unknown: Intuit did not answer (intuit_unavailable), and may have revoked"

REALM = "9341453050000001"


APP = AppCompany(CLIENT_ID, REALM)  # the one app of the fake world, on its company


def _held_by(world: FakeWorld, connection_id: str, purpose: LeasePurpose, seconds: float = 60):
    """The lease as another connection's callback, import or reset holds it."""
    return world.company_leases.hold(APP, connection_id=connection_id, purpose=purpose, seconds=seconds)


def test_a_reset_that_cannot_get_the_lease_in_time_revokes_nothing_and_names_who_held_it(world):
    books = world.connected("Acme Books")
    reports = world.create_connection("Acme Books reports")
    started = world.clock.now()

    with _held_by(world, reports.connection_id, LeasePurpose.CONSENT):  # its callback is storing Intuit's answer
        after = world.administration.reset(books.connection_id)

    assert world.identity.revocation_calls == 0
    assert after.last_revocation == (
        "not revoked: connection 'Acme Books reports' was being connected to the company at the same moment"
    )
    assert after.status is ConnectionStatus.NOT_CONNECTED  # the reset itself went through
    assert 0 < world.clock.now() - started <= WAIT_SECONDS  # it waited, briefly


def test_a_consent_that_meets_a_revocation_without_an_answer_is_told_when_to_connect_again(world, monkeypatch):
    books = world.connected("Acme Books")
    reports = world.create_connection("Acme Books reports")

    def answer_lost(credentials, *, token):
        raise IntuitUnavailable("Intuit's revocation endpoint did not answer (ReadTimeout)")

    monkeypatch.setattr(world.identity, "revoke", answer_lost)
    reset_at = world.clock.now()
    assert world.administration.reset(books.connection_id).last_revocation == UNANSWERED_REVOCATION
    monkeypatch.undo()
    url, cookie = world.start(reports.connection_id)

    with pytest.raises(LinkRejected) as refused:
        world.consent.complete(world.identity.approve(url, realm_id=REALM), state_cookie=cookie)

    # Intuit may act on the revocation until its request time limit after the call could have reached it; the
    # lease covers that, and others add the skew allowance.
    certainly_over = reset_at + world.company_leases.revocation_seconds + world.settings.clock_skew_seconds + 1
    assert refused.value.reason is FlowError.COMPANY_BUSY
    assert refused.value.details["when"] == f"after {utc_time(certainly_over)}"
    assert "revoking this app's access to the same company" in refused.value.details["why"]
    assert world.identity.exchange_calls == 1  # Acme Books' own consent only: the code was not sent
    world.clock.advance(certainly_over - world.clock.now() + 1)
    assert world.connect(reports.connection_id).connection.status is ConnectionStatus.CONNECTED


def test_a_consent_that_ran_past_its_lease_stores_its_grant_if_nobody_took_the_lease(world, monkeypatch):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    exchange = world.identity.exchange_code

    def slow_exchange(*args, **kwargs):
        token_set = exchange(*args, **kwargs)
        world.clock.advance(120)  # a paused process: past the lease and the skew allowance
        return token_set

    monkeypatch.setattr(world.identity, "exchange_code", slow_exchange)

    result = world.consent.complete(world.identity.approve(url, realm_id=REALM), state_cookie=cookie)

    assert result.connection.status is ConnectionStatus.CONNECTED
    assert world.store.app_company_lease(APP).owner is None  # renewed, then given back


def test_an_import_while_a_reset_holds_the_lease_changes_nothing_and_says_when_to_try_again(world):
    books = world.connected("Acme Books")
    reports = world.create_connection("Acme Books reports")
    other_tools = world.identity.current_refresh_token(REALM)

    with (
        _held_by(world, books.connection_id, LeasePurpose.REVOCATION, seconds=100) as held,
        pytest.raises(Busy) as refused,
    ):
        world.admin.import_tokens(
            reports.connection_id, ImportedTokens(refresh_token=other_tools, realm_id=REALM), actor="test"
        )

    assert str(refused.value) == (
        "Connection 'Acme Books' is revoking the app's access to the company at Intuit right now: nothing was "
        f"changed and the token was not used; try again after {utc_time(held.expires_at + 31)}"
    )
    assert world.identity.refresh_calls == 0
    assert world.connection(reports.connection_id).status is ConnectionStatus.NOT_CONNECTED


def test_who_stored_a_grant_under_the_lease_is_kept_on_it_until_a_revoker_finds_it_holds_none(world):
    books = world.connected("Acme Books")
    reports = world.connected("Acme Books reports")
    assert world.store.app_company_lease(APP).grant_holders == {books.connection_id, reports.connection_id}

    world.administration.reset(reports.connection_id)  # not revoked: Acme Books holds the app
    world.administration.delete(books.connection_id)  # revoked: the reports connection holds nothing now

    assert world.identity.revocation_calls == 1
    assert world.store.app_company_lease(APP).grant_holders == {books.connection_id}  # not itself


def test_an_import_whose_lease_was_taken_over_during_its_refresh_stores_nothing_and_says_so(world):
    """A paused CLI: the refresh answered after the import's lease ran out and a reset took it over. The reset may
    have ended the grant; storing it now would leave a connection that looks connected and is not."""
    books = world.connected("Acme Books")
    reports = world.create_connection("Acme Books reports")
    other_tools = world.identity.current_refresh_token(REALM)

    def paused_while_a_reset_takes_over() -> None:
        world.clock.advance(world.admin.import_lease_seconds + world.settings.clock_skew_seconds + 1)
        world.store.acquire_app_company_lease(
            APP,
            owner="a reset",
            connection_id=books.connection_id,
            purpose=LeasePurpose.REVOCATION.value,
            record_grant_holder=False,
            now=world.clock.now(),
            seconds=world.company_leases.revocation_seconds,
            skew_seconds=world.settings.clock_skew_seconds,
        )

    world.identity.before_refresh.append(paused_while_a_reset_takes_over)

    with pytest.raises(Busy) as refused:
        world.admin.import_tokens(
            reports.connection_id, ImportedTokens(refresh_token=other_tools, realm_id=REALM), actor="test"
        )

    assert "Intuit's new token was not stored" in str(refused.value)
    assert world.connection(reports.connection_id).status is ConnectionStatus.NOT_CONNECTED
    assert world.store.app_company_lease(APP).owner == "a reset"  # not given back by the late import
