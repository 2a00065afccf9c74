"""The disconnect URL's check, on moto and the emulator: after a person disconnects the app inside
QuickBooks, opening the page marks the company's connection `needs_reauthorization` (with its event) at
once, and a reload within a minute sends Intuit nothing."""

from __future__ import annotations

from qbo_connect.domain.app_links import DisconnectChecks
from test_client_emulator import REALM, world  # noqa: F401 - the fixture


def test_opening_the_disconnect_page_after_a_disconnect_in_quickbooks_marks_the_connection(world) -> None:  # noqa: F811
    (grant,) = world.admin("GET", "/grants")["grants"]
    world.admin("POST", f"/grants/{grant['grant_id']}/revoke")
    world.clock.advance(600)  # the disconnect comes long after the consent
    checks = DisconnectChecks(world.services.store, world.services.connection_tests, world.clock)

    (checked,) = checks.check(REALM)
    assert (checked.status, checked.checked) == ("needs_reauthorization", True)
    assert world.services.store.get(world.connection_id).status.value == "needs_reauthorization"

    calls = world.admin("GET", "/stats")["calls"]
    (again,) = checks.check(REALM)
    assert again.checked is False
    assert world.admin("GET", "/stats")["calls"] == calls  # the reload reached Intuit not at all


def test_a_page_without_a_company_or_with_a_malformed_one_checks_nothing(world) -> None:  # noqa: F811
    checks = DisconnectChecks(world.services.store, world.services.connection_tests, world.clock)
    world.clock.advance(600)
    before = world.admin("GET", "/stats")["calls"]
    assert checks.check(None) == []
    assert checks.check("1 or 1=1") == []
    assert checks.check("5550001") == []
    assert world.admin("GET", "/stats")["calls"] == before


def test_a_connected_company_is_checked_and_stays_connected(world) -> None:  # noqa: F811
    world.clock.advance(600)
    checks = DisconnectChecks(world.services.store, world.services.connection_tests, world.clock)
    (checked,) = checks.check(REALM)
    assert (checked.status, checked.checked) == ("connected", True)
