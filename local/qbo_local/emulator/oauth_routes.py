"""Intuit's OAuth 2.0 server: consent page, decision, token endpoint, revocation and discovery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import Blueprint, Response, redirect, request

from . import facts
from .common import (
    authenticated_client,
    emulator,
    html_response,
    injected_response,
    oauth_failure_response,
    oauth_response,
)
from .errors import AccessRejected, OAuthFailure, invalid_request
from .facts import GrantType, OAuthError
from .faults import Group, HardExpiryMode
from .pages import consent_page, error_page
from .responses import token_body
from .state import IssuedTokens

bp = Blueprint("oauth", __name__)


class ConsentError(ValueError):
    """A bad authorization request: shown on an error page, never redirected (the target is untrusted)."""


@dataclass(frozen=True)
class AuthorizeRequest:
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str

    def hidden_fields(self) -> dict[str, str]:
        return {
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "response_type": "code",
            "scope": " ".join(self.scopes),
            "state": self.state,
        }


def parse_authorize_request(values: Mapping[str, str]) -> AuthorizeRequest:
    client_id = values.get("client_id", "")
    if not client_id:
        raise ConsentError("client_id is missing.")
    if not emulator().may_ask_consent(client_id):
        raise ConsentError(f"The app {client_id} is not registered.")
    redirect_uri = values.get("redirect_uri", "")
    parts = urlsplit(redirect_uri)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        raise ConsentError("redirect_uri is missing or is not an absolute http(s) URL without a fragment.")
    if values.get("response_type") != "code":
        raise ConsentError("response_type must be code.")
    scopes = tuple(dict.fromkeys(values.get("scope", "").split()))
    if not scopes:
        raise ConsentError("scope is missing.")
    unknown = [scope for scope in scopes if scope not in facts.KNOWN_SCOPES]
    if unknown:
        raise ConsentError(f"Unknown scope: {' '.join(unknown)}")
    state = values.get("state", "")
    if not state:
        raise ConsentError("state is missing.")
    return AuthorizeRequest(client_id, redirect_uri, scopes, state)


def with_query(uri: str, params: Mapping[str, str]) -> str:
    """The redirect URI with params appended, keeping any query it already has."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


@bp.get(facts.AUTHORIZE_PATH)
def authorize() -> Response:
    state = emulator()
    state.stats.record("authorize")
    try:
        auth = parse_authorize_request(request.args)
    except ConsentError as error:
        return html_response(error_page(str(error)), 400)
    companies = [(company.realm_id, company.name) for company in state.companies()]
    page = consent_page(
        client_id=auth.client_id,
        scopes=auth.scopes,
        companies=companies,
        hidden=auth.hidden_fields(),
        signed_in_as=state.person.email,
    )
    return html_response(page)


@bp.post(facts.DECISION_PATH)
def decision() -> Response:
    state = emulator()
    state.stats.record("decision")
    try:
        auth = parse_authorize_request(request.form)
    except ConsentError as error:
        return html_response(error_page(str(error)), 400)
    if "cancel" in request.form:
        denied = {
            "error": OAuthError.ACCESS_DENIED.value,
            "error_description": "The user did not authorize the app",
            "state": auth.state,
        }
        return redirect(with_query(auth.redirect_uri, denied), 302)
    realm_id = request.form.get("realm_id", "")
    if state.company(realm_id) is None:
        return html_response(error_page("Choose one of the listed companies."), 400)
    code = state.issue_code(auth.client_id, auth.redirect_uri, realm_id, auth.scopes)
    params = {"code": code, "state": auth.state}
    if facts.REALM_SCOPES.intersection(auth.scopes):
        params["realmId"] = realm_id
    return redirect(with_query(auth.redirect_uri, params), 302)


@bp.post(facts.TOKEN_PATH)
def token() -> Response:
    state = emulator()
    grant_type = request.form.get("grant_type", "")
    state.stats.record_token(grant_type)
    if (injected := injected_response(Group.TOKEN, grant_type)) is not None:
        return injected
    try:
        client_id = authenticated_client()
        issued = _grant(client_id, grant_type)
    except OAuthFailure as failure:
        return oauth_failure_response(failure)
    return oauth_response(
        token_body(
            access_token=issued.access_token,
            refresh_token=issued.refresh_token,
            expires_in=issued.expires_in,
            refresh_expires_in=issued.refresh_expires_in,
            hard_expires_in=issued.hard_expires_in if _include_hard_expiry() else None,
            id_token=issued.id_token,
        )
    )


def _grant(client_id: str, grant_type: str) -> IssuedTokens:
    form = request.form
    if grant_type == GrantType.AUTHORIZATION_CODE:
        code, redirect_uri = form.get("code", ""), form.get("redirect_uri", "")
        if not code or not redirect_uri:
            raise invalid_request("code and redirect_uri are required")
        return emulator().redeem_code(client_id, code, redirect_uri)
    if grant_type == GrantType.REFRESH_TOKEN:
        refresh_token = form.get("refresh_token", "")
        if not refresh_token:
            raise invalid_request("refresh_token is required")
        scope = form.get("scope")
        return emulator().refresh(client_id, refresh_token, None if scope is None else tuple(scope.split()))
    raise OAuthFailure(OAuthError.UNSUPPORTED_GRANT_TYPE)


def _include_hard_expiry() -> bool:
    mode = emulator().faults.include_hard_expiry
    asked = request.headers.get(facts.HARD_EXPIRY_REQUEST_HEADER, "").strip().lower() == "true"
    return mode is HardExpiryMode.ALWAYS or (mode is HardExpiryMode.HEADER and asked)


@bp.post(facts.REVOKE_PATH)
def revoke() -> Response:
    state = emulator()
    state.stats.record("revoke")
    if (injected := injected_response(Group.REVOKE)) is not None:
        return injected
    try:
        client_id = authenticated_client()
        body = request.get_json(silent=True)
        token = body.get("token") if isinstance(body, dict) else request.form.get("token")
        if not isinstance(token, str) or not token:
            raise invalid_request("token is required")
    except OAuthFailure as failure:
        return oauth_failure_response(failure)
    # RFC 7009: an unknown token is not an error, so a client cannot probe which tokens exist.
    state.revoke_token(client_id, token)
    return Response(status=200)


@bp.get(facts.USERINFO_PATH)
def userinfo() -> Response:
    """Who consented to the grant of the bearer token; the claims its openid scopes allow (Intuit's names)."""
    state = emulator()
    state.stats.record("userinfo")
    if (injected := injected_response(Group.USERINFO)) is not None:
        return injected
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise AccessRejected("no bearer access token was sent")
        grant = state.grant_of_access_token(token.strip())
    except AccessRejected:
        return _bearer_error(401, "invalid_token")
    if facts.OPENID_SCOPE not in grant.scopes:
        return _bearer_error(403, "insufficient_scope")
    return oauth_response(grant.person.claims(grant.scopes))


def _bearer_error(status: int, error: str) -> Response:
    """RFC 6750's answer: the error in WWW-Authenticate and in a small JSON body."""
    response = oauth_response({"error": error}, status)
    response.headers["WWW-Authenticate"] = f'Bearer error="{error}"'
    return response


@bp.get(facts.JWKS_PATH)
def jwks() -> Response:
    return oauth_response(emulator().id_tokens.key_set())


def discovery() -> Response:
    base = request.host_url.rstrip("/")
    return oauth_response(
        {
            "issuer": facts.OPENID_ISSUER,
            "authorization_endpoint": base + facts.AUTHORIZE_PATH,
            "token_endpoint": base + facts.TOKEN_PATH,
            "userinfo_endpoint": base + facts.USERINFO_PATH,
            "revocation_endpoint": base + facts.REVOKE_PATH,
            "jwks_uri": base + facts.JWKS_PATH,
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "grant_types_supported": [g.value for g in GrantType],
            "scopes_supported": sorted(facts.KNOWN_SCOPES),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
            "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
        }
    )


for _index, _path in enumerate(facts.DISCOVERY_PATHS):
    bp.add_url_rule(_path, endpoint=f"discovery_{_index}", view_func=discovery, methods=["GET"])
