"""A person connects the demo company in a real browser, then a workflow and the CLI use the connection."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.e2e


def _read_connection_secret(stack, connection_id: str) -> dict:
    """Read the secret as a workflow would: the documented JSON in Secrets Manager."""
    environment = stack.discovery["environment"]
    client = boto3.client(
        "secretsmanager",
        endpoint_url=stack.discovery["aws_endpoint_url"],
        region_name=stack.discovery["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    name = f"{environment['QBO_SECRET_PREFIX']}connections/{connection_id}"
    return json.loads(client.get_secret_value(SecretId=name)["SecretString"])


def test_connect_test_reset_in_browser_and_cli(local_stack, browser):
    link = local_stack.cli("connections", "authorize-link", "demo")
    assert link.returncode == 0, link.stderr
    authorize_url = next(word for word in link.stdout.split() if "/connections/demo/authorize?" in word)

    browser.get(authorize_url)
    connect = WebDriverWait(browser, 20).until(expected_conditions.element_to_be_clickable((By.ID, "connect")))
    assert "Sandbox Company_US_1" in browser.page_source  # the emulator's consent page lists the companies
    connect.click()
    WebDriverWait(browser, 30).until(
        expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Connected")
    )
    callback = urlsplit(browser.current_url)
    assert callback.path == "/oauth/callback"
    page = browser.find_element(By.TAG_NAME, "body").text
    assert 'company "Sandbox Company_US_1"' in page.replace("\u201c", '"').replace("\u201d", '"')
    assert "9341453050000001" in page

    secret = _read_connection_secret(local_stack, "demo")
    token_set = secret["token_set"]
    sensitive = {
        "authorization code": parse_qs(callback.query)["code"][0],
        "state": parse_qs(callback.query)["state"][0],
        "access token": token_set["access_token"],
        "refresh token": token_set["refresh_token"],
        "client secret": secret["client_secret"],
    }
    for value in (token_set["access_token"], token_set["refresh_token"], secret["client_secret"]):
        assert value not in browser.page_source

    tested = local_stack.cli("connections", "test", "demo")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "Sandbox Company_US_1" in tested.stdout

    as_json = json.loads(local_stack.cli("--output", "json", "connections", "test", "demo").stdout)
    assert as_json["ok"] is True and as_json["realm_id"] == "9341453050000001"

    reset = local_stack.cli("connections", "reset", "demo", "--yes")
    assert reset.returncode == 0, reset.stderr
    after = local_stack.cli("--output", "json", "connections", "test", "demo")
    assert after.returncode == 1
    assert json.loads(after.stdout)["error"]["code"] == "not_connected"

    outputs = [link, tested, reset, after]
    for what, value in sensitive.items():
        assert value not in local_stack.all_logs(), f"the {what} appeared in the local stack's logs"
        for result in outputs:
            assert value not in result.stdout + result.stderr, f"the {what} appeared in CLI output"


def test_reloading_the_result_page_says_connected_but_the_callback_url_elsewhere_is_refused(local_stack, browser):
    link = local_stack.cli("connections", "authorize-link", "demo").stdout
    authorize_url = next(word for word in link.split() if "/connections/demo/authorize?" in word)
    browser.get(authorize_url)
    WebDriverWait(browser, 20).until(expected_conditions.element_to_be_clickable((By.ID, "connect"))).click()
    WebDriverWait(browser, 30).until(
        expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Connected")
    )
    before = _read_connection_secret(local_stack, "demo")["generation"]

    callback = browser.current_url
    browser.refresh()  # the person reloads the result page: the same code and state, in the same browser
    WebDriverWait(browser, 30).until(
        expected_conditions.text_to_be_present_in_element((By.TAG_NAME, "h1"), "Connected")
    )
    assert _read_connection_secret(local_stack, "demo")["generation"] == before

    browser.delete_all_cookies()
    browser.get(callback)  # the same code and state from a browser that did not connect: a replay
    heading = browser.find_element(By.TAG_NAME, "h1").text
    assert heading != "Connected"
    assert "Start again from a fresh authorize link" in browser.find_element(By.TAG_NAME, "body").text
    assert _read_connection_secret(local_stack, "demo")["generation"] == before


def test_a_forged_callback_opened_mid_consent_leaves_the_pending_consent_able_to_finish(local_stack, browser):
    link = local_stack.cli("connections", "authorize-link", "demo").stdout
    authorize_url = next(word for word in link.split() if "/connections/demo/authorize?" in word)
    browser.get(authorize_url)
    WebDriverWait(browser, 20).until(expected_conditions.element_to_be_clickable((By.ID, "connect")))
    consent_page = browser.current_url

    # While the person is on Intuit's page, another site sends this browser to our callback with a state of its
    # own making (a link, or window.location): a cross-site top-level navigation, which carries and sets cookies.
    forged = f"{local_stack.discovery['api_url']}/oauth/callback?state=forged-{'x' * 40}&code=AB11forged&realmId=1234"
    browser.get(f"data:text/html,<a id=lure href='{forged}'>a cat picture</a>")
    browser.find_element(By.ID, "lure").click()
    WebDriverWait(browser, 20).until(lambda b: "/oauth/callback" in b.current_url)
    assert browser.find_element(By.TAG_NAME, "h1").text == "This sign-in can't be completed"

    # The forged state was nobody's: the person's own consent, still pending, finishes in this browser.
    browser.get(consent_page)
    WebDriverWait(browser, 20).until(expected_conditions.element_to_be_clickable((By.ID, "connect"))).click()
    WebDriverWait(browser, 30).until(lambda b: "/oauth/callback" in b.current_url)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Connected"


def test_going_back_to_a_result_page_mid_consent_leaves_the_new_consent_able_to_finish(local_stack, browser):
    def consent_page() -> None:
        link = local_stack.cli("connections", "authorize-link", "demo").stdout
        browser.get(next(word for word in link.split() if "/connections/demo/authorize?" in word))
        WebDriverWait(browser, 20).until(expected_conditions.element_to_be_clickable((By.ID, "connect")))

    def heading_after_connect() -> str:
        WebDriverWait(browser, 20).until(expected_conditions.element_to_be_clickable((By.ID, "connect"))).click()
        WebDriverWait(browser, 30).until(lambda b: "/oauth/callback" in b.current_url)
        return browser.find_element(By.TAG_NAME, "h1").text

    consent_page()
    assert heading_after_connect() == "Connected"
    # An administrator connecting again (or the next company) opens a fresh link in the same tab, goes Back to
    # the result page (no-store: the browser asks for it again, and it still says Connected), then Forward.
    consent_page()
    browser.back()
    WebDriverWait(browser, 20).until(lambda b: "/oauth/callback" in b.current_url)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Connected"
    browser.forward()

    assert heading_after_connect() == "Connected"
