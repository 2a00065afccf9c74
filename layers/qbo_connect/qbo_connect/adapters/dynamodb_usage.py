"""UsageLedger on the connections table: the month's API call counts, per app and per connection.

Items (kept about 13 months by TTL), all listed by the table's listing index under `usage#<month>`:
- `usage#<month>#app#<client_id>`: production_reads (what Intuit meters), production_writes,
  sandbox_reads, sandbox_writes;
- `usage#<month>#connection#<connection_id>`: its app, environment, reads and writes.
A flush is one transaction of ADDs (at most 100 items each) with a ClientRequestToken: DynamoDB applies
a retried transaction once within ten minutes, so a retry after a lost answer does not count twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from qbo_connect import intuit
from qbo_connect.adapters.dynamodb_conditions import Key
from qbo_connect.adapters.dynamodb_store import BY_NAME_INDEX, STATE_TTL_ATTRIBUTE
from qbo_connect.adapters.dynamodb_table import DynamoDbTable, query_pages
from qbo_connect.domain.metering import AppUsage, ConnectionUsage, Flush, Tally, UsageKey

MAX_TRANSACTION_ITEMS = 100
KEEP_SECONDS = 400 * 86400  # a year of months to compare with, then DynamoDB's TTL removes them
_APP, _CONNECTION = "app#", "connection#"


def listing_of(month: str) -> str:
    return f"usage#{month}"


class DynamoDbUsageLedger:
    def __init__(self, table: DynamoDbTable) -> None:
        self._table = table

    def add(self, flush: Flush) -> None:
        updates = self._updates(flush.counts)
        for index in range(0, len(updates), MAX_TRANSACTION_ITEMS):
            chunk = updates[index : index + MAX_TRANSACTION_ITEMS]
            # One token per chunk, the same on every retry of this flush: DynamoDB applies it once.
            self._table.transact_write_items(TransactItems=chunk, ClientRequestToken=f"{flush.token}-{index}")

    def month(self, month: str, *, connections_too: bool = True) -> list[AppUsage]:
        """The month's figures; without `connections_too` only the apps' items are read (the sweep's gauge:
        one small query however many connections there are)."""
        apps: dict[str, dict[str, Any]] = {}
        connections: dict[str, list[ConnectionUsage]] = defaultdict(list)
        condition = Key("listing").eq(listing_of(month))
        if not connections_too:
            condition &= Key("name").begins_with(_APP)
        for page in query_pages(self._table, IndexName=BY_NAME_INDEX, KeyConditionExpression=condition):
            for item in page.get("Items", []):
                name = str(item.get("name", ""))
                if name.startswith(_APP):
                    apps[str(item["client_id"])] = item
                elif name.startswith(_CONNECTION):
                    connections[str(item["client_id"])].append(
                        ConnectionUsage(
                            connection_id=name.removeprefix(_CONNECTION),
                            environment=str(item.get("environment", "")),
                            reads=int(item.get("reads", 0)),
                            writes=int(item.get("writes", 0)),
                        )
                    )
        return [
            AppUsage(
                client_id=client_id,
                month=month,
                production_reads=int(item.get("production_reads", 0)),
                production_writes=int(item.get("production_writes", 0)),
                sandbox_reads=int(item.get("sandbox_reads", 0)),
                sandbox_writes=int(item.get("sandbox_writes", 0)),
                connections=tuple(connections.get(client_id, ())),
            )
            for client_id, item in sorted(apps.items())
        ]

    # --- the transaction ------------------------------------------------------------------------
    def _updates(self, counts: Mapping[tuple[str, UsageKey], Tally]) -> list[dict[str, Any]]:
        by_app: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
        by_connection: dict[tuple[str, UsageKey], Tally] = defaultdict(Tally)
        for (month, key), tally in counts.items():
            prefix = "production" if key.environment is intuit.Environment.PRODUCTION else "sandbox"
            app = by_app[(month, key.client_id)]
            app[f"{prefix}_reads"] += tally.reads
            app[f"{prefix}_writes"] += tally.writes
            by_connection[(month, key)].add(tally.reads, tally.writes)
        updates = [
            self._update(month, f"{_APP}{client_id}", {"client_id": client_id}, added)
            for (month, client_id), added in sorted(by_app.items())
        ]
        updates += [
            self._update(
                month,
                f"{_CONNECTION}{key.connection_id}",
                {"client_id": key.client_id, "environment": key.environment.value},
                {"reads": tally.reads, "writes": tally.writes},
            )
            for (month, key), tally in sorted(
                by_connection.items(), key=lambda pair: (pair[0][0], pair[0][1].connection_id)
            )
        ]
        return updates

    def _update(self, month: str, name: str, labels: dict[str, str], added: Mapping[str, int]) -> dict[str, Any]:
        values: dict[str, Any] = {
            ":listing": listing_of(month),
            ":name": name,
            ":purge": _month_start(month) + KEEP_SECONDS,
            **{f":l{i}": value for i, value in enumerate(labels.values())},
            **{f":a{i}": value for i, value in enumerate(added.values())},
        }
        names = {
            "#listing": "listing",
            "#name": "name",
            "#purge": STATE_TTL_ATTRIBUTE,
            **{f"#l{i}": label for i, label in enumerate(labels)},
            **{f"#a{i}": field for i, field in enumerate(added)},
        }
        sets = ["#listing = :listing", "#name = :name", "#purge = :purge"]
        sets += [f"#l{i} = :l{i}" for i in range(len(labels))]
        adds = [f"#a{i} :a{i}" for i in range(len(added))]
        return {
            "Update": {
                "TableName": self._table.name,
                # Plain Python values: the table adapter types them (dynamodb_table.py).
                "Key": {"pk": f"{listing_of(month)}#{name}"},
                "UpdateExpression": f"SET {', '.join(sets)} ADD {', '.join(adds)}",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            }
        }


def _month_start(month: str) -> int:
    return int(datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC).timestamp())
