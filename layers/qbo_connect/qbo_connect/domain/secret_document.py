"""The connection secret: the one JSON document in Secrets Manager per connection.

Its shape is a public contract (README, "The connection secret"): workflows in any language
read it directly. Change it only by adding fields.

`generation` grows by one with every write. Each write uses a ClientRequestToken derived from
(connection, generation), so a retried write is idempotent and two writers of the same
generation cannot both win: the second one is refused by Secrets Manager.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import field, replace
from typing import Any

from qbo_connect.domain.connection import RefreshPolicy
from qbo_connect.domain.token_set import TokenSet
from qbo_connect.records import record

SCHEMA = "qbo-connect/connection-secret/v1"


@record
class ConnectionSecret:
    """The connection's secret in Secrets Manager: the client secret and the token set, with what they belong to."""

    connection_id: str
    client_id: str
    base_url: str
    client_secret: str | None = field(default=None, repr=False)
    token_set: TokenSet | None = None
    realm_id: str | None = None
    generation: int = 0
    updated_at: float = 0.0
    # Tells a reader that takes the token straight from here whether it is kept valid (eager), or may
    # have expired and must be asked for through the service (on_demand).
    refresh_policy: RefreshPolicy = RefreshPolicy.EAGER

    def next(self, *, now: float, **changes: Any) -> ConnectionSecret:
        return replace(self, generation=self.generation + 1, updated_at=now, **changes)

    def to_json(self) -> str:
        return json.dumps(
            {
                "schema": SCHEMA,
                "connection_id": self.connection_id,
                "realm_id": self.realm_id,
                "refresh_policy": self.refresh_policy.value,
                "base_url": self.base_url,
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "token_set": self.token_set.to_document() if self.token_set else None,
                "generation": self.generation,
                "updated_at": int(self.updated_at),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ConnectionSecret:
        document: Mapping[str, Any] = json.loads(text)
        token_document = document.get("token_set")
        return cls(
            connection_id=document["connection_id"],
            client_id=document["client_id"],
            base_url=document["base_url"],
            client_secret=document.get("client_secret"),
            token_set=TokenSet.from_document(token_document) if token_document else None,
            realm_id=document.get("realm_id"),
            generation=int(document.get("generation", 0)),
            updated_at=float(document.get("updated_at", 0)),
            # Written before refresh policies existed: every connection was eager.
            refresh_policy=RefreshPolicy(document.get("refresh_policy") or RefreshPolicy.EAGER),
        )
