"""Creating a connection: bad input is refused with a message that says what to do, and changes nothing."""

from __future__ import annotations

import pytest
from fakes import CLIENT_ID, FakeWorld
from hypothesis import given
from hypothesis import strategies as st
from qbo_connect import intuit
from qbo_connect.domain.administration import NewConnection
from qbo_connect.domain.connection import (
    parse_environment,
    validate_client_id,
    validate_client_secret,
    validate_connection_id,
    validate_name,
    validate_realm_id,
    validate_scopes,
)
from qbo_connect.errors import ConnectionAlreadyExists, ErrorCode, InvalidInput

GOOD = {"name": "Acme Books", "client_id": CLIENT_ID, "client_secret": "good-secret-123"}


@pytest.mark.parametrize(
    ("validate", "value", "advice"),
    [
        (validate_connection_id, "Has Capitals", "qbo-connect connections list"),
        (validate_connection_id, "-leading-dash", "qbo-connect connections list"),
        (validate_connection_id, "x" * 64, "qbo-connect connections list"),
        (validate_name, "", "choose another name"),
        (validate_name, "<script>", "choose another name"),
        (validate_name, "n" * 65, "choose another name"),
        (validate_realm_id, "12ab", "copy it from QuickBooks"),
        (validate_realm_id, "1" * 33, "copy it from QuickBooks"),
        (validate_client_id, "a b", "developer portal"),
        (validate_client_id, "abc", "developer portal"),
        (validate_scopes, ["com.intuit.quickbooks.everything"], intuit.ACCOUNTING_SCOPE),
        (validate_scopes, [" ", ""], intuit.ACCOUNTING_SCOPE),
        (validate_scopes, ["openid", "email"], intuit.ACCOUNTING_SCOPE),
        (parse_environment, "staging", "sandbox"),
    ],
)
def test_bad_values_are_refused_with_a_message_that_says_what_to_do(validate, value, advice):
    with pytest.raises(InvalidInput) as raised:
        validate(value)

    assert raised.value.code is ErrorCode.INVALID_INPUT
    assert advice in raised.value.message


@pytest.mark.parametrize("secret", ["short", "has a space in it", "tab\there-and-more", "é" * 10, "x" * 257])
def test_a_bad_client_secret_is_refused_without_echoing_it(secret):
    with pytest.raises(InvalidInput) as raised:
        validate_client_secret(secret)

    assert secret not in str(raised.value)
    assert "developer portal" in str(raised.value)


@given(st.text(min_size=3))
def test_no_refused_client_secret_ever_appears_in_the_message(secret):
    # The same words whatever was refused: nothing of the secret can be in them. ("secret not in message" failed
    # for a refused secret that is also a word of the advice, such as "por" in "portal".)
    with pytest.raises(InvalidInput) as reference:
        validate_client_secret("short")
    try:
        validate_client_secret(secret)
    except InvalidInput as error:
        assert error.message == reference.value.message


@pytest.mark.parametrize(
    ("validate", "value"),
    [
        (validate_connection_id, "acme\n"),
        (validate_name, "Acme Books\n"),
        (validate_realm_id, "9341453050000001\n"),
        (validate_client_id, CLIENT_ID + "\n"),
        (validate_client_secret, "good-secret-123\n"),
    ],
    ids=["connection-id", "name", "realm-id", "client-id", "client-secret"],
)
def test_a_value_ending_in_a_newline_is_refused(validate, value):
    # A line a script read from a file keeps its newline; a pattern's `$` also matches before a final newline,
    # so these were accepted and stored: a client ID or secret Intuit then refuses at consent, a second
    # "Acme Books" beside the first.
    with pytest.raises(InvalidInput):
        validate(value)


def test_a_name_that_differs_from_a_taken_one_only_by_a_final_newline_is_refused():
    world = FakeWorld()
    world.administration.create(NewConnection(**GOOD))

    with pytest.raises(InvalidInput):
        world.administration.create(NewConnection(**{**GOOD, "name": GOOD["name"] + "\n"}))

    assert [c.name for c in world.store.list()] == [GOOD["name"]]


def test_good_values_pass_through_unchanged():
    assert validate_connection_id("qbc-0123abcd") == "qbc-0123abcd"
    assert validate_name("Acme Books_2.0") == "Acme Books_2.0"
    assert validate_realm_id("9341453050000001") == "9341453050000001"
    assert validate_client_id(CLIENT_ID) == CLIENT_ID
    assert validate_scopes([intuit.ACCOUNTING_SCOPE, "openid", intuit.ACCOUNTING_SCOPE]) == (
        intuit.ACCOUNTING_SCOPE,
        "openid",
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "bad/name"},
        {"client_id": "no spaces allowed"},
        {"realm_id": "not-a-number"},
        {"scopes": ("com.intuit.quickbooks.unknown",)},
        {"scopes": ("openid", "profile")},
        {"client_secret": "short"},
        {"environment": "staging"},
        {"base_url": "https://evil.example"},
        {"connection_id": "Bad ID"},
    ],
)
def test_creating_with_bad_input_changes_nothing(changes):
    world = FakeWorld()

    with pytest.raises(InvalidInput):
        world.administration.create(NewConnection(**{**GOOD, **changes}))

    assert world.store.list() == []


def test_a_bad_client_secret_at_create_is_not_echoed():
    world = FakeWorld()

    with pytest.raises(InvalidInput) as raised:
        world.administration.create(NewConnection(**{**GOOD, "client_secret": "bad secret value"}))

    assert "bad secret value" not in str(raised.value)


def test_a_taken_name_is_refused_whatever_its_case_and_keeps_the_first_connection():
    world = FakeWorld()
    first = world.administration.create(NewConnection(**GOOD))

    with pytest.raises(ConnectionAlreadyExists) as raised:
        world.administration.create(NewConnection(**{**GOOD, "name": "ACME BOOKS"}))

    assert "choose another name" in raised.value.message or "already exists" in raised.value.message
    assert [c.connection_id for c in world.store.list()] == [first.connection_id]


def test_a_new_connection_is_not_connected_and_keeps_its_secret_in_the_vault_only():
    world = FakeWorld()

    connection = world.administration.create(NewConnection(**GOOD))

    assert connection.status.value == "not_connected"
    assert connection.has_client_secret
    assert connection.base_url == intuit.SANDBOX_API_BASE_URL
    assert "good-secret-123" not in repr(connection) + repr(connection.summary())
    assert world.vault.read(connection.connection_id).client_secret == "good-secret-123"
