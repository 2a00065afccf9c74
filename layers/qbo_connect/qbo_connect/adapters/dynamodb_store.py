"""ConnectionStore on one DynamoDB table.

Items: the connection (`connection#<id>`), its name claim (`name#<name>`, so names stay unique),
pending OAuth states (`state#<sha256>`, with a TTL), and one app-company lease per app and company
(`app-company#<client id>#<realm id>`, domain/app_company_leases.py), which carries none of the indexes'
attributes. Every state change is a conditional write.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from qbo_connect import intuit
from qbo_connect.adapters.aws_faults import cancellation_reasons
from qbo_connect.adapters.dynamodb_conditions import Attr, Key
from qbo_connect.adapters.dynamodb_table import DynamoDbTable, create_declared_table, query_pages
from qbo_connect.adapters.dynamodb_values import from_item
from qbo_connect.domain.connection import Connection, ConnectionStatus, ConsentIdentity, RefreshPolicy, TestResult
from qbo_connect.domain.leases import busy_because
from qbo_connect.errors import CompanyBusy, Conflict, ConnectionAlreadyExists, ConnectionNotFound
from qbo_connect.ports import AppCompany, AppCompanyLeaseRecord, OAuthState

# The refresh-due index's partitions: one per refresh policy, each ordered by access-token expiry, so
# the sweep reads only the due range of each (an eager connection's margin, an on-demand one's keep-alive).
REFRESH_INDEX_PARTITIONS = {RefreshPolicy.EAGER: "connected", RefreshPolicy.ON_DEMAND: "on_demand"}
REFRESH_DUE_INDEX = "refresh-due"
BY_NAME_INDEX = "by-name"
BY_STATUS_INDEX = "by-status"
BY_REALM_INDEX = "by-realm"
LISTING_VALUE = "connection"
STATE_TTL_ATTRIBUTE = "purge_at"

# The table's keys and indexes, exactly as template.yaml declares them (tests/unit/test_template.py
# holds the two together). The local stack and the tests create the table from this.
TABLE_SCHEMA: dict[str, Any] = {
    "AttributeDefinitions": [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "refresh_index", "AttributeType": "S"},
        {"AttributeName": "access_token_expires_at", "AttributeType": "N"},
        {"AttributeName": "listing", "AttributeType": "S"},
        {"AttributeName": "name", "AttributeType": "S"},
        {"AttributeName": "status", "AttributeType": "S"},
        {"AttributeName": "realm_id", "AttributeType": "S"},
        {"AttributeName": "client_id", "AttributeType": "S"},
    ],
    "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": REFRESH_DUE_INDEX,
            "KeySchema": [
                {"AttributeName": "refresh_index", "KeyType": "HASH"},
                {"AttributeName": "access_token_expires_at", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
        {
            "IndexName": BY_NAME_INDEX,
            "KeySchema": [
                {"AttributeName": "listing", "KeyType": "HASH"},
                {"AttributeName": "name", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
        {
            "IndexName": BY_STATUS_INDEX,
            "KeySchema": [{"AttributeName": "status", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        },
        {
            # Sparse: only connection items that know their company carry realm_id.
            "IndexName": BY_REALM_INDEX,
            "KeySchema": [
                {"AttributeName": "realm_id", "KeyType": "HASH"},
                {"AttributeName": "client_id", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "ALL"},
        },
    ],
    "BillingMode": "PAY_PER_REQUEST",
}

# Fields the domain changes through save(); the lease and the last test have their own writes.
_SAVED_FIELDS = (
    "environment",
    "base_url",
    "client_id",
    "scopes",
    "realm_id",
    "refresh_policy",
    "status",
    "has_client_secret",
    "company_name",
    "updated_at",
    "connected_at",
    "access_token_expires_at",
    "refresh_token_expires_at",
    "refresh_token_hard_expires_at",
    "last_refreshed_at",
    "consecutive_refresh_failures",
    "last_refresh_error",
    "last_revocation",
    "secret_generation",
    "expiry_warnings_sent",
    "refresh_in_flight_until",
    "pending_rotation",
    "forced_refresh_budget",
    "forced_refresh_budget_at",
    "consented_by",
)


def create_table(dynamodb_client, table_name: str) -> None:
    """Create the table as the template does (local stack and tests)."""
    create_declared_table(dynamodb_client, table_name, TABLE_SCHEMA, STATE_TTL_ATTRIBUTE)


def _connection_key(connection_id: str) -> dict[str, str]:
    return {"pk": f"connection#{connection_id}"}


def _name_key(name: str) -> dict[str, str]:
    return {"pk": f"name#{name.casefold()}"}


def _state_key(state_hash: str) -> dict[str, str]:
    return {"pk": f"state#{state_hash}"}


def _app_company_key(app_company: AppCompany) -> dict[str, str]:
    return {"pk": f"app-company#{app_company.client_id}#{app_company.realm_id}"}


def _lease_is_free(owner: str, *, now: float, skew_seconds: float):
    """Nobody holds the lease, or its expiry has passed by our clock less the skew allowance (a writer whose clock
    runs behind ours still holds what it thinks it holds), or it is already ours: when a response is lost (a
    timeout, a 5xx after the write) botocore retries, and the retry must not find it "held by someone else"."""
    settled = _to_dynamo(float(now - skew_seconds))
    return Attr("lease_owner").not_exists() | Attr("lease_expires_at").lt(settled) | Attr("lease_owner").eq(owner)


def _old_item(error: ClientError) -> dict[str, Any] | None:
    """The item a failed conditional write found (ReturnValuesOnConditionCheckFailure=ALL_OLD)."""
    old = error.response.get("Item")
    return from_item(old) if old else None


def _to_dynamo(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(round(value, 3)))
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return {k: _to_dynamo(v) for k, v in value.items()}
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value % 1 else int(value)
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_dynamo(v) for k, v in value.items()}
    return value


def _is_conditional_failure(error: ClientError) -> bool:
    """A condition refused the write; a transaction cancelled only for throttling or a conflicting transaction is
    not one (aws_faults.is_transient: try again)."""
    code = error.response["Error"]["Code"]
    if code == "TransactionCanceledException":
        return "ConditionalCheckFailed" in cancellation_reasons(error)
    return code == "ConditionalCheckFailedException"


def connection_to_item(connection: Connection) -> dict[str, Any]:
    item = {
        **_connection_key(connection.connection_id),
        "listing": LISTING_VALUE,
        "connection_id": connection.connection_id,
        "name": connection.name,
        "created_at": connection.created_at,
        "version": connection.version,
        **{f: getattr(connection, f) for f in _SAVED_FIELDS},
    }
    item["environment"] = connection.environment.value
    item["status"] = connection.status.value
    item["refresh_policy"] = connection.refresh_policy.value
    item["consented_by"] = connection.consented_by.to_item() if connection.consented_by else None
    if connection.status is ConnectionStatus.CONNECTED and connection.access_token_expires_at is not None:
        item["refresh_index"] = REFRESH_INDEX_PARTITIONS[connection.refresh_policy]
    return {k: _to_dynamo(v) for k, v in item.items() if v is not None}


def item_to_connection(item: dict[str, Any]) -> Connection:
    data = _from_dynamo(item)
    last_test = data.get("last_test")
    consented_by = data.get("consented_by")
    return Connection(
        connection_id=data["connection_id"],
        name=data["name"],
        environment=intuit.Environment(data["environment"]),
        base_url=data["base_url"],
        client_id=data["client_id"],
        scopes=tuple(data.get("scopes") or intuit.DEFAULT_SCOPES),
        realm_id=data.get("realm_id"),
        # Stored before refresh policies existed: every connection was eager.
        refresh_policy=RefreshPolicy(data.get("refresh_policy") or RefreshPolicy.EAGER),
        status=ConnectionStatus(data["status"]),
        has_client_secret=bool(data.get("has_client_secret")),
        company_name=data.get("company_name"),
        created_at=data.get("created_at", 0),
        updated_at=data.get("updated_at", 0),
        connected_at=data.get("connected_at"),
        access_token_expires_at=data.get("access_token_expires_at"),
        refresh_token_expires_at=data.get("refresh_token_expires_at"),
        refresh_token_hard_expires_at=data.get("refresh_token_hard_expires_at"),
        last_refreshed_at=data.get("last_refreshed_at"),
        consecutive_refresh_failures=data.get("consecutive_refresh_failures", 0),
        last_refresh_error=data.get("last_refresh_error"),
        last_revocation=data.get("last_revocation"),
        version=data.get("version", 0),
        secret_generation=data.get("secret_generation", 0),
        lease_owner=data.get("lease_owner"),
        lease_expires_at=data.get("lease_expires_at"),
        refresh_in_flight_until=data.get("refresh_in_flight_until"),
        pending_rotation=data.get("pending_rotation"),
        forced_refresh_budget=data.get("forced_refresh_budget"),
        forced_refresh_budget_at=data.get("forced_refresh_budget_at"),
        last_test=TestResult.from_item(last_test) if last_test else None,
        expiry_warnings_sent=tuple(data.get("expiry_warnings_sent") or ()),
        consented_by=ConsentIdentity.from_item(consented_by) if consented_by else None,
    )


class DynamoDbConnectionStore:
    def __init__(self, table: DynamoDbTable) -> None:
        self._table = table

    # --- connections ----------------------------------------------------------------------
    def create(self, connection: Connection) -> Connection:
        try:
            self._table.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table.name,
                            "Item": connection_to_item(connection),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self._table.name,
                            "Item": {**_name_key(connection.name), "connection_id": connection.connection_id},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                raise ConnectionAlreadyExists(
                    f"A connection with ID {connection.connection_id!r} or name {connection.name!r} already exists: "
                    "choose another name, or use the existing one (`qbo-connect connections list`)"
                ) from None
            raise
        return connection

    def get(self, connection_id: str) -> Connection | None:
        item = self._table.get_item(Key=_connection_key(connection_id), ConsistentRead=True).get("Item")
        return item_to_connection(item) if item else None

    def find_by_name(self, name: str) -> Connection | None:
        claim = self._table.get_item(Key=_name_key(name), ConsistentRead=True).get("Item")
        return self.get(claim["connection_id"]) if claim else None

    def list(self) -> list[Connection]:
        return self._query_connections(BY_NAME_INDEX, Key("listing").eq(LISTING_VALUE))

    def find_by_realm(self, realm_id: str, *, client_id: str | None = None) -> list[Connection]:
        """The connections that hold this company (of one app, given `client_id`): a query on the sparse
        by-realm index, never a scan. Like every index read it may lag a write by a moment."""
        condition = Key("realm_id").eq(realm_id)
        if client_id is not None:
            condition &= Key("client_id").eq(client_id)
        return sorted(self._query_connections(BY_REALM_INDEX, condition), key=lambda c: c.name.encode())

    def _query_connections(self, index: str, condition) -> list[Connection]:
        pages = query_pages(self._table, IndexName=index, KeyConditionExpression=condition)
        return [item_to_connection(item) for page in pages for item in page.get("Items", [])]

    def save(
        self, connection: Connection, *, lease_owner: str, release_lease: bool = False, renamed_from: str | None = None
    ) -> Connection:
        item = connection_to_item(connection)
        sets, removes = ["#version = :next"], []
        values: dict[str, Any] = {
            ":next": connection.version + 1,
            ":expected": connection.version,
            ":owner": lease_owner,
        }
        names: dict[str, str] = {"#version": "version"}
        for index, field in enumerate((*_SAVED_FIELDS, "refresh_index")):
            names[f"#f{index}"] = field
            if field in item:
                sets.append(f"#f{index} = :v{index}")
                values[f":v{index}"] = item[field]
            else:
                removes.append(f"#f{index}")
        expression = "SET " + ", ".join(sets)
        if release_lease:
            removes += ["lease_owner", "lease_expires_at"]
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        if renamed_from is not None:
            return self._renamed(connection, renamed_from, expression, names, values)
        try:
            updated = self._table.update_item(
                Key=_connection_key(connection.connection_id),
                UpdateExpression=expression,
                ConditionExpression="#version = :expected AND lease_owner = :owner",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                raise Conflict(
                    f"Connection {connection.connection_id!r} changed meanwhile, or the lease was lost: try again"
                ) from None
            raise
        return item_to_connection(updated["Attributes"])

    def delete(self, connection: Connection, *, lease_owner: str) -> None:
        try:
            self._table.transact_write_items(
                TransactItems=[
                    {
                        "Delete": {
                            "TableName": self._table.name,
                            "Key": _connection_key(connection.connection_id),
                            "ConditionExpression": "lease_owner = :owner",
                            "ExpressionAttributeValues": {":owner": lease_owner},
                        }
                    },
                    {"Delete": {"TableName": self._table.name, "Key": _name_key(connection.name)}},
                ]
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                raise Conflict(f"Connection {connection.connection_id!r} lease was lost: try again") from None
            raise

    def _renamed(
        self, connection: Connection, old_name: str, expression: str, names: dict[str, str], values: dict[str, Any]
    ) -> Connection:
        """save()'s write and the name's move (claim and item) in one transaction: all of it or none."""
        new_name = connection.name
        names = {**names, "#name": "name"}
        values = {**values, ":name": new_name}
        update = {
            "UpdateExpression": expression.replace("SET ", "SET #name = :name, ", 1),
            "ConditionExpression": "#version = :expected AND lease_owner = :owner",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
        if new_name.casefold() == old_name.casefold():
            claim_writes = []
        else:
            claim_writes = [
                {
                    "Put": {
                        "TableName": self._table.name,
                        "Item": {**_name_key(new_name), "connection_id": connection.connection_id},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Delete": {
                        "TableName": self._table.name,
                        "Key": _name_key(old_name),
                        "ConditionExpression": "connection_id = :id",
                        "ExpressionAttributeValues": {":id": connection.connection_id},
                    }
                },
            ]
        try:
            self._table.transact_write_items(
                TransactItems=[
                    *claim_writes,
                    {
                        "Update": {
                            "TableName": self._table.name,
                            "Key": _connection_key(connection.connection_id),
                            **update,
                        }
                    },
                ]
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                holder = self.find_by_name(new_name)
                if holder is not None and holder.connection_id != connection.connection_id:
                    raise ConnectionAlreadyExists(
                        f"A connection named {new_name!r} already exists: choose another name"
                    ) from None
                raise Conflict(f"Connection {connection.connection_id!r} changed meanwhile: try again") from None
            raise
        renamed = self.get(connection.connection_id)
        if renamed is None:
            raise ConnectionNotFound(f"Connection {connection.connection_id!r} was deleted meanwhile")
        return renamed

    # --- the lease ------------------------------------------------------------------------
    def acquire_lease(
        self,
        connection_id: str,
        *,
        owner: str,
        now: float,
        seconds: float,
        skew_seconds: float = 0.0,
        fence_until: float | None = None,
    ) -> Connection:
        settled = _to_dynamo(float(now - skew_seconds))
        free = _lease_is_free(owner, now=now, skew_seconds=skew_seconds)
        expression = "SET lease_owner = :owner, lease_expires_at = :expires"
        values: dict[str, Any] = {":owner": owner, ":expires": _to_dynamo(float(now + seconds))}
        if fence_until is not None:
            # The in-flight mark rides on the lease write: a refresh costs no extra call to fence itself.
            free &= Attr("refresh_in_flight_until").not_exists() | Attr("refresh_in_flight_until").lt(settled)
            expression += ", refresh_in_flight_until = :fence"
            values[":fence"] = _to_dynamo(float(fence_until))
        try:
            updated = self._table.update_item(
                Key=_connection_key(connection_id),
                UpdateExpression=expression,
                ConditionExpression=Attr("pk").exists() & free,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise
            old = _old_item(error)
            if old is None and self.get(connection_id) is None:
                raise ConnectionNotFound(f"No connection {connection_id!r}") from None
            raise busy_because(item_to_connection(old) if old else None, connection_id, now=now) from None
        return item_to_connection(updated["Attributes"])

    def release_lease(self, connection_id: str, *, owner: str, clear_fence: bool = True) -> bool:
        # Only a holder with no call in flight releases this way (an unknown outcome saves its mark), and only
        # one that fenced clears the mark: another's may still guard a call at Intuit.
        return self._as_owner(
            _connection_key(connection_id),
            owner,
            "REMOVE lease_owner, lease_expires_at" + (", refresh_in_flight_until" if clear_fence else ""),
        )

    def _as_owner(self, key: dict[str, str], owner: str, expression: str, values: dict[str, Any] | None = None) -> bool:
        """A write only the lease's owner may make: False when it is no longer theirs."""
        try:
            self._table.update_item(
                Key=key,
                UpdateExpression=expression,
                ConditionExpression=Attr("lease_owner").eq(owner),
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return False
            raise
        return True

    # --- the app-company lease (domain/app_company_leases.py) ----------------------------------
    def acquire_app_company_lease(
        self,
        app_company: AppCompany,
        *,
        owner: str,
        connection_id: str,
        purpose: str,
        record_grant_holder: bool,
        now: float,
        seconds: float,
        skew_seconds: float,
    ) -> AppCompanyLeaseRecord:
        expression = (
            "SET lease_owner = :owner, lease_expires_at = :expires, lease_connection_id = :holder, "
            "lease_purpose = :purpose"
        )
        values: dict[str, Any] = {
            ":owner": owner,
            ":expires": _to_dynamo(float(now + seconds)),
            ":holder": connection_id,
            ":purpose": purpose,
        }
        if record_grant_holder:
            # In the same write: a revoker that takes the lease next finds this connection even if the realm
            # index does not list it yet.
            expression += " ADD grant_connection_ids :holders"
            values[":holders"] = {connection_id}
        try:
            answer = self._table.update_item(
                Key=_app_company_key(app_company),
                UpdateExpression=expression,
                ConditionExpression=_lease_is_free(owner, now=now, skew_seconds=skew_seconds),
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise
            held = _app_company_record(_old_item(error) or {})
            raise CompanyBusy(
                f"Another connection of the app holds the app-company lease on company {app_company.realm_id}",
                holder_connection_id=held.connection_id,
                purpose=held.purpose,
                until=held.expires_at,
            ) from None
        return _app_company_record(answer.get("Attributes") or {})

    def renew_app_company_lease(self, app_company: AppCompany, *, owner: str, until: float) -> bool:
        return self._as_owner(
            _app_company_key(app_company),
            owner,
            "SET lease_expires_at = :expires",
            {":expires": _to_dynamo(float(until))},
        )

    def release_app_company_lease(
        self, app_company: AppCompany, *, owner: str, forget: frozenset[str] = frozenset()
    ) -> bool:
        expression = "REMOVE lease_owner, lease_expires_at, lease_connection_id, lease_purpose"
        values = None
        if forget:
            expression += " DELETE grant_connection_ids :forget"
            values = {":forget": set(forget)}
        return self._as_owner(_app_company_key(app_company), owner, expression, values)

    def record_test(self, connection_id: str, result: TestResult) -> None:
        try:
            self._table.update_item(
                Key=_connection_key(connection_id),
                UpdateExpression="SET last_test = :result",
                ConditionExpression=Attr("pk").exists(),
                ExpressionAttributeValues={":result": _to_dynamo(result.to_item())},
            )
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise

    def due_connection_ids(
        self, *, due_before: float, policy: RefreshPolicy = RefreshPolicy.EAGER, limit: int | None = None
    ) -> list[str]:
        ids: list[str] = []
        for page in query_pages(
            self._table,
            IndexName=REFRESH_DUE_INDEX,
            KeyConditionExpression=Key("refresh_index").eq(REFRESH_INDEX_PARTITIONS[policy])
            & Key("access_token_expires_at").lte(_to_dynamo(float(due_before))),
        ):
            ids += [item["pk"].removeprefix("connection#") for item in page.get("Items", [])]
            if limit and len(ids) >= limit:
                break
        return ids[:limit] if limit else ids

    def connection_ids_with_status(self, status: ConnectionStatus) -> list[str]:
        pages = query_pages(
            self._table, IndexName=BY_STATUS_INDEX, KeyConditionExpression=Key("status").eq(status.value)
        )
        return [item["pk"].removeprefix("connection#") for page in pages for item in page.get("Items", [])]

    def count_by_status(self, statuses: Iterable[ConnectionStatus] | None = None) -> dict[ConnectionStatus, int]:
        """How many connections are in each status: one COUNT query per status on the sparse by-status index
        (only connection items carry `status`), never a scan."""
        counts: dict[ConnectionStatus, int] = {}
        for status in ConnectionStatus if statuses is None else statuses:
            pages = query_pages(
                self._table,
                IndexName=BY_STATUS_INDEX,
                KeyConditionExpression=Key("status").eq(status.value),
                Select="COUNT",
            )
            counts[status] = sum(page.get("Count", 0) for page in pages)
        return counts

    # --- OAuth states ---------------------------------------------------------------------
    def put_state(self, state: OAuthState) -> None:
        self._table.put_item(
            Item={
                **_state_key(state.state_hash),
                "connection_id": state.connection_id,
                "redirect_uri": state.redirect_uri,
                "browser_binding": state.browser_binding,
                "created_at": _to_dynamo(state.created_at),
                "expires_at": _to_dynamo(state.expires_at),
                STATE_TTL_ATTRIBUTE: int(state.expires_at) + 3600,
            },
            ConditionExpression=Attr("pk").not_exists(),
        )

    def get_state(self, state_hash: str) -> OAuthState | None:
        item = self._table.get_item(Key=_state_key(state_hash), ConsistentRead=True).get("Item")
        return _state_from_item(state_hash, item) if item else None

    def consume_state(self, state_hash: str) -> OAuthState | None:
        try:
            old = self._table.delete_item(
                Key=_state_key(state_hash), ConditionExpression=Attr("pk").exists(), ReturnValues="ALL_OLD"
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                return None
            raise
        return _state_from_item(state_hash, old["Attributes"])


def _app_company_record(item: dict[str, Any]) -> AppCompanyLeaseRecord:
    data = _from_dynamo(item)
    return AppCompanyLeaseRecord(
        owner=data.get("lease_owner"),
        expires_at=data.get("lease_expires_at"),
        connection_id=data.get("lease_connection_id"),
        purpose=data.get("lease_purpose"),
        grant_holders=frozenset(data.get("grant_connection_ids") or ()),
    )


def _state_from_item(state_hash: str, item: dict[str, Any]) -> OAuthState:
    data = _from_dynamo(item)
    return OAuthState(
        state_hash=state_hash,
        connection_id=data["connection_id"],
        redirect_uri=data["redirect_uri"],
        browser_binding=data["browser_binding"],
        created_at=float(data["created_at"]),
        expires_at=float(data["expires_at"]),
    )
