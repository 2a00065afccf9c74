"""A consent the way a company administrator's browser gives it, against the emulator, in-process.

The signed authorize link, the consent flow's start, the emulator's consent page, its Connect button
(the decision form) and the callback: for tests and the chaos soak, which need many connected
connections without a browser, and for the cold-start benchmark, which needs the callback's request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import requests
from qbo_connect.domain.authorization import FlowResult, callback_url

from qbo_local.emulator.facts import DECISION_PATH


class ConsentFailed(AssertionError):
    pass


@dataclass(frozen=True)
class ConsentGiven:
    """What the browser brings back to the callback once Connect is pressed: Intuit's redirect's query
    (code, state, realmId) and the state cookie the consent's start set."""

    callback: dict[str, str]
    state_cookie: str


def connect_pressed_in_emulator(
    services: Any,
    *,
    connection_id: str,
    api_base_url: str,
    emulator_url: str,
    realm_id: str,
    http: Any = requests,
) -> ConsentGiven:
    """The authorize link followed, the emulator's consent page shown and Connect pressed for `realm_id`."""
    link = urlsplit(services.authorize_links.create(api_base_url, connection_id))
    query = {key: values[0] for key, values in parse_qs(link.query).items()}
    start = services.consent.start(
        connection_id, exp=query["exp"], kid=query["kid"], sig=query["sig"], redirect_uri=callback_url(api_base_url)
    )
    page = http.get(start.redirect_url, timeout=10)
    if page.status_code != 200:
        raise ConsentFailed(f"the consent page answered {page.status_code}")
    form = dict(parse_qsl(urlsplit(start.redirect_url).query)) | {"realm_id": realm_id}
    decision = http.post(emulator_url + DECISION_PATH, data=form, allow_redirects=False, timeout=10)
    if decision.status_code != 302:
        raise ConsentFailed(f"the Connect button answered {decision.status_code}")
    return ConsentGiven(dict(parse_qsl(urlsplit(decision.headers["Location"]).query)), start.state_cookie)


def consent_in_emulator(
    services: Any, *, connection_id: str, api_base_url: str, emulator_url: str, realm_id: str
) -> FlowResult:
    given = connect_pressed_in_emulator(
        services, connection_id=connection_id, api_base_url=api_base_url, emulator_url=emulator_url, realm_id=realm_id
    )
    result = services.consent.complete(given.callback, state_cookie=given.state_cookie)
    if result.connection.status.value != "connected":
        raise ConsentFailed(f"the callback left the connection {result.connection.status.value}")
    return result
