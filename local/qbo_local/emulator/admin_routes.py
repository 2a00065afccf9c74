"""The admin API under /_emulator/: knobs for tests and the local stack (documented in __init__)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from . import facts
from .common import emulator, json_response
from .facts import ADMIN_PREFIX, SUBSCRIPTION_STATUSES
from .openid import Person
from .webhooks import PayloadShape, Subscription

bp = Blueprint("admin", __name__, url_prefix=ADMIN_PREFIX)


class AdminError(ValueError):
    """A bad admin request; answered 400 with {"error": message}."""


@bp.errorhandler(AdminError)
@bp.errorhandler(ValueError)
@bp.errorhandler(KeyError)
@bp.errorhandler(TypeError)
def _bad_request(error: Exception) -> Response:
    message = f"unknown: {error}" if isinstance(error, KeyError) else str(error)
    return json_response({"error": message}, 400)


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if body is None and not request.get_data():
        return {}
    if not isinstance(body, dict):
        raise AdminError("the body must be a JSON object")
    return body


def _required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise AdminError(f"{name!r} is required (a non-empty string)")
    return value


@bp.get("/webhooks")
def webhooks() -> Response:
    return json_response(emulator().webhooks.snapshot())


@bp.post("/webhooks")
def subscribe_webhooks() -> Response:
    body = _body()
    shape = PayloadShape(body.get("format", PayloadShape.CLOUDEVENTS.value))
    subscription = Subscription(
        client_id=_required_str(body, "client_id"),
        url=_required_str(body, "url"),
        verifier_token=_required_str(body, "verifier_token"),
        shape=shape,
    )
    emulator().webhooks.subscribe(subscription)
    return json_response(subscription.public_dict())


@bp.delete("/webhooks")
def unsubscribe_webhooks() -> Response:
    emulator().webhooks.unsubscribe(request.args.get("client_id"))
    return json_response(emulator().webhooks.snapshot())


@bp.post("/webhooks/flush")
def flush_webhooks() -> Response:
    return json_response({"flushed": emulator().webhooks.flush(timeout=float(_body().get("timeout", 30)))})


@bp.get("/person")
def person() -> Response:
    return json_response(emulator().person.public_dict())


@bp.post("/person")
def sign_in() -> Response:
    """Who clicks Connect from now on: {"email", "given_name", "family_name"} (names optional)."""
    body = _body()
    signed_in = Person(
        email=_required_str(body, "email"),
        given_name=str(body.get("given_name", "")),
        family_name=str(body.get("family_name", "")),
    )
    return json_response(emulator().sign_in(signed_in).public_dict())


@bp.get("/health")
def health() -> Response:
    state = emulator()
    return json_response({"status": "ok", "companies": len(state.companies()), "now": state.now()})


@bp.get("/stats")
def stats() -> Response:
    return json_response(emulator().stats.snapshot())


@bp.delete("/stats")
def clear_stats() -> Response:
    emulator().stats.reset()
    return json_response(emulator().stats.snapshot())


@bp.get("/faults")
def faults() -> Response:
    return json_response(emulator().faults.snapshot())


@bp.post("/faults")
def set_faults() -> Response:
    # One knob object, or a list of them applied in order.
    body = request.get_json(silent=True)
    specs = body if isinstance(body, list) else [body]
    if not all(isinstance(spec, dict) for spec in specs):
        raise AdminError("send a JSON object (or a list of objects) of fault knobs")
    for spec in specs:
        emulator().faults.configure(spec)
    return json_response(emulator().faults.snapshot())


@bp.delete("/faults")
def clear_faults() -> Response:
    emulator().faults.clear(request.args.get("group"))
    return json_response(emulator().faults.snapshot())


@bp.post("/clients")
def register_client() -> Response:
    body = _body()
    client_id = _required_str(body, "client_id")
    emulator().register_client(client_id, _required_str(body, "client_secret"))
    return json_response({"client_id": client_id}, 201)


@bp.get("/companies")
def list_companies() -> Response:
    companies = [{"realm_id": c.realm_id, "name": c.name} for c in emulator().companies()]
    return json_response({"companies": companies})


@bp.post("/companies")
def add_company() -> Response:
    body = _body()
    company = emulator().add_company(_required_str(body, "realm_id"), _required_str(body, "name"))
    return json_response({"realm_id": company.realm_id, "name": company.name}, 201)


@bp.post("/companies/<realm_id>/customers")
def seed_customers(realm_id: str) -> Response:
    count = _body().get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= 100_000:
        raise AdminError("'count' must be an integer from 0 to 100000")
    if emulator().company(realm_id) is None:
        return json_response({"error": f"no company {realm_id}"}, 404)
    total = emulator().seed_customers(realm_id, count)
    return json_response({"realm_id": realm_id, "created": count, "total": total}, 201)


@bp.post("/companies/<realm_id>/subscription")
def set_subscription(realm_id: str) -> Response:
    body = _body()
    lapsed, status = body.get("lapsed"), body.get("status")
    statuses = ", ".join(sorted(SUBSCRIPTION_STATUSES))
    if (lapsed is None) == (status is None) or not isinstance(lapsed, bool | None):
        raise AdminError(
            'send {"lapsed": true} (refused: 403, fault 3100) or {"lapsed": false} (renewed), or {"status": ...} '
            f"(what CompanyInfo reports; read only in some: {statuses})"
        )
    if status is not None and status not in SUBSCRIPTION_STATUSES:
        raise AdminError(f"'status' is one of {statuses}")
    if emulator().company(realm_id) is None:
        return json_response({"error": f"no company {realm_id}"}, 404)
    if status is None:
        company = emulator().set_subscription_lapsed(realm_id, lapsed)
    else:
        company = emulator().set_subscription_status(realm_id, status)
    return json_response(
        {
            "realm_id": realm_id,
            "subscription_lapsed": company.subscription_lapsed,
            "subscription_status": company.subscription_status,
        }
    )


def _config_view() -> dict[str, Any]:
    state = emulator()
    return state.config.public_dict() | {"client_ids": state.client_ids()}


@bp.get("/config")
def read_config() -> Response:
    return json_response(_config_view())


@bp.post("/config")
def change_config() -> Response:
    emulator().update_config(_body())
    return json_response(_config_view())


@bp.get("/grants")
def grants() -> Response:
    return json_response({"grants": emulator().grants()})


@bp.post("/grants")
def seed_grants() -> Response:
    # Many connected grants without clicking through consent: benchmarks seed thousands this way.
    body = _body()
    client_id, realm_id = _required_str(body, "client_id"), _required_str(body, "realm_id")
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 20_000:
        raise AdminError("'count' must be an integer from 1 to 20000")
    scopes = body.get("scopes", [facts.ACCOUNTING_SCOPE])
    if not isinstance(scopes, list) or not scopes or not all(s in facts.KNOWN_SCOPES for s in scopes):
        raise AdminError(f"'scopes' must be a non-empty list of {sorted(facts.KNOWN_SCOPES)}")
    state = emulator()
    if state.company(realm_id) is None:
        return json_response({"error": f"no company {realm_id}"}, 404)
    if not state.may_ask_consent(client_id):
        raise AdminError(f"the app {client_id} is not registered")
    seeded = state.seed_grants(client_id, realm_id, scopes, count)
    grants = [
        {
            "grant_id": grant_id,
            "access_token": issued.access_token,
            "refresh_token": issued.refresh_token,
            "expires_in": issued.expires_in,
            "x_refresh_token_expires_in": issued.refresh_expires_in,
            "hard_expires_in": issued.hard_expires_in,
        }
        for grant_id, issued in seeded
    ]
    return json_response({"grants": grants}, 201)


@bp.post("/grants/<grant_id>/revoke")
def revoke_grant(grant_id: str) -> Response:
    # Stands in for a user disconnecting the app inside QuickBooks.
    if not emulator().revoke_grant(grant_id):
        return json_response({"error": f"no grant {grant_id}"}, 404)
    return json_response({"grant_id": grant_id, "revoked": True})


@bp.post("/clock")
def advance_clock() -> Response:
    seconds = _body().get("advance", 0)
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise AdminError("'advance' must be a number of seconds")
    return json_response({"now": emulator().advance_clock(float(seconds))})


@bp.post("/reset")
def reset() -> Response:
    emulator().reset()
    return json_response({"status": "reset"})
