"""An administrator's second factor in the console, in a real browser against the local stack's strict Cognito (a
pool that requires an authenticator app, as template.yaml's): set up at the first sign-in from the key the page
shows, asked for at every later one; a wrong code is refused with a message and may be tried again; a step that
outlived Cognito's session sends the person back to the password. The codes are computed here (RFC 6238 by
`cryptography`) from the key the page showed, as the person's app would."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait
from stack_support import authenticator_code, aws_client
from test_console_in_browser import RECORD_REQUESTS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

CODE_REFUSED = "That code was not accepted. Enter the code your authenticator app shows now"
SETUP_CODE_REFUSED = "That code was not accepted. Check that the app holds the key shown above"

# Cognito's answer to a step whose session ran out (3 minutes), in Cognito's shape, for the next answer to a challenge.
EXPIRE_THE_NEXT_ANSWER = """
const send = window.fetch;
window.fetch = (url, options = {}) => {
  const target = (options.headers || {})['X-Amz-Target'] || '';
  if (!target.endsWith('.RespondToAuthChallenge')) return send(url, options);
  window.fetch = send;
  const body = JSON.stringify({__type: 'NotAuthorizedException', message: 'Invalid session for the user, session is expired.'});
  return Promise.resolve(new Response(body, {status: 400, headers: {'Content-Type': 'application/x-amz-json-1.1'}}));
};
"""


def _wait(browser, seconds: float = 20) -> WebDriverWait:
    return WebDriverWait(browser, seconds)


def _text(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def _shown(browser, element_id: str) -> bool:
    return browser.find_element(By.ID, element_id).is_displayed()


def _type(browser, element_id: str, text: str) -> None:
    field = browser.find_element(By.ID, element_id)
    field.clear()
    field.send_keys(text)


def _new_administrator(stack) -> tuple[str, str]:
    """As docs/security.md tells an operator to add one: admin-create-user with a temporary password, and the
    administrators' group."""
    username, temporary = f"ada-{secrets.token_hex(3)}", f"Temporary-{secrets.token_hex(4)}-Pass1"
    cognito = aws_client(stack, "cognito-idp")
    pool = stack.discovery["environment"]["QBO_ADMIN_USER_POOL_ID"]
    cognito.admin_create_user(UserPoolId=pool, Username=username, TemporaryPassword=temporary, MessageAction="SUPPRESS")
    cognito.admin_add_user_to_group(UserPoolId=pool, Username=username, GroupName="qbo-connect-admins")
    return username, temporary


def _password(browser, stack, username: str, password: str, *, record: bool = False) -> None:
    browser.get(stack.discovery["console_url"])
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "sign-in-form")))
    assert not _shown(browser, "new-password-row") and not _shown(browser, "sign-in-restart")
    if record:
        browser.execute_script(RECORD_REQUESTS)
    _type(browser, "username", username)
    _type(browser, "password", password)
    browser.find_element(By.ID, "sign-in").click()


def _first_password_and_key(browser, stack, username: str, temporary: str, chosen: str, *, record: bool = False) -> str:
    """A first sign-in up to the authenticator's setup: the key the page shows."""
    _password(browser, stack, username, temporary, record=record)
    _wait(browser).until(lambda b: _shown(b, "new-password-row"))
    assert _text(browser, "sign-in-error") == "Choose a new password to finish signing in."
    _type(browser, "new-password", chosen)
    browser.find_element(By.ID, "sign-in").click()
    _wait(browser).until(lambda b: _shown(b, "mfa-setup-form"))
    return _text(browser, "mfa-secret").replace(" ", "")


def _enter(browser, field: str, button: str, text: str) -> None:
    _type(browser, field, text)
    browser.find_element(By.ID, button).click()


def _set_up_then_back_at_the_code(browser, stack, username: str, temporary: str, chosen: str) -> str:
    """A first sign-in through the setup, a sign-out, and the next sign-in up to its code: the key."""
    secret = _first_password_and_key(browser, stack, username, temporary, chosen)
    _enter(browser, "mfa-setup-code", "mfa-setup-submit", authenticator_code(secret))
    _signed_in(browser)
    browser.find_element(By.ID, "sign-out").click()
    _password(browser, stack, username, chosen)
    _wait(browser).until(lambda b: _shown(b, "mfa-code-form"))
    return secret


def _signed_in(browser) -> None:
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "list-view")))
    _wait(browser).until(lambda b: b.find_elements(By.CSS_SELECTOR, "tr[data-connection-id='demo']"))


def test_a_new_administrator_sets_up_an_authenticator_at_the_first_sign_in_and_signs_in_with_its_codes(
    local_stack, browser
):
    username, temporary = _new_administrator(local_stack)
    chosen = f"Chosen-{secrets.token_hex(5)}-Pass2"
    secret = _first_password_and_key(browser, local_stack, username, temporary, chosen, record=True)

    # The key as text to type into an app, and the otpauth:// link an app opens, naming the same key.
    assert len(secret) == 32
    link = urlsplit(browser.find_element(By.ID, "mfa-uri").get_attribute("href"))
    assert (link.scheme, link.netloc) == ("otpauth", "totp")
    assert unquote(link.path) == f"/qbo-connect:{username}@{urlsplit(local_stack.discovery['console_url']).hostname}"
    assert parse_qs(link.query) == {
        "secret": [secret],
        "issuer": ["qbo-connect"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }
    _type(browser, "mfa-setup-code", authenticator_code(secret))
    browser.find_element(By.ID, "mfa-setup-submit").click()
    _signed_in(browser)
    assert _text(browser, "who") == f"Signed in as {username}"
    # The key is gone from the page once it is set up; nothing was kept in the browser.
    assert secret not in browser.execute_script("return document.body.innerHTML")
    assert browser.execute_script("return window.localStorage.length + window.sessionStorage.length") == 0
    shown = aws_client(local_stack, "cognito-idp").admin_get_user(
        UserPoolId=local_stack.discovery["environment"]["QBO_ADMIN_USER_POOL_ID"], Username=username
    )
    assert shown["UserStatus"] == "CONFIRMED" and shown["UserMFASettingList"] == ["SOFTWARE_TOKEN_MFA"]

    # Signed out, the password alone is not enough again: the page asks for the app's code.
    browser.find_element(By.ID, "sign-out").click()
    _type(browser, "username", username)
    _type(browser, "password", chosen)
    browser.find_element(By.ID, "sign-in").click()
    _wait(browser).until(lambda b: _shown(b, "mfa-code-form"))
    assert not _shown(browser, "list-view")
    _type(browser, "mfa-code", authenticator_code(secret))
    browser.find_element(By.ID, "mfa-submit").click()
    _signed_in(browser)

    # What went over the wire: passwords proven by SRP, never sent, but the new one, which Cognito's
    # NEW_PASSWORD_REQUIRED takes as it is (over TLS); the key never (only Cognito's own answer held it).
    sent = [request for request in browser.execute_script("return window.__sent") if request["target"]]
    targets = [json.loads(r["body"]).get("ChallengeName") or r["target"].rsplit(".", 1)[-1] for r in sent]
    for target, request in zip(targets, sent, strict=True):
        assert temporary not in request["body"]
        assert (chosen in request["body"]) == (target == "NEW_PASSWORD_REQUIRED")
        assert secret not in request["body"] and secret not in request["url"]
    assert targets == [
        "InitiateAuth",
        "PASSWORD_VERIFIER",
        "NEW_PASSWORD_REQUIRED",
        "AssociateSoftwareToken",
        "VerifySoftwareToken",
        "MFA_SETUP",
        "InitiateAuth",
        "PASSWORD_VERIFIER",
        "SOFTWARE_TOKEN_MFA",
    ]
    # Nothing of the sign-in reached the browser's console or the stack's logs.
    console_lines = " ".join(entry["message"] for entry in browser.get_log("browser"))
    assert secret not in console_lines and "Session" not in console_lines
    assert secret not in local_stack.all_logs()


def test_a_wrong_code_is_refused_with_a_message_and_the_right_one_then_signs_in(local_stack, browser):
    username, temporary = _new_administrator(local_stack)
    chosen = f"Chosen-{secrets.token_hex(5)}-Pass3"
    secret = _first_password_and_key(browser, local_stack, username, temporary, chosen)

    # At setup: a code of another key is refused, the key stays on the page, the right code then works.
    _type(browser, "mfa-setup-code", authenticator_code("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
    browser.find_element(By.ID, "mfa-setup-submit").click()
    _wait(browser).until(lambda b: _text(b, "sign-in-error"))
    assert _text(browser, "sign-in-error").startswith(SETUP_CODE_REFUSED)
    assert _shown(browser, "mfa-setup-form") and _text(browser, "mfa-secret").replace(" ", "") == secret
    assert browser.find_element(By.ID, "mfa-setup-code").get_attribute("value") == ""
    _enter(browser, "mfa-setup-code", "mfa-setup-submit", authenticator_code(secret))
    _signed_in(browser)
    browser.find_element(By.ID, "sign-out").click()

    # At a later sign-in: what is not six digits is refused before it is sent; a wrong code by Cognito.
    _password(browser, local_stack, username, chosen)
    _wait(browser).until(lambda b: _shown(b, "mfa-code-form"))
    _enter(browser, "mfa-code", "mfa-submit", "12345")
    _wait(browser).until(lambda b: _text(b, "sign-in-error") == "Enter the 6 digits your authenticator app shows.")
    right = authenticator_code(secret)
    _enter(browser, "mfa-code", "mfa-submit", f"{(int(right) + 1) % 1_000_000:06d}")
    _wait(browser).until(lambda b: _text(b, "sign-in-error").startswith(CODE_REFUSED))
    assert _shown(browser, "mfa-code-form") and not _shown(browser, "list-view")
    assert browser.find_element(By.ID, "sign-out").is_displayed() is False

    # Spaces as people type them are fine.
    right = authenticator_code(secret)
    _enter(browser, "mfa-code", "mfa-submit", f"{right[:3]} {right[3:]}")
    _signed_in(browser)
    assert _text(browser, "sign-in-error") == ""


def test_a_step_that_outlived_cognitos_session_says_to_sign_in_again(local_stack, browser):
    username, temporary = _new_administrator(local_stack)
    chosen = f"Chosen-{secrets.token_hex(5)}-Pass4"
    secret = _set_up_then_back_at_the_code(browser, local_stack, username, temporary, chosen)

    browser.execute_script(EXPIRE_THE_NEXT_ANSWER)  # more than 3 minutes went by before the code was typed
    _enter(browser, "mfa-code", "mfa-submit", authenticator_code(secret))

    _wait(browser).until(lambda b: "sign in again" in _text(b, "sign-in-error"))
    assert _text(browser, "sign-in-error") == (
        "This sign-in took longer than Cognito allows for a step (3 minutes): sign in again with your password."
    )
    assert _shown(browser, "sign-in-form") and not _shown(browser, "mfa-code-form")
    assert browser.find_element(By.ID, "password").get_attribute("value") == ""
    _enter(browser, "password", "sign-in", chosen)
    _wait(browser).until(lambda b: _shown(b, "mfa-code-form"))
    _enter(browser, "mfa-code", "mfa-submit", authenticator_code(secret))
    _signed_in(browser)


def test_the_local_administrator_signs_in_with_what_make_dev_prints(local_stack, browser):
    """As a developer does after `make dev`: the banner's user and password, and the code of the banner's
    `qbo-connect-local totp` run as printed (or of the key it prints, typed into an app)."""
    banner = local_stack.log()
    account = re.search(r"^  (http://\S+/)    user (\S+)   password (\S+)$", banner, re.MULTILINE)
    printed = re.search(r"^  code: (.+) totp   \(prints the current one", banner, re.MULTILINE)
    key = re.search(r"key ([A-Z2-7]{32}) to an authenticator app", banner)
    assert account and printed and key, banner[-2000:]
    console_url, username, password = account.groups()

    ran = subprocess.run(
        [*printed.group(1).split(), "totp"],
        env=local_stack.env(), cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    code = ran.stdout.strip()
    assert re.fullmatch(r"[0-9]{6}", code) and f"user {username}" in ran.stderr
    assert code in {authenticator_code(key.group(1), time.time() + s) for s in (-30, 0, 30)}

    browser.get(console_url)
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "sign-in-form")))
    _type(browser, "username", username)
    _type(browser, "password", password)
    browser.find_element(By.ID, "sign-in").click()
    _wait(browser).until(lambda b: _shown(b, "mfa-code-form"))
    _type(browser, "mfa-code", code)
    browser.find_element(By.ID, "mfa-submit").click()
    _signed_in(browser)
