"""Intuit facts the emulator imitates, kept as data so a changed path or code is a one-line change.

Endpoints, scopes and header names come from the service's qbo_connect.intuit; what only the emulator
needs (fault codes, its consent page, seed data) is defined here. Sources: docs/intuit.md.
"""

from __future__ import annotations

from enum import StrEnum
from urllib.parse import urlsplit

from qbo_connect import intuit

# Facts the service's own client reads too: shared, so the emulator cannot drift from what it expects.
# Paths mirror Intuit's so a client only swaps the host.
AUTHORIZE_PATH = urlsplit(intuit.AUTHORIZATION_URL).path
TOKEN_PATH = urlsplit(intuit.TOKEN_URL).path
REVOKE_PATH = urlsplit(intuit.REVOCATION_URL).path
USERINFO_PATH = urlsplit(intuit.USERINFO_URLS[intuit.Environment.SANDBOX]).path
JWKS_PATH = urlsplit(intuit.JWKS_URL).path
# ID tokens name Intuit's issuer, so a client checks the emulator's exactly as it checks Intuit's.
OPENID_ISSUER = intuit.OPENID_ISSUER
OPENID_SCOPE = intuit.OPENID_SCOPE
ACCOUNTING_SCOPE = intuit.ACCOUNTING_SCOPE
PAYMENT_SCOPE = intuit.PAYMENT_SCOPE
OPENID_SCOPES = frozenset(intuit.OPENID_SCOPES)
KNOWN_SCOPES = intuit.KNOWN_SCOPES
(HARD_EXPIRY_REQUEST_HEADER,) = intuit.HARD_EXPIRY_REQUEST_HEADER
TID_HEADER = intuit.SUPPORT_ID_HEADER
REALM_ROUTE_PREFIX = intuit.company_path("<realm_id>")  # a Flask rule: /v3/company/<realm_id>

# The company's QuickBooks subscription, as CompanyInfo reports it (NameValue "SubscriptionStatus").
SUBSCRIPTION_STATUS_NAME = intuit.SUBSCRIPTION_STATUS_NAME
SUBSCRIPTION_STATUSES = intuit.READ_WRITE_SUBSCRIPTION_STATUSES | intuit.READ_ONLY_SUBSCRIPTION_STATUSES
DEFAULT_SUBSCRIPTION_STATUS = "SUBSCRIBED"
subscription_is_read_only = intuit.subscription_is_read_only

# The emulator's own facts.
DECISION_PATH = AUTHORIZE_PATH + "/decision"
DISCOVERY_PATHS = ("/.well-known/openid_sandbox_configuration", "/.well-known/openid_configuration")
ADMIN_PREFIX = "/_emulator"
# Intuit sends realmId on the callback only for the company-bound scopes.
REALM_SCOPES = intuit.COMPANY_SCOPES
THROTTLE_RETRY_AFTER_SECONDS = 60

CONSENT_PAGE_TITLE = "Connect to QuickBooks | Intuit"
AUTH_CODE_SECONDS = 600  # Intuit's authorization codes live ten minutes.

DEFAULT_COMPANIES: tuple[tuple[str, str], ...] = (
    ("9341453050000001", "Sandbox Company_US_1"),
    ("9341453050000002", "Sandbox Company_US_2"),
)
# The person signed in to the emulated Intuit (the one who clicks Connect): email, given and family name.
DEFAULT_PERSON = ("admin@sandbox-company.example", "Sandbox", "Admin")
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
    INVALID_SCOPE = "invalid_scope"
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
    INVALID_COMPANY_STATUS = intuit.INVALID_COMPANY_STATUS_FAULT
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
