"""Builders for the success bodies Intuit sends; tests compare their key trees with tests/fixtures/intuit."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

from .facts import SUBSCRIPTION_STATUS_NAME

# Intuit stamps "time" in its servers' Pacific zone; a fixed offset is close enough for an emulator.
INTUIT_TZ = timezone(timedelta(hours=-8))


def intuit_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=INTUIT_TZ).isoformat(timespec="milliseconds")


def intuit_date(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=INTUIT_TZ).date().isoformat()


def new_tid() -> str:
    """A fresh support id shaped like Intuit's intuit_tid header ("1-<8 hex>-<24 hex>")."""
    return f"1-{secrets.token_hex(4)}-{secrets.token_hex(12)}"


def token_body(
    *,
    access_token: str,
    refresh_token: str,
    expires_in: int,
    refresh_expires_in: int,
    hard_expires_in: int | None = None,
    id_token: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "token_type": "bearer",
        "access_token": access_token,
        "refresh_token": refresh_token,
        "expires_in": expires_in,
        "x_refresh_token_expires_in": refresh_expires_in,
    }
    if hard_expires_in is not None:
        body["x_refresh_token_hard_expires_in"] = hard_expires_in
    if id_token is not None:
        body["id_token"] = id_token
    return body


def oauth_error_body(error: str, description: str | None = None) -> dict[str, str]:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return body


def meta_data(created: float, updated: float) -> dict[str, str]:
    return {"CreateTime": intuit_time(created), "LastUpdatedTime": intuit_time(updated)}


def address(line1: str, city: str, state: str, postal_code: str, address_id: str = "1") -> dict[str, str]:
    return {
        "Id": address_id,
        "Line1": line1,
        "City": city,
        "CountrySubDivisionCode": state,
        "PostalCode": postal_code,
    }


def company_info(*, realm_id: str, name: str, created_at: float, subscription_status: str) -> dict[str, Any]:
    """The CompanyInfo object of a sandbox company (Id is always "1", like Intuit's)."""
    addr = address("123 Sierra Way", "San Pablo", "CA", "87999")
    return {
        "CompanyName": name,
        "LegalName": name,
        "CompanyAddr": addr,
        "CustomerCommunicationAddr": dict(addr),
        "LegalAddr": dict(addr),
        "PrimaryPhone": {},
        "CompanyStartDate": intuit_date(created_at),
        "FiscalYearStartMonth": "January",
        "Country": "US",
        "Email": {"Address": "noreply@quickbooks.example"},
        "WebAddr": {},
        "SupportedLanguages": "en",
        "NameValue": [
            {"Name": "NeoEnabled", "Value": "true"},
            {"Name": "IsQbdtMigrated", "Value": "false"},
            {"Name": SUBSCRIPTION_STATUS_NAME, "Value": subscription_status},
            {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"},
            {"Name": "PayrollFeature", "Value": "false"},
            {"Name": "AccountantFeature", "Value": "false"},
        ],
        "domain": "QBO",
        "sparse": False,
        "Id": "1",
        "SyncToken": "0",
        "MetaData": meta_data(created_at, created_at),
    }


def preferences(*, created_at: float) -> dict[str, Any]:
    """The company's Preferences object, the parts a US sandbox company shows (Id is always "1")."""
    return {
        "AccountingInfoPrefs": {
            "FirstMonthOfFiscalYear": "January",
            "TaxYearMonth": "January",
        },
        "CurrencyPrefs": {"MultiCurrencyEnabled": False, "HomeCurrency": {"value": "USD"}},
        "SalesFormsPrefs": {"CustomTxnNumbers": False, "AllowDiscount": True, "DefaultTerms": {"value": "3"}},
        "TaxPrefs": {"UsingSalesTax": True, "PartnerTaxEnabled": True},
        "domain": "QBO",
        "sparse": False,
        "Id": "1",
        "SyncToken": "0",
        "MetaData": meta_data(created_at, created_at),
    }


def entity_body(entity: str, obj: dict[str, Any], now: float) -> dict[str, Any]:
    return {entity: obj, "time": intuit_time(now)}


def deleted_body(entity: str, entity_id: str, now: float) -> dict[str, Any]:
    return {entity: {"domain": "QBO", "status": "Deleted", "Id": entity_id}, "time": intuit_time(now)}


def query_body(entity: str, items: list[dict[str, Any]], start_position: int, now: float) -> dict[str, Any]:
    # Intuit reports the size of the page it returned as maxResults and omits everything on an empty page.
    page: dict[str, Any] = {}
    if items:
        page = {entity: items, "startPosition": start_position, "maxResults": len(items)}
    return {"QueryResponse": page, "time": intuit_time(now)}


def count_body(total: int, now: float) -> dict[str, Any]:
    return {"QueryResponse": {"totalCount": total}, "time": intuit_time(now)}


def _money(amount: float) -> str:
    return f"{amount:.2f}"


def _section(group: str, title: str, rows: list[tuple[str, str, float]], total_label: str) -> dict[str, Any]:
    total = sum(amount for _, _, amount in rows)
    section: dict[str, Any] = {"Header": {"ColData": [{"value": title}, {"value": ""}]}}
    if rows:
        section["Rows"] = {
            "Row": [
                {"ColData": [{"value": label, "id": row_id}, {"value": _money(amount)}], "type": "Data"}
                for label, row_id, amount in rows
            ]
        }
    section["Summary"] = {"ColData": [{"value": total_label}, {"value": _money(total)}]}
    section["type"] = "Section"
    section["group"] = group
    return section


def profit_and_loss(*, start_date: str, end_date: str, income: float, now: float) -> dict[str, Any]:
    """A small accrual Profit and Loss with Intuit's Header/Columns/Rows layout."""
    income_rows = [("Services", "1", income)] if income else []
    net = {
        "Summary": {"ColData": [{"value": "Net Income"}, {"value": _money(income)}]},
        "type": "Section",
        "group": "NetIncome",
    }
    return {
        "Header": {
            "Time": intuit_time(now),
            "ReportName": "ProfitAndLoss",
            "ReportBasis": "Accrual",
            "StartPeriod": start_date,
            "EndPeriod": end_date,
            "SummarizeColumnsBy": "Total",
            "Currency": "USD",
            "Option": [
                {"Name": "AccountingStandard", "Value": "GAAP"},
                {"Name": "NoReportData", "Value": "false" if income_rows else "true"},
            ],
        },
        "Columns": {
            "Column": [
                {"ColTitle": "", "ColType": "Account", "MetaData": [{"Name": "ColKey", "Value": "account"}]},
                {"ColTitle": "Total", "ColType": "Money", "MetaData": [{"Name": "ColKey", "Value": "total"}]},
            ]
        },
        "Rows": {
            "Row": [
                _section("Income", "Income", income_rows, "Total Income"),
                _section("Expenses", "Expenses", [], "Total Expenses"),
                net,
            ]
        },
    }
