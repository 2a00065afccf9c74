"""An administrator connects a company through the console in a real browser, without the CLI; and the admin
API refuses every request no authorizer vouches for, changing nothing."""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import Select, WebDriverWait
from stack_support import AUTHENTICATORS, authenticator_code, authenticator_of, aws_client, sign_in_token

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
# Screenshots of the two pages, kept as test artefacts (CI uploads the folder; the README shows copies).
ARTIFACTS = Path(os.environ.get("QBO_E2E_ARTIFACTS", ROOT / "tests" / "e2e" / "artifacts"))
COMPANY = "Sandbox Company_US_1"


def _register_emulator_client(stack) -> tuple[str, str]:
    client_id, client_secret = f"acme-{secrets.token_hex(4)}", "cs-" + secrets.token_urlsafe(24)
    answer = requests.post(
        f"{stack.discovery['emulator_url']}/_emulator/clients",
        json={"client_id": client_id, "client_secret": client_secret},
        timeout=10,
    )
    answer.raise_for_status()
    return client_id, client_secret


def _wait(browser, seconds: float = 20) -> WebDriverWait:
    return WebDriverWait(browser, seconds)


def _text(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def _rows(browser) -> dict[str, str]:
    """The list's rows, read in one go (the page re-renders them as filters change)."""
    return browser.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('tr[data-connection-id]')]"
        ".map(r => [r.dataset.connectionId, r.innerText]))"
    )


def _events(browser) -> list[str]:
    """The connection page's event history, newest first: "Event | what" per row."""
    return browser.execute_script(
        "return [...document.querySelectorAll('#c-events tbody tr')]"
        ".map(r => r.cells[1].textContent + ' | ' + r.cells[2].textContent)"
    )


# Wraps fetch to keep what each request sent: what went over the wire at sign-in.
RECORD_REQUESTS = """
window.__sent = [];
const original = window.fetch;
window.fetch = (url, options = {}) => {
  window.__sent.push({url: String(url), target: (options.headers || {})['X-Amz-Target'] || '', body: options.body || ''});
  return original(url, options);
};
"""


def _sign_in(browser, stack, username: str, password: str, *, load: bool = True) -> None:
    """The password, then the authenticator's code (or its setup, at a first sign-in), as a person does it."""
    if load:
        browser.get(stack.discovery["console_url"])
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "sign-in-form")))
    browser.find_element(By.ID, "username").clear()
    browser.find_element(By.ID, "username").send_keys(username)
    browser.find_element(By.ID, "password").clear()
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "sign-in").click()
    second_factor(browser, stack, username)


def second_factor(browser, stack, username: str) -> None:
    """Answers the step the page asks for next, if it asks for one: the code of the user's authenticator, or the
    setup of one from the key the page shows."""
    _wait(browser).until(
        lambda b: (
            _shown(b, "mfa-setup-form")
            or _shown(b, "mfa-code-form")
            or _shown(b, "list-view")
            or _text(b, "sign-in-error")
        )
    )
    pool = stack.discovery["environment"]["QBO_ADMIN_USER_POOL_ID"]
    if _shown(browser, "mfa-setup-form"):
        secret = _text(browser, "mfa-secret").replace(" ", "")
        AUTHENTICATORS[(pool, username)] = secret
        browser.find_element(By.ID, "mfa-setup-code").send_keys(authenticator_code(secret))
        browser.find_element(By.ID, "mfa-setup-submit").click()
    elif _shown(browser, "mfa-code-form"):
        browser.find_element(By.ID, "mfa-code").send_keys(authenticator_code(authenticator_of(stack, pool, username)))
        browser.find_element(By.ID, "mfa-submit").click()
    else:
        return
    _wait(browser).until(
        lambda b: not (_shown(b, "mfa-setup-form") or _shown(b, "mfa-code-form")) or _text(b, "sign-in-error")
    )


def _shown(browser, element_id: str) -> bool:
    return browser.find_element(By.ID, element_id).is_displayed()


def _pool_user(stack, username: str, password: str, *, administrator: bool) -> None:
    cognito = aws_client(stack, "cognito-idp")
    pool = stack.discovery["environment"]["QBO_ADMIN_USER_POOL_ID"]
    cognito.admin_create_user(UserPoolId=pool, Username=username, MessageAction="SUPPRESS")
    cognito.admin_set_user_password(UserPoolId=pool, Username=username, Password=password, Permanent=True)
    if administrator:
        cognito.admin_add_user_to_group(UserPoolId=pool, Username=username, GroupName="qbo-connect-admins")


def test_sign_in_create_set_secret_generate_test_reset_and_sign_out(local_stack, browser):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    client_id, client_secret = _register_emulator_client(local_stack)
    pages: list[str] = []

    browser.set_window_size(1280, 900)
    browser.get(local_stack.discovery["console_url"])
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "sign-in-form")))
    browser.execute_script(RECORD_REQUESTS)
    password = local_stack.discovery["admin_password"]
    _sign_in(browser, local_stack, local_stack.discovery["admin_username"], password, load=False)

    # The list: the demo connection is there, not connected.
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "list-view")))
    # Signed in by SRP, then the authenticator's code: the password itself was never sent anywhere.
    sent = browser.execute_script("return window.__sent")
    targets = [request["target"].rsplit(".", 1)[-1] for request in sent if request["target"]]
    assert targets == ["InitiateAuth", "RespondToAuthChallenge", "RespondToAuthChallenge"]
    assert '"AuthFlow": "USER_SRP_AUTH"' in sent[0]["body"].replace('":"', '": "')
    assert '"ChallengeName": "SOFTWARE_TOKEN_MFA"' in sent[2]["body"].replace('":"', '": "')
    assert not any(password in request["body"] or password in request["url"] for request in sent)
    _wait(browser).until(lambda b: "demo" in _rows(b))
    assert "not connected" in _rows(browser)["demo"]
    assert browser.execute_script("return window.localStorage.length + window.sessionStorage.length") == 0
    assert browser.get_cookies() == []  # the token lives in the page's memory only

    # Create a connection.
    browser.find_element(By.ID, "new-connection").click()
    browser.find_element(By.ID, "new-name").send_keys("Acme Books")
    Select(browser.find_element(By.ID, "new-environment")).select_by_value("sandbox")
    browser.find_element(By.ID, "new-client-id").send_keys(client_id)
    browser.find_element(By.ID, "create").click()
    _wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "c-name"), "Acme Books"))
    acme_id = browser.current_url.rsplit("#/c/", 1)[1]
    assert _text(browser, "c-secret-state") == "not set"
    callback = local_stack.discovery["callback_url"]
    _wait(browser).until(expected_conditions.text_to_be_present_in_element((By.ID, "callback-url"), callback))

    # Set the secret: a password field, empty each time, never echoed.
    browser.find_element(By.ID, "set-secret").click()
    field = _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "secret-input")))
    assert field.get_attribute("type") == "password" and field.get_attribute("value") == ""
    field.send_keys(client_secret)
    browser.find_element(By.ID, "secret-save").click()
    _wait(browser).until(lambda b: _text(b, "c-secret-state") == "set" or _text(b, "secret-error"))
    assert _text(browser, "c-secret-state") == "set", _text(browser, "secret-error")
    browser.find_element(By.ID, "set-secret").click()
    assert browser.find_element(By.ID, "secret-input").get_attribute("value") == ""  # never pre-filled
    browser.find_element(By.ID, "secret-cancel").click()
    pages.append(browser.page_source)

    # Generate: Intuit's (the emulator's) consent opens in a new window; this page updates by itself.
    console = browser.current_window_handle
    browser.find_element(By.ID, "generate").click()
    _wait(browser).until(lambda b: len(b.window_handles) == 2)
    browser.switch_to.window(next(h for h in browser.window_handles if h != console))
    _wait(browser).until(expected_conditions.element_to_be_clickable((By.ID, "connect"))).click()
    _wait(browser, 30).until(expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Connected"))
    pages.append(browser.page_source)
    browser.close()
    browser.switch_to.window(console)
    _wait(browser, 30).until(lambda b: _text(b, "c-status") == "Status: connected")
    assert "valid until" in _text(browser, "c-token-state")

    # Test Connection.
    browser.find_element(By.ID, "test").click()
    _wait(browser, 30).until(expected_conditions.text_to_be_present_in_element((By.ID, "test-result"), "OK"))
    assert f'company "{COMPANY}"' in _text(browser, "test-result")
    assert " ms)" in _text(browser, "test-result")
    # The connection's history: who did what, and the consent, newest first.
    _wait(browser).until(lambda b: len(_events(b)) == 3)
    assert _events(browser) == [
        f"Authorized | connected to {COMPANY}",
        "Changed | client_secret_set by user:admin; fields: client_secret",
        "Changed | created by user:admin",
    ]
    browser.set_window_size(1280, 1250)  # the whole page, its history included
    browser.save_screenshot(str(ARTIFACTS / "console-connection.png"))
    browser.set_window_size(1280, 900)
    pages.append(browser.page_source)

    # The list shows it connected, and filters by status.
    browser.get(local_stack.discovery["console_url"] + "#/")
    _wait(browser).until(lambda b: "Acme Books" in _rows(b).get(acme_id, ""))
    assert "connected" in _rows(browser)[acme_id] and "not connected" not in _rows(browser)[acme_id]
    browser.save_screenshot(str(ARTIFACTS / "console-list.png"))
    Select(browser.find_element(By.ID, "status-filter")).select_by_value("not_connected")
    _wait(browser).until(lambda b: acme_id not in _rows(b))
    assert "demo" in _rows(browser)
    Select(browser.find_element(By.ID, "status-filter")).select_by_value("")
    _wait(browser).until(lambda b: acme_id in _rows(b))
    pages.append(browser.page_source)

    # Reset, with confirmation.
    browser.find_element(By.CSS_SELECTOR, f"tr[data-connection-id='{acme_id}'] a").click()
    _wait(browser).until(lambda b: _text(b, "c-status") == "Status: connected")
    browser.find_element(By.ID, "reset").click()
    _wait(browser).until(expected_conditions.alert_is_present()).accept()
    _wait(browser).until(lambda b: _text(b, "c-status") == "Status: not connected")
    _wait(browser).until(lambda b: len(_events(b)) == 5)
    assert _events(browser)[:2] == [
        "Changed | reset by user:admin; fields: token_set; revocation: revoked",
        "Reset | tokens cleared; revocation: revoked",
    ]
    pages.append(browser.page_source)

    # The refresh policy, chosen on the same form.
    Select(browser.find_element(By.ID, "c-refresh-policy")).select_by_value("on_demand")
    browser.find_element(By.ID, "save").click()
    _wait(browser).until(lambda b: len(_events(b)) == 6)
    assert _events(browser)[0] == "Changed | updated by user:admin; fields: refresh_policy"
    assert Select(browser.find_element(By.ID, "c-refresh-policy")).first_selected_option.get_attribute("value") == (
        "on_demand"
    )

    # Sign out: the token is gone; the API is out of reach again.
    browser.find_element(By.ID, "sign-out").click()
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "sign-in-form")))
    browser.get(local_stack.discovery["console_url"] + "#/c/demo")
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "sign-in-form")))

    for page in pages:
        assert client_secret not in page
    assert client_secret not in local_stack.all_logs()
    token = sign_in_token(local_stack)
    shown = requests.get(
        f"{local_stack.discovery['api_url']}/admin/connections",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert shown.status_code == 200 and client_secret not in shown.text


def test_a_wrong_password_and_a_pool_user_outside_the_administrators_group_are_refused_and_told_why(
    local_stack, browser
):
    api = local_stack.discovery["api_url"]
    before = requests.get(
        f"{api}/admin/connections", headers={"Authorization": f"Bearer {sign_in_token(local_stack)}"}, timeout=10
    ).json()["connections"]

    _sign_in(browser, local_stack, local_stack.discovery["admin_username"], "not-the-password-1A")
    _wait(browser).until(lambda b: _text(b, "sign-in-error"))
    assert _text(browser, "sign-in-error") == "Incorrect username or password."

    _pool_user(local_stack, "bob", "Bobs-Password-2024", administrator=False)
    _sign_in(browser, local_stack, "bob", "Bobs-Password-2024")
    _wait(browser).until(lambda b: "administrators' group" in _text(b, "sign-in-error"))
    message = _text(browser, "sign-in-error")
    assert "signed in as bob" in message and "'qbo-connect-admins'" in message
    assert "admin-add-user-to-group" in message and "nothing was changed" in message
    assert browser.find_element(By.ID, "sign-in-view").is_displayed()
    assert not browser.find_element(By.ID, "list-view").is_displayed()
    token = sign_in_token(local_stack, username="bob", password="Bobs-Password-2024")  # a valid token of the pool
    refused = requests.post(
        f"{api}/admin/connections",
        headers={"Authorization": f"Bearer {token}"},
        json={"name": "Bobs", "client_id": "ABbob123456"},
        timeout=10,
    )
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "forbidden"

    # Added to the group, bob is an administrator at his next sign-in.
    cognito = aws_client(local_stack, "cognito-idp")
    pool = local_stack.discovery["environment"]["QBO_ADMIN_USER_POOL_ID"]
    cognito.admin_add_user_to_group(UserPoolId=pool, Username="bob", GroupName="qbo-connect-admins")
    _sign_in(browser, local_stack, "bob", "Bobs-Password-2024")
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "list-view")))
    after = requests.get(
        f"{api}/admin/connections", headers={"Authorization": f"Bearer {sign_in_token(local_stack)}"}, timeout=10
    ).json()["connections"]
    assert [c["connection_id"] for c in after] == [c["connection_id"] for c in before]


# Lets every admin API request go out at once but holds its answer (read in full) until the test releases it:
# a slow API. __release() settles once the released answers reached the page's code.
HOLD_ADMIN_ANSWERS = """
window.__held = [];
const send = window.fetch;
window.fetch = (url, options) => {
  const answer = send(url, options).then((response) => response.clone().text().then(() => response));
  if (!String(url).startsWith('/admin/')) return answer;
  return new Promise((resolve, reject) => window.__held.push(() => answer.then(resolve, reject)));
};
window.__release = () => Promise.allSettled(window.__held.splice(0).map((deliver) => deliver()));
"""
RELEASE_AND_SETTLE = "const done = arguments[0]; window.__release().then(() => setTimeout(done, 100));"

# Everything the page holds, shown or hidden: text, form fields' values and the list's rows.
PAGE_CONTENTS = """
return {
  text: document.body.textContent,
  values: [...document.querySelectorAll('input, select')].map((field) => field.value).join(' '),
  rows: document.querySelectorAll('tr[data-connection-id], #c-events tbody tr').length,
};
"""


def test_sign_out_leaves_nothing_of_the_session_in_the_page_for_the_next_person(local_stack, browser):
    _sign_in(browser, local_stack, local_stack.discovery["admin_username"], local_stack.discovery["admin_password"])
    _wait(browser).until(lambda b: "demo" in _rows(b))
    browser.get(local_stack.discovery["console_url"] + "#/c/demo")
    _wait(browser).until(lambda b: b.find_element(By.ID, "c-client-id").get_attribute("value") == "demo-client-id")
    _wait(browser).until(lambda b: _events(b))
    browser.execute_script(HOLD_ADMIN_ANSWERS)
    browser.execute_script("location.hash = '#/'")  # the list is asked for; its answer is on its way ...

    browser.find_element(By.ID, "sign-out").click()
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "sign-in-form")))
    browser.execute_async_script(RELEASE_AND_SETTLE)  # ... and arrives after the sign-out

    left = browser.execute_script(PAGE_CONTENTS)
    assert left["rows"] == 0
    for value in ("demo-client-id", "Sandbox Company_US_1", "created by", local_stack.discovery["callback_url"]):
        assert value not in left["text"] + left["values"], value

    # The next person at this browser, not an administrator, signs in while the admin API is slow: the page
    # shows the list view at once, and must not show the previous administrator's connections in it.
    _pool_user(local_stack, "carol", "Carols-Password-2024", administrator=False)
    _sign_in(browser, local_stack, "carol", "Carols-Password-2024", load=False)
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "list-view")))
    assert _rows(browser) == {}
    browser.execute_async_script(RELEASE_AND_SETTLE)
    _wait(browser).until(lambda b: "administrators' group" in _text(b, "sign-in-error"))


def _connection_to_a_new_company(stack, company: str, name: str) -> tuple[dict, str, str]:
    """A new emulated company and a connection to it (with an app of its own, through the admin API): the
    connection as the API shows it, its authorize link, and the company's realm ID."""
    realm = str(9_341_453_050_100_000 + secrets.randbelow(899_999))
    requests.post(
        f"{stack.discovery['emulator_url']}/_emulator/companies", json={"realm_id": realm, "name": company}, timeout=10
    )
    client_id, client_secret = _register_emulator_client(stack)
    api, headers = stack.discovery["api_url"], {"Authorization": f"Bearer {sign_in_token(stack)}"}
    created = requests.post(
        f"{api}/admin/connections",
        headers=headers,
        json={"name": name, "client_id": client_id, "client_secret": client_secret, "realm_id": realm},
        timeout=10,
    ).json()
    link = requests.post(
        f"{api}/admin/connections/{created['connection_id']}/authorize-link", headers=headers, json={}, timeout=10
    ).json()["authorize_url"]
    return created, link, realm


def _consent(browser, link: str, realm: str) -> None:
    """A company administrator opens the link, picks the company on Intuit's (the emulator's) page, clicks Connect."""
    browser.get(link)
    Select(_wait(browser).until(lambda b: b.find_element(By.ID, "realm_id"))).select_by_value(realm)
    browser.find_element(By.ID, "connect").click()
    _wait(browser, 30).until(expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Connected"))


def test_what_a_company_is_called_reaches_the_history_as_text_never_as_markup(local_stack, browser):
    """A QuickBooks company's name is typed by whoever runs that company: the console must show it, not run it."""
    hostile = "<img src=x id=injected onerror=\"document.title='owned'\">Evil & Co"
    created, link, realm = _connection_to_a_new_company(local_stack, hostile, "Evil Books")

    _consent(browser, link, realm)
    _sign_in(browser, local_stack, local_stack.discovery["admin_username"], local_stack.discovery["admin_password"])
    _wait(browser).until(expected_conditions.visibility_of_element_located((By.ID, "list-view")))
    browser.get(f"{local_stack.discovery['console_url']}#/c/{created['connection_id']}")
    _wait(browser).until(lambda b: any(e.startswith("Authorized") for e in _events(b)))

    assert f"Authorized | connected to {hostile}" in _events(browser)
    assert browser.find_elements(By.ID, "injected") == []
    assert browser.title == "QuickBooks connections"


def test_the_grant_ending_soon_filter_shows_which_end_is_near(local_stack, browser):
    """Intuit answers the consent with 20 days of refresh-token life: the list's "grant ending soon" filter shows
    the connection, saying it is the refresh token's rolling expiry (which a refresh moves out), and leaves out
    the connections whose grant ends later."""
    emulator = local_stack.discovery["emulator_url"]
    created, link, realm = _connection_to_a_new_company(local_stack, "Soon Books", "Soon Books")
    later = requests.post(
        f"{local_stack.discovery['api_url']}/admin/connections",
        headers={"Authorization": f"Bearer {sign_in_token(local_stack)}"},
        json={"name": "Later Books", "client_id": created["client_id"]},
        timeout=10,
    ).json()
    lifetime = requests.get(f"{emulator}/_emulator/config", timeout=10).json()["refresh_token_seconds"]
    requests.post(f"{emulator}/_emulator/config", json={"refresh_token_seconds": 20 * 86400}, timeout=10)
    try:
        _consent(browser, link, realm)
    finally:
        requests.post(f"{emulator}/_emulator/config", json={"refresh_token_seconds": lifetime}, timeout=10)
    _sign_in(browser, local_stack, local_stack.discovery["admin_username"], local_stack.discovery["admin_password"])
    _wait(browser).until(lambda b: created["connection_id"] in _rows(b) and later["connection_id"] in _rows(b))

    Select(browser.find_element(By.ID, "status-filter")).select_by_value("expiry")
    _wait(browser).until(lambda b: later["connection_id"] not in _rows(b))

    row = _rows(browser)[created["connection_id"]]
    assert "the refresh token expires in 19 days (its rolling expiry)" in row and "hard" not in row
    assert all("expires in" in text or "ends in" in text for text in _rows(browser).values())


def _forged(token: str, **claims) -> str:
    """The token with changed claims and its original signature (what an attacker can make)."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def _expired(stack, token: str) -> str:
    """A token the pool's own key signed, an hour past its expiry (moto signs with one published key)."""
    from joserfc import jwt
    from joserfc.jwk import RSAKey
    from moto.utilities.utils import load_resource

    key = RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
    _, payload, _ = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims |= {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}
    return jwt.encode({"alg": "RS256", "kid": "dummy"}, claims, key)


def test_without_a_valid_token_the_admin_api_refuses_and_changes_nothing(local_stack):
    api = local_stack.discovery["api_url"]
    token = sign_in_token(local_stack)
    good = {"Authorization": f"Bearer {token}"}

    def snapshot() -> list[dict]:
        answer = requests.get(f"{api}/admin/connections", headers=good, timeout=10)
        assert answer.status_code == 200
        return answer.json()["connections"]

    # A user of another pool in the same AWS account and region, with a token moto signs with the same key.
    cognito = aws_client(local_stack, "cognito-idp")
    other_pool = cognito.create_user_pool(PoolName="someone-else")["UserPool"]["Id"]
    other_client = cognito.create_user_pool_client(
        UserPoolId=other_pool, ClientName="x", ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH"]
    )["UserPoolClient"]["ClientId"]
    cognito.admin_create_user(UserPoolId=other_pool, Username="mallory", MessageAction="SUPPRESS")
    cognito.admin_set_user_password(
        UserPoolId=other_pool, Username="mallory", Password="Passw0rd-Passw0rd", Permanent=True
    )
    cognito.create_group(UserPoolId=other_pool, GroupName="qbo-connect-admins")  # the same name, another pool
    cognito.admin_add_user_to_group(UserPoolId=other_pool, Username="mallory", GroupName="qbo-connect-admins")
    foreign = sign_in_token(
        local_stack, pool_id=other_pool, client_id=other_client, username="mallory", password="Passw0rd-Passw0rd"
    )

    refused_headers = {
        "no token": {},
        "expired": {"Authorization": f"Bearer {_expired(local_stack, token)}"},
        "another pool": {"Authorization": f"Bearer {foreign}"},
        "tampered": {"Authorization": f"Bearer {_forged(token, **{'cognito:username': 'root'})}"},
        "not a JWT": {"Authorization": "Bearer not-a-token"},
        "SigV4 on the JWT routes": {
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00"
        },
    }
    before = snapshot()
    requests_to_try = [
        ("POST", "/connections", {"name": "Intruder", "client_id": "ABintruder1234"}),
        ("PATCH", "/connections/demo", {"name": "Owned"}),
        ("PUT", "/connections/demo/client-secret", {"client_secret": "attacker-secret-1"}),
        ("POST", "/connections/demo/reset", {}),
        ("POST", "/connections/demo/authorize-link", {}),
        ("DELETE", "/connections/demo", None),
        ("GET", "/connections", None),
    ]
    for label, headers in refused_headers.items():
        for method, path, body in requests_to_try:
            answer = requests.request(method, f"{api}/admin{path}", headers=headers, json=body, timeout=10)
            assert answer.status_code == 401, (label, method, path, answer.text)
            assert "authorize_url" not in answer.text
    for method, path, body in requests_to_try:  # the machines' routes want a real SigV4 signature
        answer = requests.request(method, f"{api}/iam/admin{path}", headers=good, json=body, timeout=10)
        assert answer.status_code == 403, (method, path, answer.text)

    assert snapshot() == before


def test_a_machine_signs_with_sigv4_and_gets_the_same_operations(local_stack):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = f"{local_stack.discovery['api_url']}/iam/admin/connections/demo/authorize-link"
    body = json.dumps({"lifetime_seconds": 7 * 86400})

    def signed(secret_key: str) -> dict[str, str]:
        request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials("testing", secret_key), "execute-api", local_stack.discovery["region"]).add_auth(request)
        return dict(request.headers)

    answer = requests.post(url, data=body, headers=signed("testing"), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["expires_at"] == pytest.approx(time.time() + 7 * 86400, abs=60)

    forged = requests.post(url, data=body, headers=signed("not-the-secret"), timeout=10)
    assert forged.status_code == 403
    tampered = requests.post(url, data=body.replace("604800", "518400"), headers=signed("testing"), timeout=10)
    assert tampered.status_code == 403
