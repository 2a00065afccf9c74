"""The connections-by-status gauge the refresh sweep emits every period.

`Connections` (dimension `status`) for each status, and `ConnectionsNeedingReauthorization`: the
connections only a person can fix (needs_reauthorization, invalid_client). Because it is a level sent every
sweep, not a count of failures, the alarm on it stays raised until a person has fixed every one of them,
and clears by itself the sweep after.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import single_metric

from qbo_connect.domain.connection import ConnectionStatus
from qbo_connect.observability import MetricUnit, metrics
from qbo_connect.ports import ConnectionStore

NEEDS_A_PERSON = (ConnectionStatus.NEEDS_REAUTHORIZATION, ConnectionStatus.INVALID_CLIENT)


def publish_status_gauge(store: ConnectionStore) -> dict[str, int]:
    counts = store.count_by_status()
    for status, count in counts.items():
        with single_metric(
            name="Connections", unit=MetricUnit.Count, value=count, namespace=metrics.namespace
        ) as metric:
            metric.add_dimension(name="status", value=status.value)
    needing = sum(counts.get(status, 0) for status in NEEDS_A_PERSON)
    metrics.add_metric(name="ConnectionsNeedingReauthorization", unit=MetricUnit.Count, value=needing)
    return {status.value: count for status, count in counts.items()}
