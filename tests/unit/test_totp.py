"""The local stack's TOTP arithmetic gives the codes an authenticator app shows: RFC 6238's own test vectors, and
`cryptography`'s implementation for secrets as Cognito hands them out."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from hypothesis import given
from hypothesis import strategies as st
from qbo_local import totp

RFC_6238_SECRET = base64.b32encode(b"12345678901234567890").decode()


@pytest.mark.parametrize(
    ("at", "eight_digits"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_codes_are_rfc_6238s_sha1_vectors_in_six_digits(at, eight_digits):
    assert totp.code_at(RFC_6238_SECRET, at) == eight_digits[-6:]


@given(key=st.binary(min_size=20, max_size=20), at=st.integers(min_value=0, max_value=2**34))
def test_codes_match_an_independent_implementation(key, at):
    secret = base64.b32encode(key).decode().rstrip("=")
    independent = TOTP(key, 6, SHA1(), 30, enforce_key_length=False)  # noqa: S303 - RFC 6238's hash

    assert totp.code_at(secret, at) == independent.generate(at).decode()


def test_a_code_is_accepted_one_step_either_side_and_no_further():
    secret, now = totp.new_secret(), 1_900_000_017.0
    for steps, accepted in [(-2, False), (-1, True), (0, True), (1, True), (2, False)]:
        assert totp.accepts(secret, totp.code_at(secret, now + steps * 30), now) is accepted, steps


def test_a_secret_is_typed_in_any_case_with_spaces_and_still_gives_the_same_codes():
    secret = totp.new_secret()
    typed = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)).lower()

    assert totp.code_at(typed, 1_900_000_000) == totp.code_at(secret, 1_900_000_000)


def test_new_secrets_are_32_base32_characters_of_160_random_bits_each_time():
    handed_out = {totp.new_secret() for _ in range(50)}

    assert len(handed_out) == 50
    assert all(len(s) == 32 and len(base64.b32decode(s)) == 20 for s in handed_out)


@pytest.mark.parametrize(
    "typed", ["", "12345", "1234567", "12 456", "abcdef", "\uff11\uff12\uff13\uff14\uff15\uff16"]
)  # full-width digits
def test_what_is_not_six_digits_is_never_accepted(typed):
    assert not totp.accepts(totp.new_secret(), typed, 1_900_000_000)
