"""Intuit facts the emulator imitates, kept as data so a changed path or code is a one-line change.

Sources: /work/shared/INTUIT.md (Intuit's documentation, SDKs and issue trackers).
"""

from __future__ import annotations

from enum import StrEnum

# Paths mirror Intuit's so a client only swaps the host.
AUTHORIZE_PATH = "/connect/oauth2"
DECISION_PATH = "/connect/oauth2/decision"
TOKEN_PATH = "/oauth2/v1/tokens/bearer"
REVOKE_PATH = "/v2/oauth2/tokens/revoke"
API_PREFIX = "/v3/company"
DISCOVERY_PATHS = ("/.well-known/openid_sandbox_configuration", "/.well-known/openid_configuration")
ADMIN_PREFIX = "/_emulator"

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
PAYMENT_SCOPE = "com.intuit.quickbooks.payment"
OPENID_SCOPES = frozenset({"openid", "profile", "email", "phone", "address"})
KNOWN_SCOPES = frozenset({ACCOUNTING_SCOPE, PAYMENT_SCOPE}) | OPENID_SCOPES
# Intuit sends realmId on the callback only for the company-bound scopes.
REALM_SCOPES = frozenset({ACCOUNTING_SCOPE, PAYMENT_SCOPE})

HARD_EXPIRY_REQUEST_HEADER = "x-include-refresh-token-hard-expires-in"
TID_HEADER = "intuit_tid"
THROTTLE_RETRY_AFTER_SECONDS = 60

CONSENT_PAGE_TITLE = "Connect to QuickBooks | Intuit"
AUTH_CODE_SECONDS = 600  # Intuit's authorization codes live ten minutes.

DEFAULT_COMPANIES: tuple[tuple[str, str], ...] = (
    ("9341453050000001", "Sandbox Company_US_1"),
    ("9341453050000002", "Sandbox Company_US_2"),
)
# Names from Intuit's US sandbox company, so the seeded data looks familiar.
SEED_CUSTOMER_NAMES = ("Amy's Bird Sanctuary", "Bill's Windsurf Shop", "Cool Cars")


class GrantType(StrEnum):
    AUTHORIZATION_CODE = "authorization_code"
    REFRESH_TOKEN = "refresh_token"


class OAuthError(StrEnum):
    INVALID_REQUEST = "invalid_request"
    INVALID_CLIENT = "invalid_client"
    INVALID_GRANT = "invalid_grant"
    UNSUPPORTED_GRANT_TYPE = "unsupported_grant_type"
    ACCESS_DENIED = "access_denied"


INVALID_REFRESH_TOKEN_DESCRIPTION = "Incorrect or invalid refresh token"


class FaultCode(StrEnum):
    """The "code" of an accounting API Fault.Error entry."""

    AUTHENTICATION = "3200"
    AUTHORIZATION = "003100"
    THROTTLE = "003001"
    STALE_OBJECT = "5010"
    NOT_FOUND = "610"
    REQUIRED_PARAM = "2020"
    INVALID_REFERENCE = "2500"
    DUPLICATE_NAME = "6240"
    BAD_REQUEST = "2010"
    QUERY_PARSE = "4000"
    UNSUPPORTED = "500"
    SYSTEM = "10000"


class FaultType(StrEnum):
    AUTHENTICATION = "AUTHENTICATION"
    AUTHORIZATION = "AUTHORIZATION"
    SERVICE = "SERVICE"
    VALIDATION = "ValidationFault"
    SYSTEM = "SystemFault"
