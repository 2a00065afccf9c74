"""The emulated accounting API: authentication faults, CompanyInfo, Customer/Invoice CRUD, query, report."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from emulator_support import OTHER_REALM, REALM, FakeClock, Intuit
from flask import Flask

Tokens = dict[str, Any]


def fault_of(response: Any) -> dict[str, str]:
    return response.get_json()["Fault"]["Error"][0]


# Authentication and authorization.


def test_companyinfo_with_a_valid_token(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api(f"/companyinfo/{REALM}?minorversion=75", tokens["access_token"])

    info = response.get_json()["CompanyInfo"]
    assert response.status_code == 200
    assert info["CompanyName"] == "Sandbox Company_US_1"
    assert (info["Id"], info["SyncToken"], info["Country"]) == ("1", "0", "US")
    assert response.get_json()["time"]
    assert response.headers["intuit_tid"].startswith("1-")


def test_the_company_preferences_docs_workflows_reads_are_served(intuit: Intuit, tokens: Tokens) -> None:
    # docs/workflows.md: qbo.request("GET", "preferences"), as Intuit serves it (one Preferences object).
    response = intuit.api("/preferences?minorversion=75", tokens["access_token"])
    denied = intuit.api("/preferences", "nonsense")

    preferences = response.get_json()["Preferences"]
    assert response.status_code == 200
    assert preferences["CurrencyPrefs"]["HomeCurrency"]["value"] == "USD"
    assert (preferences["Id"], preferences["SyncToken"]) == ("1", "0")
    assert denied.status_code == 401


def test_every_api_answer_has_a_fresh_intuit_tid(intuit: Intuit, tokens: Tokens) -> None:
    ok = intuit.api(f"/companyinfo/{REALM}", tokens["access_token"])
    denied = intuit.api(f"/companyinfo/{REALM}", "nonsense")

    assert ok.headers["intuit_tid"] != denied.headers["intuit_tid"]


def test_expired_access_token_gets_intuits_401(intuit: Intuit, tokens: Tokens, clock: FakeClock) -> None:
    clock.advance(3600)

    response = intuit.api(f"/companyinfo/{REALM}", tokens["access_token"])

    body = response.get_json()
    assert response.status_code == 401
    assert set(body) == {"Fault", "time"}
    assert body["Fault"]["type"] == "AUTHENTICATION"
    assert fault_of(response) == {
        "Message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        "Detail": "Token expired: the access token has expired",
        "code": "3200",
    }
    assert tokens["access_token"] not in response.get_data(as_text=True)


def test_access_token_still_works_one_second_before_expiry(intuit: Intuit, tokens: Tokens, clock: FakeClock) -> None:
    clock.advance(3599)

    assert intuit.api(f"/companyinfo/{REALM}", tokens["access_token"]).status_code == 200


def test_revoked_access_token_gets_401(intuit: Intuit, tokens: Tokens) -> None:
    intuit.revoke(tokens["refresh_token"])

    response = intuit.api(f"/companyinfo/{REALM}", tokens["access_token"])

    assert response.status_code == 401
    assert fault_of(response)["code"] == "3200"


@pytest.mark.parametrize("header", [None, "Bearer", "Basic abc", "Bearer unknown-token"])
def test_missing_or_unknown_bearer_gets_401(intuit: Intuit, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}

    response = intuit.http.get(f"/v3/company/{REALM}/companyinfo/{REALM}", headers=headers)

    assert response.status_code == 401
    assert response.get_json()["Fault"]["type"] == "AUTHENTICATION"


def test_token_of_another_company_gets_401(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api(f"/companyinfo/{OTHER_REALM}", tokens["access_token"], realm=OTHER_REALM)

    assert response.status_code == 401


def test_grant_without_the_accounting_scope_gets_403(intuit: Intuit) -> None:
    tokens = intuit.connect(scope="com.intuit.quickbooks.payment")

    response = intuit.api(f"/companyinfo/{REALM}", tokens["access_token"])

    assert response.status_code == 403
    assert response.get_json()["Fault"]["type"] == "AUTHORIZATION"
    assert fault_of(response)["code"] == "003100"
    assert fault_of(response)["Message"] == "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403"


# Customer and Invoice CRUD.


def create_customer(intuit: Intuit, tokens: Tokens, name: str = "Zed's Zebras") -> dict[str, Any]:
    response = intuit.api("/customer", tokens["access_token"], method="POST", json={"DisplayName": name})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["Customer"]


def test_seeded_customers_are_there_out_of_the_box(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api("/customer/1", tokens["access_token"])

    assert response.status_code == 200
    assert response.get_json()["Customer"]["DisplayName"] == "Amy's Bird Sanctuary"


def test_create_customer_assigns_id_and_sync_token(intuit: Intuit, tokens: Tokens) -> None:
    customer = create_customer(intuit, tokens)

    assert customer["Id"] == "4"
    assert customer["SyncToken"] == "0"
    assert customer["Active"] is True
    assert intuit.api("/customer/4", tokens["access_token"]).get_json()["Customer"] == customer


def test_customer_without_display_name_is_a_required_param_fault(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api("/customer", tokens["access_token"], method="POST", json={"GivenName": "Ann"})

    assert response.status_code == 400
    assert response.get_json()["Fault"]["type"] == "ValidationFault"
    assert fault_of(response)["code"] == "2020"
    assert fault_of(response)["Message"] == "Required param missing, need to supply the required value for the API"


def test_duplicate_customer_name_is_refused(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api("/customer", tokens["access_token"], method="POST", json={"DisplayName": "Cool Cars"})

    assert response.status_code == 400
    assert fault_of(response)["code"] == "6240"


def test_sparse_update_bumps_the_sync_token_and_keeps_other_fields(intuit: Intuit, tokens: Tokens) -> None:
    body = {"Id": "1", "SyncToken": "0", "sparse": True, "Notes": "VIP"}

    updated = intuit.api("/customer", tokens["access_token"], method="POST", json=body).get_json()["Customer"]

    assert updated["SyncToken"] == "1"
    assert updated["Notes"] == "VIP"
    assert updated["DisplayName"] == "Amy's Bird Sanctuary"


def test_full_update_replaces_writable_fields(intuit: Intuit, tokens: Tokens) -> None:
    body = {"Id": "1", "SyncToken": "0", "DisplayName": "Amy's Aviary"}

    updated = intuit.api("/customer", tokens["access_token"], method="POST", json=body).get_json()["Customer"]

    assert updated["DisplayName"] == updated["FullyQualifiedName"] == "Amy's Aviary"
    assert "Notes" not in updated


def test_stale_sync_token_gets_the_stale_object_fault(intuit: Intuit, tokens: Tokens) -> None:
    first = {"Id": "2", "SyncToken": "0", "sparse": True, "Notes": "first writer"}
    second = {"Id": "2", "SyncToken": "0", "sparse": True, "Notes": "second writer"}
    intuit.api("/customer", tokens["access_token"], method="POST", json=first)

    response = intuit.api("/customer", tokens["access_token"], method="POST", json=second)

    assert response.status_code == 400
    assert response.get_json()["Fault"]["type"] == "ValidationFault"
    error = fault_of(response)
    assert (error["Message"], error["code"], error["element"]) == ("Stale Object Error", "5010", "")
    assert error["Detail"].startswith("Stale Object Error : You and ")
    stored = intuit.api("/customer/2", tokens["access_token"]).get_json()["Customer"]
    assert stored["Notes"] == "first writer"


def test_update_without_sync_token_is_a_required_param_fault(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api(
        "/customer?operation=update", tokens["access_token"], method="POST", json={"Id": "1", "Notes": "x"}
    )

    assert response.status_code == 400
    assert fault_of(response)["element"] == "SyncToken"


def test_missing_object_is_intuits_610_with_http_400(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api("/customer/999", tokens["access_token"])

    assert response.status_code == 400
    assert fault_of(response)["code"] == "610"
    assert fault_of(response)["Message"] == "Object Not Found"


def test_delete_customer_then_it_is_gone(intuit: Intuit, tokens: Tokens) -> None:
    customer = create_customer(intuit, tokens)
    body = {"Id": customer["Id"], "SyncToken": customer["SyncToken"]}

    response = intuit.api("/customer?operation=delete", tokens["access_token"], method="POST", json=body)

    assert response.get_json()["Customer"] == {"domain": "QBO", "status": "Deleted", "Id": customer["Id"]}
    assert fault_of(intuit.api(f"/customer/{customer['Id']}", tokens["access_token"]))["code"] == "610"


def test_delete_with_a_stale_sync_token_is_refused(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api(
        "/customer?operation=delete", tokens["access_token"], method="POST", json={"Id": "1", "SyncToken": "7"}
    )

    assert fault_of(response)["code"] == "5010"


def invoice_body(customer_id: str = "1") -> dict[str, Any]:
    return {
        "CustomerRef": {"value": customer_id},
        "Line": [
            {"Amount": 100.0, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}},
            {"Amount": 50.5, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}},
        ],
    }


def test_invoice_lifecycle(intuit: Intuit, tokens: Tokens) -> None:
    token = tokens["access_token"]
    created = intuit.api("/invoice", token, method="POST", json=invoice_body()).get_json()["Invoice"]
    assert (created["Id"], created["SyncToken"], created["TotalAmt"]) == ("1", "0", 150.5)
    assert created["CustomerRef"] == {"value": "1", "name": "Amy's Bird Sanctuary"}
    assert [line["LineNum"] for line in created["Line"]] == [1, 2]

    update = {
        "Id": "1",
        "SyncToken": "0",
        "sparse": True,
        "Line": [{"Amount": 10, "DetailType": "SalesItemLineDetail"}],
    }
    updated = intuit.api("/invoice", token, method="POST", json=update).get_json()["Invoice"]
    assert (updated["SyncToken"], updated["TotalAmt"], updated["DocNumber"]) == ("1", 10.0, created["DocNumber"])

    deleted = intuit.api("/invoice?operation=delete", token, method="POST", json={"Id": "1", "SyncToken": "1"})
    assert deleted.get_json()["Invoice"]["status"] == "Deleted"
    assert intuit.api("/invoice/1", token).status_code == 400


@pytest.mark.parametrize("missing", ["Line", "CustomerRef"])
def test_invoice_requires_line_and_customer_ref(intuit: Intuit, tokens: Tokens, missing: str) -> None:
    body = invoice_body()
    del body[missing]

    response = intuit.api("/invoice", tokens["access_token"], method="POST", json=body)

    assert response.status_code == 400
    assert fault_of(response)["code"] == "2020"
    assert fault_of(response)["element"] == missing


def test_invoice_for_an_unknown_customer_is_an_invalid_reference(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api("/invoice", tokens["access_token"], method="POST", json=invoice_body("404"))

    assert fault_of(response)["code"] == "2500"


def test_non_json_body_is_a_validation_fault(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api("/customer", tokens["access_token"], method="POST", data="not json")

    assert response.status_code == 400
    assert response.get_json()["Fault"]["type"] == "ValidationFault"


def test_unsupported_entity_is_refused(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api("/vendor/1", tokens["access_token"])

    assert response.status_code == 400
    assert fault_of(response)["Message"] == "Unsupported Operation"


def test_companies_do_not_share_data(intuit: Intuit, tokens: Tokens) -> None:
    create_customer(intuit, tokens)
    other = intuit.connect(realm=OTHER_REALM)

    response = intuit.query("select count(*) from Customer", other["access_token"], realm=OTHER_REALM)

    assert response.get_json()["QueryResponse"] == {"totalCount": 3}


# Query.


def seed(app: Flask, count: int) -> None:
    app.emulator.seed_customers(REALM, count)


def test_query_pages_through_customers(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    seed(app, 22)  # 25 in all
    token = tokens["access_token"]

    pages = [
        intuit.query(f"select * from Customer STARTPOSITION {start} MAXRESULTS 10", token).get_json()["QueryResponse"]
        for start in (1, 11, 21, 31)
    ]

    assert [page.get("maxResults") for page in pages[:3]] == [10, 10, 5]
    assert [page["startPosition"] for page in pages[:3]] == [1, 11, 21]
    ids = [customer["Id"] for page in pages[:3] for customer in page["Customer"]]
    assert ids == [str(n) for n in range(1, 26)]
    assert pages[3] == {}


def test_query_defaults_to_100_and_caps_at_1000(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    seed(app, 1200)
    token = tokens["access_token"]

    default = intuit.query("select * from Customer", token).get_json()["QueryResponse"]
    capped = intuit.query("select * from Customer maxresults 5000", token).get_json()["QueryResponse"]

    assert default["maxResults"] == 100
    assert capped["maxResults"] == 1000


def test_query_is_case_insensitive_and_filters_by_display_name(intuit: Intuit, tokens: Tokens) -> None:
    text = "SELECT * FROM customer WHERE DisplayName = 'Bill\\'s Windsurf Shop' ORDERBY Id"

    page = intuit.query(text, tokens["access_token"]).get_json()["QueryResponse"]

    assert [c["DisplayName"] for c in page["Customer"]] == ["Bill's Windsurf Shop"]


def test_query_with_no_match_is_an_empty_response(intuit: Intuit, tokens: Tokens) -> None:
    body = intuit.query("select * from Customer where DisplayName = 'Nobody'", tokens["access_token"]).get_json()

    assert body["QueryResponse"] == {}
    assert body["time"]


def test_count_query(app: Flask, intuit: Intuit, tokens: Tokens) -> None:
    seed(app, 7)

    body = intuit.query("select count(*) from Customer", tokens["access_token"]).get_json()

    assert body["QueryResponse"] == {"totalCount": 10}


def test_query_companyinfo(intuit: Intuit, tokens: Tokens) -> None:
    page = intuit.query("select * from CompanyInfo", tokens["access_token"]).get_json()["QueryResponse"]

    assert page["CompanyInfo"][0]["CompanyName"] == "Sandbox Company_US_1"


def test_query_as_a_post_body(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api(
        "/query",
        tokens["access_token"],
        method="POST",
        data="select * from Customer maxresults 2",
        content_type="application/text",
    )

    assert response.get_json()["QueryResponse"]["maxResults"] == 2


def test_query_by_last_updated_time_returns_only_what_changed_since(
    intuit: Intuit, tokens: Tokens, clock: FakeClock
) -> None:
    token = tokens["access_token"]
    clock.advance(600)
    since = datetime.fromtimestamp(clock(), UTC)
    clock.advance(1)
    created = intuit.api("/customer", token, method="POST", json={"DisplayName": "Changed Later"}).get_json()
    # Intuit stamps times in its Pacific zone; the condition's offset is UTC: they compare as moments.
    text = f"select * from Customer where Metadata.LastUpdatedTime >= '{since.isoformat()}' startposition 1 maxresults 1000"

    page = intuit.query(text, token).get_json()["QueryResponse"]
    later = intuit.query(text.replace(">=", "<"), token).get_json()["QueryResponse"]

    assert [c["Id"] for c in page["Customer"]] == [created["Customer"]["Id"]]
    assert created["Customer"]["Id"] not in [c["Id"] for c in later["Customer"]]
    assert len(later["Customer"]) == 3  # the seeded ones, changed before


def test_query_orders_by_last_updated_time_when_asked_and_by_id_otherwise(
    intuit: Intuit, tokens: Tokens, clock: FakeClock
) -> None:
    token = tokens["access_token"]
    first = intuit.api("/customer", token, method="POST", json={"DisplayName": "First"}).get_json()["Customer"]
    clock.advance(5)
    intuit.api("/customer", token, method="POST", json={"DisplayName": "Second"})
    clock.advance(5)
    intuit.api(
        "/customer", token, method="POST", json={"Id": first["Id"], "SyncToken": first["SyncToken"], "sparse": True}
    )

    def names(text: str) -> list[str]:
        return [c["DisplayName"] for c in intuit.query(text, token).get_json()["QueryResponse"]["Customer"]]

    assert names("select * from Customer")[-2:] == ["First", "Second"]
    assert names("select * from Customer ORDERBY Metadata.LastUpdatedTime")[-2:] == ["Second", "First"]
    assert names("select * from Customer orderby MetaData.LastUpdatedTime DESC, Id startposition 1")[:2] == [
        "First",
        "Second",
    ]
    assert intuit.query("select * from Customer ORDERBY 'x'", token).status_code == 400


def test_query_compares_numbers_as_numbers(intuit: Intuit, tokens: Tokens) -> None:
    token = tokens["access_token"]
    intuit.api("/customer", token, method="POST", json={"DisplayName": "Ten", "Balance": 10})
    intuit.api("/customer", token, method="POST", json={"DisplayName": "Nine", "Balance": 9})

    page = intuit.query("select * from Customer where Balance > '9.5'", token).get_json()["QueryResponse"]

    assert [c["DisplayName"] for c in page["Customer"]] == ["Ten"]


def test_a_query_leaves_inactive_customers_out_unless_it_names_active(
    intuit: Intuit, tokens: Tokens, clock: FakeClock
) -> None:
    # QuickBooks makes a name-list object inactive instead of deleting it; Intuit's query returns only
    # active ones unless the where clause says otherwise (qbo_connect.intuit.NAME_LIST_ENTITIES).
    token = tokens["access_token"]
    kept = intuit.api("/customer", token, method="POST", json={"DisplayName": "Kept"}).get_json()["Customer"]
    gone = intuit.api("/customer", token, method="POST", json={"DisplayName": "Gone"}).get_json()["Customer"]
    made_inactive = {"Id": gone["Id"], "SyncToken": gone["SyncToken"], "sparse": True, "Active": False}
    assert intuit.api("/customer", token, method="POST", json=made_inactive).status_code == 200

    def ids(text: str) -> list[str]:
        clock.advance(1)  # within Intuit's 10 requests a second
        return [c["Id"] for c in intuit.query(text, token).get_json()["QueryResponse"].get("Customer", [])]

    assert gone["Id"] not in ids("select * from Customer")
    assert ids("select * from Customer where DisplayName = 'Gone'") == []
    assert ids("select * from Customer where Active = false") == [gone["Id"]]
    both = ids("select * from Customer where Active IN (true, false) ORDERBY Id startposition 1 maxresults 1000")
    assert {kept["Id"], gone["Id"]} <= set(both)
    assert ids("select * from Customer WHERE DisplayName in ('Gone', 'Kept') and active in (true,false)") == [
        kept["Id"],
        gone["Id"],
    ]
    counted = intuit.query("select count(*) from Customer", token).get_json()["QueryResponse"]["totalCount"]
    assert counted == len(ids("select * from Customer maxresults 1000"))
    assert intuit.api(f"/customer/{gone['Id']}", token).get_json()["Customer"]["Active"] is False  # read by Id


@pytest.mark.parametrize(
    "text",
    [
        "",
        "select from Customer",
        "select * from Vendor",
        "delete from Customer",
        # A condition it cannot read is refused, never ignored (that would return everything).
        "select * from Customer where DisplayName like '%a%'",
        "select * from Customer where Balance > '1' or Active = true",
        "select * from Customer where Active in (true, false",
        "select * from Customer where Active in ()",
        "select * from Customer where Active in (true false)",
    ],
)
def test_bad_queries_are_query_parser_faults(intuit: Intuit, tokens: Tokens, text: str) -> None:
    response = intuit.query(text, tokens["access_token"])

    assert response.status_code == 400
    assert fault_of(response)["code"] == "4000"


# Report.


def test_profit_and_loss_report_reflects_invoices_in_range(intuit: Intuit, tokens: Tokens) -> None:
    token = tokens["access_token"]
    body = invoice_body() | {"TxnDate": "2025-03-10"}
    intuit.api("/invoice", token, method="POST", json=body)

    report = intuit.api("/reports/ProfitAndLoss?start_date=2025-03-01&end_date=2025-03-31", token).get_json()
    empty = intuit.api("/reports/ProfitAndLoss?start_date=2025-04-01&end_date=2025-04-30", token).get_json()

    assert report["Header"]["ReportName"] == "ProfitAndLoss"
    assert (report["Header"]["StartPeriod"], report["Header"]["EndPeriod"]) == ("2025-03-01", "2025-03-31")
    assert [c["ColType"] for c in report["Columns"]["Column"]] == ["Account", "Money"]
    income = report["Rows"]["Row"][0]
    assert income["group"] == "Income"
    assert income["Summary"]["ColData"][1]["value"] == "150.50"
    assert report["Rows"]["Row"][-1]["Summary"]["ColData"] == [{"value": "Net Income"}, {"value": "150.50"}]
    assert empty["Rows"]["Row"][-1]["Summary"]["ColData"][1]["value"] == "0.00"


def test_report_with_a_bad_date_is_refused(intuit: Intuit, tokens: Tokens) -> None:
    response = intuit.api("/reports/ProfitAndLoss?start_date=March", tokens["access_token"])

    assert response.status_code == 400


def test_a_company_whose_subscription_lapsed_is_refused_its_data_while_its_grant_keeps_refreshing(
    intuit: Intuit, admin: Any, tokens: dict[str, Any]
) -> None:
    assert admin.post(f"/_emulator/companies/{REALM}/subscription", json={"lapsed": True}).status_code == 200

    refused = intuit.api(f"/companyinfo/{REALM}", tokens["access_token"])
    assert refused.status_code == 403
    error = refused.get_json()["Fault"]["Error"][0]
    assert error["code"].lstrip("0") == "3100" and "ApplicationAuthorizationFailed" in error["Message"]
    refreshed = intuit.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200

    assert admin.post(f"/_emulator/companies/{REALM}/subscription", json={"lapsed": False}).status_code == 200
    assert intuit.api(f"/companyinfo/{REALM}", refreshed.get_json()["access_token"]).status_code == 200
    assert admin.post(f"/_emulator/companies/{REALM}/subscription", json={"lapsed": "yes"}).status_code == 400


def _subscription_status(info_body: dict[str, Any]) -> str | None:
    values = info_body["CompanyInfo"]["NameValue"]
    return next((v["Value"] for v in values if v["Name"] == "SubscriptionStatus"), None)


def test_a_company_whose_subscription_ended_is_read_only_and_its_companyinfo_says_so(
    intuit: Intuit, admin: Any, tokens: dict[str, Any]
) -> None:
    """Intuit's other documented shape ("Understand QuickBooks Online subscription statuses"): a canceled,
    expired, suspended or restricted company keeps answering reads, reports the status in CompanyInfo, and
    refuses writes with fault 6190 (Invalid Company Status), in a batch too."""
    token = tokens["access_token"]
    assert _subscription_status(intuit.api(f"/companyinfo/{REALM}", token).get_json()) == "SUBSCRIBED"
    assert admin.post(f"/_emulator/companies/{REALM}/subscription", json={"status": "SUSPENDED"}).status_code == 200

    info = intuit.api(f"/companyinfo/{REALM}", token)
    read = intuit.api("/customer/1", token)
    write = intuit.api("/customer", token, method="POST", json={"DisplayName": "Read Only Ltd"})
    batch = intuit.api(
        "/batch",
        token,
        method="POST",
        json={
            "BatchItemRequest": [
                {"bId": "q", "Query": "select * from Customer"},
                {"bId": "c", "operation": "create", "Customer": {"DisplayName": "Batch Ltd"}},
            ]
        },
    )

    assert info.status_code == 200 and _subscription_status(info.get_json()) == "SUSPENDED"
    assert intuit.query("select * from CompanyInfo", token).status_code == 200
    assert read.status_code == 200
    assert write.status_code == 400 and fault_of(write)["code"] == "6190"
    assert fault_of(write)["Message"] == "Invalid Company Status"
    query_answer, create_answer = batch.get_json()["BatchItemResponse"]
    assert "QueryResponse" in query_answer and create_answer["Fault"]["Error"][0]["code"] == "6190"
    assert (
        intuit.query("select count(*) from Customer where DisplayName = 'Batch Ltd'", token).get_json()[
            "QueryResponse"
        ]["totalCount"]
        == 0
    )
    assert intuit.refresh(tokens["refresh_token"]).status_code == 200

    assert admin.post(f"/_emulator/companies/{REALM}/subscription", json={"status": "SUBSCRIBED"}).status_code == 200
    assert intuit.api("/customer", token, method="POST", json={"DisplayName": "Renewed Ltd"}).status_code == 200
    for refused in ({"status": "BANKRUPT"}, {"status": "SUSPENDED", "lapsed": True}, {}):
        assert admin.post(f"/_emulator/companies/{REALM}/subscription", json=refused).status_code == 400
