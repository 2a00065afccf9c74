"""Metering as CloudWatch and workflows see it (the counting itself: domain/metering.py).

- `flush_usage()`: a workflow's handler calls it last, so this invocation's API calls are written
  before Lambda may freeze the container (otherwise at most QBO_METERING_FLUSH_SECONDS of calls wait in
  memory for the next call, the next interval or the process's exit), and the service's metrics it
  gathered are published.
- The refresh sweep publishes the month so far as gauges: `MeteredApiCalls` per app (dimension
  ClientId) and `MeteredAllowanceUsedPercent`, the highest share of its allowance any app has used:
  the alarm (MeteringAllowanceAlarm) watches that one. A level, sent every sweep, so the alarm stays
  raised until the month turns or the allowance is raised.
- A flush DynamoDB refused is logged with the counts it holds and counted as `MeteringFlushFailed`;
  the counts stay and are written at the next flush.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from botocore.exceptions import BotoCoreError, ClientError

from qbo_connect.domain.metering import Allowances, Flush, UsageLedger, highest_share, month_of
from qbo_connect.observability import SERVICE, MetricUnit, logger, metrics

# What the template's alarms watch (tests/unit/test_template.py holds the names together).
ALLOWANCE_USED_METRIC = "MeteredAllowanceUsedPercent"
FLUSH_FAILED_METRIC = "MeteringFlushFailed"
MONTH_TO_DATE_METRIC = "MeteredApiCalls"


def flush_usage() -> bool:
    """Write this process's pending API call counts now; True when nothing is left unwritten. The service's
    metrics gathered in this process (a refresh that failed for good, a rotation the vault refused) are
    published with them: in a workflow's process no handler of the service flushes them, and their alarms
    must hear of what happens in workflows too."""
    from qbo_connect.runtime import services

    written = services().meter.flush()
    metrics.flush_metrics()
    return written


def report_unrecorded(flush: Flush, error: Exception) -> None:
    logger.error(
        "API call counts could not be written yet; they are kept and written at the next flush",
        extra={
            "calls": flush.calls,
            "apps": sorted({key.client_id for _, key in flush.counts}),
            "error": type(error).__name__,
        },
    )
    _emit(FLUSH_FAILED_METRIC, MetricUnit.Count, 1)


def publish_metering_gauge(ledger: UsageLedger, allowances: Allowances, clock) -> float | None:
    """The month so far, per app and as the highest share of an allowance; None if it could not be read."""
    try:
        usages = ledger.month(month_of(clock.now()), connections_too=False)
    except (BotoCoreError, ClientError) as error:
        logger.warning("Could not read this month's API call counts", extra={"error": type(error).__name__})
        return None
    for usage in usages:
        _emit(MONTH_TO_DATE_METRIC, MetricUnit.Count, usage.metered_calls, ClientId=usage.client_id)
    share = highest_share(usages, allowances)
    metrics.add_metric(name=ALLOWANCE_USED_METRIC, unit=MetricUnit.Percent, value=share)
    logger.info(
        "API calls this month",
        extra={"metered_calls": {u.client_id: u.metered_calls for u in usages}, "highest_share_percent": share},
    )
    return share


def _emit(name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
    """One metric now, with its own dimensions. Outside a handler's metrics (a workflow's process, the CLI)
    nothing else would print it; POWERTOOLS_METRICS_DISABLED keeps the CLI's stdout clean."""
    if is_metrics_disabled():
        return
    with single_metric(name=name, unit=unit, value=value, namespace=metrics.namespace) as metric:
        # Always this service's, whatever a workflow calls itself, so that the alarms find the metric.
        for key, dimension in {"service": SERVICE, **dimensions}.items():
            metric.add_dimension(name=key, value=dimension)
