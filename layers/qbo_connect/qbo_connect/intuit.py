"""Intuit's facts as data: endpoints, hosts, scopes, token fields, limits.

Every other module and the emulator read these; nothing repeats them as literals.
Sources and what each fact means: docs/intuit.md. Each endpoint can be overridden in settings.
"""

from __future__ import annotations

from enum import StrEnum

AUTHORIZATION_URL = "https://appcenter.intuit.com/connect/oauth2"
TOKEN_URL = "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"
REVOCATION_URL = "https://developer.api.intuit.com/v2/oauth2/tokens/revoke"

PRODUCTION_API_BASE_URL = "https://quickbooks.api.intuit.com"
SANDBOX_API_BASE_URL = "https://sandbox-quickbooks.api.intuit.com"


class Environment(StrEnum):
    PRODUCTION = "production"
    SANDBOX = "sandbox"


# --- OpenID Connect (Intuit's discovery documents, .well-known/openid_configuration and
# openid_sandbox_configuration) ----------------------------------------------------------------------
# Who consented: the userinfo endpoint answers for an access token of a grant with the openid scope.
# Its JSON names the person `sub` (stable), `email`, `emailVerified`, `givenName`, `familyName`, ...
OPENID_ISSUER = "https://oauth.platform.intuit.com/op/v1"
JWKS_URL = "https://oauth.platform.intuit.com/op/v1/jwks"
USERINFO_URLS = {
    Environment.PRODUCTION: "https://accounts.platform.intuit.com/v1/openid_connect/userinfo",
    Environment.SANDBOX: "https://sandbox-accounts.platform.intuit.com/v1/openid_connect/userinfo",
}
OPENID_SCOPE = "openid"

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
PAYMENT_SCOPE = "com.intuit.quickbooks.payment"
OPENID_SCOPES = (OPENID_SCOPE, "profile", "email", "phone", "address")
KNOWN_SCOPES = frozenset({ACCOUNTING_SCOPE, PAYMENT_SCOPE, *OPENID_SCOPES})
DEFAULT_SCOPES = (ACCOUNTING_SCOPE,)
# The scopes bound to one company: only for these does Intuit's callback carry realmId.
COMPANY_SCOPES = frozenset({ACCOUNTING_SCOPE, PAYMENT_SCOPE})

# Asking for the grant's absolute end: Intuit only returns it when this header is sent.
HARD_EXPIRY_REQUEST_HEADER = {"x-include-refresh-token-hard-expires-in": "true"}
REFRESH_TOKEN_EXPIRES_IN_FIELD = "x_refresh_token_expires_in"
REFRESH_TOKEN_HARD_EXPIRES_IN_FIELD = "x_refresh_token_hard_expires_in"

# Intuit's documented lifetimes, used only when a response leaves a field out.
ACCESS_TOKEN_DEFAULT_SECONDS = 3600
REFRESH_TOKEN_DEFAULT_SECONDS = 100 * 86400

MINOR_VERSION = 75

# Accounting API limits per realm and app, and the query page limit.
API_REQUESTS_PER_SECOND = 10
API_REQUESTS_PER_MINUTE = 500
API_MAX_CONCURRENT_REQUESTS = 10
QUERY_MAX_RESULTS = 1000
SUPPORT_ID_HEADER = "intuit_tid"
# Intuit times out any request after this long: a call sent at t is certainly over at Intuit by t + this.
REQUEST_TIME_LIMIT_SECONDS = 120
# The hosts whose revocation endpoint takes Intuit's JSON body rather than RFC 7009's form body.
REVOCATION_JSON_HOSTS = frozenset({"developer.api.intuit.com"})
MAX_CODE_LENGTH = 512
# Realm IDs are decimal company numbers; Intuit's run to 19 digits.
REALM_ID_PATTERN = r"^[0-9]{1,32}$"
# An entity or report name as Intuit's API paths take it (Customer, Invoice, ProfitAndLoss); use fullmatch.
ENTITY_NAME_PATTERN = r"[A-Za-z][A-Za-z0-9]{0,63}"


# Name-list entities carry `Active`; making one inactive is how QuickBooks "deletes" it. Intuit's query
# returns only active ones unless its where clause names Active: "SELECT * FROM Customer" retrieves all
# active customers (Intuit's developer blog, "Deep dive: SQL queries", 2017), and a recorded sandbox answer
# to "... WHERE Active IN (true, false)" lists inactive employees too (minimul/qbo_api's test cassettes).
NAME_LIST_ENTITIES = frozenset(
    {"Account", "Class", "Customer", "Department", "Employee", "Item", "PaymentMethod", "Term", "Vendor"}
)
ACTIVE_OR_INACTIVE_CONDITION = "Active IN (true, false)"


# --- The company's QuickBooks subscription (developer.intuit.com, docs/develop/troubleshooting/subscription-states:
# "Understand QuickBooks Online subscription statuses") -------------------------------------------------------
# Intuit: query CompanyInfo and check SubscriptionStatus; it travels in CompanyInfo's NameValue list (Intuit's own
# CompanyInfo samples: {"Name": "SubscriptionStatus", "Value": "PAID"}). TRIAL, TRIALOPTIN and SUBSCRIBED (and the
# samples' PAID) read and write. Canceled, expired, suspended or restricted, the app is "limited to read-only
# operations" until the company renews; writes are refused with ValidationFault 6190, "Invalid Company Status".
# Intuit's prose spells it "canceled"; its table's value is not in the sources read, so both spellings count.
COMPANY_INFO_NAME_VALUES_FIELD = "NameValue"
SUBSCRIPTION_STATUS_NAME = "SubscriptionStatus"
READ_WRITE_SUBSCRIPTION_STATUSES = frozenset({"TRIAL", "TRIALOPTIN", "SUBSCRIBED", "PAID"})
READ_ONLY_SUBSCRIPTION_STATUSES = frozenset({"CANCELED", "CANCELLED", "EXPIRED", "SUSPENDED", "RESTRICTED"})
INVALID_COMPANY_STATUS_FAULT = "6190"


def subscription_is_read_only(status: str | None) -> bool:
    """Whether CompanyInfo's SubscriptionStatus leaves the company read only (an unknown or absent one does not)."""
    return status is not None and status.strip().upper() in READ_ONLY_SUBSCRIPTION_STATUSES


def company_info_path(realm_id: str) -> str:
    return f"/v3/company/{realm_id}/companyinfo/{realm_id}"


def company_path(realm_id: str) -> str:
    return f"/v3/company/{realm_id}"


# --- Webhooks (developer.intuit.com, docs/develop/webhooks and its best-practices page) -----------
# Intuit signs each delivery: base64 of HMAC-SHA256 over the raw body, keyed with the app's verifier
# token. It expects a 200 within 3 seconds and otherwise retries the same delivery (10 s, 20 s, 30 s,
# 5 min, 20 min, 2 h, 4 h, 6 h, then every 6 h), so deliveries must be idempotent.
WEBHOOK_SIGNATURE_HEADER = "intuit-signature"
WEBHOOK_RESPONSE_SECONDS = 3
# CloudEvents (mandatory since Intuit's 2025-11 announcement): a JSON array of events whose `type` is
# qbo.<entity>.<operation>.v1, with the realm in `intuitaccountid` and the entity in `intuitentityid`.
CLOUDEVENTS_TYPE_PREFIX = "qbo."
CLOUDEVENTS_REALM_FIELD = "intuitaccountid"
CLOUDEVENTS_ENTITY_ID_FIELD = "intuitentityid"
# The operations as the legacy `eventNotifications` shape names them, by their CloudEvents verb.
WEBHOOK_OPERATIONS = {
    "created": "Create",
    "updated": "Update",
    "deleted": "Delete",
    "merged": "Merge",
    "voided": "Void",
    "emailed": "Emailed",
}
# The entities Intuit sends webhooks for; CloudEvents types carry them in lower case.
WEBHOOK_ENTITIES = (
    "Account", "Bill", "BillPayment", "Budget", "Class", "CreditMemo", "Currency", "Customer", "Department",
    "Deposit", "Employee", "Estimate", "Invoice", "Item", "JournalCode", "JournalEntry", "Payment",
    "PaymentMethod", "Preferences", "Purchase", "PurchaseOrder", "RefundReceipt", "SalesReceipt", "TaxAgency",
    "Term", "TimeActivity", "Transfer", "Vendor", "VendorCredit",
)  # fmt: skip

# --- Change data capture (docs/learn/explore-the-quickbooks-online-api/change-data-capture) --------
CDC_WINDOW_SECONDS = 30 * 86400  # changes are kept for 30 days
CDC_MAX_OBJECTS = 1000  # one answer holds at most this many objects, over all entities asked for
CDC_DELETED_STATUS = "Deleted"

# --- Batch (docs/learn/explore-the-quickbooks-online-api/batch) ------------------------------------
# Intuit's batch page says "up to 10 payloads" per request and 40 batch requests per minute per
# realm; its older API reference said 30 items. The current page is the safer reading.
BATCH_MAX_OPERATIONS = 10
BATCH_REQUESTS_PER_MINUTE = 40


def cdc_path(realm_id: str) -> str:
    return f"/v3/company/{realm_id}/cdc"


def batch_path(realm_id: str) -> str:
    return f"/v3/company/{realm_id}/batch"
