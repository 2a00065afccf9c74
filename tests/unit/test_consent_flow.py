"""The consent flow: a signed link starts it, a single-use browser-bound state finishes it, tokens are stored first."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import pytest
from botocore.exceptions import ClientError
from fakes import API_BASE_URL, FORCED_REFRESH_AGE, StrictIdentityProvider
from qbo_connect import intuit
from qbo_connect.domain.authorization import FlowError, LinkRejected
from qbo_connect.domain.connection import ConnectionStatus
from qbo_connect.domain.events import EventType
from qbo_connect.domain.lifecycle import RefreshOutcome
from qbo_connect.errors import Conflict, IntuitUnavailable, NeedsReauthorization
from qbo_connect.pages import failure_page

REALM = "9341453050000001"


def _rejected(world, params, cookie) -> LinkRejected:
    with pytest.raises(LinkRejected) as raised:
        world.consent.complete(params, state_cookie=cookie)
    return raised.value


def _nothing_stored(world, connection_id) -> None:
    connection = world.connection(connection_id)
    assert connection.status is ConnectionStatus.NOT_CONNECTED
    assert connection.access_token_expires_at is None
    assert world.token_set(connection_id) is None
    assert EventType.AUTHORIZED not in world.events.detail_types


def test_start_sends_the_browser_to_intuit_with_a_state_only_the_cookie_is_bound_to(world):
    connection = world.create_connection()

    url, cookie = world.start(connection.connection_id)

    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert url.startswith(StrictIdentityProvider.AUTHORIZATION_URL)
    assert query["redirect_uri"] == f"{API_BASE_URL}/oauth/callback"
    assert query["scope"] == "com.intuit.quickbooks.accounting"
    assert len(query["state"]) >= 43  # 256 bits
    assert cookie and query["state"] not in cookie
    assert world.store.pending_states == 1


def test_happy_path_stores_tokens_in_the_vault_and_marks_the_connection_connected_with_the_company_name(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)

    result = world.consent.complete(params, state_cookie=cookie)

    stored = world.connection(connection.connection_id)
    token_set = world.token_set(connection.connection_id)
    assert result.company_name == "Sandbox Company_US_1"
    assert stored.status is ConnectionStatus.CONNECTED
    assert stored.realm_id == REALM
    assert stored.company_name == "Sandbox Company_US_1"
    assert world.identity.is_access_token_valid(token_set.access_token, REALM)
    assert token_set.refresh_token == world.identity.current_refresh_token(REALM)
    assert stored.access_token_expires_at == token_set.expires_at
    assert stored.refresh_token_hard_expires_at == token_set.refresh_token_hard_expires_at
    # The metadata describes the vault's document: the vault was written (first) and the metadata after.
    assert stored.secret_generation == world.vault.read(connection.connection_id).generation
    assert world.vault.read(connection.connection_id).realm_id == REALM
    assert world.events.detail_types == [EventType.AUTHORIZED]
    assert world.events.published[0].detail["company_name"] == "Sandbox Company_US_1"
    assert world.store.pending_states == 0


def _throughput_exceeded() -> ClientError:
    """DynamoDB still throttling the table after botocore's retries, as the adapter lets it through."""
    error = {
        "Code": "ProvisionedThroughputExceededException",
        "Message": "Rate of requests exceeds the allowed throughput.",
    }
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "UpdateItem")


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param(_throughput_exceeded, id="the table throttles"),
        pytest.param(lambda: Conflict("lease lost"), id="the lease ran out during a slow CompanyInfo"),
    ],
)
def test_a_consent_whose_tokens_are_stored_stands_when_saving_the_company_name_after_them_fails(world, failure):
    # The tokens and the connected state are committed first; the company name (and who consented) follow in a
    # second write. That second write failing must not turn a stored consent into an error page saying nothing
    # was stored, nor swallow the Connection Authorized event workflows wait for.
    connection = world.create_connection()
    lookup = world.company_api.company_info

    def company_info_then_the_next_save_fails(**kwargs):
        world.store.fail_next_save(failure())
        return lookup(**kwargs)

    world.company_api.company_info = company_info_then_the_next_save_fails
    url, cookie = world.start(connection.connection_id)

    result = world.consent.complete(world.identity.approve(url, realm_id=REALM), state_cookie=cookie)

    stored = world.connection(connection.connection_id)
    assert result.connection.connection_id == connection.connection_id
    assert stored.status is ConnectionStatus.CONNECTED and stored.realm_id == REALM
    assert world.identity.is_access_token_valid(world.token_set(connection.connection_id).access_token, REALM)
    assert world.events.detail_types == [EventType.AUTHORIZED]


def test_tokens_are_safe_in_the_vault_even_if_the_company_lookup_fails(world):
    connection = world.create_connection()
    world.company_api.fail_next(1, IntuitUnavailable)

    result = world.connect(connection.connection_id)

    assert result.company_name is None
    assert world.connection(connection.connection_id).status is ConnectionStatus.CONNECTED
    assert world.token_set(connection.connection_id) is not None


OPENID = (intuit.ACCOUNTING_SCOPE, "openid", "email")


def test_with_the_openid_scopes_the_person_who_consented_is_recorded_and_announced(world):
    connection = world.create_connection(scopes=OPENID)

    world.connect(connection.connection_id)

    stored = world.connection(connection.connection_id)
    person = world.identity.person
    assert (stored.consented_by.sub, stored.consented_by.email) == (person.sub, "owner@acme.test")
    assert stored.summary()["consented_by"] == {"sub": person.sub, "email": "owner@acme.test", "email_verified": True}
    (authorized,) = world.events.published
    assert authorized.detail["consented_by"] == {"sub": person.sub, "email": "owner@acme.test", "email_verified": True}


def test_without_the_openid_scope_nobody_is_asked_who_consented(world):
    connection = world.create_connection()

    world.connect(connection.connection_id)

    assert world.identity.user_info_calls == 0
    assert world.connection(connection.connection_id).consented_by is None
    assert world.events.published[0].detail["consented_by"] is None


def test_a_failing_userinfo_leaves_the_consent_connected_with_the_identity_unknown(world):
    connection = world.create_connection(scopes=OPENID)
    world.identity.fail_user_info(1, IntuitUnavailable)

    result = world.connect(connection.connection_id)

    stored = world.connection(connection.connection_id)
    assert result.connection.status is ConnectionStatus.CONNECTED and stored.status is ConnectionStatus.CONNECTED
    assert world.token_set(connection.connection_id) is not None
    assert stored.consented_by.sub is None
    assert stored.consented_by.unknown_reason == "userinfo failed (intuit_unavailable)"
    assert world.events.published[0].detail["consented_by"]["unknown_reason"] == "userinfo failed (intuit_unavailable)"


def test_a_userinfo_answer_about_someone_else_than_the_id_token_is_not_used(world):
    connection = world.create_connection(scopes=OPENID)
    world.identity.id_token_subject_override = "someone-else"

    world.connect(connection.connection_id)

    identity = world.connection(connection.connection_id).consented_by
    assert (identity.sub, identity.email) == (None, None)
    assert "another person" in identity.unknown_reason


def test_a_reconnect_by_another_person_records_them_and_a_reset_forgets_who_it_was(world):
    connection = world.create_connection(scopes=OPENID)
    world.connect(connection.connection_id)
    first = world.identity.person
    world.identity.person = replace(first, sub="person-2", email="bookkeeper@acme.test")
    world.clock.advance(FORCED_REFRESH_AGE)

    world.connect(connection.connection_id)
    assert world.connection(connection.connection_id).consented_by.email == "bookkeeper@acme.test"

    world.admin.reset(connection.connection_id, actor="test")
    assert world.connection(connection.connection_id).consented_by is None


def test_a_reused_state_is_rejected_and_changes_nothing(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)
    world.consent.complete(params, state_cookie=cookie)
    before = (world.connection(connection.connection_id), world.vault.read(connection.connection_id))

    rejected = _rejected(world, params, cookie)

    assert rejected.reason is FlowError.STATE_UNKNOWN
    assert (world.connection(connection.connection_id), world.vault.read(connection.connection_id)) == before
    assert world.identity.exchange_calls == 1  # the code was not presented to Intuit twice


def test_a_state_from_another_browser_is_rejected_and_survives_for_the_right_browser(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)

    for other_cookie in (None, "", "0" * 64, cookie[:-1] + ("0" if cookie[-1] != "0" else "1")):
        assert _rejected(world, params, other_cookie).reason is FlowError.OTHER_BROWSER
    _nothing_stored(world, connection.connection_id)
    assert world.identity.exchange_calls == 0

    result = world.consent.complete(params, state_cookie=cookie)

    assert result.connection.status is ConnectionStatus.CONNECTED


def test_a_cookie_from_another_flow_does_not_finish_this_one(world):
    connection = world.create_connection()
    url, _ = world.start(connection.connection_id)
    _, attackers_cookie = world.start(connection.connection_id)

    rejected = _rejected(world, world.identity.approve(url, realm_id=REALM), attackers_cookie)

    assert rejected.reason is FlowError.OTHER_BROWSER


@pytest.mark.parametrize("state", ["forged-state-value", "", "x" * 101])
def test_a_forged_state_is_rejected_and_changes_nothing(world, state):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = {**world.identity.approve(url, realm_id=REALM), "state": state}

    assert _rejected(world, params, cookie).reason is FlowError.STATE_UNKNOWN
    _nothing_stored(world, connection.connection_id)
    assert world.store.pending_states == 1


def test_a_state_older_than_ten_minutes_is_rejected_even_if_the_table_still_holds_it(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)

    world.clock.advance(10 * 60 + 1)

    assert _rejected(world, params, cookie).reason is FlowError.STATE_EXPIRED
    _nothing_stored(world, connection.connection_id)
    assert world.identity.exchange_calls == 0


def test_access_denied_shows_the_consent_denied_page_and_stores_nothing(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)

    rejected = _rejected(world, world.identity.deny(url), cookie)

    assert rejected.reason is FlowError.CONSENT_DENIED
    assert rejected.details["name"] == "Acme Books"
    _nothing_stored(world, connection.connection_id)


def test_another_error_from_intuit_is_reported_as_such(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = {**world.identity.deny(url), "error": "invalid_scope"}

    rejected = _rejected(world, params, cookie)

    assert rejected.reason is FlowError.INTUIT_ERROR
    assert rejected.details["error"] == "invalid_scope"
    _nothing_stored(world, connection.connection_id)


@pytest.mark.parametrize(
    "changes",
    [{"code": ""}, {"code": "c" * 513}, {"realmId": "not-a-company"}, {"realmId": ""}, {"realmId": "1" * 33}],
)
def test_a_callback_without_a_usable_code_or_company_id_stores_nothing(world, changes):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = {**world.identity.approve(url, realm_id=REALM), **changes}

    assert _rejected(world, params, cookie).reason is FlowError.BAD_CALLBACK
    _nothing_stored(world, connection.connection_id)
    assert world.identity.exchange_calls == 0


def test_choosing_another_company_than_the_preset_one_revokes_the_new_tokens_and_stores_nothing(world):
    connection = world.create_connection(realm_id="1111")
    url, cookie = world.start(connection.connection_id)

    rejected = _rejected(world, world.identity.approve(url, realm_id="2222"), cookie)

    assert rejected.reason is FlowError.COMPANY_MISMATCH
    assert (rejected.details["expected"], rejected.details["chosen"]) == ("1111", "2222")
    assert world.identity.grant_revoked("2222")
    assert len(world.identity.revoked_tokens) == 1
    _nothing_stored(world, connection.connection_id)
    assert world.connection(connection.connection_id).realm_id == "1111"


def test_choosing_a_company_another_connection_holds_leaves_that_connection_working_and_says_so(world):
    holder = world.connected("Company B", realm_id="2222")
    connection = world.create_connection("Acme Books", realm_id="1111")
    world.events.published.clear()  # Company B's own consent
    url, cookie = world.start(connection.connection_id)

    rejected = _rejected(world, world.identity.approve(url, realm_id="2222"), cookie)

    assert rejected.reason is FlowError.COMPANY_MISMATCH
    assert world.identity.revocation_calls == 0  # a revocation would have disconnected Company B
    assert rejected.details["revocation"] == "not revoked: connection 'Company B' uses this app on the same company"
    _nothing_stored(world, connection.connection_id)
    assert world.identity.is_access_token_valid(world.token_set(holder.connection_id).access_token, "2222")


def test_the_preset_company_connects(world):
    connection = world.create_connection(realm_id=REALM)

    result = world.connect(connection.connection_id, realm_id=REALM)

    assert result.connection.status is ConnectionStatus.CONNECTED


def test_a_code_intuit_refuses_stores_nothing(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)
    world.identity.fail_next(1, NeedsReauthorization("invalid_grant"))

    rejected = _rejected(world, params, cookie)

    assert rejected.reason is FlowError.EXCHANGE_REFUSED
    assert rejected.details["error"] == "needs_reauthorization"
    _nothing_stored(world, connection.connection_id)


def test_an_expired_code_is_refused_by_intuit_and_stores_nothing(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)
    world.clock.advance(StrictIdentityProvider.CODE_SECONDS + 1)

    assert _rejected(world, params, cookie).reason is FlowError.EXCHANGE_REFUSED
    _nothing_stored(world, connection.connection_id)


def test_intuit_unavailable_during_the_exchange_stores_nothing_and_says_to_wait(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)
    world.identity.fail_next(1, IntuitUnavailable)

    assert _rejected(world, params, cookie).reason is FlowError.INTUIT_UNAVAILABLE
    _nothing_stored(world, connection.connection_id)


def test_a_link_for_a_connection_without_a_client_secret_does_not_start_a_flow(world):
    from qbo_connect.domain.administration import NewConnection

    connection = world.administration.create(NewConnection(name="No Secret", client_id="ABfakeclientid0123456789"))
    query = {
        k: v[0] for k, v in parse_qs(urlsplit(world.links.create(API_BASE_URL, connection.connection_id)).query).items()
    }

    with pytest.raises(LinkRejected) as raised:
        world.consent.start(connection.connection_id, **query, redirect_uri=world.redirect_uri)

    assert raised.value.reason is FlowError.NO_CLIENT_SECRET
    assert world.store.pending_states == 0


def test_a_signed_link_for_a_deleted_connection_does_not_start_a_flow(world):
    connection = world.create_connection()
    link = world.links.create(API_BASE_URL, connection.connection_id)
    world.administration.delete(connection.connection_id)
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}

    with pytest.raises(LinkRejected) as raised:
        world.consent.start(connection.connection_id, **query, redirect_uri=world.redirect_uri)

    assert raised.value.reason is FlowError.CONNECTION_NOT_FOUND


def test_reconnecting_after_needs_reauthorization_makes_the_connection_usable_again(world):
    connection = world.connected()
    world.identity.revoke_grant(REALM)
    world.clock.advance(3600)
    world.lifecycle.refresh(connection.connection_id)
    assert world.connection(connection.connection_id).status is ConnectionStatus.NEEDS_REAUTHORIZATION

    world.connect(connection.connection_id, realm_id=REALM)

    _, token_set = world.lifecycle.valid_token(connection.connection_id)
    assert world.identity.is_access_token_valid(token_set.access_token, REALM)


def test_the_tokens_are_in_the_vault_before_the_metadata_is_written(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)
    world.store.fail_next_save(RuntimeError("the process died here"))

    with pytest.raises(RuntimeError):
        world.consent.complete(params, state_cookie=cookie)

    token_set = world.token_set(connection.connection_id)
    assert token_set is not None
    assert token_set.refresh_token == world.identity.current_refresh_token(REALM)
    assert world.connection(connection.connection_id).lease_owner is None


def test_a_consent_whose_metadata_write_was_lost_is_usable_at_the_next_token_request(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)
    world.store.fail_next_save(RuntimeError("the process died here"))
    with pytest.raises(RuntimeError):
        world.consent.complete(params, state_cookie=cookie)
    assert world.connection(connection.connection_id).status is ConnectionStatus.NOT_CONNECTED

    _, token_set = world.lifecycle.valid_token(connection.connection_id)

    assert world.identity.is_access_token_valid(token_set.access_token, REALM)
    reconciled = world.connection(connection.connection_id)
    assert reconciled.status is ConnectionStatus.CONNECTED
    assert reconciled.realm_id == REALM
    assert world.identity.refresh_calls == 0


def test_a_connection_busy_with_another_change_gets_the_busy_page_and_stores_nothing(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)
    world.store.acquire_lease(connection.connection_id, owner="someone-else", now=world.clock.now(), seconds=600)

    rejected = _rejected(world, params, cookie)

    assert rejected.reason is FlowError.BUSY
    assert rejected.details["name"] == "Acme Books"
    assert world.identity.exchange_calls == 0  # the single-use code was not spent on a change that can't land
    _nothing_stored(world, connection.connection_id)


def test_a_consent_stored_in_the_vault_whose_connection_changed_meanwhile_does_not_claim_nothing_was_stored(world):
    # The lease ran out between the vault write and the metadata write (another holder took over): the new grant is
    # in the vault and the next token request takes it up. "Nothing was stored" would be false; the person must be
    # told to check the connection rather than to start over as if it had not happened.
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)
    world.store.fail_next_save(Conflict("lease lost"))

    rejected = _rejected(world, params, cookie)

    page = failure_page(rejected.reason, rejected.details).html
    assert "nothing was stored" not in page.lower(), page
    assert "connections show" in page, page  # how to see whether it is connected
    _, token_set = world.lifecycle.valid_token(connection.connection_id)
    assert world.identity.is_access_token_valid(token_set.access_token, REALM)  # it was stored, and is usable


def test_a_second_consent_on_a_connected_connection_keeps_the_new_grant_working(world):
    # Revoking the previous refresh token would disconnect the app from the company, new grant included.
    connection = world.connected()
    old_refresh_token = world.token_set(connection.connection_id).refresh_token

    world.connect(connection.connection_id, realm_id=REALM)

    assert world.identity.revocation_calls == 0
    new = world.token_set(connection.connection_id)
    assert new.refresh_token != old_refresh_token
    assert world.identity.is_access_token_valid(new.access_token, REALM)
    assert world.lifecycle.refresh(connection.connection_id, force=True).outcome is RefreshOutcome.ALREADY_REFRESHED
    world.clock.advance(FORCED_REFRESH_AGE)
    assert world.lifecycle.refresh(connection.connection_id, force=True).outcome is RefreshOutcome.REFRESHED


def test_reloading_the_result_page_in_the_browser_that_connected_says_connected_and_changes_nothing(world):
    connection = world.create_connection()
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)
    completed = world.consent.complete(params, state_cookie=cookie)
    before = (world.connection(connection.connection_id), world.vault.read(connection.connection_id))

    reloaded = world.consent.completed_before(params, receipt=completed.receipt)

    assert reloaded is not None
    assert reloaded.connection.connection_id == connection.connection_id
    assert (reloaded.company_name, reloaded.realm_id) == ("Sandbox Company_US_1", REALM)
    assert (world.connection(connection.connection_id), world.vault.read(connection.connection_id)) == before
    assert world.identity.exchange_calls == 1


def test_a_receipt_counts_only_for_its_own_state_and_connection_and_only_while_connected(world):
    connection = world.create_connection()
    other = world.create_connection(name="Other")
    url, cookie = world.start(connection.connection_id)
    params = world.identity.approve(url, realm_id=REALM)
    receipt = world.consent.complete(params, state_cookie=cookie).receipt
    forged = receipt.replace(connection.connection_id, other.connection_id, 1)

    other_state = params["state"][:-1] + ("B" if params["state"].endswith("A") else "A")  # never the same state
    assert world.consent.completed_before({**params, "state": other_state}, receipt=receipt) is None
    assert world.consent.completed_before(params, receipt=forged) is None
    assert world.consent.completed_before(params, receipt=receipt[:-2]) is None
    assert world.consent.completed_before(params, receipt=None) is None

    world.administration.reset(connection.connection_id)
    assert world.consent.completed_before(params, receipt=receipt) is None
