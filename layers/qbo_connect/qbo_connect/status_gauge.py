"""The connections-by-status gauge the refresh sweep emits.

`ConnectionsNeedingReauthorization`, every sweep: the connections only a person can fix
(needs_reauthorization, invalid_client). Because it is a level sent every sweep, not a count of failures,
the alarm on it stays raised until a person has fixed every one of them, and clears by itself the sweep
after. `Connections` (dimension `status`): the statuses counted, which are those two every sweep and every
status on the first sweep of each hour. A COUNT query reads every index entry it counts, and nearly all
connections are `connected`: counting those every five minutes would make each sweep read every
connection stored (a million entries at a million connections), where the due-finding reads only what is due.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import single_metric

from qbo_connect.domain.connection import ConnectionStatus
from qbo_connect.observability import MetricUnit, metrics
from qbo_connect.ports import ConnectionStore

EVERY_STATUS_SECONDS = 3600  # how often every status is counted, not only the ones a person must fix

NEEDS_A_PERSON = (ConnectionStatus.NEEDS_REAUTHORIZATION, ConnectionStatus.INVALID_CLIENT)


def publish_status_gauge(store: ConnectionStore, *, sweep_at: float, period_seconds: int) -> dict[str, int]:
    # The sweep scheduled in the hour's first period (stateless). `sweep_at` is the time the Scheduler put in
    # the sweep's input, which a retry keeps (else the sweep's start, never the end of a long fan-out). A
    # schedule that runs late without saying when it was due can still make it none or two in an hour.
    every_status = sweep_at % EVERY_STATUS_SECONDS < period_seconds
    counts = store.count_by_status(None if every_status else NEEDS_A_PERSON)
    for status, count in counts.items():
        with single_metric(
            name="Connections", unit=MetricUnit.Count, value=count, namespace=metrics.namespace
        ) as metric:
            metric.add_dimension(name="status", value=status.value)
    needing = sum(counts.get(status, 0) for status in NEEDS_A_PERSON)
    metrics.add_metric(name="ConnectionsNeedingReauthorization", unit=MetricUnit.Count, value=needing)
    return {status.value: count for status, count in counts.items()}
