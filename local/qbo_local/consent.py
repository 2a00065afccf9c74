"""A consent the way a company administrator's browser gives it, against the emulator, in-process.

The signed authorize link, the consent flow's start, the emulator's consent page, its Connect button
(the decision form) and the callback: for tests and the chaos soak, which need many connected
connections without a browser.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import requests
from qbo_connect.domain.authorization import FlowResult, callback_url

from qbo_local.emulator.facts import DECISION_PATH


class ConsentFailed(AssertionError):
    pass


def consent_in_emulator(
    services: Any, *, connection_id: str, api_base_url: str, emulator_url: str, realm_id: str
) -> FlowResult:
    link = urlsplit(services.authorize_links.create(api_base_url, connection_id))
    query = {key: values[0] for key, values in parse_qs(link.query).items()}
    start = services.consent.start(
        connection_id, exp=query["exp"], kid=query["kid"], sig=query["sig"], redirect_uri=callback_url(api_base_url)
    )
    page = requests.get(start.redirect_url, timeout=10)
    if page.status_code != 200:
        raise ConsentFailed(f"the consent page answered {page.status_code}")
    form = dict(parse_qsl(urlsplit(start.redirect_url).query)) | {"realm_id": realm_id}
    decision = requests.post(emulator_url + DECISION_PATH, data=form, allow_redirects=False, timeout=10)
    if decision.status_code != 302:
        raise ConsentFailed(f"the Connect button answered {decision.status_code}")
    callback = dict(parse_qsl(urlsplit(decision.headers["Location"]).query))
    result = services.consent.complete(callback, state_cookie=start.state_cookie)
    if result.connection.status.value != "connected":
        raise ConsentFailed(f"the callback left the connection {result.connection.status.value}")
    return result
