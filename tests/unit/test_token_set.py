"""Token sets: Intuit's relative lifetimes become absolute times, and tokens never show in a repr."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import EPOCH
from qbo_connect import intuit
from qbo_connect.domain.secret_document import ConnectionSecret
from qbo_connect.domain.token_set import TokenSet

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "intuit"


def _fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_relative_lifetimes_from_intuit_become_absolute_times_counted_from_now():
    answer = _fixture("token_response_with_hard_expiry.json")

    token_set = TokenSet.from_token_response(answer, now=EPOCH, scopes=intuit.DEFAULT_SCOPES)

    assert token_set.expires_at == EPOCH + answer["expires_in"]
    assert token_set.refresh_token_expires_at == EPOCH + answer["x_refresh_token_expires_in"]
    assert token_set.refresh_token_hard_expires_at == EPOCH + answer["x_refresh_token_hard_expires_in"]
    assert token_set.obtained_at == EPOCH
    assert token_set.scopes == intuit.DEFAULT_SCOPES
    assert token_set.is_valid_for(3599, EPOCH) and not token_set.is_valid_for(3601, EPOCH)


def test_grant_ends_at_the_earlier_of_rolling_and_hard_expiry():
    answer = {**_fixture("token_response_with_hard_expiry.json"), "x_refresh_token_hard_expires_in": 3 * 86400}

    token_set = TokenSet.from_token_response(answer, now=EPOCH, scopes=intuit.DEFAULT_SCOPES)

    assert token_set.grant_ends_at == EPOCH + 3 * 86400


def test_hard_expiry_is_kept_when_a_refresh_answer_omits_it():
    first = TokenSet.from_token_response(
        _fixture("token_response_with_hard_expiry.json"), now=EPOCH, scopes=intuit.DEFAULT_SCOPES
    )
    later = EPOCH + 86400
    refreshed = TokenSet.from_token_response(_fixture("token_response.json"), now=later, scopes=intuit.DEFAULT_SCOPES)

    kept = refreshed.with_hard_expiry_from(first)

    assert refreshed.refresh_token_hard_expires_at is None
    assert kept.refresh_token_hard_expires_at == first.refresh_token_hard_expires_at
    assert kept.expires_at == later + 3600


def test_a_new_hard_expiry_from_intuit_wins_over_the_stored_one():
    first = TokenSet.from_token_response(
        _fixture("token_response_with_hard_expiry.json"), now=EPOCH, scopes=intuit.DEFAULT_SCOPES
    )
    refreshed = TokenSet.from_token_response(
        {**_fixture("token_response.json"), "x_refresh_token_hard_expires_in": 1000},
        now=EPOCH + 10,
        scopes=intuit.DEFAULT_SCOPES,
    )

    assert refreshed.with_hard_expiry_from(first).refresh_token_hard_expires_at == EPOCH + 1010


def test_an_answer_without_tokens_is_refused_without_echoing_it():
    with pytest.raises(ValueError) as raised:
        TokenSet.from_token_response({"refresh_token": "rt-secret-value"}, now=EPOCH, scopes=())

    assert "rt-secret-value" not in str(raised.value)


def test_repr_of_a_token_set_never_shows_the_tokens():
    answer = _fixture("token_response_with_hard_expiry.json")
    token_set = TokenSet.from_token_response(answer, now=EPOCH, scopes=intuit.DEFAULT_SCOPES)

    shown = repr(token_set) + str(token_set) + f"{token_set}"

    assert answer["access_token"] not in shown
    assert answer["refresh_token"] not in shown
    assert "expires_at" in shown  # the times are still there to debug with


def test_repr_of_a_connection_secret_never_shows_the_tokens_or_the_client_secret():
    answer = _fixture("token_response.json")
    secret = ConnectionSecret(
        connection_id="qbc-1",
        client_id="ABclient",
        base_url=intuit.SANDBOX_API_BASE_URL,
        client_secret="client-secret-value-123",
        token_set=TokenSet.from_token_response(answer, now=EPOCH, scopes=intuit.DEFAULT_SCOPES),
        realm_id="9341453050000001",
    )

    shown = repr(secret) + str(secret)

    for value in (answer["access_token"], answer["refresh_token"], "client-secret-value-123"):
        assert value not in shown
    assert "qbc-1" in shown


def test_the_secret_document_round_trips_with_whole_second_times():
    answer = _fixture("token_response_with_hard_expiry.json")
    secret = ConnectionSecret(
        connection_id="qbc-1",
        client_id="ABclient",
        base_url=intuit.SANDBOX_API_BASE_URL,
        client_secret="client-secret-value-123",
        token_set=TokenSet.from_token_response(answer, now=EPOCH, scopes=intuit.DEFAULT_SCOPES),
        generation=3,
    )

    document = json.loads(secret.to_json())
    again = ConnectionSecret.from_json(secret.to_json())

    assert document["token_set"]["access_token"] == answer["access_token"]
    assert document["token_set"]["expires_at"] == int(EPOCH) + 3600
    assert again == secret
