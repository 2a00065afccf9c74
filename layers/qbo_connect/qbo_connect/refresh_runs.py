"""The scheduled refresh run: find connections due for refresh and refresh each through the lifecycle."""

from __future__ import annotations

from collections import Counter
from typing import Any

from qbo_connect.domain.lifecycle import TokenLifecycle
from qbo_connect.observability import logger


class RefreshRuns:
    def __init__(self, lifecycle: TokenLifecycle) -> None:
        self._lifecycle = lifecycle

    def handle(self, event: Any) -> dict[str, Any]:
        if isinstance(event, dict) and isinstance(event.get("connection_id"), str):
            return self._lifecycle.refresh(event["connection_id"]).as_json()
        return self.sweep()

    def sweep(self) -> dict[str, Any]:
        due = self._lifecycle.due_connection_ids()
        outcomes = Counter(self._lifecycle.refresh(connection_id).outcome.value for connection_id in due)
        logger.info("Refresh sweep finished", extra={"due": len(due), "outcomes": dict(outcomes)})
        return {"due": len(due), "outcomes": dict(outcomes)}
